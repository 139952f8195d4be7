"""A goal is the target steps its row names (module_utils/_platforms.py GOALS):
the runner (plugin_utils/activation/target/activate-runner.sh) runs the
platform's command once a step, in order, with the step's word; no goal's
name reaches the target. A goal of two steps is a row like any other: here
a synthetic one, "boot then test", rendered and run by the real sh programs
on the fake target of test_target_scripts.py."""

import subprocess
import sys

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import (
    Host, nixos_without_root)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _programs, _reboot_rules, _runner_values)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script  # noqa: E402

# The new system the boot default, then running: a switch in two steps, as a
# row (its name is the user's word only; it rolls back with switch).
BOOT_THEN_TEST = _platforms.GOALS['switch']._replace(
    name='boot-then-test', steps=('boot', 'test'), window_steps=(), confirmed_steps=())

# A system whose switch-to-configuration records its calls and fails (with
# what it says) at the step named in its file fail_at.
FAKE_STEPPED_SWITCH = '''#!/bin/sh
echo "activate __NAME__ $1" >>"__CALLS__"
if [ "$1" = "$(cat "__SYSTEM__/fail_at" 2>/dev/null)" ]; then
  cat "__SYSTEM__/says" 2>/dev/null
  exit 1
fi
'''


@pytest.fixture
def host(tmp_path, monkeypatch):
    nixos_without_root(monkeypatch)
    return Host(tmp_path)


def stepped_system(host, name, fail_at='', says=''):
    path = host.root / 'store' / name
    (path / 'bin').mkdir(parents=True)
    switch = path / 'bin' / 'switch-to-configuration'
    switch.write_text(FAKE_STEPPED_SWITCH.replace('__NAME__', name)
                      .replace('__CALLS__', str(host.calls)).replace('__SYSTEM__', str(path)))
    switch.chmod(0o755)
    (path / 'fail_at').write_text(fail_at + '\n')
    (path / 'says').write_text(says + '\n')
    return str(path)


def test_no_goal_name_is_a_word_of_the_target():
    """The runner gets the row's steps, never its name: a renamed goal
    renders the same program values."""
    for goal in _platforms.GOALS.values():
        if goal.dry:
            continue
        values = _programs.runner_values('nixos', 'r1', 'activate', path='/nix/store/x',
                                         goal=goal)
        renamed = _programs.runner_values('nixos', 'r1', 'activate', path='/nix/store/x',
                                          goal=goal._replace(name='another-name'))
        window, confirmed = goal.steps_on('nixos', True)
        assert (values.steps, values.confirmed_steps) == (' '.join(window), ' '.join(confirmed))
        assert values == renamed._replace(activate_program=values.activate_program)


def test_a_two_step_goal_renders_its_steps_and_the_command_takes_each(tmp_path):
    values = _programs.runner_values('nixos', 'r1', 'activate', path='/nix/store/x',
                                     goal=BOOT_THEN_TEST)
    assert values.steps == 'boot test' and values.rollback_steps == 'switch'
    assert values.records_active is True and values.set_profile is True
    program = _programs.runner_program('nixos', 'r1', 'activate', path='/nix/store/x',
                                       goal=BOOT_THEN_TEST)
    assert "\nSTEPS='boot test'\n" in program and "\nROLLBACK_STEPS=switch\n" in program
    # the platform's command, as the runner runs it for each step
    system = tmp_path / 'system'
    (system / 'bin').mkdir(parents=True)
    (system / 'bin' / 'switch-to-configuration').write_text('#!/bin/sh\necho "stc $*"\n')
    (system / 'bin' / 'switch-to-configuration').chmod(0o755)
    said = [subprocess.run(['sh', '-c', values.activate_program, 'activate', str(system), step],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
            for step in values.steps.split()]
    assert said == ['stc boot\n', 'stc test\n']


def test_a_dry_goal_has_no_runner_and_a_bad_step_word_is_refused():
    with pytest.raises(ValueError, match='runs no step'):
        _programs.runner_values('nixos', 'r1', 'activate', goal=_platforms.GOALS['dry-activate'])
    # a rollback of a dry goal's task runs its rollback goal's steps
    assert _programs.runner_values('nixos', 'r1', 'rollback',
                                   goal=_platforms.GOALS['dry-activate']).rollback_steps == 'switch'
    with pytest.raises(ValueError, match='not a word'):
        _programs.runner_values('nixos', 'r1', 'activate',
                                goal=BOOT_THEN_TEST._replace(window_steps=('boot', 'te st'),
                                                             confirmed_steps=('boot',)))
    with pytest.raises(ValueError, match='not a word'):
        _programs.runner_values('nixos', 'r1', 'activate', magic_rollback=False,
                                goal=BOOT_THEN_TEST._replace(steps=('boot', 'te st')))


def test_every_runner_value_is_read_by_the_runner():
    """Each field of RunnerValues is a variable the runner's files read: no
    value is set that nothing uses, none is named twice."""
    text = ''.join(_script.source(name) for name in
                   ('activate-lib.sh', 'activate-runner.sh', 'activate-lock.sh',
                    'activate-modes.sh'))
    names = [name.upper() for name, _what in _runner_values.RUNNER_FIELDS]
    assert len(names) == len(set(names)) > 30
    assert [name for name in names if '$' + name not in text and '${' + name not in text] == []


def test_a_two_step_goal_runs_both_steps_in_order(host):
    new = stepped_system(host, 'a')
    values, log = host.activate(new, 'r1', goal=BOOT_THEN_TEST)
    assert values['state'] == 'done', values['output']
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, new),
                           'activate a boot', 'activate a test']
    assert 'activating %s (boot)' % new in log and 'activating %s (test)' % new in log
    assert host.runner_gone('r1')


def test_a_failed_second_step_rolls_back_with_the_rollback_goals_steps(host):
    good = stepped_system(host, 'good')
    assert host.activate(good, 'r1', goal=BOOT_THEN_TEST)[0]['state'] == 'done'
    host.took()
    bad = stepped_system(host, 'bad', fail_at='test')
    values, _log = host.activate(bad, 'r2', goal=BOOT_THEN_TEST)
    assert values['state'] == 'rolled_back', values['output']
    assert values['cause'] == 'activation_failed'
    assert host.took() == [
        'nix-env --profile %s --set %s' % (host.profile, bad),
        'activate bad boot', 'activate bad test',
        'nix-env --profile %s --switch-generation 1' % host.profile,
        'nix-env --profile %s --delete-generations 2' % host.profile,
        'activate good switch',
    ]


@pytest.mark.parametrize('fail_at,state', [('boot', 'refused'), ('test', 'rolled_back')])
def test_a_refusal_is_nothing_activated_only_in_the_first_step(host, fail_at, state):
    """NixOS's pre-switch checks refusing the first step changed nothing; a
    later step's refusal comes after the boot default moved: a failure,
    rolled back."""
    assert host.activate(stepped_system(host, 'good'), 'r1',
                         goal=BOOT_THEN_TEST)[0]['state'] == 'done'
    bad = stepped_system(host, 'bad', fail_at=fail_at, says=_reboot_rules.REFUSAL_MARK)
    values, _log = host.activate(bad, 'r2', goal=BOOT_THEN_TEST)
    assert values['state'] == state, values['output']
    assert host.generations() == ('1', ['1'])
