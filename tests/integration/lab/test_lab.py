"""The lab itself: real, separate hosts that tests can trust."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.collection import REPO
from tests.lab import Lab, LabError
from tests.lab.lab import KEX_ENV, index_held
from tests.lab.fixtures import FleetFlake

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
PERSONAS = ['nixos', 'darwin', 'nix-on-droid', 'home-manager']


@pytest.fixture(scope='module')
def lab(make_lab):
    return make_lab('labt', hosts=4, personas=PERSONAS)


@pytest.fixture(scope='module')
def built(lab, tmp_path_factory):
    """Every host's system, built on the controller: host -> out path."""
    flake = FleetFlake.for_lab(str(tmp_path_factory.mktemp('flake')), lab,
                               configurations={'h1': {'extra_paths': 2, 'extra_bytes': 4096}})
    proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + ['--no-link', '--json'] +
                          ['%s#%s' % (flake.ref, flake.attr(h)) for h in sorted(lab.hosts)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=True)
    outs = [entry['outputs']['out'] for entry in json.loads(proc.stdout)]
    # nix prints the results in its own order: match them by name
    return {h: next(o for o in outs if '-system-%s-' % h in o) for h in lab.hosts}


def copy_to(lab, host, path):
    """nix copy over ssh-ng with strict host keys, as root (trusted), or as
    app on nix-on-droid, the owner of that single-user store."""
    info = lab.host(host)
    user = 'app' if info['persona'] == 'nix-on-droid' else 'root'
    uri = 'ssh-ng://%s@%s' % (user, info['address'])
    if not info['nix_on_path']:
        uri += '?remote-program=%s/nix-daemon' % info['nix_dir']
    env = dict(os.environ, NIX_SSHOPTS=' '.join(lab.ssh_args()))
    return subprocess.run(NIX[:1] + ['copy'] + NIX[1:] + ['--no-check-sigs', '--to', uri, path],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)


def test_ssh_with_strict_host_keys_as_every_user(lab):
    for host in lab.hosts:
        for user in ('root', 'deploy', 'app'):
            proc = lab.ssh(host, 'id -un', user=user)
            assert proc.stdout.strip() == user
    assert lab.ssh('h2', 'sudo -n id -u', user='deploy').stdout.strip() == '0'
    assert lab.ssh('h3', 'sudo -n true', user='app', check=False).returncode != 0


def test_the_suites_labs_offer_the_cheap_key_exchange(lab):
    """The key exchange named by KEX_ENV (tests/conftest.py sets
    curve25519-sha256) is the only one the hosts' sshd takes: a client that
    asks only for OpenSSH 9.2's default finds no common one."""
    offered = os.environ.get(KEX_ENV, '')
    assert offered == 'curve25519-sha256', 'the suite runs with %s=%r' % (KEX_ENV, offered)
    for kex, works in (('sntrup761x25519-sha512', False), ('curve25519-sha256', True)):
        argv = ['ssh'] + lab.ssh_args() + ['-o', 'KexAlgorithms=%s' % kex,
                                           'root@%s' % lab.host('h1')['address'], 'true']
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60, check=False)
        assert (proc.returncode == 0) == works, (kex, proc.stderr)
        if not works:
            assert 'no matching key exchange method' in proc.stderr, proc.stderr


def test_a_changed_host_key_is_refused(lab, tmp_path):
    wrong = tmp_path / 'known_hosts'
    other = lab.host('h2')
    with open(os.path.join(other['dir'], 'ssh_host_ed25519_key.pub')) as handle:
        key = ' '.join(handle.read().split()[:2])
    wrong.write_text('%s %s\n' % (lab.host('h1')['address'], key))
    args = [a.replace(lab.known_hosts, str(wrong)) for a in lab.ssh_args()]
    proc = subprocess.run(['ssh'] + args + ['root@%s' % lab.host('h1')['address'], 'true'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    assert proc.returncode == 255
    assert 'HOST IDENTIFICATION HAS CHANGED' in proc.stderr


def test_stores_are_separate(lab, built):
    path = built['h1']
    assert copy_to(lab, 'h1', path).returncode == 0
    assert lab.store_has('h1', path)
    for other in ('h2', 'h3', 'h4'):
        assert not lab.store_has(other, path)
    # ... and the controller's own store is yet another one
    assert lab.read('h2', '/nix/var/lab/system/active') is None


def test_personas_hide_nix_where_real_platforms_do(lab):
    assert lab.ssh('h1', 'command -v nix-store', user='root').stdout.strip()
    for host in ('h2', 'h3'):
        proc = lab.ssh(host, 'command -v nix-store', check=False)
        assert proc.returncode != 0
        assert lab.ssh(host, '%s/nix-store --version' % lab.host(host)['nix_dir']).returncode == 0


def test_nixos_system_records_goals_on_its_own_host(lab, built):
    path = built['h1']
    assert copy_to(lab, 'h1', path).returncode == 0
    lab.ssh('h1', '%s/bin/switch-to-configuration boot' % path, user='root')
    assert lab.boot('h1') == path and lab.active('h1') is None
    lab.ssh('h1', '%s/bin/switch-to-configuration switch' % path, user='root')
    assert lab.active('h1') == path
    assert lab.ssh('h1', 'cat %s/nixos-version' % path).stdout.startswith('1')
    for other in ('h2', 'h3', 'h4'):
        assert lab.read(other, '/nix/var/lab/system/active') is None


def test_darwin_activate_needs_root(lab, built):
    path = built['h2']
    assert copy_to(lab, 'h2', path).returncode == 0
    refused = lab.ssh('h2', '%s/activate' % path, user='deploy', check=False)
    assert refused.returncode != 0 and 'root' in refused.stderr
    lab.ssh('h2', 'sudo -n %s/activate' % path, user='deploy')
    assert lab.active('h2') == path


def test_nix_on_droid_activate_sets_its_own_profile(lab, built):
    path = built['h3']
    assert copy_to(lab, 'h3', path).returncode == 0
    lab.ssh('h3', '%s/activate' % path, user='app')
    assert lab.active('h3') == path
    assert lab.ssh('h3', 'readlink -f /nix/var/nix/profiles/nix-on-droid').stdout.strip() == path


def test_home_manager_activation_package_shape(lab, built):
    path = built['h4']
    assert copy_to(lab, 'h4', path).returncode == 0
    assert lab.ssh('h4', 'cat %s/gen-version' % path).stdout.strip() == '1'
    # with the driver protocol the caller sets the profile first, as
    # home-manager's CLI does; the fake refuses an activate that skipped it
    refused = lab.ssh('h4', '%s/activate --driver-version 1' % path, user='app', check=False)
    assert refused.returncode != 0 and 'did not set' in refused.stderr, refused
    lab.ssh('h4', 'nix-env --profile "$HOME/.local/state/nix/profiles/home-manager" --set %s'
            ' && %s/activate --driver-version 1' % (path, path), user='app')
    assert lab.active('h4') == path


def test_failing_system_exits_like_the_platform(lab, tmp_path):
    flake = FleetFlake.for_lab(str(tmp_path / 'flake'), lab,
                               configurations={'h1': {'version': '9', 'behaviour': 'fail-units'}})
    proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + ['--no-link', '--json',
                          '%s#%s' % (flake.ref, flake.attr('h1'))],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True)
    path = json.loads(proc.stdout)[0]['outputs']['out']
    assert copy_to(lab, 'h1', path).returncode == 0
    run = lab.ssh('h1', '%s/bin/switch-to-configuration switch' % path, user='root', check=False)
    assert run.returncode == 4


def test_link_cut_and_restore(lab):
    lab.cut('h1')
    assert lab.ssh('h1', 'true', user='root', check=False, timeout=30).returncode == 255
    lab.restore('h1')
    assert lab.ssh('h1', 'true', user='root').returncode == 0


def test_down_leaves_nothing_behind():
    lab = Lab('labdown').up(2)
    index = lab.state['index']
    first = {lab.host(h)['pid'] for h in lab.hosts}
    # a host rebooted: its new sshd is the supervisor's child, not ours
    lab.reboot('h2')
    pids = first | {lab.pid(h) for h in lab.hosts} | lab.processes()
    pids.add(lab.state['supervisor_pid'])
    assert lab.pid('h2') not in first
    # a detached process on a host, as a deploy would leave, goes too
    lab.ssh('h1', 'setsid sleep 600 </dev/null >/dev/null 2>&1 &', user='root')
    with index_held(index):
        lab.down()
        assert lab.leftovers(index) == []
    for pid in pids:
        assert not os.path.exists('/proc/%d' % pid) or \
            open('/proc/%d/stat' % pid).read().split()[2] == 'Z'
    with pytest.raises(LabError):
        Lab('labdown').host('h1')


def test_a_lab_stopped_while_it_comes_up_leaves_nothing_behind():
    """A Ctrl-C (SIGINT) while `python -m tests.lab up` makes its hosts
    (a benchmark or a test stopped while its lab comes up): what the lab
    had made goes, namespaces, links, processes and folder, as down takes
    a lab that is up, and the command says it was stopped.

    The lab holds after its second host (NIXDEPLOY_LAB_HOLD_AFTER): on a
    quiet machine it comes up in about two seconds, and a test that polled
    for the right moment sometimes found it already up."""
    lab = Lab('labint')
    lab.down()
    held = os.path.join(lab.dir, 'held')
    proc = subprocess.Popen([sys.executable, '-m', 'tests.lab', 'up', '--name', 'labint',
                             '--hosts', '6'], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True,
                            env=dict(os.environ, NIXDEPLOY_LAB_HOLD_AFTER='2'))
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None and not os.path.exists(held):
            time.sleep(0.05)
        assert proc.poll() is None and os.path.exists(held), \
            'lab labint never held after its second host: %s' % proc.communicate()[0]
        index = Lab('labint').state['index']
        assert os.path.exists('/run/netns/ndl%d-h2' % index)
        with index_held(index):
            proc.send_signal(signal.SIGINT)
            out = proc.communicate(timeout=120)[0]
            left = Lab('labint').leftovers(index)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # whatever failed above, no lab of this test outlives it
        Lab('labint').down()
    assert proc.returncode == 130, out
    assert 'lab labint: stopped while it came up; what it had made is gone' in out, out
    assert 'Traceback' not in out, out
    assert Lab('labint').state is None
    assert left == []
    assert not os.path.exists(lab.dir)


def test_a_new_lab_takes_no_index_whose_names_a_killed_lab_left():
    """A lab killed before its down (SIGKILL, a crash during its up) can
    leave host namespaces and links with no state that names them: a CI run
    met ``ip netns add ndl1-goal: File exists`` in every test of a module.
    A new lab skips the index those names carry."""
    stale = Lab('labfree')
    stale.down()
    index = stale._free_index()  # pylint: disable=protected-access
    netns = 'ndl%d-stale' % index
    subprocess.run(['ip', 'netns', 'add', netns], check=True)
    try:
        lab = Lab('labfree').up(1)
        try:
            assert lab.state['index'] != index
            assert lab.ssh('h1', 'true', user='root').returncode == 0
        finally:
            lab.down()
    finally:
        subprocess.run(['ip', 'netns', 'del', netns], check=False)


def test_a_held_index_is_no_new_labs_and_no_leftover():
    """The checks that a down left nothing hold the lab's index meanwhile
    (``index_held``): a lab coming up beside them (another worker, the
    other stack) took the index a down had just freed, and its new bridge
    read as the old lab's leftover (CI37). A held index is no new lab's,
    and the hold itself is no leftover."""
    probe = Lab('labheld')
    probe.down()
    index = probe._free_index()  # pylint: disable=protected-access
    with index_held(index):
        assert probe._free_index() != index  # pylint: disable=protected-access
        assert probe.leftovers(index) == []
    assert not os.path.exists('/run/netns/ndl%d-held-for-a-check' % index)
