"""Every changelog entry says, in one or two plain sentences, what changed for
a user of the collection (issue 80, "History out of the reference").

The released notes (changelogs/changelog.yaml, every release and section) and
the fragments of the next release (changelogs/fragments/*.yml) are read entry
by entry. An entry fails when it is longer than two sentences or 400
characters (links excluded), when it names a private module or an internal
path (``_foo``, ``_foo.py``, ``plugin_utils``, ``module_utils/_x``, a commit
hash), or when it cites the project's internal benchmark tables. The
``release_summary`` and the ``trivial`` section (never published) may be
longer, but they name nothing private either.
"""

import glob
import os
import re

import pytest
import yaml

from tests.collection import REPO

CHANGELOGS = os.path.join(REPO, 'changelogs')
MAX_SENTENCES = 2
MAX_CHARS = 400
# sections whose entries may be long: the release's summary and what is never published
LONG_ALLOWED = ('release_summary', 'trivial')

# an address ends before a closing parenthesis, a comma or a sentence's full stop
LINK = re.compile(r'https?://[^\s),;]*[^\s),;.]')
CODE = re.compile(r'``.*?``|`[^`]*`|\b[CIMOVLEU]\([^)]*\)')
ABBREVIATION = re.compile(r'\b(?:e\.g|i\.e|etc|vs|cf|approx)\.', re.IGNORECASE)
# a sentence ends at . ! or ? followed by a space and a capital (or a ``code`` start)
SENTENCE_END = re.compile(r'[.!?]["\')]?\s+(?=[A-Z])')

PRIVATE = [
    (re.compile(r'(?<![\w/.-])_[A-Za-z][\w]*(?:\.py)?'), 'a private name'),
    (re.compile(r'(?<![\w/])\w+/_[\w.]+'), 'a private path'),
    (re.compile(r'\bplugin_utils\b'), 'plugin_utils'),
    (re.compile(r'\bmodule_utils\b'), 'module_utils'),
    (re.compile(r'\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b'), 'a commit hash'),
    (re.compile(r'benchmarks\.md'), 'the benchmark tables'),
    (re.compile(r'\btable\s+\d+[a-z]?\b', re.IGNORECASE), 'a benchmark table'),
    (re.compile(r'\bbenchmark\s+\d+[a-z]?\b', re.IGNORECASE), 'a benchmark number'),
]


def _flat(text):
    return ' '.join(str(text).split())


def count_sentences(text):
    """Sentences of an entry: code spans, links and abbreviations never end one."""
    masked = LINK.sub('link', _flat(text))
    masked = CODE.sub('Code', masked)
    masked = ABBREVIATION.sub('abbr', masked)
    return len(SENTENCE_END.findall(masked)) + 1


def count_chars(text):
    """An entry's length without its links (an issue's address is not prose)."""
    return len(_flat(LINK.sub('', str(text))))


def private_names(text):
    """What an entry names that a user of the collection cannot see."""
    flat = LINK.sub('', _flat(text))
    found = []
    for pattern, what in PRIVATE:
        for match in pattern.finditer(flat):
            found.append('%s %r' % (what, match.group(0)))
    return found


def _changes_entries(where, changes):
    for section, entries in (changes or {}).items():
        if isinstance(entries, str):
            entries = [entries]
        for entry in entries or []:
            yield where, section, entry


def all_entries():
    """(where, section, entry) of every released entry and every fragment's."""
    with open(os.path.join(CHANGELOGS, 'changelog.yaml'), encoding='utf-8') as handle:
        released = yaml.safe_load(handle)
    for version, release in sorted((released.get('releases') or {}).items()):
        yield from _changes_entries('changelogs/changelog.yaml (%s)' % version,
                                    release.get('changes'))
    for path in sorted(glob.glob(os.path.join(CHANGELOGS, 'fragments', '*.yml'))):
        with open(path, encoding='utf-8') as handle:
            fragment = yaml.safe_load(handle)
        yield from _changes_entries(os.path.relpath(path, REPO), fragment)


def entry_problems(section, entry):
    problems = []
    if section not in LONG_ALLOWED:
        sentences = count_sentences(entry)
        if sentences > MAX_SENTENCES:
            problems.append('%d sentences' % sentences)
        chars = count_chars(entry)
        if chars > MAX_CHARS:
            problems.append('%d characters' % chars)
    problems.extend(private_names(entry))
    return problems


def test_every_changelog_entry_is_short_and_names_nothing_private():
    found = []
    for where, section, entry in all_entries():
        problems = entry_problems(section, entry)
        if problems:
            found.append('%s [%s] %r...: %s' % (where, section, _flat(entry)[:70],
                                                ', '.join(problems)))
    assert not found, (
        '%d changelog entries are not one or two plain sentences a user needs '
        '(at most %d characters without links, no private names, no benchmark tables):\n'
        % (len(found), MAX_CHARS) + '\n'.join(found))


@pytest.mark.parametrize('text, sentences', [
    ('nix_eval - one sentence (https://github.com/nixdeploy/fleet/issues/80).', 1),
    ('A host fails. The run goes on.', 2),
    ('A host fails. The run goes on. The summary says so.', 3),
    ('A host fails (https://github.com/nixdeploy/fleet/issues/80). The run goes on. '
     'The summary says so.', 3),
    ('Nix 2.8 refuses it, e.g. ``nix flake lock``. Run ``make release``.', 2),
    ('It names docs/faults.md and ansible-core 2.19. ``make test`` runs it.', 2),
    ('nix_eval - the message. nix_build stays lower case, so one sentence.', 1),
])
def test_sentence_count(text, sentences):
    assert count_sentences(text) == sentences


@pytest.mark.parametrize('text, private', [
    ('the table in ``module_utils/_copy_modes.py``', True),
    ('``_report.py merge``', True),
    ('``plugins/plugin_utils/report/report.html.j2``', True),
    ('fixed in 3f2a9c1d', True),
    ('docs/benchmarks.md, table 10', True),
    ('``ssh_options_<digest>`` groups and ``nix_eval``', False),
    ('(https://github.com/nixdeploy/fleet/issues/80)', False),
    ('ansible-core 2.19 and Nix 2.25', False),
])
def test_private_names(text, private):
    assert bool(private_names(text)) is private
