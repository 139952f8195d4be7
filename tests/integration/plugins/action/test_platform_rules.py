"""The platforms' own rules (docs/lab.md, "Rules of the real
tools"), each against the lab's fake systems that enforce it
(tests/lab/flake/activate.sh): NixOS's switch lock, NIXOS_INSTALL_BOOTLOADER,
pre-switch checks in dry runs, rolling back a `test`; nix-darwin's
activate-user and check; nix-on-droid's rollback through its generation
link; home-manager's nix-env on PATH, profile folder, backup extension and
dry run; re-running the activation of a current system.

One lab (``rules``) where hard cases sit beside easy ones in the same plays:
two NixOS hosts, a darwin, a nix-on-droid, a home-manager user whose ssh
PATH has nix (m1) and one whose PATH lacks it (h1: a home-manager profile on
a host shaped like nix-on-droid, as on macOS). Systems are built and copied
once; tests run in file order and each sets the state it starts from.
"""

import json
import os
import subprocess
import threading
import time

import pytest

from tests.collection import run_playbook
from tests.integration.plugins.action.activate_fixtures import (
    ATTR, NIX, NO_PYTHON, activate_task, copy_to)
from tests.lab import Lab
from tests.lab.fixtures import FleetFlake

pytestmark = pytest.mark.lab

LAB_NAME = 'rules'
HOSTS = [
    {'name': 'n1', 'persona': 'nixos'},
    {'name': 'n2', 'persona': 'nixos'},
    {'name': 'd1', 'persona': 'darwin'},
    {'name': 'a1', 'persona': 'nix-on-droid'},
    {'name': 'm1', 'persona': 'home-manager'},
    # home-manager for the app user of a host whose ssh PATH has no nix
    {'name': 'h1', 'persona': 'nix-on-droid'},
]
PLATFORM = {'n1': 'nixos', 'n2': 'nixos', 'd1': 'darwin', 'a1': 'nix-on-droid',
            'm1': 'home-manager', 'h1': 'home-manager'}
INHIBITORS = {'dbus-implementation': 'dbus'}
VARIANTS = {
    'n1': {'v1': {'inhibitors': INHIBITORS}, 'v2': {'inhibitors': INHIBITORS},
           'v3': {'inhibitors': INHIBITORS},
           'inh': {'inhibitors': {'dbus-implementation': 'broker'}},
           'fuo': {'inhibitors': INHIBITORS, 'behaviour': 'fail-units-once'}},
    'n2': {'v1': {}, 'v2': {}, 'v3': {}},
    'd1': {'v1': {'activate_user': 'legacy'}, 'v2': {'activate_user': 'legacy'},
           'dep': {'activate_user': 'deprecated'}},
    'a1': {'v1': {}, 'v2': {}},
    'm1': {'v1': {}, 'v2': {}, 'hf': {'home_file': '.lab-hm-file'}},
    'h1': {'v1': {}, 'v2': {}},
}
PROFILE = {'nixos': '/nix/var/nix/profiles/system', 'darwin': '/nix/var/nix/profiles/system',
           'nix-on-droid': '/nix/var/nix/profiles/nix-on-droid'}
XDG_PROFILES = '/home/app/.local/state/nix/profiles'
PER_USER = '/nix/var/nix/profiles/per-user/app'
SWITCH_LOCK = '/run/nixos/switch-to-configuration.lock'
# nix_activate's state folder for the system profile as root (see target/activate-session.sh)
NIXOS_STATE_DIR = '/nix/var/nixdeploy/_nix_var_nix_profiles_system'
# how long a test waits for an event on a host: generous, for a busy machine
# (a wait ends at its event, so this costs nothing when all is well)
LAB_WAIT = 300


class RulesLab:
    def __init__(self, lab, systems, workdir):
        self.lab, self.systems, self.workdir = lab, systems, workdir
        self.runs = 0

    def system(self, host, variant):
        return self.systems[(host, variant)]

    def play(self, tasks, hosts, extra=None, check=False):
        self.runs += 1
        inv = self.lab.ansible_inventory()
        for group in inv['all']['children'].values():
            for name in list(group['hosts']):
                if name not in hosts:
                    del group['hosts'][name]
                    continue
                group['hosts'][name].update(ansible_python_interpreter=NO_PYTHON,
                                            nix_platform=PLATFORM[name])
                group['hosts'][name].update((extra or {}).get(name, {}))
        playbook = [{'name': 'rules', 'hosts': 'all', 'gather_facts': False, 'tasks': tasks}]
        return run_playbook(playbook, inv, os.path.join(self.workdir, 'run%02d' % self.runs),
                            args=['--check'] if check else [], timeout=300)

    def deploy(self, variants, base=None, check=False, **params):
        """One play: optionally bring the hosts to ``base`` (no watchdog),
        then activate {host: variant} with ``params``."""
        params.setdefault('confirm_timeout', 10)
        extra = {h: {'wanted': self.system(h, v)} for h, v in variants.items()}
        tasks = []
        if base:
            for host in variants:
                extra[host]['base'] = self.system(host, base)
            tasks.append(activate_task('baseline', '{{ base }}', magic_rollback=False))
        tasks.append(activate_task('activate', '{{ wanted }}', **params))
        run = self.play(tasks, list(variants), extra=extra, check=check)
        if base:
            for host in variants:
                assert run.result('baseline', host)['status'] == 'ok', run
        return run

    def key(self, host):
        return {'nixos': 'system', 'darwin': 'system', 'nix-on-droid': 'nix-on-droid',
                'home-manager': 'home-manager-app'}[PLATFORM[host]]

    def active(self, host):
        return self.lab.active(host, self.key(host))

    def history(self, host):
        text = self.lab.read(host, '/nix/var/lab/history-%s' % self.key(host))
        return [line for line in (text or '').splitlines() if line.strip()]

    def profile_link(self, host):
        if PLATFORM[host] != 'home-manager':
            return PROFILE[PLATFORM[host]]
        # where home-manager's own activate looks: XDG if it exists, else per-user
        return (XDG_PROFILES if xdg_exists(self, host) else PER_USER) + '/home-manager'

    def profile(self, host):
        """(generation number, store path) of the host's profile, from the host."""
        link = self.profile_link(host)
        gen = self.lab.run_in(host, ['readlink', link], check=False).stdout.strip()
        path = self.lab.run_in(host, ['readlink', '-f', link], check=False).stdout.strip()
        number = gen.rsplit('-', 2)[-2] if gen else None
        return (int(number) if number and number.isdigit() else None), (path or None)

    def generations(self, host):
        folder, name = os.path.split(self.profile_link(host))
        out = self.lab.run_in(host, ['ls', folder], check=False).stdout.split()
        return sorted(int(f[len(name) + 1:-5]) for f in out
                      if f.startswith(name + '-') and f.endswith('-link'))


def ok(run, task, host):
    res = run.result(task, host)
    assert res['status'] == 'ok', (host, res, run.stdout[-3000:])
    return res['result']


def failed(run, task, host):
    res = run.result(task, host)
    assert res['status'] == 'failed', (host, res, run.stdout[-3000:])
    return res['result']


def build(flake):
    attrs, names = [], {}
    for host, variants in VARIANTS.items():
        for variant in variants:
            config = '%s-%s' % (host, variant)
            attrs.append('%s#%s' % (flake.ref, ATTR[PLATFORM[host]] % config))
    proc = subprocess.run(NIX + ['build', '--json', '--no-link'] + attrs, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [entry['outputs']['out'] for entry in json.loads(proc.stdout)]
    for host, variants in VARIANTS.items():
        for variant in variants:
            suffix = '-system-%s-%s-%s' % (host, variant, variant)
            names[(host, variant)] = [out for out in outs if out.endswith(suffix)][0]
    return names


@pytest.fixture(scope='module')
def rules(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('rules'))
    lab = Lab(LAB_NAME).up(HOSTS)
    try:
        configurations = {}
        for host, variants in VARIANTS.items():
            for variant, knobs in variants.items():
                configurations['%s-%s' % (host, variant)] = dict(
                    knobs, platform=PLATFORM[host], version=variant)
        flake = FleetFlake.for_lab(os.path.join(workdir, 'flake'), lab,
                                   configurations=configurations)
        systems = build(flake)
        for host in VARIANTS:
            if lab.host(host)['ssh_user'] != 'root':
                lab.add_nix_conf(host, 'trusted-users = root deploy app')
            copy_to(lab, host, [path for (name, _v), path in systems.items() if name == host])
        yield RulesLab(lab, systems, workdir)
    finally:
        lab.down()


class SwitchLockHolder:
    """Another switch (an auto-upgrade) holding NixOS's switch lock on a host
    until the test lets it go (``release``), however long the deploy takes to
    reach it: a thread that runs ``flock`` on the host and waits there for
    the file /run/nixos/hold to go. ``HOLD_LIMIT`` seconds bound it all the
    same, so a test that fails before its release leaves nothing behind."""

    HOLD_LIMIT = 900

    def __init__(self, rules, host):
        self.lab, self.host = rules.lab, host
        script = ('mkdir -p /run/nixos && rm -f /run/nixos/held && touch /run/nixos/hold && '
                  'exec flock %s sh -c \'touch /run/nixos/held; i=0; '
                  'while [ -e /run/nixos/hold ] && [ $i -lt %d ]; do sleep 0.2; i=$((i+1)); '
                  'done; rm -f /run/nixos/held /run/nixos/hold\'' % (SWITCH_LOCK, self.HOLD_LIMIT * 5))
        self.thread = threading.Thread(target=self.lab.run_in, args=(host, ['sh', '-c', script]),
                                       kwargs={'check': False, 'timeout': self.HOLD_LIMIT + 60})
        self.thread.daemon = True

    def take(self):
        """Start holding; returns once the lock is taken (the holder said so)."""
        self.thread.start()
        deadline = time.monotonic() + LAB_WAIT
        while self.lab.read(self.host, '/run/nixos/held') is None:
            assert self.thread.is_alive() and time.monotonic() < deadline, \
                'could not take the switch lock on %s' % self.host
            time.sleep(0.1)
        return self

    def release(self):
        """Let the lock go and wait until the holder has ended."""
        self.lab.run_in(self.host, ['rm', '-f', '/run/nixos/hold'], check=False)
        self.thread.join(LAB_WAIT)
        assert not self.thread.is_alive(), 'the switch lock holder on %s did not end' % self.host


def runner_states(rules, host):
    """{run: (state, reason)} of the nix_activate runs in the host's NixOS
    state folder, as each run's status file says now."""
    proc = rules.lab.run_in(host, ['sh', '-c', 'cd %s/runs 2>/dev/null && grep -H -e ^state= '
                                   '-e ^reason= */status' % NIXOS_STATE_DIR], check=False)
    found = {}
    for line in proc.stdout.splitlines():
        name, value = line.split(':', 1) if ':' in line else (line, '')
        key, value = value.split('=', 1) if '=' in value else (value, '')
        run = name.split('/')[0]
        state, reason = found.get(run, ('', ''))
        found[run] = (value, reason) if key == 'state' else (state, value)
    return found


def wait_until(predicate, thread=None, timeout=None):
    """Look until ``predicate()`` holds (returns its value) or ``timeout``
    (LAB_WAIT) seconds passed; a ``thread`` that ended first (the deploy is
    over) ends the wait too: the event will not come."""
    deadline = time.monotonic() + (timeout or LAB_WAIT)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline or (thread is not None and not thread.is_alive()):
            return value
        time.sleep(0.2)


# ---------------------------------------------------------------- NixOS
# its switch calls: test_nix_activate's test_switch_confirm_and_manual_rollback_on_every_persona
@pytest.mark.here_only
def test_nixos_install_bootloader_is_always_passed(rules):
    """NIXOS_INSTALL_BOOTLOADER is passed on every switch: 0, or 1 when asked
    (under magic rollback to both its parts: the test, and once confirmed
    the boot)."""
    extra = {'n1': {'boot': False}, 'n2': {'boot': True}}
    tasks = [activate_task('baseline', '{{ base }}', magic_rollback=False),
             activate_task('activate', '{{ wanted }}', install_bootloader='{{ boot }}',
                           confirm_timeout=10)]
    for host in extra:
        extra[host].update(base=rules.system(host, 'v1'), wanted=rules.system(host, 'v2'))
    run = rules.play(tasks, ['n1', 'n2'], extra=extra)
    for host, wanted in (('n1', '0'), ('n2', '1')):
        res = ok(run, 'activate', host)
        assert res['state'] == 'done' and res['confirmed'], res
        history = rules.history(host)
        assert [line.split(None, 1)[1] for line in history[-2:]] == [
            '%s %s install-bootloader=%s' % (goal, rules.system(host, 'v2'), wanted)
            for goal in ('test', 'boot')], history
        # the baseline (no watchdog: one switch) had it too, as 0
        assert history[-3].endswith('switch %s install-bootloader=0'
                                    % rules.system(host, 'v1')), history


def test_nixos_switch_lock_of_another_switch_is_waited_for(rules):
    """An auto-upgrade holding /run/nixos/switch-to-configuration.lock: n2's
    deploy waits for it and switches; n1 beside it switches at once. The
    other switch holds the lock until n2's runner has said that it waits for
    it (status waiting_lock), however long the deploy took to get there."""
    rules.deploy({'n1': 'v1', 'n2': 'v1'}, magic_rollback=False)
    before = set(runner_states(rules, 'n2'))
    holder = SwitchLockHolder(rules, 'n2').take()
    runs = []
    # lock_timeout: the wait ends at the release, this only bounds it
    deploy = threading.Thread(target=lambda: runs.append(
        rules.deploy({'n1': 'v2', 'n2': 'v2'}, lock_timeout=LAB_WAIT)))
    deploy.daemon = True
    deploy.start()
    try:
        def waiting():
            return [(run, reason) for run, (state, reason) in runner_states(rules, 'n2').items()
                    if run not in before and state == 'waiting_lock']
        seen = wait_until(waiting, deploy)
        assert seen, 'n2 never waited for the switch lock: %r' % runner_states(rules, 'n2')
        assert seen[0][1].startswith('another switch holds %s' % SWITCH_LOCK), seen
        # n1 did not wait for n2's lock: it is on v2 while n2 still waits
        switched = wait_until(lambda: rules.active('n1') == rules.system('n1', 'v2'), deploy)
        assert switched, 'n1 did not switch while n2 waited for the lock'
        # nothing ran on n2 while the other switch held the lock
        assert rules.active('n2') == rules.system('n2', 'v1')
        assert deploy.is_alive() and not runs, 'the deploy ended while the lock was held'
    finally:
        holder.release()
        deploy.join(LAB_WAIT + 300)
    (run,) = runs
    for host in ('n1', 'n2'):
        res = ok(run, 'activate', host)
        assert res['state'] == 'done' and res['confirmed'] and not res['rolled_back'], res
        assert rules.active(host) == rules.system(host, 'v2')
        assert rules.profile(host)[1] == rules.system(host, 'v2')
    assert any('another switch holds %s' % SWITCH_LOCK in line
               for line in ok(run, 'activate', 'n2')['log_tail'])


# its switch calls: test_nix_activate's every-persona test; the switch lock's wait is target sh
@pytest.mark.here_only
def test_nixos_switch_lock_held_too_long_fails_without_a_rollback(rules):
    """Held longer than lock_timeout: n2 fails saying so, nothing was
    activated or rolled back, no generation it had is gone."""
    rules.deploy({'n1': 'v1', 'n2': 'v1'}, magic_rollback=False)
    before = {host: (rules.profile(host), rules.generations(host)) for host in ('n1', 'n2')}
    history = len(rules.history('n2'))
    # held until the deploy is over: longer than lock_timeout however long
    # the deploy takes to reach the lock
    holder = SwitchLockHolder(rules, 'n2').take()
    try:
        run = rules.deploy({'n1': 'v3', 'n2': 'v3'}, lock_timeout=3)
    finally:
        holder.release()
    assert ok(run, 'activate', 'n1')['state'] == 'done'
    res = failed(run, 'activate', 'n2')
    assert not res['rolled_back'] and not res['activated'], res
    assert 'another switch held %s for more than 3s' % SWITCH_LOCK in res['msg'], res['msg']
    assert rules.profile('n2') == before['n2'][0]
    assert rules.generations('n2') == before['n2'][1]
    assert rules.active('n2') == rules.system('n2', 'v1')
    assert len(rules.history('n2')) == history  # no switch ran at all


# its check mode and dry-activate calls: test_nix_activate's test_check_mode_changes_nothing
@pytest.mark.here_only
def test_nixos_dry_runs_honour_pre_switch_checks(rules):
    """n1's new system changes a switch inhibitor: its dry run (check mode,
    goal dry-activate) is refused like the switch, and
    pre_switch_checks=false lets the dry run through; n2 changes none."""
    rules.deploy({'n1': 'v1', 'n2': 'v1'}, magic_rollback=False)
    before = {host: rules.profile(host) for host in ('n1', 'n2')}
    variants = {'n1': 'inh', 'n2': 'v2'}
    run = rules.deploy(variants, check=True, pre_switch_checks=False)
    for host in variants:
        res = ok(run, 'activate', host)
        assert res['changed'] and not res['activated'], res
        assert any('would activate' in line for line in res['log_tail']), res
    run = rules.deploy(variants, goal='dry-activate', pre_switch_checks=False)
    for host in variants:
        res = ok(run, 'activate', host)
        assert res['changed'] is False and res['would_change'] is True, res
    run = rules.deploy(variants, goal='dry-activate')
    res = failed(run, 'activate', 'n1')
    assert "refused by the pre-switch check 'switchInhibitors'" in res['msg'], res['msg']
    assert res['switch_refused']['inhibitors'] == [
        {'name': 'dbus-implementation', 'old': 'dbus', 'new': 'broker'}]
    assert ok(run, 'activate', 'n2')['would_change'] is True
    for host in variants:
        assert rules.profile(host) == before[host]
        assert rules.active(host) == rules.system(host, 'v1')


# its rollback calls: test_nix_activate's test_switch_confirm_and_manual_rollback_on_every_persona
@pytest.mark.here_only
def test_nixos_rolling_back_a_test_activation_leaves_the_profile(rules):
    """goal test, then a rollback with goal test: the profile's current
    generation is active again; the profile and the boot entry never moved."""
    rules.deploy({'n1': 'v1', 'n2': 'v1'}, magic_rollback=False)
    before = {host: (rules.profile(host), rules.generations(host)) for host in ('n1', 'n2')}
    run = rules.deploy({'n1': 'v2', 'n2': 'v2'}, goal='test')
    for host in ('n1', 'n2'):
        assert ok(run, 'activate', host)['confirmed']
        assert rules.active(host) == rules.system(host, 'v2')
    run = rules.play([{'name': 'rollback', 'ignore_errors': True, 'nixdeploy.fleet.nix_activate': {
        'state': 'rolled_back', 'goal': 'test'}}], ['n1', 'n2'])
    for host in ('n1', 'n2'):
        res = ok(run, 'rollback', host)
        assert res['rolled_back'] and res['new']['path'] == rules.system(host, 'v1'), res
        assert rules.active(host) == rules.system(host, 'v1')
        assert (rules.profile(host), rules.generations(host)) == before[host]
        assert rules.lab.boot(host, 'system') == rules.system(host, 'v1')
        assert rules.history(host)[-1].split()[1:3] == ['test', rules.system(host, 'v1')]


# its switch and failed-activation calls: test_nix_activate's every-persona and failure tests
@pytest.mark.here_only
def test_reactivate_repairs_a_host_left_with_failed_units(rules):
    """n1's units failed (kept with auto_rollback off): a second deploy
    changes nothing by default; reactivate runs switch-to-configuration
    again, which restarts them. n2 beside it is simply re-run."""
    rules.deploy({'n1': 'v1', 'n2': 'v1'}, magic_rollback=False)
    run = rules.deploy({'n1': 'fuo', 'n2': 'v2'}, auto_rollback=False)
    assert 'exited with code 4' in failed(run, 'activate', 'n1')['msg']
    assert ok(run, 'activate', 'n2')['state'] == 'done'
    history = {host: len(rules.history(host)) for host in ('n1', 'n2')}
    run = rules.deploy({'n1': 'fuo', 'n2': 'v2'})
    for host in ('n1', 'n2'):
        res = ok(run, 'activate', host)
        assert res['state'] == 'unchanged' and not res['changed'], res
        assert len(rules.history(host)) == history[host]
    run = rules.deploy({'n1': 'fuo', 'n2': 'v2'}, reactivate=True)
    for host, variant in (('n1', 'fuo'), ('n2', 'v2')):
        res = ok(run, 'activate', host)
        assert res['state'] == 'done' and res['changed'] and 're-activated' in res['msg'], res
        # the switch's two parts (magic rollback), with nothing to confirm
        assert len(rules.history(host)) == history[host] + 2
        assert [line.split()[1:3] for line in rules.history(host)[-2:]] == [
            [goal, rules.system(host, variant)] for goal in ('test', 'boot')]
        assert rules.active(host) == rules.system(host, variant)


# ---------------------------------------------------------------- nix-darwin
def test_darwin_runs_activate_user_as_the_user_first_unless_deprecated(rules):
    """A system built before 2025 (activate-user) switches, with
    activate-user run as the ssh user before activate (as root, by
    become); the 2025 stub marked deprecated is not run; check mode is
    darwin-rebuild check (checkActivation=1). a1 beside it, plain."""
    run = rules.deploy({'d1': 'v2', 'a1': 'v2'}, base='v1')
    res = ok(run, 'activate', 'd1')
    assert res['state'] == 'done' and res['confirmed'], res
    assert rules.lab.read('d1', '/nix/var/lab/darwin-activate-user').split() == [
        rules.system('d1', 'v2'), 'deploy']
    assert ok(run, 'activate', 'a1')['confirmed']
    run = rules.deploy({'d1': 'dep'})
    assert ok(run, 'activate', 'd1')['state'] == 'done'
    assert rules.active('d1') == rules.system('d1', 'dep')
    # rolled back: activate-user of what the profile goes back to runs too
    run = rules.play([{'name': 'rollback', 'ignore_errors': True,
                       'nixdeploy.fleet.nix_activate': {'state': 'rolled_back'}}], ['d1'])
    assert ok(run, 'rollback', 'd1')['new']['path'] == rules.system('d1', 'v2')
    assert rules.active('d1') == rules.system('d1', 'v2')
    history = len(rules.history('d1'))
    run = rules.deploy({'d1': 'v1'}, check=True)
    res = ok(run, 'activate', 'd1')
    assert res['changed'] and any('would activate' in line for line in res['log_tail']), res
    assert rules.active('d1') == rules.system('d1', 'v2') and len(rules.history('d1')) == history


# ---------------------------------------------------------------- nix-on-droid
# its rollbacks through the generation link: test_nix_activate's every-persona and failure tests
@pytest.mark.here_only
def test_nix_on_droid_rollback_switches_back_through_the_generation_link(rules):
    """Rolling back runs nix-on-droid-(N-1)-link/activate, which switches
    the profile back to that generation: no new generation appears."""
    rules.deploy({'a1': 'v1'}, magic_rollback=False)
    run = rules.deploy({'a1': 'v2'})
    assert ok(run, 'activate', 'a1')['confirmed']
    first = rules.profile('a1')[0] - 1
    gens = rules.generations('a1')
    assert rules.profile('a1')[1] == rules.system('a1', 'v2') and first in gens
    run = rules.play([{'name': 'rollback', 'ignore_errors': True,
                       'nixdeploy.fleet.nix_activate': {'state': 'rolled_back'}}], ['a1'])
    res = ok(run, 'rollback', 'a1')
    assert res['new'] == {'generation': first, 'path': rules.system('a1', 'v1')}, res
    assert rules.profile('a1') == (first, rules.system('a1', 'v1'))
    assert rules.generations('a1') == gens  # back, not a new generation
    assert rules.active('a1') == rules.system('a1', 'v1')
    # a check that fails rolls back the same way (the watchdog's rollback)
    run = rules.deploy({'a1': 'v2'}, health_checks=[{'name': 'no', 'command': 'false',
                                                     'retries': 0}])
    res = failed(run, 'activate', 'a1')
    assert res['rolled_back'] and res['phase'] == 'checks', res
    assert rules.profile('a1') == (first, rules.system('a1', 'v1'))
    assert max(rules.generations('a1')) <= max(gens)


# ---------------------------------------------------------------- home-manager
def xdg_exists(rules, host):
    return rules.lab.run_in(host, ['test', '-d', XDG_PROFILES], check=False).returncode == 0


def test_home_manager_finds_nix_and_its_profile_folder(rules):
    """h1's ssh PATH has no nix: the collection finds it elsewhere and puts
    that folder on PATH for activate, which takes nix-env from PATH. m1 has
    lost its profile folders: `nix-env -q` first lets Nix make its own (Nix
    2.14+: the XDG one), and the profile goes where activate looks; where
    Nix makes none, the task says so and changes nothing."""
    rules.lab.run_in('m1', ['rm', '-rf', '/home/app/.local/state/nix', PER_USER])
    run = rules.deploy({'m1': 'v1'}, magic_rollback=False)
    res = run.result('activate', 'm1')
    if xdg_exists(rules, 'm1'):
        assert res['status'] == 'ok', res
        assert res['result']['profile'] == XDG_PROFILES + '/home-manager'
    else:
        assert res['status'] == 'failed', res
        assert 'no profile folder for home-manager: none of %s, %s exists' % (
            XDG_PROFILES, PER_USER) in res['result']['msg'], res
        assert rules.lab.run_in('m1', ['test', '-e', PER_USER], check=False).returncode != 0
        # the older Nix's folder, as its installer makes it: home-manager uses it
        rules.lab.run_in('m1', ['install', '-d', '-o', 'app', '-g', 'app', PER_USER])
    # h1's user has a home-manager profile folder; only nix is off PATH there
    rules.lab.run_in('h1', ['mkdir', '-p', XDG_PROFILES], user='app')
    run = rules.deploy({'h1': 'v2', 'm1': 'v2'}, base='v1')
    for host in ('h1', 'm1'):
        res = ok(run, 'activate', host)
        assert res['state'] == 'done' and res['confirmed'], res
        assert res['profile'] == rules.profile_link(host), res
        assert rules.profile(host)[1] == rules.system(host, 'v2')
        assert rules.active(host) == rules.system(host, 'v2')
    run = rules.play([{'name': 'rollback', 'ignore_errors': True,
                       'nixdeploy.fleet.nix_activate': {'state': 'rolled_back'}}], ['h1', 'm1'])
    for host in ('h1', 'm1'):
        assert ok(run, 'rollback', host)['new']['path'] == rules.system(host, 'v1')
        assert rules.active(host) == rules.system(host, 'v1')


# its dry run and rollback calls: test_nix_activate's check mode and failing-activation tests
@pytest.mark.here_only
def test_home_manager_backup_extension_and_dry_run(rules):
    """A file in the way of one the configuration manages: the activation
    fails (and rolls back) without a backup extension, and moves it aside
    with one; check mode is home-manager's own DRY_RUN=1."""
    rules.deploy({'m1': 'v1', 'h1': 'v1'}, magic_rollback=False)
    rules.lab.run_in('m1', ['sh', '-c', 'echo mine >/home/app/.lab-hm-file'], user='app')
    # the dry run finds the file in the way too, as home-manager's does
    run = rules.deploy({'m1': 'hf', 'h1': 'v2'}, check=True)
    res = failed(run, 'activate', 'm1')
    assert any('is in the way' in line for line in res['log_tail']), res
    res = ok(run, 'activate', 'h1')
    assert res['changed'] and any('would activate' in line for line in res['log_tail']), res
    run = rules.deploy({'m1': 'hf'}, check=True, backup_extension='bak')
    res = ok(run, 'activate', 'm1')
    assert res['changed'] and any('would activate' in line for line in res['log_tail']), res
    assert rules.lab.read('m1', '/home/app/.lab-hm-file').strip() == 'mine'
    run = rules.deploy({'m1': 'hf', 'h1': 'v2'})
    res = failed(run, 'activate', 'm1')
    # the activation's own line that tells why follows the cause in msg (issue 61)
    assert res['rolled_back'] and any('is in the way' in line
                                      for line in res['msg'].split('\n')[1:]), res
    assert ok(run, 'activate', 'h1')['confirmed']
    assert rules.active('m1') == rules.system('m1', 'v1')
    run = rules.deploy({'m1': 'hf'}, backup_extension='bak')
    assert ok(run, 'activate', 'm1')['confirmed']
    assert rules.lab.read('m1', '/home/app/.lab-hm-file.bak').strip() == 'mine'
    link = rules.lab.run_in('m1', ['readlink', '/home/app/.lab-hm-file']).stdout.strip()
    assert link == rules.system('m1', 'hf') + '/lab-info'
