"""Issue 80: the report page is the template report.html.j2 rendered by
jinja2 with autoescape on, the same page as the hand-built one it replaced.

report_samples/samples.json holds report dicts (a 29-host fleet merged from
two runs with every kind of failure, check and rollback runs, runs with no
host, an older report, one full of markup characters); report_samples/
NAME.html is the page the hand-built code (before the template) rendered
from each, written once by that code and kept as it wrote it, but for one
later change of words: check.html's copy column says "would copy" (check
mode sends nothing).
"""

import ast
import json
import os
import re
import sys
from html.parser import HTMLParser

import pytest

from tests.collection import REPO, collections_path
from tests.unit.plugins.plugin_utils.report.test_report import fleet_run, validate

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (  # noqa: E402
    _report_html)

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'report_samples')
REPORT_DIR = os.path.join(REPO, 'plugins', 'plugin_utils', 'report')

with open(os.path.join(SAMPLES, 'samples.json'), encoding='utf-8') as _handle:
    REPORTS = json.load(_handle)


def old_page(name):
    """The hand-built code's page, with its two quote escapes spelled as
    jinja2's autoescape (markupsafe) spells them: html.escape wrote &#x27;
    and &quot;, markupsafe writes &#39; and &#34; (the same characters to a
    browser). A quote in the data itself was written &amp;..., so no other
    text changes."""
    with open(os.path.join(SAMPLES, name + '.html'), encoding='utf-8', newline='') as handle:
        text = handle.read()
    return text.replace('&#x27;', '&#39;').replace('&quot;', '&#34;')


@pytest.mark.parametrize('name', sorted(REPORTS))
def test_the_page_is_the_hand_built_page(name):
    assert _report_html.render(REPORTS[name]) == old_page(name)


def test_the_samples_cover_the_page():
    pages = ''.join(old_page(name) for name in REPORTS)
    for part in ('id="attention"', 'id="timeline"', 'id="hosts"', 'id="diffs"', 'id="state"',
                 'class="card hostkey"', 'evaluation reused from', 'runs merged', '(tried ',
                 '(connection lost)', '(dirty: uncommitted changes)', 'rolled back at <b>',
                 'check mode</b>', 'rollback</b>', 'rollback, check mode</b>', '<br>',
                 'None: every host went through.', 'stopped before any host'):
        assert part in pages, part


class Text(HTMLParser):
    """The text and attribute values of a page, as a browser reads them."""

    def __init__(self):
        HTMLParser.__init__(self, convert_charrefs=True)
        self.tags, self.text, self.attrs = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [value for _name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


NASTY_HOST = '<script>alert(1)</script>'
NASTY_MESSAGE = 'error: a & b, "double" and \'single\' quotes, </pre><img src=x>'


def nasty_report():
    report = fleet_run()
    cache = report['hosts'].pop('cache')
    cache.update(host=NASTY_HOST, message=NASTY_MESSAGE, platform='nix"os\'&<',
                 summary='FAILED at build: ' + NASTY_MESSAGE)
    report['hosts'][NASTY_HOST] = cache
    report['hosts']['web']['closure_diff']['added'] = ['<pkg> & "x"']
    report['runs'][0]['limit'] = '"><b>&\''
    report['runs'][0]['flakes'][0]['ref'] = 'git+https://h.example/<a>?x=1&y="2"'
    return report


def test_host_names_and_messages_are_escaped():
    page = _report_html.render(nasty_report())
    # nothing from the run reaches the page as markup
    assert NASTY_HOST not in page and '<img' not in page and '<pkg>' not in page
    assert '<code>"><b>' not in page
    escaped_host = '&lt;script&gt;alert(1)&lt;/script&gt;'
    assert 'data-host="%s"' % escaped_host in page          # in attributes
    assert '<b>%s</b>' % escaped_host in page               # in the host table
    assert '<h3>%s <span' % escaped_host in page            # in the failures
    assert ('<pre>error: a &amp; b, &#34;double&#34; and &#39;single&#39; quotes, '
            '&lt;/pre&gt;&lt;img src=x&gt;</pre>') in page
    assert '<code>&#34;&gt;&lt;b&gt;&amp;&#39;</code>' in page
    # and reads back as it was: the escaping changes no character of the data
    parsed = Text()
    parsed.feed(page)
    text = ''.join(parsed.text)
    assert NASTY_HOST in text and NASTY_MESSAGE in text
    assert 'nix"os\'&<' in text and '<pkg> & "x"' in text
    assert NASTY_HOST in parsed.attrs
    assert 'script' not in parsed.tags and 'img' not in parsed.tags


# a value that ends an attribute and opens its own, in the attributes the
# page fills from the data: data-host (a host name), title (a store path)
BREAKOUT = '" onmouseover="alert(1)" x=\''


class Attributes(HTMLParser):
    """Every (tag, attribute, value) of a page, as a browser reads them."""

    def __init__(self):
        HTMLParser.__init__(self, convert_charrefs=True)
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found += [(tag, name, value) for name, value in attrs]


def test_a_value_never_leaves_its_attribute():
    report = fleet_run()
    web = report['hosts'].pop('web')
    host = 'web' + BREAKOUT
    path = web['store_path'] + BREAKOUT
    web.update(host=host, store_path=path)
    report['hosts'][host] = web
    report['runs'][0]['hosts'] = sorted(report['hosts'])
    page = _report_html.render(report)
    parsed = Attributes()
    parsed.feed(page)
    # no attribute of the page comes from the data: each value stayed in its own
    assert not [found for found in parsed.found if found[1] in ('onmouseover', 'x')]
    # and reads back whole: the timeline's row, the host table's, the
    # closure's differences, the store path's title
    for found in (('div', 'data-host', host), ('tr', 'data-host', host),
                  ('details', 'data-host', host), ('td', 'title', path)):
        assert found in parsed.found, found


def test_the_nasty_sample_reads_back_as_its_data():
    page = _report_html.render(REPORTS['nasty'])
    parsed = Text()
    parsed.feed(page)
    assert 'script' not in parsed.tags and 'img' not in parsed.tags
    text = ''.join(parsed.text)
    for rec in REPORTS['nasty']['hosts'].values():
        assert rec['host'] in text
        assert rec['host'] in parsed.attrs
        if rec.get('message'):
            assert rec['message'] in text


def test_nothing_is_marked_safe():
    # autoescape on; the template marks nothing safe and the code makes no Markup
    template = _report_html._template()
    assert template.environment.autoescape is True
    source = re.sub(r'\s', '', _report_html.TEMPLATE_TEXT)
    assert '|safe' not in source and 'autoescapefalse' not in source
    with open(os.path.join(REPORT_DIR, '_report_html.py'), encoding='utf-8') as handle:
        code = handle.read()
    assert 'Markup' not in code and '__html__' not in code


def test_the_page_renders_from_a_real_report():
    page = _report_html.render(validate(fleet_run()))
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">') and page.endswith('</html>\n')
    assert _report_html.CSS.startswith('\n:root {') and _report_html.CSS in page


def imported(path):
    """The module names a Python file imports (its own package's by their
    last part)."""
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.rpartition('.')[2])
        elif isinstance(node, ast.Import):
            out.update(alias.name.rpartition('.')[2] for alias in node.names)
    return out


def test_the_report_modules_do_not_import_each_other():
    # _report imports the page lazily (the merge command's renderer); the
    # page imports neither _report nor _report_record, only _report_order
    page = imported(os.path.join(REPORT_DIR, '_report_html.py'))
    assert '_report' not in page and '_report_record' not in page
    assert '_report_order' in page
    order = imported(os.path.join(REPORT_DIR, '_report_order.py'))
    assert not [name for name in order if name.startswith('_report')], order


def test_the_page_files_are_at_most_400_lines():
    for name in ('_report.py', '_report_html.py', '_report_order.py', 'report.html.j2'):
        with open(os.path.join(REPORT_DIR, name), encoding='utf-8') as handle:
            assert len(handle.readlines()) <= 400, name
