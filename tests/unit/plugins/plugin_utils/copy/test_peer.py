"""The controller's view of a cascade host: plugin_utils/host/_peer_ssh.py's ssh
facts and what _cascade_peer.Peer decides from them.

The ssh facts (``ssh -G``, ``ssh-keygen -F``) run the real OpenSSH tools on
the controller.
"""

import subprocess
import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _cascade_peer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _peer_ssh  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (  # noqa: E402
    Host as Target)


# ------------------------------------------------------------------ controller ssh facts
KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEOyxY5rvanSUTPYeY/Ozq3jW+gWniRKGuqlLpG5v7YD'
KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFznXn8mvblBkiP/lcRDadfGWqyWCkZ7HU5bezJARZZw'


def test_parse_known_hosts_skips_markers_and_comments():
    text = ('# Host 10.0.0.2 found: line 1\n10.0.0.2 %s\n'
            '@cert-authority *.example.org %s\n@revoked 10.0.0.2 %s\n' % (KEY_A, KEY_B, KEY_B))
    assert _peer_ssh.parse_known_hosts(text) == [KEY_A]


def test_known_host_name():
    assert _peer_ssh.known_host_name({'hostname': ['10.0.0.2'], 'port': ['22']}) == '10.0.0.2'
    assert _peer_ssh.known_host_name({'hostname': ['10.0.0.2'], 'port': ['2222']}) == \
        '[10.0.0.2]:2222'
    assert _peer_ssh.known_host_name({'hostname': ['x'], 'port': ['22'],
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
    conf = plain.ssh_config()
    assert _peer_ssh.host_keys(conf) == [KEY_A]
    assert _peer_ssh.key_files(plain, conf)[0] == str(key)
    ported = Target('10.0.0.3', port=2222, ssh_common_args=args)
    assert _peer_ssh.host_keys(ported.ssh_config()) == [KEY_B]
    unknown = Target('10.0.0.4', ssh_common_args=args)
    assert _peer_ssh.host_keys(unknown.ssh_config()) == []
    jumped = Target('10.0.0.2', ssh_common_args=args + ' -o ProxyJump=bastion')
    assert 'bastion' in jumped.ssh_config()['proxyjump'][0]


def test_who_may_send_and_who_peers_may_serve():
    peer = _cascade_peer.Peer('h1', Target('10.0.0.2', user='root'), '/nix/store/x')
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
    assert peer.reachable_by_peers and peer.peer_target.address == '192.168.1.5'
    # no known host key: peers could not check it
    peer.host_keys = []
    assert not peer.reachable_by_peers
