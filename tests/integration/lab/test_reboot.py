"""The lab's faithful reboot and the NixOS fixture's boot parts, switch
inhibitors, httpd and systemctl: what the health-check and reboot tests of
the collection stand on. The hard cases run beside a host that must not be
touched."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.lab import LabError
from tests.lab.fixtures import FleetFlake

pytestmark = pytest.mark.lab

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
# h1 reboots; h2 (NixOS) and h3 (darwin) stand beside it and must not notice
HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'darwin'}]
INHIBITORS = {'dbus-implementation': 'dbus'}
# h1's systems, by variant: knobs of its configuration
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
    """h1's variants and h2's system, built on the controller and copied."""
    root = tmp_path_factory.mktemp('flakes')
    attrs = {}
    for variant, knobs in VARIANTS.items():
        flake = FleetFlake.for_lab(str(root / variant), lab,
                                   configurations={'h1': dict(knobs, platform='nixos')})
        attrs[variant] = '%s#%s' % (flake.ref, flake.attr('h1'))
    attrs['h2'] = '%s#%s' % (flake.ref, flake.attr('h2'))
    proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + ['--no-link', '--json']
                          + list(attrs.values()), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    outs = [entry['outputs']['out'] for entry in json.loads(proc.stdout)]
    found = dict(zip(attrs, outs))
    for variant in VARIANTS:
        copy_to(lab, 'h1', found[variant])
    copy_to(lab, 'h2', found['h2'])
    return found


def copy_to(lab, host, path):
    uri = 'ssh-ng://root@%s' % lab.host(host)['address']
    env = dict(os.environ, NIX_SSHOPTS=' '.join(lab.ssh_args()))
    proc = subprocess.run(NIX[:1] + ['copy'] + NIX[1:] + ['--no-check-sigs', '--to', uri, path],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr


def activate(lab, host, path, goal, env=''):
    """What a deploy does on NixOS: set the system profile, then switch."""
    return lab.ssh(host, 'nix-env -p /nix/var/nix/profiles/system --set %s && %s %s/bin/'
                   'switch-to-configuration %s' % (path, env, path, goal),
                   user='root', check=False)


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def bystanders(lab):
    """What must not change on h2 and h3 while h1 reboots."""
    return {h: (lab.boot_id(h), lab.pid(h), lab.ssh(h, 'true', user='root').returncode)
            for h in ('h2', 'h3')}


def test_switch_runs_the_system_its_httpd_and_its_units(lab, systems):
    v1 = systems['v1']
    assert activate(lab, 'h1', v1, 'switch').returncode == 0
    assert activate(lab, 'h2', systems['h2'], 'switch').returncode == 0
    assert lab.current_system('h1') == v1 and lab.active('h1') == v1
    assert http(lab.http_url('h1')) == (200, 'lab h1 1 answers 200\n')
    units = lab.ssh('h1', 'systemctl is-active sshd.service; echo rc=$?; '
                    'systemctl is-active lab-broken; echo rc=$?', user='root').stdout.split()
    assert units == ['active', 'rc=0', 'failed', 'rc=3']
    # a system without http_status runs no httpd
    assert lab.current_system('h2') == systems['h2']
    with pytest.raises(OSError):
        urllib.request.urlopen(lab.http_url('h2'), timeout=5)
    # the boot parts reboot detection compares
    links = lab.ssh('h1', 'for l in kernel initrd kernel-modules systemd; do readlink %s/$l; '
                    'done' % v1, user='root').stdout.split()
    assert links[0].endswith('-lab-linux-6.6.1/bzImage') and links[3].endswith('-lab-systemd-255')


def test_reboot_boots_the_boot_default_with_a_new_boot_id(lab, systems):
    v1, v2 = systems['v1'], systems['v2']
    before = bystanders(lab)
    ids = lab.boot_ids('h1')
    assert activate(lab, 'h1', v2, 'boot').returncode == 0
    # boot changes nothing that runs: v1 and its httpd still answer
    assert lab.current_system('h1') == v1 and lab.boot('h1') == v2
    lab.ssh('h1', 'setsid sleep 600 </dev/null >/dev/null 2>&1 & touch /run/marker',
            user='root')
    old_pid = lab.pid('h1')
    # asked from inside, as the collection does; the session may be cut
    proc = lab.ssh('h1', 'systemctl reboot', user='root', check=False)
    assert proc.returncode in (0, 255), proc.stderr
    lab.wait_up('h1', boots=len(ids) + 1)
    new_id = lab.boot_id('h1')
    assert new_id not in ids
    assert lab.ssh('h1', 'cat /proc/sys/kernel/random/boot_id',
                   user='root').stdout.strip() == new_id
    # every process of the old boot is gone, /run is fresh, /nix stays
    assert lab.pid('h1') != old_pid and not os.path.exists('/proc/%d/ns' % old_pid)
    left = lab.run_in('h1', ['sh', '-c', 'ps -eo args | grep -c "[s]leep 600"'], check=False)
    assert left.stdout.strip() == '0'
    assert lab.run_in('h1', ['test', '-e', '/run/marker'], check=False).returncode != 0
    assert lab.booted('h1') == v2 and lab.current_system('h1') == v2 and lab.active('h1') == v2
    assert 'boot-activation %s' % v2 in lab.read('h1', '/nix/var/lab/history-system')
    # v2's own httpd, started by the boot activation
    assert http(lab.http_url('h1')) == (500, 'lab h1 2 answers 500\n')
    kernel = lab.ssh('h1', 'readlink /run/booted-system/kernel', user='root').stdout
    assert '-lab-linux-6.12.9/' in kernel
    assert bystanders(lab) == before


def test_switch_inhibitors_refuse_with_the_real_messages(lab, systems):
    v2, v3 = systems['v2'], systems['v3']
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
    v1, v2 = systems['v1'], systems['v2']
    before = bystanders(lab)
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
    assert v1 != v2 and bystanders(lab) == before


def generation_before_current(lab, host):
    profiles = '/nix/var/nix/profiles'
    current = lab.run_in(host, ['readlink', profiles + '/system']).stdout.strip()
    numbers = sorted(int(name.split('-')[1]) for name in
                     lab.run_in(host, ['ls', profiles]).stdout.split()
                     if name.startswith('system-') and name.endswith('-link'))
    before = max(n for n in numbers if n < int(current.split('-')[1]))
    return lab.run_in(host, ['readlink', '%s/system-%d-link' % (profiles, before)]).stdout.strip()
