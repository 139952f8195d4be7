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


@pytest.mark.parametrize('text,destination,words', [
    ('root@10.0.0.2: Permission denied (publickey).', None,
     'ssh login refused for root@10.0.0.2: key or user (Permission denied (publickey))'),
    ('Warning: added\r\ndeploy@web1.example.org: Permission denied (publickey,password).\r\n',
     'x@y', 'ssh login refused for deploy@web1.example.org: key or user '
     '(Permission denied (publickey,password))'),
    # ssh did not name the user: the destination the collection knows
    ('Permission denied (publickey).', 'root@web1',
     'ssh login refused for root@web1: key or user (Permission denied (publickey))'),
    ('Permission denied (publickey).', None,
     'ssh login refused: key or user (Permission denied (publickey))'),
    # a file's permission, not a login
    ('cannot open /nix/var/nix/db/big-lock: Permission denied', 'root@web1', ''),
    ('Connection refused', None, ''),
])
def test_login_refused(text, destination, words):
    assert _diagnosis.login_refused(text, destination) == words


def test_ssh_problem_names_a_refused_login():
    assert _diagnosis.ssh_problem('root@10.0.0.3: Permission denied (publickey).') == \
        'ssh login refused for root@10.0.0.3: key or user (Permission denied (publickey))'
    # a bare "Permission denied" keeps its old words
    assert _diagnosis.ssh_problem('Permission denied').startswith('ssh authentication was refused')
