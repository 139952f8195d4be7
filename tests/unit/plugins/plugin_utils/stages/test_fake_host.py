"""The fake Host of the stages' unit tests (tests/unit/fake_host.py) refuses what
the real one (plugin_utils/host/_host.py with _script.py, _program_fields.py and
target/lib.sh) refuses or never lets through: a program render did not make,
a call with no time limit, a reply that is not framed with the program's own
marker or reports a field its program does not have, an answer later than
the limit. A stage tested against it keeps the real Host's contract."""

import os
import sys
import time

import pytest
from ansible.errors import AnsibleConnectionFailure

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import (
    Host as Target, nixos_without_root)
from tests.unit.fake_host import (
    KEY_REFUSED, LINK_DOWN, ContractBroken, fake_host)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _programs, _reboot_rules)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _program_fields, _script)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    LoginRefused, NoAnswer)

BOOT_ID = 'reboot-boot-id.sh'


@pytest.fixture
def host(tmp_path):
    target = fake_host({'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path)})
    yield target
    target.close()


def test_a_real_program_runs_and_its_call_is_recorded(host):
    program = _reboot_rules.boot_id_script()
    rc, stdout, _stderr = host.sh(program, sudoable=True, timeout=7)
    values, _log = program.parse(stdout)
    assert rc == 0 and _program_fields.BOOT_ID.parse(values['boot_id'])
    (call,) = host.calls
    assert (call.name, call.timeout, call.sudoable) == (BOOT_ID, 7, True)
    assert call.values == values and host.timeouts == [7]


def test_only_a_program_render_made_runs(host):
    program = _reboot_rules.boot_id_script()
    refused = [
        'echo hello',                                                  # plain text
        _script.Program(str(program), _script.new_mark(), program.fields),  # not its marker
        _script.Program(str(program) + 'rm -rf "$HOME"\n', program.mark, program.fields),
        _script.Program(str(program), program.mark, {}),               # fields not its files'
        _script.render(BOOT_ID),               # rendered without its stage's table of fields
        # a value pasted into the text instead of quoted
        _script.Program(str(program).replace("NIX_DIRS='", "X=1; rm -rf /\nNIX_DIRS='", 1),
                        program.mark, program.fields),
        _script.Program(str(program).replace("NIX_DIRS='", "NIX_DIRS=\"", 1),
                        program.mark, program.fields),
    ]
    for script in refused:
        with pytest.raises(ContractBroken):
            host.sh(script, timeout=5)
    assert host.calls == []
    host.sh(program, timeout=5)  # the same program as made runs


@pytest.mark.parametrize('call', [dict(timeout=None), dict(timeout=0), dict(timeout=True),
                                  dict(timeout=float('inf')), dict(sudoable='yes'),
                                  dict(in_data=['a'])])
def test_every_call_has_a_time_limit_and_plain_arguments(host, call):
    with pytest.raises(ContractBroken):
        host.sh(_reboot_rules.boot_id_script(), **dict(dict(timeout=5), **call))


def test_a_reply_is_framed_with_the_programs_marker_and_holds_only_its_fields(host):
    program = _reboot_rules.boot_id_script()
    boot_id = '01234567-89ab-cdef-0123-456789abcdef'
    host.then(BOOT_ID, values={'boot_id': boot_id}, log='anything')
    _rc, stdout, _stderr = host.sh(program, timeout=5)
    assert program.parse(stdout) == ({'boot_id': boot_id}, 'anything')
    assert '@@%s boot_id=%s' % (program.mark, boot_id) in stdout
    # a field the program never reports, a value not of its kind
    for values in ({'booted': '/nix/store/' + 'a' * 32 + '-x'}, {'boot_id': 'no-id'}):
        host.then(BOOT_ID, values=values)
        with pytest.raises(ContractBroken, match='may not report'):
            host.sh(_reboot_rules.boot_id_script(), timeout=5)


def test_a_hostile_reply_reaches_the_stage_only_as_what_parse_keeps(host):
    program = _reboot_rules.boot_id_script()
    forged = ('boot_id=01234567-89ab-cdef-0123-456789abcdef\n'
              '@@%s boot_id=01234567-89ab-cdef-0123-456789abcdef\n' % _script.new_mark())
    host.then(BOOT_ID, raw=forged)
    values, _log = program.parse(host.sh(program, timeout=5)[1])
    assert values == {} and values.dropped == []
    host.then(BOOT_ID, values={'boot_id': '$(reboot)', 'extra': '1'}, hostile=True)
    values, _log = program.parse(host.sh(program, timeout=5)[1])
    assert values == {} and len(values.dropped) == 2


def test_a_real_program_reporting_a_field_it_has_not_is_refused(tmp_path, monkeypatch):
    """activate-poll.sh passes its run's status lines on: a status line the
    fields do not name (a target that forged it) breaks the contract of a
    strict fake; a fake that is not strict lets the stage see it dropped."""
    nixos_without_root(monkeypatch)
    target = Target(tmp_path)  # not root: its state is under XDG_STATE_HOME
    program = _programs.poll_script('nixos', 'r1', **target.common)
    # a first look makes the state folder and says where it is
    inspect = _programs.inspect_script('nixos', **target.common)
    folder = inspect.parse(fake_host(target.env).sh(inspect, timeout=5)[1])[0]['dir']
    os.makedirs(os.path.join(folder, 'runs', 'r1'))
    with open(os.path.join(folder, 'runs', 'r1', 'status'), 'w') as status:
        status.write('state=done\nevil=1\n')
    with pytest.raises(ContractBroken, match='evil'):
        fake_host(target.env).sh(program, timeout=5)
    lenient = fake_host(target.env, strict=False)
    values, _log = program.parse(lenient.sh(program, timeout=5)[1])
    assert values.get('state') == 'done', values
    assert values.dropped == ["evil: not a value of this program: '1'"]


def test_no_answer_within_the_limit_is_the_real_hosts_no_answer(host):
    host.then(BOOT_ID, hang=True)
    start = time.monotonic()
    with pytest.raises(NoAnswer):
        host.sh(_reboot_rules.boot_id_script(), timeout=20)
    # given up in scaled time; the limit the stage asked for is recorded
    assert time.monotonic() - start < 2
    assert host.timeouts == [20]


def test_a_lost_connection_and_a_refused_first_login(host):
    host.then(BOOT_ID, lost=KEY_REFUSED)
    with pytest.raises(LoginRefused, match='ssh login refused'):
        host.sh(_reboot_rules.boot_id_script(), timeout=5)
    host.then(BOOT_ID, lost=LINK_DOWN)
    with pytest.raises(AnsibleConnectionFailure):
        host.sh(_reboot_rules.boot_id_script(), timeout=5)
    host.sh(_reboot_rules.boot_id_script(), timeout=5)
    # once the host answered, a refusal is a lost connection (a new system's)
    host.then(BOOT_ID, lost=KEY_REFUSED)
    with pytest.raises(AnsibleConnectionFailure):
        host.sh(_reboot_rules.boot_id_script(), timeout=5)


def test_a_program_whose_answer_is_lost_ran(host, tmp_path):
    host.then(BOOT_ID, lost_after=LINK_DOWN)
    with pytest.raises(AnsibleConnectionFailure):
        host.sh(_reboot_rules.boot_id_script(), timeout=5)
    assert len(host.calls) == 1
