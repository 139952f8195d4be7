"""The lab's target fault knobs (tests/lab/target_faults.py), each on a real
plain host and a real systemd host (where systemd hosts run here): a small
/nix that fills, a garbage collection (now, and the moment a path becomes
valid), a stopped nix-daemon, a read-only store, a sudo that asks for a
password. Each knob is idempotent, is undone by its opposite, leaves the
other host alone, and ``down`` leaves nothing of it (no store mount, no
watcher)."""

import json
import os
import subprocess

import pytest

from tests.lab import Lab, LabError
from tests.lab.lab import index_held
from tests.lab import nspawn
from tests.lab.fixtures import FleetFlake

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
SYSTEMD = nspawn.unsupported() is None
STORE = 48 << 20
HOSTS = [{'name': 'p1', 'persona': 'nixos', 'store_size': '48M'},
         {'name': 'm1', 'persona': 'home-manager', 'store_size': '48M'},
         {'name': 'n1', 'persona': 'nixos'}]   # no store_size: the machine's disk
if SYSTEMD:
    HOSTS.append({'name': 's1', 'persona': 'nixos', 'systemd': True, 'store_size': '48M'})
KINDS = [pytest.param('p1', id='plain'),
         pytest.param('s1', id='systemd', marks=pytest.mark.skipif(
             not SYSTEMD, reason=str(nspawn.unsupported())))]


@pytest.fixture(scope='module')
def lab(make_lab):
    lab = make_lab('tfk', hosts=HOSTS)
    for host in lab.hosts:
        # a host's Nix makes its database at its first use; a real target
        # has one (Nix 2.34 cannot make it on a full store, and keeps failing)
        lab.gc(host)
    return lab


def add(lab, host, text, user=None):
    """nix-store --add of a small file on the host (as root, or ``user``
    over ssh, through the daemon); the CompletedProcess."""
    # the file is removed whatever the add did: the host's /tmp is the machine's
    script = ('f=$(mktemp) && echo %s >"$f" && { nix-store --add "$f"; rc=$?; rm -f "$f"; '
              'exit $rc; }' % text)
    if user:
        return lab.ssh(host, script, user=user, check=False)
    return lab.run_in(host, ['sh', '-c', script], check=False)


def test_store_size_is_the_hosts_own_filesystem(lab):
    for host in [h for h in lab.hosts if h != 'n1']:
        df = lab.run_in(host, ['df', '-B1', '--output=size', '/nix']).stdout.split()
        assert int(df[-1]) == STORE, (host, df)
        assert 0 <= STORE - lab.store_free(host) < (4 << 20), host   # what up put there
    # without one, /nix is the host folder on the machine's disk, and no fill
    with pytest.raises(LabError, match='no store_size'):
        lab.fill_store('n1', 0)
    with pytest.raises(LabError, match='160M'):
        Lab('tfkbad').up([{'name': 'x', 'store_size': 'lots'}])
    assert Lab('tfkbad').state is None


@pytest.mark.parametrize('host', KINDS)
def test_fill_and_unfill(lab, host):
    assert abs(lab.fill_store(host, 1 << 20) - (1 << 20)) < (64 << 10)
    assert abs(lab.fill_store(host, 2 << 20) - (2 << 20)) < (64 << 10)   # resized
    proc = lab.run_in(host, ['sh', '-c', 'f=$(mktemp) && head -c 3000000 /dev/zero >"$f" && '
                             '{ nix-store --add "$f"; rc=$?; rm -f "$f"; exit $rc; }'],
                      check=False)
    assert proc.returncode != 0 and 'No space left on device' in proc.stderr, proc
    assert lab.store_free('m1') > STORE // 2   # another host's store is its own
    # what the failed add left (the store's database) is all that is used
    assert lab.unfill_store(host) > STORE - (4 << 20)
    assert lab.unfill_store(host) > STORE - (4 << 20)
    # the same from inside, as a system's on_activate knob does it
    lab.run_in(host, ['sh', '-c', lab.fill_store_sh(512 << 10)])
    assert abs(lab.store_free(host) - (512 << 10)) < (64 << 10)
    lab.unfill_store(host)


@pytest.mark.parametrize('host', KINDS)
def test_stop_and_start_the_daemon(lab, host):
    assert lab.daemon_running(host)
    lab.stop_daemon(host)
    lab.stop_daemon(host)
    assert not lab.daemon_running(host)
    proc = add(lab, host, 'nodaemon', user='app')
    assert proc.returncode != 0 and 'daemon-socket' in proc.stderr, proc
    assert add(lab, host, 'asroot').returncode == 0   # root opens the store itself
    assert add(lab, 'm1', 'beside', user='app').returncode == 0
    lab.start_daemon(host)
    lab.start_daemon(host)
    assert lab.daemon_running(host)
    assert add(lab, host, 'daemonback', user='app').returncode == 0


@pytest.mark.parametrize('host', KINDS)
def test_read_only_store(lab, host):
    lab.set_store_read_only(host, True)
    lab.set_store_read_only(host, True)
    assert lab.store_read_only(host)
    for user in (None, 'app'):   # root's own Nix and the daemon's
        proc = add(lab, host, 'ro-%s' % user, user=user)
        assert proc.returncode != 0 and 'Read-only file system' in proc.stderr, proc
    assert add(lab, 'm1', 'beside', user='app').returncode == 0
    lab.set_store_read_only(host, False)
    lab.set_store_read_only(host, False)
    assert not lab.store_read_only(host)
    for user in (None, 'app'):
        assert add(lab, host, 'rw-%s' % user, user=user).returncode == 0


@pytest.mark.parametrize('host', KINDS)
def test_sudo_asks_for_a_password(lab, host):
    assert lab.ssh(host, 'sudo -n true', user='deploy').returncode == 0
    lab.set_sudo_password(host, True)
    lab.set_sudo_password(host, True)
    proc = lab.ssh(host, 'sudo -n true', user='deploy', check=False)
    assert proc.returncode != 0 and 'a password is required' in proc.stderr, proc
    assert lab.sudo_asks_password(host)
    assert not lab.sudo_asks_password('m1')   # the machine's rule, elsewhere
    assert lab.ssh('m1', 'sudo -n true', user='deploy').returncode == 0
    if host == 'p1':
        lab.reboot(host)   # a plain host binds it again at boot
        assert lab.sudo_asks_password(host)
    lab.set_sudo_password(host, False)
    lab.set_sudo_password(host, False)
    assert lab.ssh(host, 'sudo -n true', user='deploy').returncode == 0


@pytest.mark.parametrize('host', KINDS)
def test_gc_now_and_when_a_path_becomes_valid(lab, host, tmp_path):
    garbage = add(lab, host, 'garbage-%s' % host).stdout.strip()
    assert garbage in lab.gc(host) and not lab.store_has(host, garbage)
    assert lab.gc(host) == []
    flake = FleetFlake.for_lab(str(tmp_path / 'flake'), lab)
    proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + [
        '--no-link', '--json', '%s#%s' % (flake.ref, flake.attr(host))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=True)
    path = json.loads(proc.stdout)[0]['outputs']['out']
    watcher = lab.gc_when_valid(host, path, timeout=120)
    assert not watcher.done()   # waiting: the path is not there yet
    env = dict(os.environ, NIX_SSHOPTS=' '.join(lab.ssh_args()))
    copy = subprocess.run(NIX[:1] + ['copy'] + NIX[1:] + [
        '--no-check-sigs', '--to', 'ssh-ng://root@%s' % lab.host(host)['address'], path],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        check=False)
    assert copy.returncode == 0, copy.stderr
    deleted = watcher.wait(timeout=60)
    # nothing roots it: the collection that ran once the copy ended took it
    assert path in deleted and not lab.store_has(host, path), deleted
    result = watcher.result
    assert result['valid_at'] <= result['released_at'] <= result['action_started'] \
        <= result['finished']
    # a watcher whose path never comes is stopped by down (or here)
    pending = lab.gc_when_valid(host, path.replace(path[11:20], 'x' * 9), timeout=120)
    pending.stop()
    assert pending.done()


def test_down_leaves_no_store_mount_and_no_watcher(make_lab):
    lab = make_lab('tfkd', hosts=[{'name': 'h1', 'persona': 'nixos', 'store_size': '16M'}])
    watcher = lab.gc_when_valid('h1', '/nix/store/%s-never' % ('0' * 32))
    lab.fill_store('h1', 0)
    index = lab.state['index']
    assert lab.leftovers() != []   # the lab itself, and its store mount
    with index_held(index):
        lab.down()
        assert watcher.done()
        assert lab.leftovers(index) == []
