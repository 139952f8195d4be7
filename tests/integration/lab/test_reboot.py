"""The lab's faithful reboot and the NixOS fixture's boot parts, switch
inhibitors, httpd and units: what the health-check and reboot tests of the
collection stand on. The hard cases run beside hosts that must not be
touched.

The switch and reboot cases run on two hosts: h1, a plain lab host (the
lab's systemctl answers for its units, the lab's supervisor reboots it), and
s1, which boots a real systemd as PID 1 (tests/lab/nspawn.py: real units, a
failed one systemd lists, a real reboot). Where systemd hosts cannot run
(``nspawn.unsupported()``: the current stack's tree) s1 is not in the lab and
its cases skip with that reason; h1's run on every stack. The switch
inhibitors (the fixture's own check) and the power settings (a systemd
host's keeper honours them too: plugins/action/test_reboot.py's fleet) are
h1's only.
"""

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.lab import LabError, nspawn
from tests.lab.fixtures import FleetFlake

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
SYSTEMD_UNSUPPORTED = nspawn.unsupported()
# h1 and s1 (systemd) reboot; h2 (NixOS) and h3 (darwin) stand beside them
# and must not notice, as neither of the two notices the other's reboot
HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'darwin'}]
if SYSTEMD_UNSUPPORTED is None:
    HOSTS.append({'name': 's1', 'persona': 'nixos', 'systemd': True})
# each case on a plain host and on a systemd host
REBOOTING = pytest.mark.parametrize('host', [
    'h1', pytest.param('s1', marks=pytest.mark.skipif(SYSTEMD_UNSUPPORTED is not None,
                                                      reason=str(SYSTEMD_UNSUPPORTED)))])
INHIBITORS = {'dbus-implementation': 'dbus'}
# the rebooting hosts' systems, by variant: knobs of their configurations
VARIANTS = {
    'v1': {'http_status': 200, 'failed_units': ['lab-broken.service'],
           'inhibitors': INHIBITORS},
    'v2': {'version': '2', 'kernel_version': '6.12.9', 'http_status': 500,
           'inhibitors': INHIBITORS},
    'v3': {'version': '3', 'kernel_version': '6.12.9',
           'inhibitors': {'dbus-implementation': 'broker'}},
}


@pytest.fixture(scope='module')
def lab(make_lab):
    return make_lab('rbtlab', hosts=HOSTS)


@pytest.fixture(scope='module')
def systems(lab, tmp_path_factory):
    """The rebooting hosts' variants ({host: {variant: path}}) and h2's system
    (``systems['h2']``), built on the controller and copied."""
    root = tmp_path_factory.mktemp('flakes')
    rebooting = [h for h in ('h1', 's1') if h in lab.hosts]
    attrs = []
    for variant, knobs in VARIANTS.items():
        flake = FleetFlake.for_lab(str(root / variant), lab, configurations={
            h: dict(knobs, platform='nixos') for h in rebooting})
        attrs += ['%s#%s' % (flake.ref, flake.attr(host)) for host in rebooting]
    attrs.append('%s#%s' % (flake.ref, flake.attr('h2')))
    proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + ['--no-link', '--json'] + attrs,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # by name (nixos-system-<host>-<version>): nix need not answer in order
    outs = {entry['outputs']['out'].split('-', 1)[1]: entry['outputs']['out']
            for entry in json.loads(proc.stdout)}
    found = {'h2': outs['nixos-system-h2-1']}
    for host in rebooting:
        found[host] = {variant: outs['nixos-system-%s-%s' % (host, knobs.get('version', '1'))]
                       for variant, knobs in VARIANTS.items()}
        copy_to(lab, host, *found[host].values())
    copy_to(lab, 'h2', found['h2'])
    return found


def copy_to(lab, host, *paths):
    # the host's own nix dir: darwin's is not on a non-login shell's PATH
    uri = 'ssh-ng://root@%s?remote-program=%s/nix-daemon' % (
        lab.host(host)['address'], lab.host(host)['nix_dir'])
    env = dict(os.environ, NIX_SSHOPTS=' '.join(lab.ssh_args()))
    proc = subprocess.run(NIX[:1] + ['copy'] + NIX[1:] + ['--no-check-sigs', '--to', uri]
                          + list(paths), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr


def activate(lab, host, path, goal, env=''):
    """What a deploy does on NixOS: set the system profile (switch and boot,
    as nixos-rebuild), then switch-to-configuration."""
    profile = 'nix-env -p /nix/var/nix/profiles/system --set %s && ' % path
    return lab.ssh(host, '%s%s %s/bin/switch-to-configuration %s' % (
        profile if goal in ('switch', 'boot') else '', env, path, goal),
        user='root', check=False)


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def bystanders(lab, host):
    """What must not change on the other hosts while ``host`` reboots."""
    return {h: (lab.boot_id(h), lab.pid(h), lab.ssh(h, 'true', user='root').returncode)
            for h in sorted(lab.hosts) if h != host}


def unit_states(lab, host, *units):
    """[state, rc, ...] of ``systemctl is-active`` for each unit, on the host."""
    return lab.ssh(host, ' '.join('systemctl is-active %s; echo $?;' % u for u in units),
                   user='root').stdout.split()


def failed_units(lab, host):
    """What a real systemd lists as failed (systemd hosts only)."""
    return lab.ssh(host, 'systemctl --failed --plain --no-legend', user='root').stdout


def generations(lab, host):
    return sorted(name for name in lab.run_in(host, ['ls', '/nix/var/nix/profiles']).stdout.split()
                  if name.startswith('system-'))


@REBOOTING
def test_switch_runs_the_system_its_httpd_and_its_units(lab, systems, host):
    v1, v2 = systems[host]['v1'], systems[host]['v2']
    systemd = lab.host(host)['systemd']
    assert activate(lab, host, v1, 'switch').returncode == 0
    if host == 'h1':
        assert activate(lab, 'h2', systems['h2'], 'switch').returncode == 0
    assert lab.current_system(host) == v1 and lab.active(host) == v1
    assert http(lab.http_url(host)) == (200, 'lab %s 1 answers 200\n' % host)
    # sshd and the system's own service run; failed_units failed
    assert unit_states(lab, host, 'sshd.service', 'lab-%s.service' % host, 'lab-broken') == \
        ['active', '0', 'active', '0', 'failed', '3']
    if systemd:
        # a real failed unit: systemd lists it and says why
        assert 'lab-broken.service' in failed_units(lab, host)
        assert lab.ssh(host, 'systemctl show -p Result --value lab-broken.service',
                       user='root').stdout.strip() == 'exit-code'
        # a good system clears it (switch-to-configuration forgets failed
        # units, then restarts): a unit no system runs is inactive; back on
        # v1 it fails again
        assert activate(lab, host, v2, 'test').returncode == 0
        assert unit_states(lab, host, 'lab-broken', 'lab-%s.service' % host) == \
            ['inactive', '3', 'active', '0']
        assert 'lab-broken' not in failed_units(lab, host)
        assert activate(lab, host, v1, 'test').returncode == 0
        assert unit_states(lab, host, 'lab-broken') == ['failed', '3']
        assert lab.current_system(host) == v1 and lab.boot(host) == v1
    # a system without http_status runs no httpd
    if host == 'h1':
        assert lab.current_system('h2') == systems['h2']
        with pytest.raises(OSError):
            urllib.request.urlopen(lab.http_url('h2'), timeout=5)
    # the boot parts reboot detection compares
    links = lab.ssh(host, 'for l in kernel initrd kernel-modules systemd; do readlink %s/$l; '
                    'done' % v1, user='root').stdout.split()
    assert links[0].endswith('-lab-linux-6.6.1/bzImage') and links[3].endswith('-lab-systemd-255')


def sleepers(lab, host):
    """How many ``sleep 600`` run in the host (not in the other hosts)."""
    return sum(1 for argv in lab.commands(host)
               if argv and os.path.basename(argv[0]) == 'sleep' and argv[1:] == ['600'])


@REBOOTING
def test_reboot_boots_the_boot_default_with_a_new_boot_id(lab, systems, host):
    v1, v2 = systems[host]['v1'], systems[host]['v2']
    before = bystanders(lab, host)
    ids = lab.boot_ids(host)
    assert activate(lab, host, v2, 'boot').returncode == 0
    # boot changes nothing that runs: v1 and its httpd still answer
    assert lab.current_system(host) == v1 and lab.boot(host) == v2
    assert http(lab.http_url(host))[0] == 200
    gens = generations(lab, host)
    # the ssh session returns only once the sleeper runs in a session of its
    # own: a child that has not yet called setsid when the session ends is
    # hung up with it, and the count below would read 0
    lab.ssh(host, 'setsid sleep 600 </dev/null >/dev/null 2>&1 & pid=$!; '
            'touch /run/marker; n=0; '
            'until [ "$(tr "\\0" " " </proc/$pid/cmdline)" = "sleep 600 " ]; do '
            'n=$((n + 1)); [ $n -lt 100 ] || exit 1; sleep 0.1; done',
            user='root')
    assert sleepers(lab, host) == 1
    old_pid = lab.pid(host)
    # asked from inside, as the collection does; the session may be cut
    proc = lab.ssh(host, 'systemctl reboot', user='root', check=False)
    assert proc.returncode in (0, 255), proc.stderr
    lab.wait_up(host, boots=len(ids) + 1)
    new_id = lab.boot_id(host)
    assert new_id not in ids
    assert lab.ssh(host, 'cat /proc/sys/kernel/random/boot_id',
                   user='root').stdout.strip() == new_id
    # every process of the old boot is gone, /run is fresh, /nix stays
    assert lab.pid(host) != old_pid and not os.path.exists('/proc/%d/ns' % old_pid)
    assert sleepers(lab, host) == 0
    assert lab.run_in(host, ['test', '-e', '/run/marker'], check=False).returncode != 0
    assert generations(lab, host) == gens
    assert lab.booted(host) == v2 and lab.current_system(host) == v2 and lab.active(host) == v2
    assert 'boot-activation %s' % v2 in lab.read(host, '/nix/var/lab/history-system')
    # v2's own httpd and service, started by the boot activation; v1's
    # failed unit is gone with the old boot
    assert http(lab.http_url(host)) == (500, 'lab %s 2 answers 500\n' % host)
    assert unit_states(lab, host, 'lab-%s.service' % host) == ['active', '0']
    assert lab.ssh(host, 'systemctl is-failed --quiet lab-broken', user='root',
                   check=False).returncode == 1
    if lab.host(host)['systemd']:
        assert lab.ssh(host, 'cat /proc/1/comm', user='root').stdout.strip() == 'systemd'
        assert 'lab-broken' not in failed_units(lab, host)
    kernel = lab.ssh(host, 'readlink /run/booted-system/kernel', user='root').stdout
    assert '-lab-linux-6.12.9/' in kernel
    assert bystanders(lab, host) == before


def test_switch_inhibitors_refuse_with_the_real_messages(lab, systems):
    v2, v3 = systems['h1']['v2'], systems['h1']['v3']
    history = lab.read('h1', '/nix/var/lab/history-system')
    refused = activate(lab, 'h1', v3, 'switch')
    assert refused.returncode == 1
    for line in ('There are changes to critical components of the system:',
                 'dbus-implementation : dbus -> broker',
                 "Pre-switch check 'switchInhibitors' failed", 'Pre-switch checks failed'):
        assert line in refused.stderr, refused.stderr
    # nothing changed on the host (the profile is the caller's business)
    assert lab.current_system('h1') == v2 and lab.active('h1') == v2 and lab.boot('h1') == v2
    assert lab.read('h1', '/nix/var/lab/history-system') == history
    assert activate(lab, 'h1', v3, 'test').returncode == 1
    # boot is not checked; NIXOS_NO_CHECK=1 overrides
    assert activate(lab, 'h1', v3, 'boot').returncode == 0
    assert activate(lab, 'h1', v3, 'switch', env='NIXOS_NO_CHECK=1').returncode == 0
    assert lab.current_system('h1') == v3
    # back to v2 for the next test (same inhibitors as v3 now runs: forced)
    assert activate(lab, 'h1', v2, 'switch', env='NIXOS_NO_CHECK=1').returncode == 0


def test_a_host_that_does_not_come_back_and_a_boot_loader_fallback(lab, systems):
    v1, v2 = systems['h1']['v1'], systems['h1']['v2']
    before = bystanders(lab, 'h1')
    lab.set_power('h1', comes_back=False, down_seconds=0.2)
    boots = len(lab.boot_ids('h1'))
    lab.reboot('h1', wait=False)
    with pytest.raises(LabError):
        lab.wait_up('h1', timeout=4, boots=boots + 1)
    assert lab.power_state('h1') == 'off'
    assert lab.ssh('h1', 'true', user='root', check=False, timeout=20).returncode == 255
    # powered on with a boot loader that falls back to the entry before v2
    lab.set_power('h1', comes_back=True, fallback=True)
    lab.power_on('h1')
    assert lab.boot('h1') == v2
    assert lab.booted('h1') == generation_before_current(lab, 'h1') != v2
    lab.set_power('h1', fallback=False)
    lab.reboot('h1')
    assert lab.booted('h1') == v2
    assert v1 != v2 and bystanders(lab, 'h1') == before


# a process that, given a SIGTERM, leaves a mark in the host's /nix (kept
# across boots) before it ends, as a run's exit puts things back
TERM_MARK = '/nix/var/lab/termed'
TRAPS_TERM = ('setsid sh -c \'trap "touch %s; exit 0" TERM; while :; do sleep 0.1; done\' '
              '</dev/null >/dev/null 2>&1 & echo started' % TERM_MARK)


def test_a_reboot_terms_first_and_a_power_cut_kills_at_once(lab):
    """The two ways down the collection's runs meet: a reboot is a shutdown
    (SIGTERM, then SIGKILL to what is left 2 s later), so a process's exit
    runs; a power cut (lab.power_cut) SIGKILLs every process at once, so
    none does. A systemd host has no power cut (its keeper has none)."""
    before = bystanders(lab, 'h1')
    for down, termed in ((lab.reboot, True), (lab.power_cut, False)):
        lab.run_in('h1', ['rm', '-f', TERM_MARK])
        ids = lab.boot_ids('h1')
        assert lab.ssh('h1', TRAPS_TERM, user='root').stdout.strip() == 'started'
        down('h1')
        assert lab.boot_id('h1') not in ids and len(lab.boot_ids('h1')) == len(ids) + 1
        marked = lab.run_in('h1', ['test', '-e', TERM_MARK], check=False).returncode == 0
        assert marked == termed, (down.__name__, marked)
    lab.run_in('h1', ['rm', '-f', TERM_MARK])
    assert bystanders(lab, 'h1') == before
    if SYSTEMD_UNSUPPORTED is None:
        with pytest.raises(LabError, match='s1 boots systemd'):
            lab.power_cut('s1')


def generation_before_current(lab, host):
    profiles = '/nix/var/nix/profiles'
    current = lab.run_in(host, ['readlink', profiles + '/system']).stdout.strip()
    numbers = sorted(int(name.split('-')[1]) for name in
                     lab.run_in(host, ['ls', profiles]).stdout.split()
                     if name.startswith('system-') and name.endswith('-link'))
    before = max(n for n in numbers if n < int(current.split('-')[1]))
    return lab.run_in(host, ['readlink', '%s/system-%d-link' % (profiles, before)]).stdout.strip()


def build_one(flake, host):
    # --json: Nix 2.8 has no --print-out-paths
    argv = NIX[:1] + ['build'] + NIX[1:] + ['--no-link', '--json',
                                            '%s#%s' % (flake.ref, flake.attr(host))]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]['outputs']['out']


def test_darwin_links_what_it_activated_and_boots_its_profile(lab, tmp_path):
    """nix-darwin: a finished activate makes its system current
    (/run/current-system), a failed one leaves the link as it was; a boot
    makes the system profile's system current, as launchd's activate-system
    does, whatever the last activation did. The NixOS hosts stand beside it."""
    good = build_one(FleetFlake.for_lab(str(tmp_path / 'good'), lab, configurations={
        'h3': {'platform': 'darwin', 'version': '7'}}), 'h3')
    bad = build_one(FleetFlake.for_lab(str(tmp_path / 'bad'), lab, configurations={
        'h3': {'platform': 'darwin', 'version': '8', 'behaviour': 'fail'}}), 'h3')
    copy_to(lab, 'h3', good, bad)
    before = bystanders(lab, 'h3')

    def switch(path):  # darwin-rebuild switch: the profile, then activate as root
        return lab.ssh('h3', '%s/nix-env -p /nix/var/nix/profiles/system --set %s && %s/activate'
                       % (lab.host('h3')['nix_dir'], path, path), user='root', check=False)

    assert switch(good).returncode == 0
    assert lab.current_system('h3') == good and lab.active('h3') == good
    proc = switch(bad)
    assert proc.returncode == 1 and 'failed on purpose' in proc.stderr
    # the failed activate never got to its last step: the good one is current
    assert lab.current_system('h3') == good and lab.active('h3') == good
    # a dry run (darwin-rebuild check) links nothing either
    assert lab.ssh('h3', 'checkActivation=1 %s/activate' % good, user='root').returncode == 0
    assert lab.current_system('h3') == good
    # the profile holds the failed system: the boot makes IT current
    boots = len(lab.boot_ids('h3'))
    lab.reboot('h3')
    assert len(lab.boot_ids('h3')) == boots + 1
    assert lab.current_system('h3') == bad and lab.active('h3') == bad
    assert 'boot-activation %s' % bad in lab.read('h3', '/nix/var/lab/history-system')
    # back to the good system, as a rollback would leave it: a boot keeps it
    assert switch(good).returncode == 0
    lab.reboot('h3')
    assert lab.current_system('h3') == good and lab.active('h3') == good
    assert bystanders(lab, 'h3') == before
