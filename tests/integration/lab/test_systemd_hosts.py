"""Lab hosts that boot a real systemd as PID 1 (tests/lab/nspawn.py), beside a
plain host: systemd, systemd-run and nix-daemon answer over ssh, a reboot is
a real one (inside or from outside: new boot id, fresh /run, /nix kept, the
boot default activated before sshd), power settings hold, everything Lab
offers works, and down leaves nothing behind."""

import json
import os
import socket
import subprocess
import time
import uuid

import pytest

from tests.lab import Lab, LabError
from tests.lab.lab import index_held
from tests.lab import nspawn
from tests.lab.fixtures import FleetFlake

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(nspawn.unsupported() is not None, reason=str(nspawn.unsupported())),
]

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
# s1 boots systemd; p1 is a plain host beside it that must not notice
HOSTS = [{'name': 's1', 'persona': 'nixos', 'systemd': True},
         {'name': 'p1', 'persona': 'nixos'}]


@pytest.fixture(scope='module')
def lab(make_lab):
    return make_lab('sdlab', hosts=HOSTS)


@pytest.fixture(scope='module')
def system(lab, tmp_path_factory):
    """s1's fixture NixOS system, built on the controller and copied to s1
    over ssh-ng (nix-daemon --stdio inside the container)."""
    flake = FleetFlake.for_lab(str(tmp_path_factory.mktemp('flake')), lab,
                               configurations={'s1': {'platform': 'nixos', 'http_status': 200}})
    proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + ['--no-link', '--json',
                          '%s#%s' % (flake.ref, flake.attr('s1'))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    path = json.loads(proc.stdout)[0]['outputs']['out']
    env = dict(os.environ, NIX_SSHOPTS=' '.join(lab.ssh_args()))
    copy = subprocess.run(NIX[:1] + ['copy'] + NIX[1:] + [
        '--no-check-sigs', '--to', 'ssh-ng://root@%s' % lab.host('s1')['address'], path],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        check=False)
    assert copy.returncode == 0, copy.stderr
    return path


def test_the_option_is_checked_before_anything_starts(monkeypatch):
    with pytest.raises(LabError, match='persona nixos'):
        Lab('sdbad').up([{'name': 'x', 'persona': 'darwin', 'systemd': True}])
    monkeypatch.setattr(nspawn, 'NSPAWN', 'systemd-nspawn-not-installed')
    with pytest.raises(LabError, match='systemd-container'):
        Lab('sdbad').up([{'name': 'x', 'persona': 'nixos', 'systemd': True}])
    assert Lab('sdbad').state is None


def test_pid1_is_systemd_and_the_plain_host_is_unchanged(lab):
    assert lab.ssh('s1', 'cat /proc/1/comm').stdout.strip() == 'systemd'
    state = lab.ssh('s1', 'systemctl is-system-running --wait', check=False).stdout.strip()
    failed = lab.ssh('s1', 'systemctl --failed --no-legend --plain', check=False).stdout
    assert state == 'running', failed
    for unit in ('ssh.service', 'nix-daemon.socket', 'lab-boot.service'):
        assert lab.ssh('s1', 'systemctl is-active %s' % unit).stdout.strip() == 'active'
    assert lab.ssh('s1', 'hostname').stdout.strip() == 's1'
    assert lab.ssh('s1', 'test -d /run/systemd/system').returncode == 0
    # the same address scheme and bridge as every host; the plain host has no systemd
    assert lab.host('s1')['address'].rsplit('.', 1)[0] == lab.host('p1')['address'].rsplit('.', 1)[0]
    assert lab.ssh('p1', 'test -d /run/systemd/system', check=False).returncode != 0
    # ssh as every lab user, strict host keys; deploy has sudo
    for user in ('root', 'deploy', 'app'):
        assert lab.ssh('s1', 'id -un', user=user).stdout.strip() == user
    assert lab.ssh('s1', 'sudo -n id -u', user='deploy').stdout.strip() == '0'
    # its own boot id, the one the lab recorded
    assert lab.ssh('s1', 'cat /proc/sys/kernel/random/boot_id').stdout.strip() == \
        lab.boot_id('s1')
    assert lab.boot_id('s1') != lab.boot_id('p1')
    assert 'systemd' in '\n'.join(lab.status())


def test_systemd_run_over_ssh(lab):
    unit = 'lab-probe-%s' % uuid.uuid4().hex[:8]
    assert lab.ssh('s1', 'systemd-run --quiet --unit=%s --wait true' % unit).returncode == 0
    failing = lab.ssh('s1', 'systemd-run --quiet --unit=%s-f --wait false' % unit, check=False)
    assert failing.returncode != 0
    # a transient unit outlives the ssh session that started it
    lab.ssh('s1', 'systemd-run --quiet --unit=%s-long sleep 30' % unit)
    assert lab.ssh('s1', 'systemctl is-active %s-long' % unit).stdout.strip() == 'active'
    lab.ssh('s1', 'systemctl stop %s-long' % unit)


def test_nix_daemon_answers(lab, system):
    # app is no trusted user: its nix talks to the daemon over the socket
    assert lab.ssh('s1', 'nix-store -q --hash %s' % system, user='app').stdout.startswith('sha256:')
    assert lab.ssh('s1', 'nix store ping', user='app').returncode == 0
    assert lab.store_has('s1', system) and not lab.store_has('p1', system)
    assert lab.ssh('s1', 'systemctl is-active nix-daemon.service').stdout.strip() == 'active'
    # same nix.conf as every lab host; add_nix_conf restarts the daemon
    assert lab.read('s1', '/etc/nix/nix.conf') == lab.read('p1', '/etc/nix/nix.conf') \
        .replace('lab host p1', 'lab host s1')
    before = lab.ssh('s1', 'systemctl show -p MainPID --value nix-daemon.service').stdout
    lab.add_nix_conf('s1', 'trusted-users = root deploy')
    assert 'deploy' in lab.read('s1', '/etc/nix/nix.conf')
    after = lab.ssh('s1', 'systemctl show -p MainPID --value nix-daemon.service').stdout
    assert before != after


def test_switch_records_on_the_host(lab, system):
    lab.ssh('s1', 'nix-env -p /nix/var/nix/profiles/system --set %s && '
                  '%s/bin/switch-to-configuration switch' % (system, system))
    assert lab.active('s1') == system and lab.boot('s1') == system
    assert lab.current_system('s1') == system
    assert lab.active('p1') is None


def test_a_real_reboot_from_inside(lab, system):
    boots = lab.boot_ids('s1')
    old_pid = lab.pid('s1')
    plain = lab.boot_ids('p1')
    lab.ssh('s1', 'echo here >/run/lab-marker && echo kept >/nix/var/lab/marker')
    lab.ssh('s1', 'systemctl reboot', check=False, timeout=30)
    lab.wait_up('s1', boots=len(boots) + 1, timeout=300)
    new = lab.ssh('s1', 'cat /proc/sys/kernel/random/boot_id').stdout.strip()
    assert new == lab.boot_id('s1') == lab.boot_ids('s1')[-1] and new not in boots
    assert lab.pid('s1') != old_pid
    assert lab.ssh('s1', 'cat /proc/1/comm').stdout.strip() == 'systemd'
    assert lab.ssh('s1', 'test -e /run/lab-marker', check=False).returncode != 0
    assert lab.read('s1', '/nix/var/lab/marker') == 'kept'
    # stage 2 booted the boot default before sshd took logins
    assert lab.booted('s1') == system and lab.current_system('s1') == system
    history = lab.read('s1', '/nix/var/lab/history-system')
    assert history.splitlines()[-1].endswith('boot-activation %s' % system)
    assert lab.ssh('s1', 'systemctl is-active lab-boot.service').stdout.strip() == 'active'
    assert lab.store_has('s1', system)
    assert lab.boot_ids('p1') == plain


def test_lab_reboot_brings_a_broken_network_back(lab):
    boots = len(lab.boot_ids('s1'))
    # CAP_NET_ADMIN: the host may take its own network down
    lab.ssh('s1', 'setsid sh -c "sleep 0.5; ip link set eth0 down" </dev/null >/dev/null 2>&1 &')
    _wait(lambda: 'state DOWN' in lab.run_in('s1', ['ip', 'link', 'show', 'eth0']).stdout,
          timeout=120)
    assert not _reachable(lab, 's1')
    lab.reboot('s1')
    assert len(lab.boot_ids('s1')) == boots + 1
    assert lab.ssh('s1', 'cat /proc/sys/kernel/random/boot_id').stdout.strip() == lab.boot_id('s1')


def test_poweroff_and_power_settings(lab):
    boots = len(lab.boot_ids('s1'))
    lab.ssh('s1', 'systemctl poweroff', check=False, timeout=30)
    _wait(lambda: lab.power_state('s1') == 'off')
    assert len(lab.boot_ids('s1')) == boots
    lab.power_on('s1')
    lab.set_power('s1', comes_back=False, down_seconds=0)
    lab.reboot('s1', wait=False)
    _wait(lambda: lab.power_state('s1') == 'off')
    lab.set_power('s1', comes_back=True, down_seconds=1)
    lab.power_on('s1')
    assert len(lab.boot_ids('s1')) == boots + 2


def test_links_and_lab_calls(lab):
    lab.cut('s1')
    assert not _reachable(lab, 's1')
    lab.restore('s1')
    assert lab.ssh('s1', 'true').returncode == 0
    lab.shape('s1', rate='100mbit')
    assert lab.ssh('s1', 'true').returncode == 0
    lab.shape('s1')
    sent, received = lab.link_bytes('s1')
    assert sent > 0 and received > 0
    assert lab.run_in('s1', ['id', '-un'], user='app').stdout.strip() == 'app'
    assert lab.run_in('s1', ['cat', '/proc/1/comm']).stdout.strip() == 'systemd'
    assert lab.ansible_vars('s1')['ansible_user'] == 'root'
    assert lab.ansible_vars('s1')['nix_platform'] == 'nixos'
    assert 's1' in lab.ansible_inventory()['all']['children']['nixos']['hosts']


def test_down_leaves_nothing_behind(lab):
    index = lab.state['index']
    host = lab.host('s1')
    run = os.path.join(host['dir'], 'run')
    pids = lab.processes() | {lab.state['supervisor_pid'], host['keeper_pid']}
    for name in ('keeper.pid', 'nspawn.pid', 'host.pid'):
        with open(os.path.join(run, name)) as handle:
            pids.add(int(handle.read()))
    # what a deploy leaves: a detached process and a transient unit
    lab.ssh('s1', 'setsid sleep 600 </dev/null >/dev/null 2>&1 &')
    lab.ssh('s1', 'systemd-run --quiet --unit=lab-left-behind sleep 600')
    labdir = lab.dir
    with index_held(index):
        lab.down()
        assert lab.leftovers(index) == []
    assert not os.path.exists(labdir)
    for pid in pids:
        assert not os.path.exists('/proc/%d' % pid) or \
            open('/proc/%d/stat' % pid).read().split()[2] == 'Z'
    # no process anywhere still names the lab's folder or has it mounted
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                cmdline = handle.read()
            with open('/proc/%s/mountinfo' % entry) as handle:
                mounts = handle.read()
        except OSError:
            continue
        assert labdir.encode() not in cmdline, entry
        assert labdir not in mounts, entry
    with pytest.raises(LabError):
        Lab('sdlab').host('s1')


def _wait(condition, timeout=120):
    """Wait for ``condition()``: the deadline bounds the wait only (it ends
    at the event), generous for a busy machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError('not within %ss' % timeout)


def _reachable(lab, name, timeout=1.5):
    """Whether the host's sshd accepts a TCP connection (quicker to give up
    than an ssh login)."""
    try:
        socket.create_connection((lab.host(name)['address'], 22), timeout=timeout).close()
        return True
    except OSError:
        return False
