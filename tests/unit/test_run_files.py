"""Every file a run shares between its processes is made in one module
(plugins/plugin_utils/common/_run_files.py) and listed in one table of
docs/architecture.md ("The run's shared files"), which is made from it."""

import ast
import os
import sys

from tests.collection import REPO, collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files  # noqa: E402

OWN = os.path.join(REPO, 'plugins', 'plugin_utils', 'common', '_run_files.py')
DOC = os.path.join(REPO, 'docs', 'architecture.md')
BEGIN = '<!-- Made from RUN_FILES in plugins/plugin_utils/common/_run_files.py: edit it there. -->'
END = '<!-- End of the table made from RUN_FILES. -->'


def _names():
    """Each name the module makes, as a file of it would spell it: the
    fixed ones whole, a pattern up to its first part made from data."""
    names = []
    for key, value in sorted(vars(_run_files).items()):
        if key.isupper() and isinstance(value, str):
            fixed = value.split('%', 1)[0]
            if not fixed and '.' in value:
                # a pattern that starts with data ('%s-%s.first'): its end
                fixed = '.' + value.rsplit('.', 1)[-1]
            names.append(fixed)
    # too common to tell (a server's stem, a pinned value's '.json')
    return [name for name in names if name not in ('', '.json')]


def _strings(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_the_docs_table_is_the_modules():
    with open(DOC) as handle:
        text = handle.read()
    assert BEGIN in text and END in text, 'docs/architecture.md lost its markers'
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert table == _run_files.markdown(), (
        'docs/architecture.md differs from RUN_FILES: paste _run_files.markdown() between '
        'its markers')


def test_every_name_the_module_makes_is_in_the_table():
    places = ' '.join(row.where for row in _run_files.RUN_FILES)
    missing = [name for name in _names() if name.rstrip('-.') not in places]
    assert missing == []


def test_no_other_file_spells_a_shared_files_name():
    names = _names()
    wrong = []
    for folder, _dirs, files in os.walk(os.path.join(REPO, 'plugins')):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith('.py') or path == OWN:
                continue
            for text in _strings(path):
                wrong.extend('%s: %r' % (os.path.relpath(path, REPO), text) for spelled in names
                             if _spells(text, spelled))
    assert wrong == [], 'make the name in common/_run_files.py'


def _spells(text, name):
    """Whether the string ``text`` of a program is (or starts) the file
    name ``name``: ``'nixdeploy-batch'``, ``'closure-%s.json'``."""
    if name.startswith('.'):
        return text.endswith(name) and '%' in text
    return text == name or (text.startswith(name) and '%' in text)
