"""plugin_utils/host/_program_fields.py: every value a target program reports is read
into its type before the controller uses it; a value that is not what it must
be is dropped and said so. The tables (host's and each stage's beside its
programs) give every field of every program hostile text, and the tests
assert what the controller then holds."""

import ast
import os
import re
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _activation_fields, _activation_result)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (  # noqa: E402
    _builders, _closure)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _printable  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _script, _program_fields)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys_target  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

STORE_PATH = '/nix/store/%s-system' % ('0' * 32)
# What a target could print instead of a value, and why each is dangerous:
# another installable (a flake the controller would fetch and build), an
# option, a path outside the store, a climb out of it, terminal control, a
# number that is not one, a value with a second line's worth of text.
HOSTILE = [
    'github:someone/x#x', 'path:/tmp/evil', 'git+https://evil.example/x', '-rf',
    '--option', '/etc/passwd', '/nix/store/../../etc/shadow', STORE_PATH + '/../../etc',
    '\x1b[2K\x1b[1Ggreen', '\x1b]52;c;ZXZpbA==\x07', 'a\u202eb', '1e9', '-1', '0x10',
    '/nix/store/%s-x y' % ('0' * 32), '/nix/store/short-x', '2\r', 'yes\x00',
]
# characters no parsed value may hold
_CONTROL = re.compile(u'[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]')


# each stage's table, beside the code that renders its programs
STAGE_TABLES = (_activation_fields.FIELDS, _copy.FIELDS, _keys_target.FIELDS, _builders.FIELDS)
# every program's fields: host's table (lib.sh) and the stages' own
TABLES = dict(_program_fields.FIELDS)
for _table in STAGE_TABLES:
    TABLES.update(_table)


def fields_of(names):
    """The fields of a program made of ``names``, as its stage renders it."""
    return _program_fields.fields_of(names, TABLES)


def test_each_program_is_in_one_table_beside_its_stage():
    """host/ keeps lib.sh's fields only; a program's table is its stage's,
    and no program is in two."""
    assert list(_program_fields.FIELDS) == ['lib.sh']
    names = [name for table in STAGE_TABLES for name in table]
    assert len(names) == len(set(names)) and 'lib.sh' not in names, names
    programs = _script.programs()
    for table in STAGE_TABLES:
        module = [m for m in (_activation_fields, _copy, _keys_target, _builders)
                  if m.FIELDS is table][0]
        stage = module.__name__.split('.')[-2]
        for name in table:
            assert os.path.basename(os.path.dirname(os.path.dirname(programs[name]))) == stage, \
                (name, stage)


def test_each_stage_renders_its_probe_with_its_table():
    """What a probe reports is read with its stage's table: a value the
    table types is parsed, not dropped as unknown."""
    for program, value, expected in (
            (_copy.probe_script(paths=['/nix/store/%s-x' % ('0' * 32)]), ('uid', '1000'), 1000),
            (_builders.probe_script(), ('system', 'x86_64-linux'), 'x86_64-linux'),
            (_keys_target.probe_script([], (), False), ('uid', '0'), 0)):
        values = _program_fields.read({value[0]: value[1]}, program.fields)
        assert values == {value[0]: expected} and values.dropped == [], values


def _fields():
    for program in sorted(TABLES):
        for key, kind in sorted(TABLES[program].items()):
            yield program, key.replace('*', '0'), kind


@pytest.mark.parametrize('program,key,kind', list(_fields()),
                         ids=['%s:%s' % (p, k) for p, k, _kind in _fields()])
def test_every_field_refuses_hostile_text(program, key, kind):
    fields = fields_of(['lib.sh', program])
    for text in HOSTILE:
        values = _program_fields.read({key: text}, fields)
        if key in values:
            # what may pass: free text (escaped), a folder on the target, a
            # name or number that is one; never a control character, an
            # option, a climb out of a folder, a store path that is not one
            value = values[key]
            for item in value if isinstance(value, list) else [value]:
                item = u'%s' % (item,)
                assert not _CONTROL.search(item), (key, text, value)
                if kind is _program_fields.TEXT:
                    continue
                assert not item.startswith('-'), (key, text, value)
                assert '/../' not in item + '/', (key, text, value)
                assert kind not in (_program_fields.STORE_PATH, _program_fields.STORE_FILE), \
                    '%s accepted %r' % (key, text)
        else:
            note = [n for n in values.dropped if n.startswith(key + ':')]
            assert note, (key, text, values.dropped)
            assert not _CONTROL.search(note[0]), note


def test_values_are_of_their_type_and_empty_is_absent():
    fields = fields_of(['lib.sh', 'activate-poll.sh'])
    values = _program_fields.read({'state': 'done', 'prev_gen': '41', 'prev_path': STORE_PATH,
                                   'rolled_back': '0', 'alive': '1', 'new_path': '',
                                   'reason': 'ok\x1b[31m'}, fields)
    assert values == {'state': 'done', 'prev_gen': 41, 'prev_path': STORE_PATH,
                      'rolled_back': False, 'alive': True, 'reason': 'ok\\x1b[31m'}
    assert values.dropped == []


def test_a_key_the_program_does_not_report_is_dropped():
    fields = fields_of(['lib.sh', 'health-check.sh'])
    values = _program_fields.read({'rc': '0', 'prev_path': STORE_PATH}, fields)
    assert values == {'rc': 0}
    assert values.dropped == ["prev_path: not a value of this program: '%s'" % STORE_PATH]


def test_every_emitted_key_of_a_parsed_program_is_in_the_table():
    """The table covers each program the controller reads: a key a program
    emits without an entry would be dropped at every run."""
    paths = _script.programs()
    seen = set()
    emitted = re.compile(r'\bemit [\'"]?([a-z_]+)(\$[a-z]+|\$\{[a-z]+\})?[\'"]?\s')
    for program, fields in TABLES.items():
        with open(paths[program]) as handle:
            text = ''.join(line.split(' # ')[0] + '\n' for line in handle
                           if not line.lstrip().startswith('#'))
        for match in emitted.finditer(text):
            key = match.group(1) + ('*' if match.group(2) else '')
            known = dict(fields, **_program_fields.FIELDS['lib.sh'])
            assert key in known, '%s emits %s, which FIELDS does not name' % (program, key)
            seen.add((program, key))
    assert len(seen) > 60 and ('activate-inspect.sh', 'prev_path') in seen
    # the poll re-emits the runner's status file: its fields are the poll's
    with open(paths['activate-runner.sh']) as handle:
        status = set(re.findall(r'\bfield ([a-z_]+) ', handle.read()))
    assert status and status <= set(_activation_fields.FIELDS['activate-poll.sh']), status


def _host_words():
    """The string constants of host/'s Python files, and the words of its sh."""
    folder = os.path.dirname(_program_fields.__file__)
    words = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith('.py'):
            with open(os.path.join(folder, name)) as handle:
                tree = ast.parse(handle.read(), name)
            words.update(node.value for node in ast.walk(tree)
                         if isinstance(node, ast.Constant) and isinstance(node.value, str))
    with open(_script.programs()[_script.LIBRARY]) as handle:
        words.update(re.findall(r'[a-z_]+', handle.read()))
    return words


def test_host_names_no_state_of_the_activation():
    """host/ is the generic rule of target values: the words of an
    activation's run (its states, the causes of its end) and its programs'
    tables are the activation stage's (activation/_activation_fields.py)."""
    states = _activation_fields.STATES.what[len('one of '):].split(', ')
    causes = _activation_fields.CAUSES.what[len('one of '):].split(', ')
    assert 'awaiting_confirmation' in states and 'unconfirmed' in causes
    # 'done' and 'refused' are plain words too: the run's own ones are checked
    own = set(states + causes) - {'done', 'failed', 'running', 'starting', 'unchanged'}
    words = _host_words()
    assert len(words) > 100
    assert sorted(own & words) == []
    assert not [p for p in _program_fields.FIELDS if p in _activation_fields.FIELDS]


def test_the_dropped_warning_names_the_host_and_shows_text_escaped():
    fields = fields_of(['lib.sh', 'activate-inspect.sh'])
    values = _program_fields.read({'prev_path': 'github:someone/x#x\x1b[2K'}, fields)
    warning = _program_fields.dropped_warning('web\x1b1', values)
    assert warning.startswith('web\\x1b1: the target reported values')
    assert "prev_path: not a store path: 'github:someone/x#x\\x1b[2K'" in warning
    assert '\x1b' not in warning
    assert _program_fields.dropped_warning('web1', []) is None


def test_a_status_naming_a_flake_gives_a_result_without_it():
    """A run's status whose prev_path is a flake reference: the task result
    has no previous path (nothing for a diff), and says why."""
    fields = fields_of(['lib.sh', 'activate-poll.sh'])
    values = _program_fields.read({'state': 'done', 'prev_gen': '3',
                                   'prev_path': 'github:someone/x#x', 'new_gen': '4',
                                   'new_path': STORE_PATH, 'activated': '1'}, fields)
    result = _activation_result.result_from_status(values, '', 'nixos', 'switch', 1.0)
    assert result['previous'] == {'generation': 3, 'path': None}
    assert result['new'] == {'generation': 4, 'path': STORE_PATH}
    assert values.dropped


def test_the_closure_difference_runs_nix_on_valid_store_paths_only(tmp_path):
    """``nix store diff-closures`` realises any installable: a flake, an
    option or a missing store path never reaches it. A Nix that does not
    exist proves nothing ran for the hostile ones; the real one is asked
    only whether a well-formed path is valid here, which fetches nothing."""
    absent = _nix.NixOptions(nix_bin=str(tmp_path / 'no-nix-here'))
    for hostile in ('github:someone/x#x', 'path:/tmp', '-rf', '/etc/passwd', None,
                    '/nix/store/%s-x/../../etc' % ('0' * 32)):
        lines, summary = _closure.diff_closures(absent, hostile, STORE_PATH)
        assert summary is None and len(lines) == 1
        assert 'is not a store path' in lines[0], lines
        assert 'no-nix-here' not in lines[0]
    missing = '/nix/store/%s-not-here' % ('1' * 32)
    lines, summary = _closure.diff_closures(_nix.NixOptions(), missing, STORE_PATH)
    assert summary is None
    assert "not in this controller's store" in lines[0], lines
    assert missing in lines[0]


def test_printable_escapes_what_a_terminal_obeys():
    text = 'ok\x1b[2K\n\x1b]52;c;eA==\x07\u202e\u2028\x85\tend é 日本'
    shown = _printable.printable(text)
    assert shown == 'ok\\x1b[2K\\n\\x1b]52;c;eA==\\x07\\u202e\\u2028\\x85\\tend é 日本'
    assert _printable.is_printable('web-1.example é') and not _printable.is_printable('a\nb')
