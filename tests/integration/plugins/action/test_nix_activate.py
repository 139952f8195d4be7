"""nixdeploy.fleet.nix_activate against the lab: real ssh, real Nix, the
fake platforms' activations (tests/lab/flake/activate.sh).

One lab (``act``) with every persona; the systems are built and copied once
(activate_fixtures.py). Tests run in file order and each sets the state it
starts from. Every inventory points ansible_python_interpreter at a path that
does not exist: nothing may need Python on a target.
"""

import json
import os
import subprocess
import threading
import time

import pytest

from tests.collection import BIN, ansible_env
from tests.controller import kill_controller
from tests.integration.plugins.action import activate_fixtures
from tests.integration.plugins.action.activate_fixtures import (
    PLATFORM, RELEASE, activate_task, confirm_tasks)

act = activate_fixtures.act  # the module's lab fixture

pytestmark = pytest.mark.lab

STATE_DIR = {  # where the runner keeps its state on each persona (see target/activate-session.sh)
    'nixos': '/nix/var/nixdeploy/_nix_var_nix_profiles_system',
    'darwin': '/nix/var/nixdeploy/_nix_var_nix_profiles_system',
}
# how long a test waits for an event: generous, for a busy machine (a wait
# ends at its event, so this costs nothing when all is well)
LAB_WAIT = 300


def wait_until(predicate, alive=None, timeout=LAB_WAIT):
    """Look until ``predicate()`` holds (returns its value), ``timeout``
    seconds passed or ``alive()`` (what would bring the event) says no more."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline or (alive is not None and not alive()):
            return value
        time.sleep(0.2)


def runners_alive(act, host, runs):
    """Those of ``runs`` whose runner process still runs on the host."""
    script = ('cd %s/runs || exit 1; for run; do pid=$(cat "$run/pid" 2>/dev/null) && '
              '[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$run"; done; true'
              % STATE_DIR['nixos'])
    return act.lab.run_in(host, ['sh', '-c', script, 'alive'] + list(runs)).stdout.split()


def runner_states(act, host):
    """{run: state} of the nix_activate runs in the host's NixOS state
    folder, as each run's status file says now."""
    proc = act.lab.run_in(host, ['sh', '-c', 'cd %s/runs 2>/dev/null && grep -H ^state= */status'
                                 % STATE_DIR['nixos']], check=False)
    return dict((line.split('/')[0], line.partition(':state=')[2])
                for line in proc.stdout.splitlines() if ':state=' in line)


def deploy(act, variants, confirm=False, base=None, **params):
    """One play: optionally bring the hosts to ``base`` first (no watchdog),
    activate {host: variant} (the task confirms by itself over a new
    connection), or with ``confirm`` leave the confirmation to the by-hand
    pattern: a new connection, then state=confirmed."""
    params.setdefault('confirm_timeout', 5)
    extra = {}
    for host, variant in variants.items():
        extra[host] = {'wanted': act.system(host, variant)}
        if base:
            extra[host]['base'] = act.system(host, base)
    tasks = []
    if base:
        tasks.append(activate_task('baseline', '{{ base }}', magic_rollback=False))
    if confirm:
        params['confirm'] = False
    tasks.append(activate_task('activate', '{{ wanted }}', **params))
    if confirm:
        tasks += confirm_tasks()
    run = act.play(tasks, list(variants), extra=extra)
    if base:
        for host in variants:
            assert run.result('baseline', host)['status'] == 'ok', run
    return run


def generation_after(result):
    """The profile generation a (successful) activation left current."""
    return result['new']['generation'] or result['previous']['generation']


def ok(run, task, host):
    res = run.result(task, host)
    assert res['status'] == 'ok', (res, run)
    return res['result']


def failed(run, task, host):
    res = run.result(task, host)
    assert res['status'] == 'failed', (res, run)
    return res['result']


def baseline(act, hosts, variant='v1'):
    """Bring hosts to ``variant`` (whatever they ran before), in one play."""
    run = act.play([activate_task('baseline', '{{ base }}', magic_rollback=False)], hosts,
                   extra={host: {'base': act.system(host, variant)} for host in hosts})
    for host in hosts:
        assert run.result('baseline', host)['status'] == 'ok', run
        assert act.lab.active(host) == act.system(host, variant)
    return run


def only(host, task):
    """``task`` run on ``host`` alone: one play carries each host's own scenario."""
    return dict(task, when="inventory_hostname == '%s'" % host)


def activations_since(act, host, count, variant):
    """The host's history lines after its first ``count`` that activated
    anything but ``variant`` (a line names the system it activated)."""
    return [line for line in act.history(host)[count:]
            if act.system(host, variant) not in line.split()]


# ---------------------------------------------------------------- every persona
# scenario: test_second_identical_run_changes_nothing (the task `again`)
def test_switch_confirm_and_manual_rollback_on_every_persona(act):
    hosts = ['n1', 'd1', 'a1', 'm1']
    run = deploy(act, {host: 'v2' for host in hosts}, base='v1')
    gens_v1 = {host: generation_after(ok(run, 'baseline', host)) for host in hosts}
    for host in hosts:
        res = ok(run, 'activate', host)
        # activated and confirmed in the one task, over a second login
        assert res['state'] == 'done' and res['changed'] and res['confirmed'], res
        assert [p['name'] for p in res['phases']] == ['activate', 'confirm'], res
        assert res['previous']['path'] == act.system(host, 'v1')
        assert res['new']['path'] == act.system(host, 'v2')
        assert res['detached_with'] == 'setsid'  # the lab has no systemd
        assert act.lab.active(host) == act.system(host, 'v2')
        assert act.profile(host) == (res['new']['generation'], act.system(host, 'v2'))
    # darwin went through become: its activate refuses anything but root
    assert any('on darwin (switch)' in line for line in ok(run, 'activate', 'd1')['log_tail'])

    # the same system again changes nothing, then a rollback by hand
    before = {host: len(act.history(host)) for host in hosts}
    run = act.play([activate_task('again', '{{ wanted }}', confirm_timeout=5),
                    {'name': 'rollback', 'nixdeploy.fleet.nix_activate': {'state': 'rolled_back'},
                     'ignore_errors': True}], hosts,
                   extra={host: {'wanted': act.system(host, 'v2')} for host in hosts})
    for host in hosts:
        res = ok(run, 'again', host)
        assert res['changed'] is False and res['state'] == 'unchanged', res
        # the rollback activated v1; nothing else was activated
        assert activations_since(act, host, before[host], 'v1') == [], act.history(host)
        res = ok(run, 'rollback', host)
        assert res['rolled_back'] and res['changed'] and res['rollback_reason'] == 'requested'
        assert res['new']['path'] == act.system(host, 'v1'), res
        assert act.lab.active(host) == act.system(host, 'v1')
        assert act.profile(host)[1] == act.system(host, 'v1')
        if PLATFORM[host] != 'nix-on-droid':
            # back to the very generation (nix-on-droid's activate makes a new one)
            assert act.profile(host)[0] == gens_v1[host]


# scenario: test_rollback_to_a_given_generation (n1)
# scenario: test_rollbacks_can_be_turned_off (n3)
def test_rollback_to_a_given_generation_and_rollbacks_turned_off(act):
    wanted = {'v%d' % i: act.system('n1', 'v%d' % i) for i in (1, 2, 3)}
    tasks = [only('n1', dict(activate_task(name, wanted[name], magic_rollback=False),
                             register=name))
             for name in ('v1', 'v2', 'v3')]
    tasks += [only('n1', task) for task in (
        {'name': 'rollback', 'ignore_errors': True, 'nixdeploy.fleet.nix_activate': {
            'state': 'rolled_back',
            'generation': '{{ v1.new.generation or v1.previous.generation }}'}},
        {'name': 'missing', 'ignore_errors': True, 'nixdeploy.fleet.nix_activate': {
            'state': 'rolled_back', 'generation': 999}})]
    # n3, beside it: a failed activation with auto rollback off, then one
    # without a watchdog
    tasks += [only('n3', task) for task in (
        activate_task('baseline', act.system('n3', 'v1'), magic_rollback=False),
        activate_task('fail', act.system('n3', 'fail'), auto_rollback=False),
        activate_task('unguarded', act.system('n3', 'c2'), magic_rollback=False))]
    before = set(runner_states(act, 'n3'))
    run = act.play(tasks, ['n1', 'n3'])

    first = generation_after(ok(run, 'v1', 'n1'))
    assert ok(run, 'v3', 'n1')['previous']['path'] == wanted['v2']
    res = ok(run, 'rollback', 'n1')
    assert res['previous']['path'] == wanted['v3']
    assert res['new'] == {'generation': first, 'path': wanted['v1']}, res
    assert 'generation 999' in failed(run, 'missing', 'n1')['msg']
    assert act.lab.active('n1') == wanted['v1']
    assert act.profile('n1') == (first, wanted['v1'])

    res = failed(run, 'fail', 'n3')
    assert 'auto rollback is off' in res['msg'] and not res['rolled_back'], res
    res = ok(run, 'unguarded', 'n3')
    # the failed system was left in place: the next activation started from it
    assert res['previous']['path'] == act.system('n3', 'fail')
    assert res['state'] == 'done' and not res['magic_rollback']
    # no watchdog stays behind to roll it back later: every runner of the
    # play (the watchdog is the runner) has ended, and the system stays
    runs = sorted(set(runner_states(act, 'n3')) - before)
    assert runs, runner_states(act, 'n3')
    assert wait_until(lambda: not runners_alive(act, 'n3', runs)), runners_alive(act, 'n3', runs)
    assert act.lab.active('n3') == act.system('n3', 'c2')


# ---------------------------------------------------------------- failures
class Probes:
    """A new ssh login to each host every 0.5 s while a play runs, each on
    its own (a login that began just before a break would stall through it):
    ground truth for whether a host was reachable."""

    def __init__(self, act, hosts):
        self.act, self.codes, self.done = act, {host: [] for host in hosts}, threading.Event()
        self.threads = [threading.Thread(target=self.probe, args=(host,)) for host in hosts]

    def probe(self, host):
        info = self.act.lab.host(host)
        argv = (['ssh', '-o', 'ConnectTimeout=2'] + self.act.lab.ssh_args()
                + ['-l', info['ssh_user'], info['address'], 'true'])
        started = []
        while not self.done.is_set():
            started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
            time.sleep(0.5)
        for proc in started:
            try:
                self.codes[host].append(proc.wait(timeout=15))
            except subprocess.TimeoutExpired:
                proc.kill()
                self.codes[host].append(proc.wait())

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for thread in self.threads:
            thread.join()


def check_break_network(act, run, host, probes, gen):
    res = failed(run, 'activate', host)
    assert res['msg'].startswith('%s: rolled back: no confirmation within 5s' % host), res
    assert res['rolled_back'] and res['state'] == 'rolled_back'
    # readable by programs: the confirmation could not reach the host
    # (a failed result keeps the activation's log tail under details)
    log_tail = res['details']['log_tail']
    assert res['phase'] == 'confirm' and res['connection_lost'], repr(
        [res.get(k) for k in ('lost_connections', 'phases', 'duration')] + [log_tail])
    assert any('takes the network down' in line for line in log_tail)
    # the host was unreachable for a while, and reachable again at the end
    assert any(rc != 0 for rc in probes) and probes[-1] == 0, probes
    # ground truth without ssh, then over a new ssh connection
    assert act.lab.active(host) == act.system(host, 'v1')
    assert act.profile(host) == (gen, act.system(host, 'v1'))
    assert res['new']['generation'] not in act.generations(host)  # failed one deleted
    assert act.lab.ssh(host, 'true', check=False).returncode == 0
    # the task ended once the host had rolled back, instead of hanging on
    # the lost connection: the host's activate task (from the run's record,
    # not the play, whose other work a busy machine slows) took its
    # activation, the 5 s window and the reconnection, with a minute to spare
    rec = run.result('activate', host)
    took = rec['ended'] - rec['started']
    assert took < 5 + 60, (host, took, res['phases'])
    print('break network: %s\'s activate task took %.1fs' % (host, took))


def check_failed_activation(act, run, host, before):
    res = failed(run, 'activate', host)
    # the cause, then what the activation itself said (issue 61)
    assert res['msg'].split('\n')[0] == (
        '%s: rolled back: the activation failed with exit code 1:' % host), res
    assert any('failed on purpose' in line for line in res['msg'].split('\n')[1:]), res
    assert res['phase'] == 'activate' and not res['connection_lost'], res
    assert act.profile(host) == before
    assert act.lab.active(host) == act.system(host, 'v1')


def check_hanging_activation(act, run, host):
    res = failed(run, 'activate', host)
    assert res['msg'] == '%s: rolled back: the activation timed out after 3s' % host, res
    assert act.lab.active(host) == act.system(host, 'v1')
    assert act.profile(host)[1] == act.system(host, 'v1')
    # the whole activation (its process group) was stopped
    left = act.lab.run_in(host, ['sh', '-c', 'ps -eo args | grep -c "[%s]%s-hang"'
                                 % (host[0], host[1:])], check=False)
    assert left.stdout.strip() == '0', left.stdout


# scenario: test_break_network_is_rolled_back_by_the_watchdog (n2, d1)
# scenario: test_failing_activation_rolls_back_automatically (n3, a1, m1; n3's failed units)
# scenario: test_hanging_activation_is_stopped_and_rolled_back (n1)
def test_failed_activations_roll_back_on_every_host(act):
    wanted = {'n1': 'hang', 'n2': 'bn', 'd1': 'bn', 'n3': 'fail', 'a1': 'fail', 'm1': 'fail'}
    extra = {host: {'base': act.system(host, 'v1'), 'wanted': act.system(host, variant)}
             for host, variant in wanted.items()}
    extra['n1']['activation_timeout'] = 3
    tasks = [activate_task('baseline', '{{ base }}', magic_rollback=False),
             activate_task('activate', '{{ wanted }}', confirm_timeout=5,
                           activation_timeout='{{ activation_timeout | default(omit) }}'),
             # NixOS: failed units (exit 4) count as a failed activation too
             only('n3', activate_task('units', act.system('n3', 'fu'), confirm_timeout=5))]
    with Probes(act, ['n2', 'd1']) as probes:
        run = act.play(tasks, list(wanted), extra=extra)
    gens = {}
    for host in wanted:
        res = ok(run, 'baseline', host)
        gens[host] = (generation_after(res), act.system(host, 'v1'))
    for host in ('n2', 'd1'):
        check_break_network(act, run, host, probes.codes[host], gens[host][0])
    for host in ('n3', 'a1', 'm1'):
        check_failed_activation(act, run, host, gens[host])
    check_hanging_activation(act, run, 'n1')
    res = failed(run, 'units', 'n3')
    assert res['msg'] == ('n3: rolled back: the activation exited with code 4 (some units failed):'
                          '\n  warning: the following units failed: lab-n3-fu.service'), res
    assert act.profile('n3') == gens['n3']
    assert act.lab.active('n3') == act.system('n3', 'v1')


def test_ssh_session_killed_mid_activation(act):
    baseline(act, ['n1'], 'v1')
    history = len(act.history('n1'))
    # n1's slow activation holds until the test lets it go (RELEASE): the
    # playbook is killed while it runs, however long it took to start
    act.lab.run_in('n1', ['rm', '-f', RELEASE])
    before = set(runner_states(act, 'n1'))
    workdir = os.path.join(act.workdir, 'killed')
    os.makedirs(workdir)
    inventory = act.inventory(['n1'], {'n1': {'wanted': act.system('n1', 'slow')}})
    path = os.path.join(workdir, 'inventory.json')
    with open(path, 'w') as handle:
        json.dump(inventory, handle)
    # confirm_timeout: the window for the confirmation this test sends once
    # the activation completed; it ends at the confirmation
    with open(os.path.join(workdir, 'play.json'), 'w') as handle:
        json.dump([{'hosts': 'all', 'gather_facts': False, 'tasks': [
            activate_task('activate', '{{ wanted }}', confirm_timeout=LAB_WAIT)]}], handle)
    # no ControlMaster: killing the controller kills its one ssh connection
    env = ansible_env({'ANSIBLE_SSH_ARGS': '-o ControlMaster=no'}, cwd=workdir)
    proc = subprocess.Popen(
        [os.path.join(BIN, 'ansible-playbook'), '-i', path, os.path.join(workdir, 'play.json')],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        assert wait_until(lambda: len(act.history('n1')) > history), \
            'the slow activation never started'
        assert len(act.history('n1')) == history + 1
    finally:
        # the playbook, its worker and the worker's ssh, mid-activation (the
        # playbook's process group alone would leave the worker, in a
        # session of its own, following the run and confirming it)
        kill_controller(proc)
    canary = STATE_DIR['nixos'] + '/canary'
    try:
        # still activating: the run has not reached its confirmation window
        runs = {run: state for run, state in runner_states(act, 'n1').items() if run not in before}
        assert list(runs.values()) == ['running'], runs
        assert act.lab.read('n1', canary) is None
    finally:
        act.lab.run_in('n1', ['touch', RELEASE])
    assert wait_until(lambda: act.lab.read('n1', canary) is not None), 'no canary appeared'
    assert act.lab.active('n1') == act.system('n1', 'slow')  # it completed on its own
    run = act.play(confirm_tasks(), ['n1'])
    res = ok(run, 'confirm', 'n1')
    assert res['confirmed'] and res['new']['path'] == act.system('n1', 'slow'), res
    assert act.profile('n1')[1] == act.system('n1', 'slow')
    act.lab.run_in('n1', ['rm', '-f', RELEASE])


# its by-hand confirmations: test_ssh_session_killed_mid_activation; the lock is target sh
@pytest.mark.here_only
def test_concurrent_activations_are_serialized(act):
    baseline(act, ['n3'], 'v1')
    history = len(act.history('n3'))
    before = set(runner_states(act, 'n3'))
    # Each play activates without confirming, then waits on the controller
    # until the file `go` exists, then confirms. The test makes it once one
    # run on n3 waits for the other's lock (or both activated: no lock held
    # them apart, and the assertions below say so), so the first holds the
    # lock while the second arrives, however long each play took to start.
    go = os.path.join(act.workdir, 'concurrent-go')
    hold = ("{{ lookup('ansible.builtin.pipe', 'n=0; while [ ! -e %s ] && [ $n -lt %d ]; "
            "do sleep 0.2; n=$((n+1)); done; echo go') }}" % (go, LAB_WAIT * 5))
    runs = {}

    def one(variant):
        tasks = [activate_task('activate', act.system('n3', variant), confirm_timeout=LAB_WAIT,
                               lock_timeout=LAB_WAIT, confirm=False),
                 {'name': 'hold', 'ansible.builtin.debug': {'msg': hold}}] + confirm_tasks()
        runs[variant] = act.play(tasks, ['n3'])

    threads = [threading.Thread(target=one, args=(v,)) for v in ('c2', 'c3')]
    for thread in threads:
        thread.start()
    try:
        def arrived():
            states = [state for run, state in runner_states(act, 'n3').items()
                      if run not in before]
            return 'waiting_lock' in states or states.count('awaiting_confirmation') > 1
        wait_until(arrived, lambda: any(thread.is_alive() for thread in threads))
    finally:
        with open(go, 'w'):
            pass
        for thread in threads:
            thread.join()
        os.unlink(go)
    results = {v: ok(runs[v], 'activate', 'n3') for v in runs}
    for variant in runs:
        assert ok(runs[variant], 'confirm', 'n3')['confirmed']
    first, second = sorted(runs, key=lambda v: results[v]['new']['generation'])
    # the second started from what the first made, after the first was confirmed
    assert results[second]['previous'] == results[first]['new'], results
    assert results[first]['previous']['path'] == act.system('n3', 'v1')
    assert any('waiting_lock: another activation' in line for line in results[second]['log_tail'])
    assert act.lab.active('n3') == act.system('n3', second)
    assert act.profile('n3') == (results[second]['new']['generation'], act.system('n3', second))
    # two activations, each its test and, once confirmed, its boot (NixOS
    # under magic rollback)
    assert [line.split()[1] for line in act.history('n3')[history:]] == ['test', 'boot'] * 2


# its activation calls: test_switch_confirm_and_manual_rollback_on_every_persona; lock: target sh
@pytest.mark.here_only
def test_lock_timeout_and_stale_lock(act):
    baseline(act, ['n2', 'n3'], 'v1')
    lock = STATE_DIR['nixos'] + '/lock'
    # n3's lock is held by a live process (this test): wait lock_timeout,
    # then fail clearly
    act.lab.run_in('n3', ['sh', '-c', 'mkdir %s && echo %d >%s/pid' % (lock, os.getpid(), lock)])
    # n2's by a process that is gone: broken, and the activation proceeds
    dead = subprocess.Popen(['true'])
    dead.wait()
    act.lab.run_in('n2', ['sh', '-c', 'mkdir %s && echo %d >%s/pid' % (lock, dead.pid, lock)])
    extra = {'n3': {'wanted': act.system('n3', 'c2'), 'lock_wait': 2},
             'n2': {'wanted': act.system('n2', 'c2'), 'lock_wait': 5}}
    try:
        run = act.play([activate_task('activate', '{{ wanted }}', confirm_timeout=5,
                                      lock_timeout='{{ lock_wait }}')], ['n2', 'n3'], extra=extra)
    finally:
        # n3's lock is this test's own: gone once the run is done
        act.lab.run_in('n3', ['rm', '-rf', lock])
    res = failed(run, 'activate', 'n3')
    assert 'timed out after 2s waiting for the lock' in res['msg'], res
    assert res['msg'].startswith('n3: '), res
    assert 'pid %d' % os.getpid() in res['msg']
    assert act.lab.active('n3') == act.system('n3', 'v1')
    assert ok(run, 'activate', 'n2')['confirmed']
    assert act.lab.active('n2') == act.system('n2', 'c2')


# ---------------------------------------------------------------- goals, check mode
# its profile and by-hand confirm calls: test_switch_confirm_..., test_ssh_session_killed_...
@pytest.mark.here_only
def test_nixos_goals_test_and_boot(act):
    # n1 by hand: activate with goal test, then a new connection and
    # state=confirmed; n2 beside it: goal boot
    extra = {'n1': {'base': act.system('n1', 'v1'), 'wanted': act.system('n1', 'v2'),
                    'goal': 'test'},
             'n2': {'base': act.system('n2', 'v1'), 'wanted': act.system('n2', 'v3'),
                    'goal': 'boot'}}
    tasks = [activate_task('baseline', '{{ base }}', magic_rollback=False),
             activate_task('activate', '{{ wanted }}', goal='{{ goal }}', confirm=False,
                           confirm_timeout=5)]
    reconnect, confirm = confirm_tasks()
    tasks += [reconnect, only('n1', confirm)]
    run = act.play(tasks, ['n1', 'n2'], extra=extra)
    gen = (generation_after(ok(run, 'baseline', 'n1')), act.system('n1', 'v1'))
    assert ok(run, 'activate', 'n1')['state'] == 'awaiting_confirmation'
    assert ok(run, 'confirm', 'n1')['confirmed']
    assert act.lab.active('n1') == act.system('n1', 'v2')
    assert act.profile('n1') == gen  # test never touches the profile
    ok(run, 'baseline', 'n2')
    res = ok(run, 'activate', 'n2')
    assert res['state'] == 'done' and not res['magic_rollback']  # no watchdog for boot
    assert act.lab.boot('n2') == act.system('n2', 'v3')
    assert act.profile('n2')[1] == act.system('n2', 'v3')
    assert act.lab.active('n2') == act.system('n2', 'v1')  # boot never touches what runs


def test_check_mode_changes_nothing(act):
    hosts = ['n1', 'a1', 'm1']
    before = {host: len(act.history(host)) for host in hosts}
    extra = {host: {'base': act.system(host, 'v1'), 'wanted': act.system(host, 'v2')}
             for host in hosts}
    # one --check run: the baseline and n1's dry-activate goal run for real
    # (check_mode: false), the activation in check mode
    tasks = [dict(activate_task('baseline', '{{ base }}', magic_rollback=False), check_mode=False),
             activate_task('activate', '{{ wanted }}'),
             only('n1', dict(activate_task('dry', '{{ wanted }}', goal='dry-activate'),
                             check_mode=False))]
    run = act.play(tasks, hosts, extra=extra, check=True)
    for host in hosts:
        gen = generation_after(ok(run, 'baseline', host))
        res = ok(run, 'activate', host)
        assert res['changed'] and not res['activated'], res
        # every activation the run made was the baseline's
        assert activations_since(act, host, before[host], 'v1') == [], act.history(host)
        assert act.profile(host) == (gen, act.system(host, 'v1'))
        assert act.lab.active(host) == act.system(host, 'v1')
    # every platform's own dry activation
    for host in hosts:
        assert any('would activate' in line for line in ok(run, 'activate', host)['log_tail'])
    res = ok(run, 'dry', 'n1')
    assert res['changed'] is False and res['would_change'] is True


# its calls: test_switch_confirm_and_manual_rollback_on_every_persona; the checks are our own
@pytest.mark.here_only
def test_bad_parameters_fail_clearly(act):
    extra = {'a1': {'wanted': '/nix/store/x', 'goal': 'boot'},
             'n1': {'wanted': '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-missing',
                    'goal': 'switch'}}
    run = act.play([activate_task('activate', '{{ wanted }}', goal='{{ goal }}')], ['a1', 'n1'],
                   extra=extra)
    assert 'nix-on-droid supports the goals switch, not boot' in failed(run, 'activate', 'a1')['msg']
    assert 'not in the target\'s store' in failed(run, 'activate', 'n1')['msg']
