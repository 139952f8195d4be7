"""copy-hop.sh's temp folder (issue 43): the cascade's hop made
``$TMPDIR/nixdeploy-hop.<pid>``, a name any local account of the sender can
make first (a folder, or a link to a folder of its own), which stopped the
hop (a cascade sender that cannot send) or could divert what it writes. It
now uses ``mktemp -d``.

The hop runs here for real with the local sh, as ``ssh sender sh`` runs it
(the program on stdin), with a stub nix (it prints what the hop gave it)
and a listening unix socket as the forwarded agent. The test learns the
shell's pid before sending the program, so it can plant the old name first.
"""

import os
import stat
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (  # noqa: E402
    _copy, _copy_send)

P1 = '/nix/store/yp65nwcm3qq6n5j1ccmpgvgxhlxbn14m-nixos-system-h1-1'

STUB_NIX = r'''#!/bin/sh
# stands in for nix on a sender: says where the hop put its known_hosts
kh=$(printf '%s' "$NIX_SSHOPTS" | sed -n 's/.*UserKnownHostsFile=\([^ ]*\).*/\1/p')
echo "known:$(cat "$kh")"
echo "dir:$(dirname "$kh")"
ls -ld "$(dirname "$kh")" | sed 's/^/mode:/'
'''


@pytest.fixture
def stub_nix(tmp_path):
    folder = tmp_path / 'bin'
    folder.mkdir()
    (folder / 'nix').write_text(STUB_NIX)
    (folder / 'nix').chmod(0o755)
    return str(folder)


@pytest.fixture
def agent_socket(tmp_path):
    import socket
    path = str(tmp_path / 'agent.sock')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(1)
    yield path
    sock.close()


def run_hop(script, env, plant=None):
    """The hop as ``ssh sender sh`` runs it; ``plant(pid)`` runs once the
    shell's pid (the old name's ``$$``) is known, before it reads the program."""
    proc = subprocess.Popen(['sh'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, **env))
    if plant:
        plant(proc.pid)
    out, err = proc.communicate(_copy.stdin_free(script), timeout=60)
    return proc.returncode, out, err


def folder_used(out):
    return [line[4:] for line in out.splitlines() if line.startswith('dir:')][0]


@pytest.mark.parametrize('planted', ['folder', 'link'])
def test_a_name_planted_at_the_old_predictable_path_neither_stops_nor_diverts_the_hop(
        planted, stub_nix, agent_socket, tmp_path):
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    elsewhere = tmp_path / 'attacker'
    elsewhere.mkdir()
    old = {}

    def plant(pid):
        old['name'] = str(tmp / ('nixdeploy-hop.%d' % pid))
        if planted == 'folder':
            os.mkdir(old['name'])
            os.chmod(old['name'], 0o777)
        else:
            os.symlink(str(elsewhere), old['name'])

    script = _copy_send.hop_script(stub_nix, ['ssh-ed25519 AAAAkey1'], 'ssh-ng://h', P1, [])
    rc, out, err = run_hop(script, {'SSH_AUTH_SOCK': agent_socket, 'TMPDIR': str(tmp)}, plant)
    assert rc == 0, (out, err)
    used = folder_used(out)
    # a folder of its own, private, in TMPDIR, never the planted name or where it leads
    assert used.startswith(str(tmp) + '/nixdeploy-hop.') and used != old['name']
    assert [line for line in out.splitlines() if line.startswith('mode:')][0].startswith(
        'mode:drwx------')
    assert 'known:nixdeploy-receiver ssh-ed25519 AAAAkey1' in out
    assert not os.path.exists(used)                          # removed on exit
    assert os.listdir(str(elsewhere)) == []
    # the planted name is left as it was
    if planted == 'folder':
        assert os.listdir(old['name']) == []
        assert stat.S_IMODE(os.lstat(old['name']).st_mode) == 0o777
    else:
        assert os.readlink(old['name']) == str(elsewhere)


def test_no_mktemp_is_no_temp_folder(stub_nix, agent_socket, tmp_path):
    # the tools of this machine without mktemp: exit 97, the sender cannot send
    bare = tmp_path / 'bare'
    bare.mkdir()
    for folder in ('/usr/bin', '/bin'):
        for tool in os.listdir(folder):
            if tool != 'mktemp' and not (bare / tool).exists():
                os.symlink(os.path.join(folder, tool), str(bare / tool))
    script = _copy_send.hop_script(stub_nix, ['ssh-ed25519 AAAA'], 'ssh-ng://h', P1, [])
    rc, out, err = run_hop(script, {'SSH_AUTH_SOCK': agent_socket, 'TMPDIR': str(tmp_path),
                                    'PATH': str(bare)})
    assert rc == 97 and 'cannot make a private temp folder' in err, (out, err)
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith('nixdeploy-hop.')]
