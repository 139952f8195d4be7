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

A test's deploys, rollbacks and dry runs, which followed each other, are the
tasks of one play in the same order (``RulesLab.steps``): one ansible-playbook
start-up for the test. Where the test reads a host between two of them, a
task of the play reads the same files at that point (``probe_step``,
``probed``); its reads after the run are the test process's own.
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

    def play(self, tasks, hosts, extra=None):
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
                            timeout=300)

    def steps(self, steps, hosts):
        """One run of one play whose tasks are ``steps`` (``activate_step``,
        ``rollback_step``, ``raw_step``, ``probe_step``), each on the hosts it
        names (skipped on the others): a test's cases that followed each
        other as runs of their own, in the same order on one
        ansible-playbook start-up. Where the test read a host between two
        runs, a probe step reads the same files at that point (``probed``)."""
        extra = {host: {'lab_state_key': self.key(host),
                        'lab_profile_link': PROFILE.get(PLATFORM[host], '')} for host in hosts}
        tasks = []
        for number, (task, per_host) in enumerate(steps):
            var = 'step%02d' % number
            if 'systems' in per_host:
                per_host = {host: self.system(host, variant)
                            for host, variant in per_host['systems'].items()}
            for host, value in per_host.items():
                extra[host][var] = value
            task = json.loads(json.dumps(task).replace('@VAR@', var))
            task['when'] = '%s is defined' % var + (
                ' and (%s)' % task['when'] if 'when' in task else '')
            tasks.append(task)
        return self.play(tasks, hosts, extra=extra)

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


def activate_step(name, variants, check=False, **params):
    """A task that activates {host: variant} with ``params``; ``check``: in
    check mode (the task's own ``check_mode``, which nix_activate reads as
    it reads ``--check``: ``self._task.check_mode``)."""
    params.setdefault('confirm_timeout', 10)
    task = activate_task(name, '{{ @VAR@ }}', **params)
    if check:
        task['check_mode'] = True
    return task, {'systems': variants}


def rollback_step(hosts, name='rollback', **params):
    args = dict(params, state='rolled_back')
    return ({'name': name, 'ignore_errors': True, 'nixdeploy.fleet.nix_activate': args},
            {host: True for host in hosts})


def raw_step(name, hosts, script, root=False):
    """A shell command on ``hosts`` (the lab's hosts have no Python), as
    their ssh user (over the connection the play's other tasks use; no
    become) or as root."""
    task = {'name': name, 'raw': script, 'ignore_errors': True,
            'vars': {'ansible_become': False}}
    if root:
        task['vars']['ansible_user'] = 'root'
    return task, {host: True for host in hosts}


# What RulesLab's active, boot, history, profile and generations read from
# the host, printed in sections; the profile link as profile_link finds it
PROBE = (
    'k={{ lab_state_key }}; l={{ lab_profile_link }}\n'
    'if [ -z "$l" ]; then if [ -d %(xdg)s ]; then l=%(xdg)s/home-manager;'
    ' else l=%(per_user)s/home-manager; fi; fi\n'
    'echo @active; cat /nix/var/lab/$k/active 2>/dev/null; echo\n'
    'echo @boot; cat /nix/var/lab/$k/boot 2>/dev/null; echo\n'
    'echo @history; cat /nix/var/lab/history-$k 2>/dev/null; echo\n'
    'echo @gen; readlink "$l"; echo @path; readlink -f "$l"\n'
    'echo @name; basename "$l"; echo @ls; ls -1 "$(dirname "$l")" 2>/dev/null; echo @end\n'
    % {'xdg': XDG_PROFILES, 'per_user': PER_USER})


def probe_step(name, hosts):
    """Reads the hosts' state at this point of the play (``probed``)."""
    return raw_step('read ' + name, hosts, PROBE)


def probed(run, name, host):
    """What a probe step read on ``host``, as RulesLab's readers return it:
    {'active', 'boot', 'history', 'profile', 'generations'}."""
    res = run.result('read ' + name, host)
    assert res['status'] == 'ok', (host, name, res)
    sections, current = {}, None
    for line in res['result']['stdout'].splitlines():
        line = line.strip()
        if line.startswith('@'):
            current = sections.setdefault(line[1:], [])
        elif current is not None and line:
            current.append(line)
    assert 'end' in sections, (host, name, res)
    gen = (sections['gen'] or [''])[0]
    number = gen.rsplit('-', 2)[-2] if gen else None
    link = sections['name'][0]
    found = sorted(int(entry[len(link) + 1:-5]) for entry in ' '.join(sections['ls']).split()
                   if entry.startswith(link + '-') and entry.endswith('-link'))
    return {'active': ' '.join(sections['active']) or None,
            'boot': ' '.join(sections['boot']) or None,
            'history': sections['history'],
            'profile': ((int(number) if number and number.isdigit() else None),
                        (sections['path'] or [None])[0]),
            'generations': found}


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
    same, so a test that fails before its release leaves nothing behind.

    ``arm`` starts it waiting for the deploy's own signal (``take_step``, a
    task of the play between the baseline and the activation): it takes the
    lock then, and that task ends once it holds it, so the activation that
    follows meets the lock held, as when the lock was taken between two
    runs."""

    HOLD_LIMIT = 900

    def __init__(self, rules, host):
        self.lab, self.host = rules.lab, host
        script = ('i=0; while [ ! -e /run/nixos/go ] && [ -e /run/nixos/hold ] && [ $i -lt %d ]; '
                  'do sleep 0.1; i=$((i+1)); done; [ -e /run/nixos/go ] || exit 0; '
                  'exec flock %s sh -c \'touch /run/nixos/held; i=0; '
                  'while [ -e /run/nixos/hold ] && [ $i -lt %d ]; do sleep 0.2; i=$((i+1)); '
                  'done; rm -f /run/nixos/held /run/nixos/hold /run/nixos/go\''
                  % (LAB_WAIT * 10, SWITCH_LOCK, self.HOLD_LIMIT * 5))
        self.thread = threading.Thread(
            target=self.lab.run_in, args=(host, ['sh', '-c', script]),
            kwargs={'check': False, 'timeout': LAB_WAIT + self.HOLD_LIMIT + 60})
        self.thread.daemon = True

    def arm(self):
        """Start the holder, waiting for take_step's signal."""
        self.lab.run_in(self.host, ['sh', '-c', 'mkdir -p /run/nixos && rm -f /run/nixos/held '
                                    '/run/nixos/go && touch /run/nixos/hold'])
        self.thread.start()
        return self

    def take_step(self):
        """The play's task that has the holder take the lock and ends once
        it holds it (fails when it did not within LAB_WAIT)."""
        return raw_step('take the switch lock', [self.host], (
            'touch /run/nixos/go; i=0; while [ ! -e /run/nixos/held ] && [ $i -lt %d ]; '
            'do sleep 0.1; i=$((i+1)); done; test -e /run/nixos/held' % (LAB_WAIT * 10)),
            root=True)

    def release(self):
        """Let the lock go and wait until the holder has ended."""
        self.lab.run_in(self.host, ['rm', '-f', '/run/nixos/hold'], check=False)
        self.thread.join(LAB_WAIT)
        assert not self.thread.is_alive(), 'the switch lock holder on %s did not end' % self.host
        self.lab.run_in(self.host, ['rm', '-f', '/run/nixos/go'], check=False)


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
    it (status waiting_lock), however long the deploy took to get there.
    One run: the baseline, the other switch taking the lock, the deploy."""
    before = set(runner_states(rules, 'n2'))
    holder = SwitchLockHolder(rules, 'n2').arm()
    runs = []
    # lock_timeout: the wait ends at the release, this only bounds it
    deploy = threading.Thread(target=lambda: runs.append(rules.steps([
        activate_step('baseline', {'n1': 'v1', 'n2': 'v1'}, magic_rollback=False),
        holder.take_step(),
        activate_step('activate', {'n1': 'v2', 'n2': 'v2'}, lock_timeout=LAB_WAIT)],
        ['n1', 'n2'])))
    deploy.daemon = True
    deploy.start()
    try:
        def waiting():
            return [(run, reason) for run, (state, reason) in runner_states(rules, 'n2').items()
                    if run not in before and state == 'waiting_lock']
        seen = wait_until(waiting, deploy)
        assert seen, 'n2 never waited for the switch lock: %r %r' % (
            runner_states(rules, 'n2'), runs)
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
    ok(run, 'take the switch lock', 'n2')
    for host in ('n1', 'n2'):
        ok(run, 'baseline', host)
        res = ok(run, 'activate', host)
        assert res['state'] == 'done' and res['confirmed'] and not res['rolled_back'], (host, res)
        assert rules.active(host) == rules.system(host, 'v2'), host
        assert rules.profile(host)[1] == rules.system(host, 'v2'), host
    assert any('another switch holds %s' % SWITCH_LOCK in line
               for line in ok(run, 'activate', 'n2')['log_tail'])


# its switch calls: test_nix_activate's every-persona test; the switch lock's wait is target sh
@pytest.mark.here_only
def test_nixos_switch_lock_held_too_long_fails_without_a_rollback(rules):
    """Held longer than lock_timeout: n2 fails saying so, nothing was
    activated or rolled back, no generation it had is gone. One run: the
    baseline, the other switch taking the lock, the deploy."""
    # held until the deploy is over: longer than lock_timeout however long
    # the deploy takes to reach the lock
    holder = SwitchLockHolder(rules, 'n2').arm()
    try:
        run = rules.steps([
            activate_step('baseline', {'n1': 'v1', 'n2': 'v1'}, magic_rollback=False),
            probe_step('before', ['n2']),
            holder.take_step(),
            activate_step('activate', {'n1': 'v3', 'n2': 'v3'}, lock_timeout=3)], ['n1', 'n2'])
    finally:
        holder.release()
    ok(run, 'take the switch lock', 'n2')
    for host in ('n1', 'n2'):
        ok(run, 'baseline', host)
    assert ok(run, 'activate', 'n1')['state'] == 'done'
    res = failed(run, 'activate', 'n2')
    assert not res['rolled_back'] and not res['activated'], res
    assert 'another switch held %s for more than 3s' % SWITCH_LOCK in res['msg'], res['msg']
    before = probed(run, 'before', 'n2')
    assert rules.profile('n2') == before['profile']
    assert rules.generations('n2') == before['generations']
    assert rules.active('n2') == rules.system('n2', 'v1')
    assert len(rules.history('n2')) == len(before['history'])  # no switch ran at all


# its check mode and dry-activate calls: test_nix_activate's test_check_mode_changes_nothing
@pytest.mark.here_only
def test_nixos_dry_runs_honour_pre_switch_checks(rules):
    """n1's new system changes a switch inhibitor: its dry run (check mode,
    goal dry-activate) is refused like the switch, and
    pre_switch_checks=false lets the dry run through; n2 changes none.
    One run: the baseline, then each dry run as a task of its own."""
    variants = {'n1': 'inh', 'n2': 'v2'}
    run = rules.steps([
        activate_step('baseline', {'n1': 'v1', 'n2': 'v1'}, magic_rollback=False),
        probe_step('before', ['n1', 'n2']),
        activate_step('check', variants, check=True, pre_switch_checks=False),
        activate_step('dry', variants, goal='dry-activate', pre_switch_checks=False),
        activate_step('dry checked', variants, goal='dry-activate')], ['n1', 'n2'])
    for host in variants:
        ok(run, 'baseline', host)
        res = ok(run, 'check', host)
        assert res['changed'] and not res['activated'], (host, res)
        assert any('would activate' in line for line in res['log_tail']), (host, res)
        res = ok(run, 'dry', host)
        assert res['changed'] is False and res['would_change'] is True, (host, res)
    res = failed(run, 'dry checked', 'n1')
    assert "refused by the pre-switch check 'switchInhibitors'" in res['msg'], res['msg']
    assert res['switch_refused']['inhibitors'] == [
        {'name': 'dbus-implementation', 'old': 'dbus', 'new': 'broker'}]
    assert ok(run, 'dry checked', 'n2')['would_change'] is True
    for host in variants:
        assert rules.profile(host) == probed(run, 'before', host)['profile'], host
        assert rules.active(host) == rules.system(host, 'v1'), host


# its rollback calls: test_nix_activate's test_switch_confirm_and_manual_rollback_on_every_persona
@pytest.mark.here_only
def test_nixos_rolling_back_a_test_activation_leaves_the_profile(rules):
    """goal test, then a rollback with goal test: the profile's current
    generation is active again; the profile and the boot entry never moved.
    One run: baseline, activation, rollback, the host read between them."""
    hosts = ['n1', 'n2']
    run = rules.steps([
        activate_step('baseline', {h: 'v1' for h in hosts}, magic_rollback=False),
        probe_step('before', hosts),
        activate_step('activate', {h: 'v2' for h in hosts}, goal='test'),
        probe_step('tested', hosts),
        rollback_step(hosts, goal='test')], hosts)
    for host in hosts:
        ok(run, 'baseline', host)
        assert ok(run, 'activate', host)['confirmed'], host
        assert probed(run, 'tested', host)['active'] == rules.system(host, 'v2'), host
        res = ok(run, 'rollback', host)
        assert res['rolled_back'] and res['new']['path'] == rules.system(host, 'v1'), (host, res)
        assert rules.active(host) == rules.system(host, 'v1'), host
        before = probed(run, 'before', host)
        assert (rules.profile(host), rules.generations(host)) == (
            before['profile'], before['generations']), host
        assert rules.lab.boot(host, 'system') == rules.system(host, 'v1'), host
        assert rules.history(host)[-1].split()[1:3] == ['test', rules.system(host, 'v1')], host


# its switch and failed-activation calls: test_nix_activate's every-persona and failure tests
@pytest.mark.here_only
def test_reactivate_repairs_a_host_left_with_failed_units(rules):
    """n1's units failed (kept with auto_rollback off): a second deploy
    changes nothing by default; reactivate runs switch-to-configuration
    again, which restarts them. n2 beside it is simply re-run. One run:
    each deploy a task, the history read between them."""
    hosts = ['n1', 'n2']
    variants = {'n1': 'fuo', 'n2': 'v2'}
    run = rules.steps([
        activate_step('baseline', {h: 'v1' for h in hosts}, magic_rollback=False),
        activate_step('failing', variants, auto_rollback=False),
        probe_step('failed', hosts),
        activate_step('again', variants),
        probe_step('again', hosts),
        activate_step('reactivate', variants, reactivate=True)], hosts)
    for host in hosts:
        ok(run, 'baseline', host)
    assert 'exited with code 4' in failed(run, 'failing', 'n1')['msg']
    assert ok(run, 'failing', 'n2')['state'] == 'done'
    history = {host: len(probed(run, 'failed', host)['history']) for host in hosts}
    for host in hosts:
        res = ok(run, 'again', host)
        assert res['state'] == 'unchanged' and not res['changed'], (host, res)
        assert len(probed(run, 'again', host)['history']) == history[host], host
    for host, variant in variants.items():
        res = ok(run, 'reactivate', host)
        assert res['state'] == 'done' and res['changed'] and 're-activated' in res['msg'], \
            (host, res)
        # the switch's two parts (magic rollback), with nothing to confirm
        assert len(rules.history(host)) == history[host] + 2, host
        assert [line.split()[1:3] for line in rules.history(host)[-2:]] == [
            [goal, rules.system(host, variant)] for goal in ('test', 'boot')], host
        assert rules.active(host) == rules.system(host, variant), host


# ---------------------------------------------------------------- nix-darwin
def test_darwin_runs_activate_user_as_the_user_first_unless_deprecated(rules):
    """A system built before 2025 (activate-user) switches, with
    activate-user run as the ssh user before activate (as root, by
    become); the 2025 stub marked deprecated is not run; check mode is
    darwin-rebuild check (checkActivation=1). a1 beside it, plain. One run:
    d1's deploys, rollback and check each a task, the host read between."""
    user_file = '/nix/var/lab/darwin-activate-user'
    run = rules.steps([
        activate_step('baseline', {'d1': 'v1', 'a1': 'v1'}, magic_rollback=False),
        activate_step('activate', {'d1': 'v2', 'a1': 'v2'}),
        raw_step('activate-user', ['d1'], 'cat %s' % user_file),
        activate_step('deprecated', {'d1': 'dep'}),
        probe_step('deprecated', ['d1']),
        rollback_step(['d1']),
        probe_step('rolled back', ['d1']),
        activate_step('check', {'d1': 'v1'}, check=True)], ['d1', 'a1'])
    for host in ('d1', 'a1'):
        ok(run, 'baseline', host)
    res = ok(run, 'activate', 'd1')
    assert res['state'] == 'done' and res['confirmed'], res
    assert ok(run, 'activate-user', 'd1')['stdout'].split() == [
        rules.system('d1', 'v2'), 'deploy']
    assert ok(run, 'activate', 'a1')['confirmed']
    assert ok(run, 'deprecated', 'd1')['state'] == 'done'
    assert probed(run, 'deprecated', 'd1')['active'] == rules.system('d1', 'dep')
    # rolled back: activate-user of what the profile goes back to runs too
    assert ok(run, 'rollback', 'd1')['new']['path'] == rules.system('d1', 'v2')
    rolled_back = probed(run, 'rolled back', 'd1')
    assert rolled_back['active'] == rules.system('d1', 'v2')
    res = ok(run, 'check', 'd1')
    assert res['changed'] and any('would activate' in line for line in res['log_tail']), res
    assert rules.active('d1') == rules.system('d1', 'v2')
    assert len(rules.history('d1')) == len(rolled_back['history'])


# ---------------------------------------------------------------- nix-on-droid
# its rollbacks through the generation link: test_nix_activate's every-persona and failure tests
@pytest.mark.here_only
def test_nix_on_droid_rollback_switches_back_through_the_generation_link(rules):
    """Rolling back runs nix-on-droid-(N-1)-link/activate, which switches
    the profile back to that generation: no new generation appears. One
    run: each deploy and the rollback a task, the host read between."""
    run = rules.steps([
        activate_step('baseline', {'a1': 'v1'}, magic_rollback=False),
        activate_step('activate', {'a1': 'v2'}),
        probe_step('activated', ['a1']),
        rollback_step(['a1']),
        probe_step('rolled back', ['a1']),
        activate_step('checks', {'a1': 'v2'}, health_checks=[
            {'name': 'no', 'command': 'false', 'retries': 0}])], ['a1'])
    ok(run, 'baseline', 'a1')
    assert ok(run, 'activate', 'a1')['confirmed']
    activated = probed(run, 'activated', 'a1')
    first = activated['profile'][0] - 1
    gens = activated['generations']
    assert activated['profile'][1] == rules.system('a1', 'v2') and first in gens
    res = ok(run, 'rollback', 'a1')
    assert res['new'] == {'generation': first, 'path': rules.system('a1', 'v1')}, res
    rolled_back = probed(run, 'rolled back', 'a1')
    assert rolled_back['profile'] == (first, rules.system('a1', 'v1'))
    assert rolled_back['generations'] == gens  # back, not a new generation
    assert rolled_back['active'] == rules.system('a1', 'v1')
    # a check that fails rolls back the same way (the watchdog's rollback)
    res = failed(run, 'checks', 'a1')
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
    Nix makes none, the task says so and changes nothing. One run: m1's
    first deploy is the baseline of the deploy and rollback that follow;
    where it found no folder, the older Nix's folder is made and m1's
    baseline runs again, all in the play (the tasks that tell the two apart
    are skipped on the other path)."""
    rules.lab.run_in('m1', ['rm', '-rf', '/home/app/.local/state/nix', PER_USER])
    # h1's user has a home-manager profile folder; only nix is off PATH there
    rules.lab.run_in('h1', ['mkdir', '-p', XDG_PROFILES], user='app')
    hosts = ['h1', 'm1']
    baseline = activate_step('baseline', {h: 'v1' for h in hosts}, magic_rollback=False)
    baseline[0]['register'] = 'first_baseline'
    folder = raw_step('older folder', ['m1'], 'install -d -o app -g app %s' % PER_USER, root=True)
    again = activate_step('baseline again', {'m1': 'v1'}, magic_rollback=False)
    for step in (folder, again):
        step[0]['when'] = 'first_baseline is failed'
    run = rules.steps([
        baseline,
        raw_step('folders', ['m1'], 'for f in %s %s; do [ -e "$f" ] && echo yes || echo no; done'
                 % (XDG_PROFILES, PER_USER)),
        # the older Nix's folder, as its installer makes it: home-manager uses it
        folder, again,
        activate_step('activate', {h: 'v2' for h in hosts}),
        probe_step('activated', hosts),
        rollback_step(hosts)], hosts)
    res = run.result('baseline', 'm1')
    xdg, per_user = ok(run, 'folders', 'm1')['stdout'].split()
    if xdg == 'yes':
        assert res['status'] == 'ok', res
        assert res['result']['profile'] == XDG_PROFILES + '/home-manager'
        assert run.result('baseline again', 'm1')['status'] == 'skipped'
    else:
        assert res['status'] == 'failed', res
        assert 'no profile folder for home-manager: none of %s, %s exists' % (
            XDG_PROFILES, PER_USER) in res['result']['msg'], res
        assert per_user == 'no'
        ok(run, 'older folder', 'm1')
        ok(run, 'baseline again', 'm1')
    ok(run, 'baseline', 'h1')
    for host in hosts:
        res = ok(run, 'activate', host)
        assert res['state'] == 'done' and res['confirmed'], (host, res)
        assert res['profile'] == rules.profile_link(host), (host, res)
        activated = probed(run, 'activated', host)
        assert activated['profile'][1] == rules.system(host, 'v2'), host
        assert activated['active'] == rules.system(host, 'v2'), host
        assert ok(run, 'rollback', host)['new']['path'] == rules.system(host, 'v1'), host
        assert rules.active(host) == rules.system(host, 'v1'), host


# its dry run and rollback calls: test_nix_activate's check mode and failing-activation tests
@pytest.mark.here_only
def test_home_manager_backup_extension_and_dry_run(rules):
    """A file in the way of one the configuration manages: the activation
    fails (and rolls back) without a backup extension, and moves it aside
    with one; check mode is home-manager's own DRY_RUN=1. One run: each
    deploy a task, the file written and the host read between them."""
    hosts = ['m1', 'h1']
    run = rules.steps([
        activate_step('baseline', {h: 'v1' for h in hosts}, magic_rollback=False),
        # as app (m1's ssh user), as the test wrote it before
        raw_step('in the way', ['m1'], 'echo mine >/home/app/.lab-hm-file'),
        # the dry run finds the file in the way too, as home-manager's does
        activate_step('dry', {'m1': 'hf', 'h1': 'v2'}, check=True),
        activate_step('dry backup', {'m1': 'hf'}, check=True, backup_extension='bak'),
        raw_step('after dry runs', ['m1'], 'cat /home/app/.lab-hm-file'),
        activate_step('no backup', {'m1': 'hf', 'h1': 'v2'}),
        probe_step('refused', ['m1']),
        activate_step('backup', {'m1': 'hf'}, backup_extension='bak')], hosts)
    for host in hosts:
        ok(run, 'baseline', host)
    ok(run, 'in the way', 'm1')
    res = failed(run, 'dry', 'm1')
    assert any('is in the way' in line for line in res['log_tail']), res
    res = ok(run, 'dry', 'h1')
    assert res['changed'] and any('would activate' in line for line in res['log_tail']), res
    res = ok(run, 'dry backup', 'm1')
    assert res['changed'] and any('would activate' in line for line in res['log_tail']), res
    assert ok(run, 'after dry runs', 'm1')['stdout'].strip() == 'mine'
    res = failed(run, 'no backup', 'm1')
    # the activation's own line that tells why follows the cause in msg (issue 61)
    assert res['rolled_back'] and any('is in the way' in line
                                      for line in res['msg'].split('\n')[1:]), res
    assert ok(run, 'no backup', 'h1')['confirmed']
    assert probed(run, 'refused', 'm1')['active'] == rules.system('m1', 'v1')
    assert ok(run, 'backup', 'm1')['confirmed']
    assert rules.lab.read('m1', '/home/app/.lab-hm-file.bak').strip() == 'mine'
    link = rules.lab.run_in('m1', ['readlink', '/home/app/.lab-hm-file']).stdout.strip()
    assert link == rules.system('m1', 'hf') + '/lab-info'
