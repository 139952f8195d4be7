"""The guides of docs/ (Markdown, their source) as antsibull-docs extra docs.

Each ``docs/**/*.md`` but the folder's index (docs/README.md) becomes
``docs/docsite/rst/<same path>.rst`` in a staged copy of the collection
(pandoc, GitHub Markdown to RST), under a label antsibull-docs accepts, and
``docs/docsite/extra-docs.yml`` lists them in the order docs/README.md names
them, the guides it lists under its heading "Developing this collection" (the
lab, faults, benchmarks, architecture) in a section of their own, after the
user's guides and the modules'. Links are rewritten for the site: a guide's to another guide (and its
heading) to that page (and the heading's id there), a link to a module,
plugin or role file to its generated page, any other file of the repository
to the repository's web address. A link to a file or heading that does not
exist is an error: the site must not carry it.
"""

import os
import posixpath
import re
import subprocess

import yaml
from docutils.nodes import make_id

COLLECTION = 'nixdeploy.fleet'
LABEL = 'ansible_collections.%s.docsite.' % COLLECTION
# the guides' folder in the site, beside the plugin pages
SITE_DIR = 'docsite'
SECTIONS = (('Guides', ''), ('How each module works', 'modules/'),
            ('Developing this collection', 'developing'))
# docs/README.md's heading over the guides of the section 'developing'
DEVELOPING = '## Developing this collection'

FENCE = re.compile(r'^\s*(```|~~~)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
# [text](target) and ![alt](target); targets hold no spaces in these docs
LINK = re.compile(r'(!?\[(?:[^\]\[]|\[[^\]]*\])*\])\(([^)\s]+)\)')
BLOCK_ANCHOR = re.compile(r'^<a id="([^"]+)"></a>\s*$')
INLINE_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
PLACEHOLDER = 'NIXDEPLOYANCHOR-%s'
YAML_FENCE = re.compile(r'^\s*```yaml\s*$')

# plugin files and the page antsibull-docs makes of each
PLUGIN_PAGES = (
    (re.compile(r'^plugins/modules/(\w+)\.py$'), '%s_module.html'),
    (re.compile(r'^plugins/inventory/(\w+)\.py$'), '%s_inventory.html'),
    (re.compile(r'^plugins/callback/(\w+)\.py$'), '%s_callback.html'),
    (re.compile(r'^plugins/filter/(\w+)\.(?:py|yml)$'), '%s_filter.html'),
    (re.compile(r'^roles/(\w+)/meta/argument_specs\.yml$'), '%s_role.html'),
)


class BrokenLink(Exception):
    pass


def github_slug(text):
    """The id GitHub gives a Markdown heading of ``text``."""
    text = re.sub(r'`|\*\*|__', '', text)
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', text).strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def _lines_outside_code(text):
    fenced = False
    for number, line in enumerate(text.splitlines()):
        if FENCE.match(line):
            fenced = not fenced
            yield number, line, True
            continue
        yield number, line, fenced


class _AnsibleLoader(yaml.SafeLoader):
    """YAML as Ansible reads it: its own tags (!vault, !unsafe) are data."""


_AnsibleLoader.add_multi_constructor('!', lambda loader, suffix, node: None)


def _ansible_yaml_only(lines, start):
    """Whether the yaml block after line ``start`` is YAML that Ansible
    reads (its tags, several documents) but one plain document is not:
    rstcheck checks a yaml block as one plain document, Ansible's docs mark
    such blocks yaml+jinja. A block neither reads stays yaml, so lint
    reports it."""
    block = []
    for line in lines[start + 1:]:
        if FENCE.match(line):
            break
        block.append(line)
    text = '\n'.join(block)
    try:
        yaml.safe_load(text)
        return False
    except yaml.YAMLError:
        pass
    try:
        list(yaml.load_all(text, Loader=_AnsibleLoader))  # noqa: S506 (a SafeLoader)
        return True
    except yaml.YAMLError:
        return False


def page_name(rel):
    """docs/quickstart.md -> quickstart; docs/modules/nix_eval.md -> modules/nix_eval."""
    return posixpath.splitext(posixpath.relpath(rel, 'docs'))[0]


def label(page):
    return LABEL + page.replace('/', '.')


class Guide(object):
    """One Markdown guide: its page and the ids its headings and anchors get
    on the site, keyed by the ids GitHub gives them."""

    def __init__(self, repo, rel):
        self.rel, self.page = rel, page_name(rel)
        with open(os.path.join(repo, rel), encoding='utf-8') as handle:
            self.text = handle.read()
        self.anchors, self.title = {}, None
        last = ''
        for _number, line, code in _lines_outside_code(self.text):
            if code:
                continue
            match = HEADING.match(line)
            if match:
                title = match.group(2)
                plain = re.sub(r'`|\*\*', '', re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', title))
                last = make_id(plain)
                self.title = self.title or plain
                self.anchors.setdefault(github_slug(title), last)
                continue
            block = BLOCK_ANCHOR.match(line)
            if block:
                self.anchors[block.group(1)] = make_id('%s.%s' % (label(self.page), block.group(1)))
                continue
            for inline in INLINE_ANCHOR.findall(line):
                # no target of its own inside a paragraph: the section it is in
                self.anchors[inline] = last


class Site(object):
    """The guides of ``repo`` and where links from them go on the site."""

    def __init__(self, repo):
        self.repo = repo
        with open(os.path.join(repo, 'galaxy.yml'), encoding='utf-8') as handle:
            self.web = yaml.safe_load(handle)['repository'].rstrip('/')
        self.guides = {}
        for folder, _dirs, files in os.walk(os.path.join(repo, 'docs')):
            for name in files:
                rel = posixpath.relpath(os.path.join(folder, name), repo).replace(os.sep, '/')
                if name.endswith('.md') and rel != 'docs/README.md' and \
                        not rel.startswith('docs/docsite/'):
                    self.guides[rel] = Guide(repo, rel)

    def _index(self):
        with open(os.path.join(self.repo, 'docs', 'README.md'), encoding='utf-8') as handle:
            return handle.read()

    def _named(self, text):
        named = [posixpath.normpath(posixpath.join('docs', target.split('#')[0]))
                 for _text, target in LINK.findall(text)]
        return [rel for rel in dict.fromkeys(named) if rel in self.guides]

    def order(self):
        """The guides in the order docs/README.md links them, the rest after."""
        first = self._named(self._index())
        return first + sorted(set(self.guides) - set(first))

    def developing(self):
        """The guides docs/README.md lists under its heading "Developing this
        collection" (up to its next heading of that level)."""
        text = self._index()
        at = text.find('\n%s\n' % DEVELOPING)
        if at < 0:
            return set()
        part = text[at + len(DEVELOPING) + 2:]
        end = part.find('\n## ')
        return set(self._named(part if end < 0 else part[:end]))

    def section(self, rel):
        """The prefix of the site's section ``rel`` is listed in."""
        if self.guides[rel].page.startswith('modules/'):
            return 'modules/'
        return 'developing' if rel in self.developing() else ''

    def target(self, guide, target):
        """Where ``target``, a link of ``guide``, goes on the site."""
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):
            return target
        path, _hash, anchor = target.partition('#')
        here = posixpath.dirname(guide.rel)
        rel = posixpath.normpath(posixpath.join(here, path)) if path else guide.rel
        page_dir = posixpath.join(SITE_DIR, posixpath.dirname(guide.page))
        if rel in self.guides:
            other = self.guides[rel]
            if anchor and anchor not in other.anchors:
                raise BrokenLink('%s: %s: no heading or anchor #%s in %s'
                                 % (guide.rel, target, anchor, rel))
            url = posixpath.relpath(posixpath.join(SITE_DIR, other.page + '.html'), page_dir) \
                if path else ''
            return url + ('#' + other.anchors[anchor] if anchor else '')
        if not os.path.exists(os.path.join(self.repo, rel)):
            raise BrokenLink('%s: %s: %s does not exist' % (guide.rel, target, rel))
        if rel == 'docs/README.md':
            return posixpath.relpath('index.html', page_dir)
        for pattern, page in PLUGIN_PAGES:
            match = pattern.match(rel)
            if match:
                return posixpath.relpath(page % match.group(1), page_dir)
        if rel.startswith('docs/images/'):
            # copied beside the guides (build.py)
            return posixpath.relpath(posixpath.join(SITE_DIR, rel[len('docs/'):]), page_dir)
        kind = 'tree' if os.path.isdir(os.path.join(self.repo, rel)) else 'blob'
        return '%s/%s/main/%s%s' % (self.web, kind, rel, '#' + anchor if anchor else '')

    def link(self, guide, text, target):
        """A Markdown link of ``guide`` as the site has it: a link named
        by a guide's file name (``[inventory.md](inventory.md)``) is named
        by that guide's title."""
        path = target.partition('#')[0]
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(guide.rel), path))
        if path and rel in self.guides and text.strip('[]`').endswith(posixpath.basename(path)):
            text = '[%s]' % self.guides[rel].title
        return '%s(%s)' % (text, self.target(guide, target))

    def markdown(self, guide):
        """The guide's Markdown with its links rewritten and its anchors as
        placeholders that rst() turns into labels."""
        out, lines = [], guide.text.splitlines()
        for number, line, code in _lines_outside_code(guide.text):
            if code and YAML_FENCE.match(line) and _ansible_yaml_only(lines, number):
                line = line.replace('yaml', 'yaml+jinja', 1)
            if not code:
                block = BLOCK_ANCHOR.match(line)
                if block:
                    out.extend([PLACEHOLDER % block.group(1), ''])
                    continue
                line = INLINE_ANCHOR.sub('', line)
                line = LINK.sub(lambda m: self.link(guide, m.group(1), m.group(2)), line)
            out.append(line)
        return '\n'.join(out) + '\n'

    def rst(self, guide, pandoc='pandoc'):
        """The guide as RST, under its label."""
        proc = subprocess.run([pandoc, '-f', 'gfm-gfm_auto_identifiers', '-t', 'rst', '--wrap=none', '--columns=1000'],
                              input=self.markdown(guide), stdout=subprocess.PIPE,
                              universal_newlines=True, check=True)
        body = re.sub(r'^%s$' % (PLACEHOLDER % '([^\\s]+)'),
                      lambda m: '.. _%s.%s:' % (label(guide.page), m.group(1)),
                      proc.stdout, flags=re.M)
        return '.. _%s:\n\n%s' % (label(guide.page), body)

    def write(self, dest, pandoc='pandoc'):
        """Every guide as an extra doc of the collection staged at ``dest``,
        and its extra-docs.yml; returns the pages written."""
        rst_dir = os.path.join(dest, 'docs', 'docsite', 'rst')
        sections = dict((prefix, []) for _title, prefix in SECTIONS)
        for rel in self.order():
            guide = self.guides[rel]
            path = os.path.join(rst_dir, guide.page + '.rst')
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(self.rst(guide, pandoc))
            sections[self.section(rel)].append(guide.page)
        index = {'sections': [{'title': title, 'toctree': sections[prefix]}
                              for title, prefix in SECTIONS if sections[prefix]]}
        with open(os.path.join(dest, 'docs', 'docsite', 'extra-docs.yml'), 'w',
                  encoding='utf-8') as handle:
            yaml.safe_dump(index, handle, default_flow_style=False, sort_keys=False)
        return [self.guides[rel].page for rel in self.order()]
