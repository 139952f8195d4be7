"""tests/collection.py's ssh_agent hands a test an agent only once it
listens: a socket's file appears at bind(), a moment before listen(), and an
ssh-add that came in between was refused (a whole run went red on it). A
tool of the suite's own: the current stack skips it (here_only)."""

import os
import socket
import subprocess

import pytest

from tests import collection

pytestmark = pytest.mark.here_only


def test_a_socket_is_ready_only_once_it_listens(tmp_path):
    path = str(tmp_path / 'agent.sock')
    assert not collection._answers(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        # the file is there, nobody listens yet: what ssh-add was refused on
        assert os.path.exists(path)
        assert not collection._answers(path)
        server.listen(1)
        assert collection._answers(path)


def test_the_agent_holds_the_key_it_was_given(tmp_path):
    key = str(tmp_path / 'id_ed25519')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    path = str(tmp_path / 'agent.sock')
    with collection.ssh_agent(path, [key]) as agent:
        listed = subprocess.run(['ssh-add', '-l'], env=dict(os.environ, SSH_AUTH_SOCK=agent),
                                stdout=subprocess.PIPE, universal_newlines=True, check=True)
        assert 'ED25519' in listed.stdout, listed.stdout
    assert not os.path.exists(path)
