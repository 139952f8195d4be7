"""The cascade planner (rounds, sites, faults) and the controller's own ssh facts.

The planner is pure: ``simulate`` runs it in lockstep rounds. The ssh facts
(``ssh -G``, ``ssh-keygen -F``) and the hop agent run the real OpenSSH tools
on the controller.
"""

import math
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.module_utils import _cascade, _peer  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.module_utils._cascade import (  # noqa: E402
    CONTROLLER, Cascade, Hop, simulate)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._store import Target  # noqa: E402


def names(count, prefix='h'):
    return ['%s%d' % (prefix, i) for i in range(1, count + 1)]


def hops_of(rounds):
    return [[hop.label for hop in r] for r in rounds]


# ------------------------------------------------------------------ doubling
@pytest.mark.parametrize('count', [1, 2, 3, 4, 5, 8, 16, 100])
def test_holders_double_each_round_and_the_controller_sends_once(count):
    cascade = Cascade(names(count))
    rounds = simulate(cascade)
    # the controller's seed, then doubling: ceil(log2 N) + 1 rounds
    assert len(rounds) == int(math.ceil(math.log(count, 2))) + 1
    assert cascade.controller_hops == 1
    assert sorted(cascade.got_from) == sorted(names(count)) and cascade.done()
    sizes = [len(r) for r in rounds]
    assert sum(sizes) == count and sizes[:2] == [1, 1][:len(sizes)]
    assert all(later <= 2 * earlier for earlier, later in zip(sizes[1:], sizes[2:]))


def test_eight_hosts_tree():
    cascade = Cascade(names(8))
    assert hops_of(simulate(cascade)) == [
        ['controller -> h1'], ['h1 -> h2'], ['h1 -> h3', 'h2 -> h4'],
        ['h1 -> h5', 'h2 -> h6', 'h3 -> h7', 'h4 -> h8']]
    assert [cascade.depth(h) for h in names(8)] == [1, 2, 2, 3, 2, 3, 3, 4]
    assert cascade.sent_to['h1'] == ['h2', 'h3', 'h5']


def test_hosts_that_hold_it_serve_and_the_controller_sends_nothing():
    cascade = Cascade(['h3', 'h4', 'h5'], holders=['h1', 'h2'])
    rounds = simulate(cascade)
    assert cascade.controller_hops == 0 and len(rounds) == 2
    assert hops_of(rounds)[0] == ['h1 -> h3', 'h2 -> h4']


def test_nothing_to_do():
    cascade = Cascade([], holders=['h1'])
    assert simulate(cascade) == [] and cascade.done()


# ------------------------------------------------------------------ sites
def test_each_site_is_entered_once_and_seeded_first():
    hosts = ['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'b3', 'b4']
    cascade = Cascade(hosts, sites=dict((h, h[0]) for h in hosts))
    rounds = simulate(cascade)
    assert len(rounds) == 4  # no slower than one site
    crossings = [(s, r) for r, s in cascade.got_from.items()
                 if s != CONTROLLER and s[0] != r[0]]
    assert crossings == [('a1', 'b1')]
    assert hops_of(rounds)[1] == ['a1 -> b1']  # the other site first


def test_the_controller_seeds_the_biggest_site():
    hosts = ['a1', 'b1', 'b2', 'b3', 'c1']
    cascade = Cascade(hosts, sites=dict((h, h[0]) for h in hosts))
    rounds = simulate(cascade)
    assert hops_of(rounds)[0] == ['controller -> b1']
    crossings = sorted(r for r, s in cascade.got_from.items()
                       if s != CONTROLLER and s[0] != r[0])
    assert crossings == ['a1', 'c1']  # one per other site


def test_site_of():
    assert _cascade.site_of({'nix_site': 'fra', 'nix_tags': ['vps']}) == 'fra'
    assert _cascade.site_of({'nix_tags': ['vps', 'hk'], 'group_names': ['hk', 'vps']}) == 'vps'
    assert _cascade.site_of({'group_names': ['all', 'ungrouped', 'nixos']}) == 'nixos'
    assert _cascade.site_of({}) == _cascade.DEFAULT_SITE


# ------------------------------------------------------------------ faults
def test_a_lost_sender_is_never_used_again_and_its_receiver_is_served():
    def outcome(hop, _round):
        return _cascade.SENDER_LOST if hop.label == 'h1 -> h3' else _cascade.OK
    cascade = Cascade(names(8))
    simulate(cascade, outcome)
    assert 'h1' in cascade.dead and cascade.done() and not cascade.failed
    assert cascade.got_from['h3'] not in ('h1', CONTROLLER)
    assert cascade.errors['h3'] == ['h1 -> h3: sender_lost']
    assert all(s != 'h1' for r, s in cascade.got_from.items() if r not in ('h2',))


def test_when_the_only_holder_dies_the_controller_seeds_again():
    def outcome(hop, _round):
        return _cascade.SENDER_LOST if hop.sender == 'h1' else _cascade.OK
    cascade = Cascade(names(4))
    simulate(cascade, outcome)
    # h2 lost its only holder: the controller seeds once more, then h2 is served
    assert cascade.controller_hops == 2 and cascade.got_from['h2'] not in ('h1', CONTROLLER)
    assert cascade.done() and not cascade.failed


def test_host_key_failure_gets_a_direct_push_at_once():
    def outcome(hop, _round):
        if hop.receiver == 'h3' and hop.sender != CONTROLLER:
            return _cascade.HOST_KEY, 'host key verification failed'
        return _cascade.OK
    cascade = Cascade(names(4))
    simulate(cascade, outcome)
    assert cascade.got_from['h3'] == CONTROLLER
    assert cascade.errors['h3'] == ['h1 -> h3: host key verification failed']
    assert not cascade.strikes  # the sender is not blamed


def test_a_receiver_no_peer_reaches_gets_a_direct_push_and_never_sends():
    def outcome(hop, _round):
        if hop.receiver == 'h2' and hop.sender != CONTROLLER:
            return _cascade.UNREACHABLE, 'No route to host'
        return _cascade.OK
    cascade = Cascade(names(8))
    simulate(cascade, outcome)
    tried = [e.split(':')[0] for e in cascade.errors['h2']]
    assert len(tried) == _cascade.MAX_STRIKES and len(set(tried)) == _cascade.MAX_STRIKES
    assert cascade.got_from['h2'] == CONTROLLER and 'h2' not in cascade.sent_to
    assert cascade.done() and not cascade.failed


def test_a_sender_that_reaches_nobody_stops_sending():
    def outcome(hop, _round):
        if hop.sender == 'h1' and hop.receiver != 'h2':
            return _cascade.UNREACHABLE, 'Connection timed out'
        return _cascade.OK
    cascade = Cascade(names(8))
    simulate(cascade, outcome)
    assert cascade.strikes[('sender', 'h1')] == _cascade.MAX_STRIKES
    assert cascade.sent_to['h1'] == ['h2'] and cascade.done() and not cascade.failed


def test_a_broken_sender_and_a_nix_failure():
    def outcome(hop, _round):
        if hop.sender == 'h1' and hop.receiver == 'h2':
            return _cascade.SENDER_BROKEN
        if hop.receiver == 'h4' and hop.sender != CONTROLLER:
            return _cascade.FAILED, 'lacks a valid signature'
        return _cascade.OK
    cascade = Cascade(names(4))
    simulate(cascade, outcome)
    assert 'h1' not in cascade.able and 'h1' not in cascade.sent_to
    assert cascade.got_from['h4'] == CONTROLLER and cascade.done()


def test_a_failed_push_from_the_controller_is_final():
    def outcome(hop, _round):
        if hop.receiver == 'h1':
            return _cascade.FAILED, 'connection refused'
        return _cascade.OK
    cascade = Cascade(names(3))
    simulate(cascade, outcome)
    assert cascade.failed == {'h1': 'connection refused'}
    assert cascade.got_from['h2'] == CONTROLLER and cascade.got_from['h3'] == 'h2'


def test_hosts_peers_cannot_use_get_direct_pushes_beside_the_cascade():
    cascade = Cascade(names(4), peer_reachable=['h1', 'h2', 'h3'], can_send=['h1', 'h2', 'h3'])
    rounds = simulate(cascade)
    assert sorted(h.label for h in rounds[0]) == ['controller -> h1', 'controller -> h4']
    assert rounds[0][0].direct and not rounds[0][1].direct
    assert cascade.done() and len(rounds) == 3


def test_nobody_can_send_means_a_push_to_everyone():
    cascade = Cascade(names(4), can_send=[])
    rounds = simulate(cascade)
    assert cascade.controller_hops == 4 and cascade.done()
    assert len(rounds) == 1  # a push to everyone at once


def test_hop_identity():
    assert Hop('h1', 'h2') == Hop('h1', 'h2', direct=True)
    assert len({Hop('h1', 'h2'), Hop('h1', 'h2')}) == 1
    assert repr(Hop(CONTROLLER, 'h2', direct=True)) == 'Hop(controller -> h2, direct)'


# ------------------------------------------------------------------ what a hop said
# stderr as the lab's hops really print it
IMPOSTOR = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
The fingerprint for the ED25519 key sent by the remote host is
SHA256:hznQ4x7yBSmsSrsSF8xtGFW44FqQdQQYaNLqww0IvwQ.
Host key for nixdeploy-receiver has changed and you have requested strict checking.
Host key verification failed.
error: cannot open connection to remote store 'ssh-ng://root@10.213.1.16': error: unexpected end-of-file
"""
NO_ROUTE = ("ssh: connect to host 10.213.1.18 port 22: No route to host\r\n"
            "error: cannot open connection to remote store 'ssh-ng://root@10.213.1.18'\n")
UNSIGNED = "error: cannot add path '/nix/store/x-a' because it lacks a valid signature\n"


@pytest.mark.parametrize('rc,stderr,kind', [
    (0, '', _cascade.OK),
    (255, 'Connection to 10.213.1.12 closed by remote host.', _cascade.SENDER_LOST),
    (96, 'nixdeploy hop: no forwarded ssh agent', _cascade.SENDER_BROKEN),
    (97, '', _cascade.SENDER_BROKEN),
    (1, IMPOSTOR, _cascade.HOST_KEY),
    (1, NO_ROUTE, _cascade.UNREACHABLE),
    (1, 'root@10.0.0.3: Permission denied (publickey).', _cascade.UNREACHABLE),
    (1, UNSIGNED, _cascade.FAILED),
])
def test_hop_failure(rc, stderr, kind):
    assert _cascade.hop_failure(rc, stderr) == kind


def test_failure_reason_keeps_what_ssh_and_nix_said():
    text = _cascade.failure_reason(_cascade.HOST_KEY, IMPOSTOR)
    assert text.startswith('host key verification failed: the receiver did not present')
    assert 'Host key verification failed.' in text and '@@@' not in text
    assert 'No route to host' in _cascade.failure_reason(_cascade.UNREACHABLE, NO_ROUTE)
    assert 'AllowAgentForwarding' in _cascade.failure_reason(_cascade.SENDER_BROKEN, '', 96)
    assert _cascade.failure_reason(_cascade.FAILED, UNSIGNED).endswith('valid signature')


def test_estimate():
    assert _cascade.estimate_seconds(8, 8e6, 12.5e6) == pytest.approx(4 * 0.64)
    assert _cascade.estimate_seconds(1, 8e6, 12.5e6) == pytest.approx(0.64)
    assert _cascade.estimate_seconds(0, 8e6, 12.5e6) == 0.0


# ------------------------------------------------------------------ controller ssh facts
KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOyxY5rvanSUTPYeY/Ozq3jW+gWniRKGuqlLpG5v7YD'
KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFznXn8mvblBkiP/lcRDadfGWqyWCkZ7HU5bezJARZZw'


def test_parse_known_hosts_skips_markers_and_comments():
    text = ('# Host 10.0.0.2 found: line 1\n10.0.0.2 %s\n'
            '@cert-authority *.example.org %s\n@revoked 10.0.0.2 %s\n' % (KEY_A, KEY_B, KEY_B))
    assert _peer.parse_known_hosts(text) == [KEY_A]


def test_known_host_name():
    assert _peer.known_host_name({'hostname': ['10.0.0.2'], 'port': ['22']}) == '10.0.0.2'
    assert _peer.known_host_name({'hostname': ['10.0.0.2'], 'port': ['2222']}) == \
        '[10.0.0.2]:2222'
    assert _peer.known_host_name({'hostname': ['x'], 'port': ['22'],
                                  'hostkeyalias': ['web1']}) == 'web1'


def test_host_keys_and_key_files_as_ssh_resolves_them(tmp_path):
    """Real ssh -G and ssh-keygen -F: hashed entries, a port, the inventory's
    known_hosts file and private key."""
    known = tmp_path / 'known_hosts'
    known.write_text('10.0.0.2 %s\n[10.0.0.3]:2222 %s\n' % (KEY_A, KEY_B))
    subprocess.run(['ssh-keygen', '-H', '-f', str(known)], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    key = tmp_path / 'deploy key'
    key.write_text('not read here')
    args = '-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes' % known
    plain = Target('10.0.0.2', user='root', private_key_file=str(key), ssh_common_args=args)
    conf = _peer.ssh_config(plain)
    assert _peer.host_keys(conf) == [KEY_A]
    assert _peer.key_files(plain, conf)[0] == str(key)
    ported = Target('10.0.0.3', port=2222, ssh_common_args=args)
    assert _peer.host_keys(_peer.ssh_config(ported)) == [KEY_B]
    unknown = Target('10.0.0.4', ssh_common_args=args)
    assert _peer.host_keys(_peer.ssh_config(unknown)) == []
    jumped = Target('10.0.0.2', ssh_common_args=args + ' -o ProxyJump=bastion')
    assert 'bastion' in _peer.ssh_config(jumped)['proxyjump'][0]


def test_hop_agent_holds_the_key_for_one_hop_only(tmp_path):
    key = tmp_path / 'id'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    folder = tmp_path / 'hop'
    folder.mkdir()
    agent = _peer.HopAgent(str(folder))
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
    agent = _peer.HopAgent(str(folder))
    try:
        with pytest.raises(_peer.HopError, match='destination-constrained agent'):
            agent.start([str(key)], [KEY_A], [KEY_B])
    finally:
        agent.stop()
    assert not os.path.exists(str(folder))


def test_who_may_send_and_who_peers_may_serve():
    peer = _peer.Peer('h1', Target('10.0.0.2', user='root'), '/nix/store/x')
    peer.facts = {'ssh': '/usr/bin/ssh', 'ssh_version': 'OpenSSH_9.2p1 Debian-2+deb12u10'}
    peer.host_keys, peer.key_files = [KEY_A], ['/k']
    assert peer.can_send and peer.reachable_by_peers
    # an ssh client that cannot bind a forwarded agent to the hop's host keys
    peer.facts['ssh_version'] = 'OpenSSH_8.4p1 Debian-5'
    assert not peer.can_send
    # behind a jump host: a direct push, unless the inventory says where peers reach it
    peer.proxied = True
    assert not peer.reachable_by_peers
    peer.peer_host = '192.168.1.5'
    assert peer.reachable_by_peers and peer.peer_target.host == '192.168.1.5'
    # no known host key: peers could not check it
    peer.host_keys = []
    assert not peer.reachable_by_peers


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
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _copy, _script
    nix_dir = tmp_path / 'bin'
    nix_dir.mkdir(exist_ok=True)
    (nix_dir / 'nix').write_text(STUB_NIX)
    (nix_dir / 'nix').chmod(0o755)
    script = _script.assignments(_peer.hop_leftovers(probe_facts)) + _copy.hop_script(
        str(nix_dir), ['ssh-ed25519 AAAA'], 'ssh-ng://h', '/nix/store/%s-x' % ('a' * 32))
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
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _copy
    nix_dir = tmp_path / 'nixbin'
    nix_dir.mkdir()
    for tool in ('nix', 'nix-store'):  # a store that holds everything
        (nix_dir / tool).write_text('#!/bin/sh\nexit 0\n')
        (nix_dir / tool).chmod(0o755)
    home = tmp_path / 'home'
    home.mkdir()

    def facts():
        proc = subprocess.run(['sh', '-c', _copy.probe_script(str(nix_dir), paths=[])],
                              stdout=subprocess.PIPE, universal_newlines=True, check=True,
                              env=dict(os.environ, HOME=str(home)))
        return _copy.parse_probe(proc.stdout)

    found = facts()
    assert (found['ssh_dir'], found['ssh_agent_dir']) == ('no', 'no')
    assert _peer.hop_leftovers(found) == {'SSH_DIR_NEW': True, 'AGENT_DIR_NEW': True}
    (home / '.ssh').mkdir()
    assert _peer.hop_leftovers(facts()) == {'SSH_DIR_NEW': False, 'AGENT_DIR_NEW': True}
    (home / '.ssh' / 'agent').mkdir()
    assert _peer.hop_leftovers(facts()) == {'SSH_DIR_NEW': False, 'AGENT_DIR_NEW': False}
    # a probe that said nothing (an older one): keep everything
    assert _peer.hop_leftovers({}) == {'SSH_DIR_NEW': False, 'AGENT_DIR_NEW': False}
