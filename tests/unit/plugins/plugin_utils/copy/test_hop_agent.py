"""The login of one cascade hop (plugin_utils/copy/_hop_agent.py): the
destination-constrained ssh-agent, run with the real OpenSSH tools on the
controller, and the folders OpenSSH 10.1+ sshd makes for a forwarded agent,
which the real hop script removes again.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _hop_agent  # noqa: E402

KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOyxY5rvanSUTPYeY/Ozq3jW+gWniRKGuqlLpG5v7YD'
KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFznXn8mvblBkiP/lcRDadfGWqyWCkZ7HU5bezJARZZw'


def test_hop_agent_holds_the_key_for_one_hop_only(tmp_path):
    key = tmp_path / 'id'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    folder = tmp_path / 'hop'
    folder.mkdir()
    agent = _hop_agent.HopAgent(str(folder))
    sock = agent.start([str(key)], [KEY_A], [KEY_B])
    try:
        listed = subprocess.run(['ssh-add', '-l'], env=dict(os.environ, SSH_AUTH_SOCK=sock),
                                stdout=subprocess.PIPE, universal_newlines=True, check=False)
        assert listed.returncode == 0 and 'ED25519' in listed.stdout
        pid = agent.proc.pid
    finally:
        agent.stop()
    assert not os.path.exists(str(folder))
    assert not os.path.exists('/proc/%d' % pid) or open('/proc/%d/stat' % pid).read().split()[2] == 'Z'


def test_hop_agent_refuses_a_key_it_cannot_load_unattended(tmp_path):
    key = tmp_path / 'id'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'secret', '-f', str(key)],
                   check=True)
    folder = tmp_path / 'hop'
    folder.mkdir()
    agent = _hop_agent.HopAgent(str(folder))
    try:
        with pytest.raises(_hop_agent.HopError, match='destination-constrained agent'):
            agent.start([str(key)], [KEY_A], [KEY_B])
    finally:
        agent.stop()
    assert not os.path.exists(str(folder))


# ------------------------------------------------------------------ OpenSSH 10.1+ agent folder
STUB_NIX = '#!/bin/sh\nexit "${STUB_RC:-0}"\n'


def _listening(path):
    import socket
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(1)
    return sock


def _run_hop(tmp_path, home, sock, probe_facts, stub_rc='0'):
    """The real hop script (a stub nix) with the forwarded agent at ``sock``,
    as the controller sends it after a probe that saw ``probe_facts``."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy, _copy_send
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script
    nix_dir = tmp_path / 'bin'
    nix_dir.mkdir(exist_ok=True)
    (nix_dir / 'nix').write_text(STUB_NIX)
    (nix_dir / 'nix').chmod(0o755)
    script = _script.assignments(_hop_agent.hop_leftovers(probe_facts)) + _copy_send.hop_script(
        str(nix_dir), ['ssh-ed25519 AAAA'], 'ssh-ng://h', '/nix/store/%s-x' % ('a' * 32), [])
    return subprocess.run(['sh'], input=_copy.stdin_free(script), universal_newlines=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                          env=dict(os.environ, HOME=str(home), SSH_AUTH_SOCK=sock,
                                   TMPDIR=str(tmp_path), STUB_RC=stub_rc))


@pytest.fixture
def short_tmp():
    """A folder with a short path: a socket's path has room for 107 bytes, and
    pytest's tmp_path (/tmp/pytest-of-root/pytest-NNN/test_name0/) can take
    most of them."""
    folder = tempfile.mkdtemp(prefix='nd-', dir='/tmp')
    yield pathlib.Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _sshd10_socket(home):
    """Where OpenSSH 10.1+ sshd puts a forwarded agent (it makes the folders)."""
    agent_dir = home / '.ssh' / 'agent'
    agent_dir.mkdir(parents=True, mode=0o700)
    return str(agent_dir / 's.hosthash00.sshd.Ab3dEf6hIj')


@pytest.mark.parametrize('stub_rc', ['0', '1'])
def test_hop_removes_the_agent_folders_sshd_10_made(short_tmp, stub_rc):
    home = short_tmp / 'home'
    home.mkdir()
    sock = _sshd10_socket(home)
    listener = _listening(sock)
    try:
        proc = _run_hop(short_tmp, home, sock, {'ssh_dir': 'no', 'ssh_agent_dir': 'no'}, stub_rc)
    finally:
        listener.close()
    assert proc.returncode == int(stub_rc), proc.stderr
    # the home as the probe found it: no ~/.ssh, no hop temp folder
    assert os.listdir(str(home)) == []
    assert not [n for n in os.listdir(str(short_tmp)) if n.startswith('nixdeploy-hop.')]


def test_hop_keeps_what_the_sender_had_before(short_tmp):
    # ~/.ssh was there (authorized_keys): only the agent folder goes
    home = short_tmp / 'home'
    home.mkdir()
    sock = _sshd10_socket(home)
    (home / '.ssh' / 'authorized_keys').write_text('')
    listener = _listening(sock)
    try:
        proc = _run_hop(short_tmp, home, sock, {'ssh_dir': 'yes', 'ssh_agent_dir': 'no'})
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(str(home / '.ssh')) == ['authorized_keys']
    # ~/.ssh/agent was there too (the user's own agents): untouched, the
    # socket is sshd's to remove
    home2 = short_tmp / 'home2'
    home2.mkdir()
    sock = _sshd10_socket(home2)
    listener = _listening(sock)
    try:
        proc = _run_hop(short_tmp, home2, sock, {'ssh_dir': 'yes', 'ssh_agent_dir': 'yes'})
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(str(home2 / '.ssh' / 'agent')) == [os.path.basename(sock)]
    # another session's socket appeared in a folder the hop made: kept, folder and all
    home3 = short_tmp / 'home3'
    home3.mkdir()
    sock = _sshd10_socket(home3)
    other = str(home3 / '.ssh' / 'agent' / 's.hosthash00.sshd.Other00000')
    listeners = [_listening(sock), _listening(other)]
    try:
        proc = _run_hop(short_tmp, home3, sock, {'ssh_dir': 'no', 'ssh_agent_dir': 'no'})
    finally:
        for listener in listeners:
            listener.close()
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(str(home3 / '.ssh' / 'agent')) == [os.path.basename(other)]


def test_hop_leaves_an_openssh_9_agent_socket_to_sshd(tmp_path):
    # 9.x: /tmp/ssh-XXXX/agent.PID, made and removed by sshd itself
    home = tmp_path / 'home'
    home.mkdir()
    folder = tmp_path / 'ssh-XXXXabcd'
    folder.mkdir()
    sock = str(folder / 'agent.123')
    listener = _listening(sock)
    try:
        proc = _run_hop(tmp_path, home, sock, {'ssh_dir': 'no', 'ssh_agent_dir': 'no'})
    finally:
        listener.close()
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(sock) and os.listdir(str(home)) == []


def test_probe_tells_which_agent_folders_the_sender_has(tmp_path):
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy
    nix_dir = tmp_path / 'nixbin'
    nix_dir.mkdir()
    for tool in ('nix', 'nix-store'):  # a store that holds everything
        (nix_dir / tool).write_text('#!/bin/sh\nexit 0\n')
        (nix_dir / tool).chmod(0o755)
    home = tmp_path / 'home'
    home.mkdir()

    def facts():
        probe = _copy.probe_script(str(nix_dir), paths=[])
        proc = subprocess.run(['sh', '-c', probe],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True,
                              env=dict(os.environ, HOME=str(home)))
        return _copy.parse_probe(proc.stdout, probe)

    found = facts()
    assert (found['ssh_dir'], found['ssh_agent_dir']) == ('no', 'no')
    assert _hop_agent.hop_leftovers(found) == {'SSH_DIR_NEW': True, 'AGENT_DIR_NEW': True}
    (home / '.ssh').mkdir()
    assert _hop_agent.hop_leftovers(facts()) == {'SSH_DIR_NEW': False, 'AGENT_DIR_NEW': True}
    (home / '.ssh' / 'agent').mkdir()
    assert _hop_agent.hop_leftovers(facts()) == {'SSH_DIR_NEW': False, 'AGENT_DIR_NEW': False}
    # a probe that said nothing (an older one): keep everything
    assert _hop_agent.hop_leftovers({}) == {'SSH_DIR_NEW': False, 'AGENT_DIR_NEW': False}
