"""The guides' config blocks read as ansible-core reads them.

Every fenced block in docs/*.md, docs/**/*.md, README.md and the roles'
README.md files is checked by its language tag (and so are the files of
examples/, ansible.cfg and the YAML files):

- ``ini`` or ``cfg``, and any block whose first line is ``# ansible.cfg``:
  parsed with ansible-core's own ansible.cfg parser settings
  (``configparser.ConfigParser(inline_comment_prefixes=(';',))``, as
  ansible.config.manager.ConfigManager._parse_config_file makes it). A value
  that still holds `` #`` or `` ;`` after parsing is refused: ansible-core
  keeps such an inline comment as part of the value (only ``;`` after a
  space is taken off; a ``#`` starts a comment at the start of a line only),
  so ``report_dir = reports/  # the default ...`` names a folder
  ``reports/  # the default ...``. Put the comment on a line of its own.
- ``yaml`` or ``yml``: loaded with ansible's YAML loader
  (``DataLoader().load``, which playbooks, inventories and vars files go
  through). A stream of several documents (a Kubernetes manifest with
  ``---`` lines) is loaded one document at a time, as ansible's loader
  takes one document only.

A block that is meant as a piece of a larger file and does not parse on its
own (an excerpt from the middle of a list, a line with ``...``) is skipped
when the line just before its opening fence (blank lines between are fine)
is the HTML comment ``<!-- fragment -->``; GitHub and the docs site show
nothing of it. Words may follow the marker's name, as in
``<!-- fragment: the tasks of a play -->``.
"""

import configparser
import glob
import os
import re

import pytest

from ansible.parsing.dataloader import DataLoader

from tests.collection import REPO

FENCE = re.compile(r'^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[^\s`]*)')
FRAGMENT = re.compile(r'^\s*<!--\s*fragment\b.*-->\s*$')
INI_TAGS = ('ini', 'cfg')
YAML_TAGS = ('yaml', 'yml')
# what ansible-core keeps of an inline comment in a value
KEPT_COMMENT = re.compile(r'\s[#;]')
# a line that starts the next YAML document of a stream
DOCUMENT_START = re.compile(r'^---[ \t]*$', re.M)


def guides():
    paths = set(glob.glob(os.path.join(REPO, 'docs', '**', '*.md'), recursive=True))
    paths.update(glob.glob(os.path.join(REPO, 'examples', '**', '*.md'), recursive=True))
    paths.update(glob.glob(os.path.join(REPO, 'roles', '*', 'README.md')))
    paths.add(os.path.join(REPO, 'README.md'))
    return sorted(os.path.relpath(p, REPO) for p in paths if os.path.isfile(p))


class Block(object):
    """One fenced block: where it starts (1-based line of its first line of
    text), its language tag, its text (the fence's indentation taken off) and
    whether it is marked a fragment."""

    def __init__(self, path, line, tag, text, fragment):
        self.path, self.line, self.tag, self.text, self.fragment = (
            path, line, tag, text, fragment)

    def __repr__(self):
        return '%s:%d' % (self.path, self.line)

    @property
    def kind(self):
        first = self.text.lstrip().split('\n', 1)[0].strip()
        if self.tag in INI_TAGS or first == '# ansible.cfg':
            return 'ini'
        if self.tag in YAML_TAGS:
            return 'yaml'
        return None


def blocks(path, text):
    """The fenced blocks of a Markdown text."""
    lines = text.split('\n')
    out = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence = len(opened.group('indent')), opened.group('fence')
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        fragment = before >= 0 and bool(FRAGMENT.match(lines[before]))
        body = []
        j = i + 1
        while j < len(lines):
            closed = FENCE.match(lines[j])
            if closed and closed.group('fence')[0] == fence[0] \
                    and len(closed.group('fence')) >= len(fence) and not closed.group('tag'):
                break
            line = lines[j]
            # the fence's indentation (a block in a list item), no more
            taken = len(line) - len(line.lstrip(' \t'))
            body.append(line[min(indent, taken):])
            j += 1
        out.append(Block(path, i + 2, opened.group('tag').lower(), '\n'.join(body) + '\n',
                         fragment))
        i = j + 1
    return out


def all_blocks():
    out = []
    for rel in guides():
        with open(os.path.join(REPO, rel)) as handle:
            out.extend(blocks(rel, handle.read()))
    return out


def ansible_cfg_parser():
    """An ansible.cfg parser set up as ansible-core sets up its own."""
    return configparser.ConfigParser(inline_comment_prefixes=(';',))


def ini_problems(text):
    """What is wrong with ``text`` as an ansible.cfg: its parse error, or
    each value that keeps an inline comment."""
    parser = ansible_cfg_parser()
    try:
        parser.read_string(text)
    except configparser.Error as error:
        return ['does not parse: %s' % error]
    problems = []
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            if KEPT_COMMENT.search(value):
                problems.append('[%s] %s = %r: ansible-core keeps the comment in the value; '
                                'put it on a line of its own' % (section, key, value))
    return problems


def yaml_problems(text, path=None):
    """What is wrong with ``text`` as YAML ansible loads (``path``: the
    guide, an absolute path, named in the loader's error); each document of
    a stream (``---`` lines) on its own."""
    problems = []
    for document in DOCUMENT_START.split(text):
        try:
            DataLoader().load(document, file_name=path)
        except Exception as error:  # pylint: disable=broad-except
            problems.append('does not load: %s' % ('%s' % error).split('\n')[0])
    return problems


CHECKED = [b for b in all_blocks() if b.kind and not b.fragment]


@pytest.mark.parametrize('block', [b for b in CHECKED if b.kind == 'ini'], ids=repr)
def test_an_ini_block_reads_as_ansible_reads_ansible_cfg(block):
    assert ini_problems(block.text) == [], block


@pytest.mark.parametrize('block', [b for b in CHECKED if b.kind == 'yaml'], ids=repr)
def test_a_yaml_block_loads_with_ansibles_loader(block):
    assert yaml_problems(block.text, os.path.join(REPO, block.path)) == [], block


EXAMPLES = sorted(os.path.relpath(p, REPO) for p in glob.glob(
    os.path.join(REPO, 'examples', '**', '*'), recursive=True)
    if p.endswith(('.cfg', '.yml', '.yaml')))


@pytest.mark.parametrize('rel', EXAMPLES)
def test_the_example_files_read_as_ansible_reads_them(rel):
    """examples/ (the files the quickstart's blocks are): the same checks."""
    path = os.path.join(REPO, rel)
    with open(path) as handle:
        text = handle.read()
    problems = ini_problems(text) if rel.endswith('.cfg') else yaml_problems(text, path)
    assert problems == [], rel


def test_the_guides_have_blocks_of_both_kinds():
    """The scan finds the blocks (a change to the fences would otherwise
    leave nothing checked)."""
    kinds = [b.kind for b in CHECKED]
    assert kinds.count('ini') >= 3 and kinds.count('yaml') >= 20, kinds


def test_an_inline_comment_is_refused_and_a_comment_line_is_not():
    assert ini_problems('[a]\n# a comment line\nx = reports/\n') == []
    said = ini_problems('[a]\nx = reports/   # default: here\n')
    assert len(said) == 1 and "'reports/   # default: here'" in said[0]
    # ansible-core takes ' ;' off: nothing of it stays in the value
    assert ini_problems('[a]\nx = reports/ ; default: here\n') == []
    assert ini_problems('[a]\nx = http://h/#frag\n') == []
    assert ini_problems('x = 1\n')[0].startswith('does not parse')


def test_fences_in_a_list_a_fragment_marker_and_the_ansible_cfg_line():
    text = ('Some text\n\n'
            '- a step:\n\n'
            '  ```yaml\n'
            '  - name: x\n'
            '    debug:\n'
            '  ```\n\n'
            '<!-- fragment: only the keys -->\n\n'
            '```yaml\n'
            '    keys: [\n'
            '```\n'
            '```\n'
            '# ansible.cfg\n'
            '[defaults]\n'
            '```\n'
            '````md\n'
            '```ini\n'
            '````\n')
    found = blocks('x.md', text)
    assert [(b.line, b.kind, b.fragment) for b in found] == [
        (6, 'yaml', False), (13, 'yaml', True), (16, 'ini', False),
        (20, None, False)]
    assert found[0].text == '- name: x\n  debug:\n'
    assert yaml_problems(found[0].text) == [] and yaml_problems(found[1].text) != []
