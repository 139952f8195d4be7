"""nix_activate's controller parts (plugin_utils/activation/_detached_run.py,
_health_run.py, _reboot_run.py) through their
public methods, against the fake target of test_target_scripts.py: the real
target programs under sh on this machine, a fake nix-env and fake systems.
What each part sends, in how many sessions, and the phases it records; the
lab runs the same parts through the action against the real Nix."""

import subprocess
import sys
import time

import pytest
from ansible.errors import AnsibleConnectionFailure

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import Host, nixos_without_root

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _detached_run, _activation_task, _health_checks)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._health_run import (  # noqa: E402
    HealthChecks)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_run import (  # noqa: E402
    Reboots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._detached_run import (  # noqa: E402
    DetachedRun)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    Host as Host_)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (  # noqa: E402
    ActivateTask, HostSession, NotReached, Timeline)


class Connection:
    """Counts the new logins (an ssh connection's reset)."""

    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1


class Display:
    def __init__(self):
        self.lines = []

    def vv(self, text):
        self.lines.append(text)

    vvv = vv


class Target:
    """The fake host's sh as the action's runner: every session counted,
    the next ones failing as a lost connection when ``drop`` says so."""

    def __init__(self, host):
        self.host = host
        self.sessions = 0
        self.drop = 0
        self.error = 'Connection timed out during banner exchange'

    def __call__(self, script):
        self.sessions += 1
        if self.drop:
            self.drop -= 1
            raise AnsibleConnectionFailure(self.error)
        proc = subprocess.run(['/bin/sh', '-c', script], env=self.host.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60, check=False)
        return proc.returncode, proc.stdout, proc.stderr


class FakeHost(object):
    """A Host (plugin_utils/host/_host.py) whose programs ``run`` runs:
    ``reached`` once one ran; Ansible's connection tries a failed command
    ``retries`` times more."""

    def __init__(self, run, connection):
        self._run, self.connection, self.reached = run, connection, False
        self.retries = 0

    def sh(self, script, sudoable=False, timeout=None):
        out = self._run(script)
        self.reached = True
        return out

    def tries_again(self):
        return self.retries > 0


# Ansible's words when ssh could not connect at all
REFUSED = ('Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 2299: '
           'Connection refused')


def task_args(host, path, **changes):
    args = dict(path=path, goal='switch', auto_rollback=True, confirm_timeout=30,
                activation_timeout=60, lock_timeout=10, generation=None, reactivate=False,
                pre_switch_checks=True, install_bootloader=False, backup_extension=None,
                magic_rollback=True, confirm=True, health_checks=[], reboot='never',
                **host.common)
    args.update(changes)
    return args


@pytest.fixture
def fake(tmp_path, monkeypatch):
    nixos_without_root(monkeypatch)
    monkeypatch.setattr(_detached_run, 'RETRY_INTERVAL', 0.1)
    host = Host(tmp_path)
    target, connection = Target(host), Connection()
    session = HostSession(FakeHost(target, connection), Display())

    def task(path, **changes):
        args = task_args(host, path, **changes)
        return ActivateTask(args, 'h1', 'nixos', _platforms.goal_row(args['goal']), False,
                            False, session, Timeline())
    return host, target, connection, session, task


def test_a_launch_that_ends_in_its_session_needs_no_other(fake):
    host, target, connection, session, task = fake
    run = DetachedRun(task(host.system('a')))
    name, values, log, failure = run.launch('activate', False)
    assert failure is None and values['state'] == 'done', log
    assert name.count('-') == 1 and 'activation exited with 0' in log
    # following a run that ended reads nothing more
    assert run.follow(name, False, run.deadline(False), values, log) == (values, log, None)
    assert (target.sessions, connection.resets, session.lost) == (1, 0, 0)


def test_a_confirmation_logs_in_anew_and_records_its_phase(fake):
    host, target, connection, session, task = fake
    activation = task(host.system('a'))
    run = DetachedRun(activation)
    deadline = run.deadline(True)
    name, values, log, failure = run.launch('activate', True)
    values, log, problem = run.follow(name, True, deadline, values, log)
    assert problem is None and values['state'] == 'awaiting_confirmation', log
    values, log, problem = run.confirm(name, values, deadline)
    assert problem is None and values['state'] == 'done' and values['confirmed'] is True
    assert connection.resets == 1 and target.sessions == 2
    assert [p['name'] for p in activation.timeline.phases] == ['confirm']
    assert activation.timeline.phases[0]['outcome'] == 'changed'


def test_a_rejected_run_is_rolled_back_by_its_watchdog(fake):
    host, target, connection, session, task = fake
    first = DetachedRun(task(host.system('a')))
    assert first.launch('activate', False)[1]['state'] == 'done'
    activation = task(host.system('b'))
    run = DetachedRun(activation)
    deadline = run.deadline(True)
    name, values, log, _failure = run.launch('activate', True)
    assert values['state'] == 'awaiting_confirmation'
    values, log, problem = run.reject(name, values, deadline, 'check web failed')
    assert problem is None and values['state'] == 'rolled_back', log
    assert values['reason'] == 'check web failed'
    assert [p['name'] for p in activation.timeline.phases] == ['rollback']
    assert host.generations() == ('1', ['1'])


def test_undo_puts_the_generation_before_back(fake):
    host, _target, _connection, _session, task = fake
    assert DetachedRun(task(host.system('a'))).launch('activate', False)[1]['state'] == 'done'
    activation = task(host.system('b'))
    run = DetachedRun(activation)
    assert run.launch('activate', False)[1]['new_gen'] == 2
    undone = run.undo(1, 2, _platforms.goal_row('switch'), 'check web failed')
    assert undone == {'rolled_back': True, 'rollback_reason': 'check web failed',
                      'changed': True, 'msg': 'rolled back: check web failed',
                      'rollback_generation': 1}
    assert [(p['name'], p['outcome']) for p in activation.timeline.phases] == [
        ('rollback', 'changed')]
    assert host.generations() == ('1', ['1'])


def test_follow_goes_on_through_lost_connections(fake):
    host, target, connection, session, task = fake
    run = DetachedRun(task(host.system('a')))
    name, values, log, _failure = run.launch('activate', True)
    assert values['state'] == 'awaiting_confirmation'
    target.drop = 2
    values, log, problem = run.confirm(name, values, run.deadline(True))
    assert problem is None and values['state'] == 'done'
    # each try a new login; two lost, the third confirmed
    assert session.lost == 2 and connection.resets == 3 and target.sessions == 4


def test_a_lost_launch_is_followed_from_a_new_login(fake):
    host, target, connection, session, task = fake
    run = DetachedRun(task(host.system('a')))
    target.drop = 1
    name, values, log, failure = run.launch('activate', False)
    assert (values, log, failure) == (None, '', None)
    assert session.lost == 1 and connection.resets == 1
    # nothing started on this fake (the launch never ran): following it
    # finds no run, whose state stays unknown until the deadline
    values, log, problem = run.follow(name, False, 0, values, log)
    assert problem.startswith('gave up following the activation after ')
    assert problem.endswith('s in state unknown'), problem


def test_a_launch_ssh_could_not_connect_for_is_not_followed(fake):
    """ssh could not connect for the task's first program: nothing started
    on the host, so there is no run to follow (NotReached, at once). Where
    Ansible tries a command again, or once a program of the task ran there,
    the same words come from a host that may have started it (a reboot): the
    launch is followed."""
    host, target, connection, session, task = fake
    run = DetachedRun(task(host.system('a')))
    target.drop, target.error = 1, REFUSED
    with pytest.raises(NotReached):
        run.launch('activate', False)
    assert (target.sessions, session.lost) == (1, 0)
    session.target.retries = 2
    target.drop = 1
    assert run.launch('activate', False)[1:] == (None, '', None)
    session.target.retries = 0
    assert run.launch('activate', False)[1]['state'] == 'done'
    target.drop = 1
    assert run.launch('activate', False)[1:] == (None, '', None)
    assert session.lost == 2


def test_health_checks_run_over_a_fresh_login_and_record_their_phase(fake):
    host, target, connection, _session, task = fake
    checks = _health_checks.validate([{'name': 'ok', 'command': 'true'}])
    activation = task(host.system('a'), health_checks=checks)
    health = HealthChecks(activation, DetachedRun(activation))
    assert health.summary is None
    summary = health.run()
    assert summary['ok'] and health.summary is summary
    assert connection.resets == 1 and target.sessions == 1
    assert [(p['name'], p['outcome']) for p in activation.timeline.phases] == [('checks', 'ok')]
    assert HealthChecks(task(host.system('b')), None).run() is None


def test_a_failed_check_without_a_watchdog_undoes_the_activation(fake):
    host, _target, _connection, _session, task = fake
    assert DetachedRun(task(host.system('a'))).launch('activate', False)[1]['state'] == 'done'
    checks = _health_checks.validate([{'name': 'web', 'command': 'exit 3', 'retries': 0}])
    activation = task(host.system('b'), health_checks=checks, magic_rollback=False)
    run = DetachedRun(activation)
    assert run.launch('activate', False)[1]['state'] == 'done'
    health = HealthChecks(activation, run)
    summary = health.run()
    assert not summary['ok']
    res = {'previous': {'generation': 1}, 'new': {'generation': 2}}
    res = health.fail_unguarded(res, summary, 'done')
    assert res['failed'] and res['phase'] == 'checks' and res['rolled_back'] is True
    assert res['msg'] == 'rolled back: %s' % summary['msg']
    assert [p['name'] for p in activation.timeline.phases] == ['checks', 'rollback']
    assert host.generations() == ('1', ['1'])
    # auto rollback off: the host stays on the new system, and says so
    kept = HealthChecks(task(host.system('c'), auto_rollback=False), None).fail_unguarded(
        {'previous': {'generation': 1}, 'new': {'generation': 2}}, summary, 'done')
    assert kept['msg'] == summary['msg'] + \
        ' (auto rollback is off: the host stays on the new system)'


def test_a_session_without_an_answer_counts_as_lost(fake):
    _host, _target, connection, _session, _task = fake
    # the real Host, whose ``sh`` holds the time limit of every target program
    silent = Host_.of_task(connection, {}, lambda cmd, sudoable, in_data: time.sleep(5))
    session = HostSession(silent, Display())
    with pytest.raises(_activation_task.ConnectionLost, match='within 0.2s'):
        session.sh('true', timeout=0.2)
    # the next command logs in anew
    assert connection.resets == 1


def test_reboots_are_considered_where_the_platform_offers_the_reboot_goal(fake):
    host, target, _connection, session, task = fake
    path = host.system('a')
    assert Reboots(task(path, reboot='when-needed'), None, None).considered()
    assert not Reboots(task(path), None, None).considered()
    darwin = ActivateTask(task_args(host, path, reboot='always'), 'h1', 'darwin',
                          _platforms.goal_row('switch'), False, False, session, Timeline())
    assert not Reboots(darwin, None, None).considered()
    # check mode: what reboot=always and a system not copied yet foresee, without a look
    assert Reboots(task(path, reboot='always'), None, None).foresee(False) == {
        'mode': 'always', 'needed': None, 'reasons': [], 'rebooted': False,
        'would_reboot': True}
    assert Reboots(task(path, reboot='when-needed'), None, None).foresee(False) == {
        'mode': 'when-needed', 'needed': None, 'rebooted': False, 'would_reboot': None,
        'reasons': ['%s is not in the target store yet: cannot compare its boot parts' % path]}
    assert target.sessions == 0
