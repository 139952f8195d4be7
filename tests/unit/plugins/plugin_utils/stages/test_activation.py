"""nix_activate with state=activated (plugin_utils/activation/_activation.py
Activation) on a fake target through the fake Host: the real target programs
under the real Host.sh. What a user relies on: a confirmed switch, a failed
health check rolled back at once by the watchdog, a failed switch rolled
back, an unguarded activation undone, a launch whose answer is lost followed
from a new login (a forged status and a silent look on the way), a target
that refuses, and check mode's dry run, which changes nothing. Each within
its time limits, which the fake records."""

import pytest

from tests.unit.fake_host import LINK_DOWN, ContractBroken
from tests.unit.plugins.plugin_utils.stages.activation_target import (
    LAUNCH_BOUND, LOOK_BOUND, Target)

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _activation, _detached_run, _health_checks, _health_run, _reboot_run)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script  # noqa: E402


@pytest.fixture
def target(tmp_path, monkeypatch):
    made = Target(tmp_path, monkeypatch)
    yield made
    made.close()


def activation(task):
    """The parts nix_activate's action puts together for state=activated."""
    run = _detached_run.DetachedRun(task)
    checks = _health_run.HealthChecks(task, run)
    return _activation.Activation(task, run, checks, _reboot_run.Reboots(task, run, checks))


def activate(target, path, **changes):
    task = target.task(path, **changes)
    return task, activation(task).activate()


def failing_check():
    return _health_checks.validate([{'name': 'web', 'command': 'exit 3', 'retries': 0}])


def test_a_switch_is_confirmed_over_a_new_login_within_its_time_limits(target):
    new = target.folder.system('a')
    task, res = activate(target, new)
    assert res['state'] == 'done' and res['changed'] and res['confirmed'] is True, res
    assert res['new'] == {'generation': 1, 'path': new} and res['magic_rollback'] is True
    assert [p['name'] for p in res['phases']] == ['activate', 'confirm']
    assert res['lost_connections'] == 0 and not res.get('failed')
    # the launch, then the confirmation over a new login, both with become
    calls = target.host.calls
    assert [(c.name, c.timeout, c.sudoable) for c in calls] == [
        ('activate-launch.sh', LAUNCH_BOUND, True), ('activate-confirm.sh', LOOK_BOUND, True)]
    assert target.connection.resets == 1
    # NixOS under magic rollback: the system runs (test), and once confirmed
    # becomes the boot default (boot)
    assert target.folder.took() == ['nix-env --profile %s --set %s' % (task.args['profile'], new),
                                    'activate a test', 'activate a boot']


def test_a_failed_health_check_is_rejected_and_rolled_back_at_once(target):
    assert activate(target, target.folder.system('a'))[1]['state'] == 'done'
    target.programs()
    _task, res = activate(target, target.folder.system('b'), health_checks=failing_check())
    assert res['failed'] and res['rolled_back'] is True and res['phase'] == 'checks', res
    assert res['state'] == 'rolled_back' and 'web' in res['msg']
    assert res['health_checks']['ok'] is False
    assert [p['name'] for p in res['phases']] == ['activate', 'checks', 'rollback']
    # the watchdog did not wait for its deadline: the task rejected the run
    assert target.programs() == ['activate-launch.sh', 'health-check.sh',
                                 'activate-reject.sh']
    assert target.folder.generations() == ('1', ['1'])


def test_a_failed_switch_is_rolled_back_to_the_generation_before(target):
    good = target.folder.system('good')
    assert activate(target, good)[1]['state'] == 'done'
    _task, res = activate(target, target.folder.system('bad', rc=4))
    assert res['failed'] and res['rolled_back'] is True and res['state'] == 'rolled_back', res
    assert 'code 4' in res['msg'] and res['phase'] == 'activate'
    assert target.folder.generations() == ('1', ['1'])


def test_an_unguarded_activation_whose_check_fails_is_undone(target):
    assert activate(target, target.folder.system('a'))[1]['state'] == 'done'
    target.programs()
    _task, res = activate(target, target.folder.system('b'), magic_rollback=False,
                          health_checks=failing_check())
    assert res['failed'] and res['rolled_back'] is True and res['phase'] == 'checks', res
    assert res['msg'].startswith('rolled back: ')
    # no confirmation: the run ended at its launch; the undo is a rollback run of its own
    assert target.programs() == ['activate-launch.sh', 'health-check.sh', 'activate-launch.sh']
    assert target.folder.generations() == ('1', ['1'])


def runner_killer(folder):
    """A health check that SIGKILLs the runner of the run awaiting its
    confirmation (by its own pid file), as the OOM killer would: the new
    system stays running, nothing runs the runner's exit."""
    command = ('for d in %s/runs/*/; do grep -qx state=awaiting_confirmation "$d/status" && '
               'kill -9 "$(cat "$d/pid")"; done; sleep 0.3' % folder.state_dir())
    return _health_checks.validate([{'name': 'killer', 'command': command, 'retries': 0}])


def test_a_run_killed_in_its_window_without_a_reboot_is_rolled_back_by_the_task(target):
    """NixOS under magic rollback: the look that finds the run dead in its
    window puts the profile back (the unconfirmed system was never the boot
    default), and the task then rolls back to the previous system, which a
    runner killed without a reboot leaves running: what the watchdog would
    have done. The host fails, rolled back."""
    assert activate(target, target.folder.system('a'))[1]['state'] == 'done'
    target.folder.took()
    target.programs()
    _task, res = activate(target, target.folder.system('b'),
                          health_checks=runner_killer(target.folder))
    assert res['failed'] and res['rolled_back'] is True, res
    assert res['phase'] == 'confirm', res
    assert res['msg'].startswith('rolled back: the activation run died in state '
                                 'awaiting_confirmation'), res['msg']
    assert [p['name'] for p in res['phases']] == ['activate', 'checks', 'confirm', 'rollback']
    assert target.programs() == ['activate-launch.sh', 'health-check.sh',
                                 'activate-confirm.sh', 'activate-launch.sh']
    assert target.folder.generations() == ('1', ['1'])
    # b ran its test step, never its boot
    calls = target.folder.took()
    assert 'activate b boot' not in calls and calls[1] == 'activate b test', calls


def test_a_launch_whose_answer_is_lost_is_followed_from_a_new_login(target):
    new = target.folder.system('a')
    host = target.host
    # the run starts but its answer is lost; the first look is forged (results
    # without the program's marker), the second gets no answer in its limit
    host.then('activate-launch.sh', lost_after=LINK_DOWN)
    host.then('activate-poll.sh', raw='state=done\n@@%s state=done\n' % _script.new_mark())
    host.then('activate-poll.sh', hang=True)
    _task, res = activate(target, new, magic_rollback=False)
    assert res['state'] == 'done' and res['new']['path'] == new and not res.get('failed'), res
    assert res['lost_connections'] == 2 and res['connection_lost'] is False
    assert [c.name for c in host.calls][:4] == ['activate-launch.sh'] + ['activate-poll.sh'] * 3
    assert [c.timeout for c in host.calls[1:]] == [LOOK_BOUND] * (len(host.calls) - 1)
    # each lost session: the next one logs in anew (the silent look's
    # session drops its master, and the follow once more)
    assert target.connection.resets == 3


def test_a_target_that_refuses_fails_the_task_before_anything_changes(target):
    target.host.then('activate-launch.sh', rc=3, values={
        'error': 'activating a nixos system needs root, but this runs as tester'})
    _task, res = activate(target, target.folder.system('a'))
    assert res['failed'] and res['phase'] == 'activate'
    assert res['msg'] == 'activating a nixos system needs root, but this runs as tester'
    assert target.programs() == ['activate-launch.sh']
    assert target.folder.took() == []


def test_a_reply_with_a_field_the_launch_never_reports_breaks_the_contract(target):
    target.host.then('activate-launch.sh', values={'state': 'done', 'boot_id': '1'})
    with pytest.raises(ContractBroken, match='boot_id'):
        activate(target, target.folder.system('a'))


def test_check_mode_runs_the_dry_activation_and_changes_nothing(target):
    new = target.folder.system('a')
    task = target.task(new, check_mode=True, health_checks=failing_check())
    res = activation(task).dry_run()
    assert res['changed'] is True and not res.get('failed'), res
    assert res['health_checks']['msg'] and 'check mode' in res['msg']
    assert target.programs() == ['activate-inspect.sh']
    assert target.folder.took() == ['activate a dry-activate']
    assert target.folder.generations()[1] == []
