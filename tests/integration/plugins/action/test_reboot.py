"""Reboots and switch inhibitors on the `rbt` lab fleet, through the deploy
playbook with ``nix_reboot``: the lab's faithful reboot (new boot id, fresh
/run, the boot default activated at boot, see docs/lab.md) beside hosts that
must not reboot, one run per situation, assertions on every host.

Six NixOS hosts serve their system's httpd (``http_status``) and are checked
over it after every activation and reboot. r1 and r2 boot a real systemd as
PID 1 (tests/lab/nspawn.py): `systemctl reboot` is a real reboot of the
container (systemd's own boot id, a new /run, its units started again, the
boot default activated by a unit before sshd); r3 to r6 are plain lab hosts,
rebooted by the lab's supervisor. Where systemd hosts cannot run
(``nspawn.unsupported()``: the current stack's tree) r1 and r2 are plain
hosts too: every test runs the same on the six hosts and skips, with that
reason, only its systemd part (what it asserts of r1 and r2 as systemd
hosts), which comes last.

The fleet's first deploy (every host rebooted into its first system) is a
module fixture, made once by whichever test asks first; each test sets up
the power settings, host vars and systems it needs and reads what it rolls
back to on the host, so each also runs alone.
"""

import json
import os
import threading

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory
from tests.faults.fleet import assert_consistent, history, locks, wait_until
from tests.lab import nspawn

pytestmark = pytest.mark.lab

ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
HOSTS = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6']
SYSTEMD_UNSUPPORTED = nspawn.unsupported()
# the hosts that boot systemd, where they can
SYSTEMD = ('r1', 'r2') if SYSTEMD_UNSUPPORTED is None else ()
INHIBITORS = {'dbus-implementation': 'dbus'}
# r3's reboot timeout in test_when_needed_fleet: the host never comes back,
# so the run waits all of it; the lab's supervisor takes the host down within
# a tenth of a second of the request (tests/lab/supervisor.py, POLL), and the
# task looks every 2 s (BOOT_LOOK_INTERVAL): looks at 0, 2, 4 and 6 s see it
# down long before the timeout passes
NEVER_BACK_TIMEOUT = 6
# how often a test looks at the lab for what it waits for (a local file read
# or a root shell in the host)
LOOK = 0.1
# how long a rebooted host stays down (the lab's default: 1 s). The
# collection looks for the new boot id every 2 s (BOOT_LOOK_INTERVAL); a
# systemd host's shutdown and boot take more than a second besides, so with
# the default it is back just after the look at 2 s and found by the one at
# 4 s (waited 4.5 s): down 0.2 s, it is found by the look at 2 s.
# Every claim of the module holds for any time down (a new boot id, a fresh
# /run, what the host boots); none needs the host down for long.
DOWN_SECONDS = 0.2


class Fleet(DeployFleet):

    def set(self, host, **knobs):
        self.flake.set_config(host, **knobs)

    def host_vars(self, host, **values):
        folder = os.path.join(self.inventory, 'host_vars')
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, '%s.yml' % host), 'w') as handle:
            json.dump(values, handle)


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('rbt', [{'name': h, 'persona': 'nixos', 'systemd': h in SYSTEMD}
                           for h in HOSTS])
    for host in HOSTS:
        lab.set_power(host, down_seconds=DOWN_SECONDS)
    base = str(tmp_path_factory.mktemp('rbt'))
    configurations = {h: {'platform': 'nixos', 'http_status': 200, 'inhibitors': INHIBITORS}
                      for h in HOSTS}
    flake, secret = prepare(lab, os.path.join(base, 'flake'), configurations=configurations)
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    web = {'name': 'web', 'retries': 2, 'interval': 0.5, 'timeout': 5,
           'http': {'url': 'http://{{ ansible_host }}/cgi-bin/health', 'status': 200}}
    with open(os.path.join(inventory, 'group_vars', 'nixos.yml'), 'w') as handle:
        json.dump({'nix_reboot': 'when-needed', 'nix_reboot_timeout': 60,
                   'nix_health_checks': [web]}, handle)
    return Fleet(lab, flake, inventory, base)


class FirstDeploy:
    """The fleet's first deploy, with ``nix_reboot=always``, and what each
    host said just before it (``ids``, ``pids``) and just after it
    (``after``), read before any test changes the fleet."""

    def __init__(self, fleet):
        lab = fleet.lab
        self.ids = {h: lab.boot_id(h) for h in HOSTS}
        self.pids = {h: lab.pid(h) for h in HOSTS}
        mark_run(lab, HOSTS)
        self.run = fleet.deploy('-e', 'nix_reboot=always')
        self.after = {h: self.read(lab, h) for h in HOSTS}

    @staticmethod
    def read(lab, host):
        return {'boot_id': lab.boot_id(host), 'pid': lab.pid(host),
                'run_marked': run_marked(lab, host), 'booted': lab.booted(host),
                'current': lab.current_system(host), 'boot': lab.boot(host),
                'generations': generations(lab, host)}


@pytest.fixture(scope='module')
def first_deploy(fleet):
    return FirstDeploy(fleet)


@pytest.fixture
def deployed(fleet, first_deploy):
    """The fleet once its first deploy passed (whichever test made it)."""
    assert first_deploy.run.rc == 0, first_deploy.run
    return fleet


def power_back(lab, hosts):
    """Each host up and rebooting as by default: a test that needs that
    does not count on the one before it to have put it back."""
    for host in hosts:
        lab.set_power(host, comes_back=True, fallback=False)
        if lab.power_state(host) == 'off':
            lab.power_on(host)


def systemd_part():
    """What follows in a test asserts of r1 and r2 as systemd hosts: skipped
    (with the reason) where they are plain hosts."""
    if SYSTEMD_UNSUPPORTED is not None:
        pytest.skip('%s (skipped: what this test asserts of its systemd hosts; its assertions '
                    'on the same hosts as plain hosts passed)' % SYSTEMD_UNSUPPORTED)


def results(run):
    return {r['host']: r for r in run.results(ACTIVATE)}


def ok(found, host, run):
    assert found[host]['status'] == 'ok', (host, found[host], run)
    return found[host]['result']


def failed(found, host, run):
    assert found[host]['status'] == 'failed', (host, found[host], run)
    return found[host]['result']


def profile_generation(lab, host):
    link = lab.run_in(host, ['readlink', '/nix/var/nix/profiles/system']).stdout.strip()
    return int(link.split('-')[1])


def generations(lab, host):
    """The system profile's generations on the host: {link: system}."""
    out = lab.run_in(host, ['sh', '-c', 'cd /nix/var/nix/profiles && for l in system-*-link; '
                            'do echo "$l $(readlink "$l")"; done']).stdout
    return dict(line.split() for line in out.splitlines())


def mark_run(lab, hosts):
    """A file in each host's /run (a tmpfs: gone after a reboot)."""
    for host in hosts:
        lab.run_in(host, ['touch', '/run/lab-before-reboot'])


def run_marked(lab, host):
    return lab.run_in(host, ['test', '-e', '/run/lab-before-reboot'], check=False).returncode == 0


def on_host(lab, host, command):
    """What the host itself says, over a new ssh login."""
    return lab.ssh(host, command).stdout.strip()


def test_always_reboots_every_host_into_its_first_system(first_deploy, fleet):
    lab = fleet.lab
    run = first_deploy.run
    assert run.rc == 0, run
    # asked to reboot on the command line: one host at a time, never the
    # whole fleet at once (a batch, and a summary, per host)
    assert run.stdout.count('NIXDEPLOY SUMMARY') == len(HOSTS), run
    found = results(run)
    for host in HOSTS:
        res = ok(found, host, run)
        new = res['new']['path']
        after = first_deploy.after[host]
        assert res['reboot']['rebooted'] and res['reboot']['mode'] == 'always', res
        # the boot id the host gave the collection after the reboot is the lab's record
        assert after['boot_id'] == res['reboot']['boot_id_after'] != first_deploy.ids[host]
        # a new boot: the old one's processes and its /run are gone
        assert after['pid'] != first_deploy.pids[host] and not after['run_marked']
        assert after['booted'] == after['current'] == after['boot'] == new
        assert after['generations'] == {'system-1-link': new}
        # checked after the boot: the new system's httpd, started at boot
        assert [p['name'] for p in res['phases']] == ['activate', 'reboot', 'checks'], res
        assert res['health_checks']['ok'], res
    # the summary says so
    assert set(run.outcomes().values()) == {'switched (rebooted)'}, run.outcomes()
    systemd_part()
    for host in SYSTEMD:
        # systemd booted again (a new PID 1) and its unit activated the boot default
        assert lab.run_in(host, ['cat', '/proc/1/comm']).stdout.strip() == 'systemd'
        assert on_host(lab, host, 'systemctl is-active lab-boot.service lab-httpd.service') \
            .split() == ['active', 'active']
        assert found[host]['result']['detached_with'] == 'systemd-run', found[host]


# reboot: test_always_reboots_every_host_into_its_first_system; undo: test_nix_activate's rollbacks
@pytest.mark.here_only
def test_when_needed_fleet(deployed):
    """One run: r1 gets a new kernel (reboots, fine); r2 a new kernel but its
    boot loader falls back to the old entry (wrong system); r3 a new kernel
    and never comes back; r4 changed switch inhibitors (refused switch, so
    boot + reboot); r5 a new version only (switch, no reboot); r6 changed
    inhibitors without reboots allowed (fails, nothing changed)."""
    fleet = deployed
    lab = fleet.lab
    power_back(lab, HOSTS)
    # what r2 falls back to and r6 keeps: the system each runs now
    before = {h: lab.current_system(h) for h in ('r2', 'r6')}
    for host in HOSTS:
        fleet.set(host, version='2')
    for host in ('r1', 'r2', 'r3'):
        fleet.set(host, kernel_version='6.12.9')
    for host in ('r4', 'r6'):
        fleet.set(host, inhibitors={'dbus-implementation': 'broker'})
    lab.set_power('r2', fallback=True)
    lab.set_power('r3', comes_back=False)
    fleet.host_vars('r3', nix_reboot_timeout=NEVER_BACK_TIMEOUT)
    fleet.host_vars('r6', nix_reboot='never')
    ids = {h: lab.boot_id(h) for h in HOSTS}
    gens = {h: profile_generation(lab, h) for h in HOSTS}
    links = {h: generations(lab, h) for h in HOSTS}
    mark_run(lab, HOSTS)
    run = fleet.deploy()
    assert run.rc != 0, run
    found = results(run)

    res = ok(found, 'r1', run)
    assert res['reboot']['rebooted'] and res['reboot']['needed'], res
    assert res['reboot']['reasons'][0].startswith('kernel: lab-linux-6.6.1/bzImage -> '
                                                  'lab-linux-6.12.9/bzImage'), res
    assert lab.boot_id('r1') != ids['r1'] and lab.booted('r1') == res['new']['path']
    assert lab.boot('r1') == res['new']['path'] and res['health_checks']['ok']
    # a new /run; the generations stay, the new one beside them
    assert not run_marked(lab, 'r1')
    assert generations(lab, 'r1') == dict(links['r1'], **{
        'system-%d-link' % (gens['r1'] + 1): res['new']['path']})

    res = failed(found, 'r2', run)
    assert res['phase'] == 'reboot' and res['rolled_back'], res
    assert 'not on the new system %s' % res['new']['path'] in res['msg'], res
    assert 'is the boot default again' in res['msg'], res
    assert lab.booted('r2') == before['r2'] and lab.boot('r2') == before['r2']
    assert profile_generation(lab, 'r2') == gens['r2'], 'the failed generation is gone'
    assert generations(lab, 'r2') == links['r2'] and not run_marked(lab, 'r2')

    res = failed(found, 'r3', run)
    assert res['phase'] == 'reboot' and res['connection_lost'] and not res['rolled_back'], res
    assert ('did not come back with a new boot id within %ss: it went down'
            % NEVER_BACK_TIMEOUT) in res['msg'], res
    assert res['health_checks']['skipped'], res
    assert lab.power_state('r3') == 'off'
    # the host that never came back cost its timeout, not more. Measured on
    # the task's own clocks, not on the run, whose build and copy a busy
    # machine slows: the wait lasted the whole timeout and at most one look
    # (under 10 s) beyond it, and the reboot phase (the request, the wait)
    # ended within a minute after the timeout
    assert NEVER_BACK_TIMEOUT <= res['reboot']['waited'] < NEVER_BACK_TIMEOUT + 30, \
        res['reboot']
    reboot = [p for p in res['phases'] if p['name'] == 'reboot'][0]
    assert reboot['end'] - reboot['start'] < NEVER_BACK_TIMEOUT + 60, res['phases']
    print('never back: waited %ss, reboot phase %.1fs'
          % (res['reboot']['waited'], reboot['end'] - reboot['start']))

    res = ok(found, 'r4', run)
    assert res['switch_refused']['inhibitors'] == [
        {'name': 'dbus-implementation', 'old': 'dbus', 'new': 'broker'}], res
    assert res['reboot']['rebooted'] and lab.boot_id('r4') != ids['r4'], res
    assert "switchInhibitors" in res['reboot']['reasons'][-1], res
    assert lab.booted('r4') == lab.current_system('r4') == res['new']['path']

    res = ok(found, 'r5', run)
    assert not res['reboot']['rebooted'] and res['reboot']['needed'] is False, res
    assert lab.boot_id('r5') == ids['r5'] and lab.current_system('r5') == res['new']['path']
    assert run_marked(lab, 'r5')
    assert [p['name'] for p in res['phases']] == ['activate', 'checks', 'confirm'], res

    res = failed(found, 'r6', run)
    assert res['phase'] == 'activate' and not res['rolled_back'] and not res['changed'], res
    assert res['state'] == 'refused', res
    assert ("the switch was refused by the pre-switch check 'switchInhibitors' "
            "(dbus-implementation: dbus -> broker); nothing was changed") in res['msg'], res
    assert 'nix_reboot: when-needed' in res['msg'] and 'NIXOS_NO_CHECK=1' in res['msg'], res
    assert lab.current_system('r6') == lab.boot('r6') == before['r6']
    assert profile_generation(lab, 'r6') == gens['r6'] and lab.boot_id('r6') == ids['r6']

    outcomes = run.outcomes()
    assert outcomes['r1'] == outcomes['r4'] == 'switched (rebooted)', outcomes
    assert outcomes['r5'] == 'switched', outcomes
    assert outcomes['r3'].startswith('FAILED at reboot: '), outcomes
    systemd_part()
    # r1 runs the new system's service, started by the boot; r2's boot loader
    # fell back: the old system's service runs
    assert service_description(lab, 'r1') == 'lab r1 2: lab-r1.service'
    assert service_description(lab, 'r2') == 'lab r2 1: lab-r2.service'


LOCK = '/nix/var/nixdeploy/_nix_var_nix_profiles_system/lock'


def leave_stale_lock(lab, host):
    """A lock as a run taken before a reboot leaves it: its pid now belongs
    to another live process (the host's sshd), its boot is gone."""
    lab.run_in(host, ['sh', '-c', 'mkdir %s && echo %d >%s/pid && echo gone-boot >%s/boot && '
                      'echo 1-old >%s/run' % (LOCK, lab.pid(host), LOCK, LOCK, LOCK)])


def service_description(lab, host):
    """What systemd says of the host's lab service (its system's version)."""
    return on_host(lab, host, 'systemctl show -p Description --value lab-%s.service' % host)


# reboot: test_always_reboots_every_host_into_its_first_system; undo: test_nix_activate's rollbacks
# its calls: test_always_reboots_every_host_into_its_first_system
@pytest.mark.here_only
def test_unhealthy_after_reboot_forced_switch_and_a_stale_lock(deployed):
    """One run of four independent cases. r1 reboots into a system whose
    check fails and gets its previous boot default; r2 reboots into a
    healthy one; r5 finds a lock taken before a reboot whose pid now belongs
    to another live process (its sshd): the lock is stale, r5 switches
    without a reboot; r6 switches through changed inhibitors with
    nix_pre_switch_checks false (NIXOS_NO_CHECK=1)."""
    fleet = deployed
    lab = fleet.lab
    power_back(lab, ('r1', 'r2', 'r5', 'r6'))
    before = {h: lab.current_system(h) for h in ('r1', 'r2', 'r5', 'r6')}
    r1_boot = lab.boot('r1')
    gen = profile_generation(lab, 'r1')
    ids = {h: lab.boot_id(h) for h in ('r1', 'r2')}
    r1_service = service_description(lab, 'r1') if 'r1' in SYSTEMD else None
    fleet.set('r1', version='3', kernel_version='6.13.1', http_status=500)
    # a new kernel: r2 reboots, whether it runs its first system or r2 2
    fleet.set('r2', version='3', kernel_version='6.12.9')
    fleet.set('r5', version='3')
    leave_stale_lock(lab, 'r5')
    # an inhibitor r6 has never run: its switch would be refused
    fleet.set('r6', inhibitors={'dbus-implementation': 'forced'})
    fleet.host_vars('r6', nix_reboot='never', nix_pre_switch_checks=False)
    run = fleet.deploy('-l', 'r1,r2,r5,r6', '-e', 'nix_lock_timeout=20')
    assert run.rc != 0, run
    found = results(run)

    # scenario: test_the_same_host_unhealthy_after_its_reboot_gets_its_previous_boot_default
    res = failed(found, 'r1', run)
    assert res['phase'] == 'checks' and res['rolled_back'] and res['reboot']['rebooted'], res
    assert res['msg'].startswith("r1: rolled back: health check 'web' failed after 3 tries: "
                                 "HTTP 500 (wanted 200)"), res
    assert 'after the reboot' in res['msg'] and 'is the boot default again' in res['msg'], res
    # it runs what it booted until its next reboot, which brings back the previous one
    assert lab.booted('r1') == res['new']['path'] and lab.boot('r1') == r1_boot
    assert lab.boot_id('r1') == res['reboot']['boot_id_after'] != ids['r1']
    assert profile_generation(lab, 'r1') == gen
    assert [p['name'] for p in res['phases']] == ['activate', 'reboot', 'checks', 'rollback']
    assert run.outcomes()['r1'].startswith('FAILED'), run.outcomes()
    res = ok(found, 'r2', run)
    assert res['reboot']['rebooted'] and res['health_checks']['ok'], res
    assert lab.boot_id('r2') == res['reboot']['boot_id_after'] != ids['r2']
    assert lab.booted('r2') == lab.boot('r2') == res['new']['path']
    assert [p['name'] for p in res['phases']] == ['activate', 'reboot', 'checks'], res

    # scenario: test_forced_switch_and_a_lock_left_by_a_reboot
    five, six = ok(found, 'r5', run), ok(found, 'r6', run)
    assert five['changed'], five
    assert any('taken before a reboot' in line for line in five['log_tail']), five
    assert lab.current_system('r5') == five['new']['path'] != before['r5']
    assert 'switch_refused' not in six and lab.current_system('r6') == six['new']['path'], six
    assert six['new']['path'] != before['r6']

    lab.reboot('r1')
    assert lab.booted('r1') == r1_boot
    systemd_part()
    # systemd's next boot started the previous system's service, not r1 3's
    assert service_description(lab, 'r1') == r1_service != 'lab r1 3: lab-r1.service'


def awaits_confirmation(lab, host):
    """Whether a run on ``host`` awaits its confirmation (its status file)."""
    proc = lab.run_in(host, ['sh', '-c', 'cat /nix/var/nixdeploy/*/runs/*/status 2>/dev/null; '
                             'true'])
    return 'state=awaiting_confirmation' in proc.stdout.splitlines()


# a health check that SIGKILLs the runner of the run awaiting its
# confirmation (by the pid file of that run only), as the OOM killer would
RUNNER_KILLER = {'name': 'killer', 'retries': 0, 'command': (
    'for d in /nix/var/nixdeploy/*/runs/*/; do grep -qx state=awaiting_confirmation '
    '"$d/status" && kill -9 "$(cat "$d/pid")"; done; sleep 1')}


def test_hosts_that_lose_power_while_they_activate_or_await_their_confirmation(deployed):
    """r4 loses power (lab.power_cut: every process SIGKILLed at once, no
    shutdown) while its slow activation runs, after its runner set the
    profile; r6 loses power in its confirmation window, its new system
    running, held there by a slow health check; r2's runner is killed in its
    window without a reboot (its new system goes on running); r3 switches
    beside them and r5's activation fails. Nothing ran the runners' exits,
    so the look that finds a run dead (after the boot) ends it: r4 and r6
    are reported failed with that cause, each profile is back on what it
    boots and runs (r6's new system, never confirmed, was never its boot
    default: it boots the previous one), no lock is left for the next
    deploy, which switches them at once. r2 is rolled back by its task to
    the previous system, as its dead watchdog would have. r5 is rolled back
    as ever, r3 switched."""
    fleet = deployed
    lab = fleet.lab
    hosts = ('r2', 'r3', 'r4', 'r5', 'r6')
    power_back(lab, hosts)
    before = {h: lab.current_system(h) for h in hosts}
    generation = {h: profile_generation(lab, h) for h in hosts}
    boots = {h: len(lab.boot_ids(h)) for h in hosts}
    seen = len(history(lab, 'r4'))
    r6_vars = os.path.join(fleet.inventory, 'host_vars', 'r6.yml')
    r6_before = None
    if os.path.exists(r6_vars):
        with open(r6_vars) as handle:
            r6_before = handle.read()
    # a check that holds r6 in its confirmation window (its new system runs);
    # its switch goes through whatever inhibitors the tests before left on
    # it and on its new system (test_when_needed_fleet's broker), so that
    # this test stands alone
    held = {'name': 'held', 'command': 'sleep 600', 'timeout': 900, 'retries': 0}
    fleet.host_vars('r6', **dict(json.loads(r6_before or '{}'), nix_health_checks=[held],
                                 nix_pre_switch_checks=False))
    r2_vars = os.path.join(fleet.inventory, 'host_vars', 'r2.yml')
    assert not os.path.exists(r2_vars)
    # never a reboot: whatever kernel the tests before left r2 on, its
    # runner is killed in the window of a switch (this test stands alone)
    fleet.host_vars('r2', nix_health_checks=[RUNNER_KILLER], nix_reboot='never')
    fleet.set('r2', version='cut')
    fleet.set('r3', version='cut')
    fleet.set('r4', version='cut', behaviour='slow', slow_seconds=120)
    fleet.set('r5', version='cut', behaviour='fail')
    fleet.set('r6', version='cut')
    done = []
    deploy = threading.Thread(target=lambda: done.append(fleet.deploy('-l', ','.join(hosts))))
    deploy.start()
    try:
        wait_until(lambda: len(history(lab, 'r4')) > seen or not deploy.is_alive(), 600,
                   interval=LOOK, what='the activation of r4 to start')
        assert deploy.is_alive(), done
        assert profile_generation(lab, 'r4') == generation['r4'] + 1
        lab.power_cut('r4')
        wait_until(lambda: awaits_confirmation(lab, 'r6') or not deploy.is_alive(), 600,
                   interval=LOOK, what='r6 to await its confirmation')
        assert deploy.is_alive(), done
        assert lab.current_system('r6') != before['r6'] == lab.boot('r6')
        lab.power_cut('r6')
    finally:
        deploy.join(900)
        fleet.set('r4', behaviour='ok')
        fleet.set('r5', behaviour='ok')
        os.unlink(r2_vars)
        if r6_before is None:
            os.unlink(r6_vars)
        else:
            with open(r6_vars, 'w') as handle:
                handle.write(r6_before)
    run = done[0]
    assert run.rc != 0, run
    found = results(run)
    five = failed(found, 'r5', run)
    assert 'rolled back' in five['msg'], five['msg']
    assert lab.current_system('r5') == before['r5']
    assert profile_generation(lab, 'r5') == generation['r5'] and not locks(lab, 'r5')
    assert lab.current_system('r3') == ok(found, 'r3', run)['new']['path'] != before['r3']
    for host, state in (('r4', 'running'), ('r6', 'awaiting_confirmation')):
        res = failed(found, host, run)
        assert 'the activation run died in state %s (killed, or its host went down without a ' \
            'shutdown); /nix/var/nix/profiles/system is back at generation %d' \
            % (state, generation[host]) in res['msg'], (host, res['msg'], res.get('log_tail'))
        assert len(lab.boot_ids(host)) == boots[host] + 1
        assert lab.current_system(host) == lab.booted(host) == before[host]
        assert assert_consistent(lab, host) == before[host]
        assert profile_generation(lab, host) == generation[host] and not locks(lab, host)
    res = failed(found, 'r2', run)
    assert res['rolled_back'] is True, res
    assert res['msg'].startswith('r2: rolled back: the activation run died in state '
                                 'awaiting_confirmation'), res['msg']
    assert len(lab.boot_ids('r2')) == boots['r2']
    assert assert_consistent(lab, 'r2') == lab.current_system('r2') == before['r2']
    assert profile_generation(lab, 'r2') == generation['r2'] and not locks(lab, 'r2')
    assert not lab.run_in('r6', ['sh', '-c', 'ls /nix/var/nixdeploy/*/canary '
                                 '/nix/var/nixdeploy/*/rejected.* 2>/dev/null; true']).stdout
    # (through whatever inhibitors the tests before left on r6, as above)
    run = fleet.deploy('-l', 'r4,r6', '-e', json.dumps({'nix_pre_switch_checks': False}))
    assert run.rc == 0, run
    for host in ('r4', 'r6'):
        res = ok(results(run), host, run)
        assert lab.current_system(host) == res['new']['path'] != before[host]
        assert assert_consistent(lab, host) == res['new']['path']
        assert not any('stale lock' in line for line in res['log_tail']), res
