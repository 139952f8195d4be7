"""nix_activate with state=confirmed and state=rolled_back
(plugin_utils/activation/_later_states.py LaterStates) on a fake target
through the fake Host: confirming by hand a run that awaits its
confirmation (and, in check mode, saying which), nothing to confirm, a
confirmation the new system's login refuses or that gets no answer (its
watchdog rolls it back), and a rollback to the generation before (in check
mode: which one it would be)."""

import pytest

from tests.unit.fake_host import KEY_REFUSED
from tests.unit.plugins.plugin_utils.stages.activation_target import LOOK_BOUND, Target

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _detached_run, _later_states)

DetachedRun, LaterStates = _detached_run.DetachedRun, _later_states.LaterStates


@pytest.fixture
def target(tmp_path, monkeypatch):
    made = Target(tmp_path, monkeypatch)
    yield made
    made.close()


def later(target, check_mode=False, **changes):
    task = target.task(check_mode=check_mode, fresh=True, **changes)
    return LaterStates(task, DetachedRun(task))


def awaiting(target, name='a'):
    """A run of system ``name`` left awaiting its confirmation (confirm: false)."""
    task = target.task(target.folder.system(name))
    run, values, _log, failure = DetachedRun(task).launch('activate', True)
    assert failure is None and values['state'] == 'awaiting_confirmation', values
    target.programs()
    return run, values['new_path']


def activated(target, name):
    task = target.task(target.folder.system(name))
    assert DetachedRun(task).launch('activate', False)[1]['state'] == 'done'
    target.programs()


def test_a_run_awaiting_its_confirmation_is_confirmed_by_hand(target):
    run, path = awaiting(target)
    # check mode names it and confirms nothing
    res = later(target, check_mode=True).confirmed()
    assert res == {'changed': True, 'confirmed': False, 'run': run, 'platform': 'nixos',
                   'msg': 'would confirm run %s' % run}
    res = later(target).confirmed()
    assert res['changed'] is True and res['confirmed'] is True and res['run'] == run, res
    assert res['msg'] == 'confirmed %s' % path and not res.get('failed')
    assert [(c.name, c.timeout) for host in target.hosts for c in host.calls] == [
        ('activate-confirm.sh', 10), ('activate-confirm.sh', LOOK_BOUND)]
    # each over a new login: never the session that activated
    assert target.resets() == 2
    # confirmed already: a second task changes nothing
    again = later(target).confirmed()
    assert again['changed'] is False and again['msg'] == 'already confirmed'


def test_nothing_to_confirm(target):
    res = later(target).confirmed()
    assert res == {'changed': False, 'confirmed': False, 'run': None, 'platform': 'nixos',
                   'msg': 'no activation to confirm'}


def test_a_confirmation_the_new_system_refuses_leaves_it_to_the_watchdog(target):
    awaiting(target)
    states = later(target)
    target.host.then('activate-confirm.sh', lost=KEY_REFUSED)
    res = states.confirmed()
    assert res['failed'] and res['phase'] == 'confirm' and res['connection_lost'] is False
    assert res['msg'].startswith('could not confirm: ssh login refused')
    assert 'its watchdog rolls it back' in res['msg'].split('\n')[0]
    states = later(target)
    target.host.then('activate-confirm.sh', hang=True)
    res = states.confirmed()
    assert res['failed'] and res['connection_lost'] is True and res['confirmed'] is False
    assert res['msg'].startswith('could not confirm: host unreachable')
    # neither confirmed it: the run still awaits (here, a later task confirms)
    assert later(target).confirmed()['confirmed'] is True


def test_a_rollback_goes_to_the_generation_before(target):
    activated(target, 'a')
    activated(target, 'b')
    res = later(target, check_mode=True).rolled_back()
    assert res['changed'] is True and res['msg'] == 'would roll back to generation 1', res
    assert res['previous']['generation'] == 2 and res['new']['generation'] == 1
    assert target.programs() == ['activate-inspect.sh']
    assert target.folder.generations() == ('2', ['1', '2'])
    res = later(target).rolled_back()
    assert res['state'] == 'done' and res['changed'] and not res.get('failed'), res
    assert res['rollback_reason'] == 'requested' and res['new']['generation'] == 1
    assert [p['name'] for p in res['phases']] == ['rollback']
    assert target.folder.generations()[0] == '1'
    assert target.folder.took()[-1] == 'activate a switch'


def test_a_rollback_with_no_generation_before_fails_and_changes_nothing(target):
    activated(target, 'a')
    assert later(target, check_mode=True).rolled_back()['msg'] == 'no generation to roll back to'
    res = later(target).rolled_back()
    assert res['failed'] and res['state'] == 'failed' and res['changed'] is False, res
    assert res['msg'] == '%s has no generation before 1' % res['profile']
    assert [(p['name'], p['outcome']) for p in res['phases']] == [('rollback', 'failed')]
    assert target.folder.generations() == ('1', ['1'])
