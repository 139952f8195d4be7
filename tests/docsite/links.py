"""Broken internal links of a built site: every relative ``href`` and
``src`` of every page must name a file of the site, and its ``#fragment`` an
id on that page. Sphinx checks its own references (-W); the guides' links
are plain URLs it does not follow."""

import os
import posixpath
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self):
        HTMLParser.__init__(self)
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ('id', 'name'):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for key in ('href', 'src'):
            if attrs.get(key):
                self.links.append(attrs[key])


def _parse(path):
    page = _Page()
    with open(path, encoding='utf-8') as handle:
        page.feed(handle.read())
    return page


def broken(root):
    """[(page, link, why)] for each internal link of the site at ``root``
    that leads nowhere."""
    pages, out = {}, []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith('.html'):
                path = os.path.join(folder, name)
                pages[os.path.relpath(path, root).replace(os.sep, '/')] = _parse(path)
    for rel, page in sorted(pages.items()):
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith('//'):
                continue
            path = unquote(parts.path)
            # a path from the site's root (the theme's logo: "/"), else from the page
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), path)
                                        if not path.startswith('/') else path.lstrip('/') or '.') \
                if path else rel
            if not os.path.exists(os.path.join(root, target)):
                out.append((rel, link, 'no such file'))
            elif parts.fragment and target in pages and \
                    unquote(parts.fragment) not in pages[target].ids:
                out.append((rel, link, 'no such id on the page'))
    return out
