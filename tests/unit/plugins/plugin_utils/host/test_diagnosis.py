"""The words for host trouble (plugin_utils/host/_diagnosis.py): what ssh,
sudo and a host's store said, in the user's words."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis  # noqa: E402


def test_ssh_problem():
    assert _diagnosis.ssh_problem('Host key verification failed.\r\nerror: x').startswith(
        'host key verification failed')
    assert 'dead' in _diagnosis.ssh_problem('Timeout, server 10.0.0.1 not responding.')
    assert _diagnosis.ssh_problem('error: something in nix') == ''
    assert 'passwordless sudo' in _diagnosis.ssh_problem('sudo: a password is required\n')


@pytest.mark.parametrize('text,words', [
    ("error: writing to file: No space left on device", 'no space left on /nix on web3 during the copy'),
    ('error: sqlite: database or disk is full', 'no space left on /nix on web3 during the copy'),
    ("error: creating directory '/nix/store/x': Read-only file system",
     'the Nix store on web3 is read-only during the copy'),
    ("error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused",
     'the nix-daemon on web3 is not running during the copy'),
    ('error: something else', None),
])
def test_fault_message_names_the_cause(text, words):
    said = _diagnosis.fault_message('web3', 'copying 3 paths...\n' + text, 'during the copy')
    if words is None:
        assert said is None
    else:
        assert said.startswith(words) and text.replace('error: ', '') in said, said


@pytest.mark.parametrize('text,words', [
    ('Missing sudo password', 'sudo on the target asks for a password and none was given'),
    ('sudo: a password is required', 'sudo on the target asks for a password'),
    ('Incorrect sudo password', 'the become password was refused'),
    ('sudo: unknown user nosuch', 'the become_user nosuch does not exist'),
    ('sudo: unknown user: nosuch', 'the become_user nosuch does not exist'),
    ('Permission denied', ''),
])
def test_become_problem(text, words):
    assert _diagnosis.become_problem(text).startswith(words)
    assert bool(_diagnosis.become_problem(text)) == bool(words)
