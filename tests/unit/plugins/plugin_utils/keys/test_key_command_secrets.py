"""A failing key ``command`` (nix_keys, nix_activate's keys) shows no secret:
its stdout (the key) never, its arguments never (only the program), its
stderr only with -v. Real commands, run by the real actions; the failure comes
before any connection is used."""

import sys
from types import SimpleNamespace

import pytest
from ansible import constants as C
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.utils.display import Display

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.action import nix_activate, nix_keys  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import (  # noqa: E402
    _keys, _keys_content, _keys_upload)

STDOUT = 'nixdeploy-key-stdout-5e1c'
ARG = 'nixdeploy-key-arg-77b2'
STDERR = 'vault is locked (nixdeploy-key-stderr-a4f0)'
# prints the key, then fails: what a half-working secret tool may do
COMMAND = ['sh', '-c', 'printf %%s %s; echo "%s" >&2; exit 3' % (STDOUT, STDERR), ARG]


class NoConnection:
    """Any use of the connection fails the test (a local one: no host key to check)."""

    _shell = SimpleNamespace(tmpdir='/nonexistent')
    transport = _load_name = 'local'

    def __getattr__(self, name):
        raise AssertionError('the connection was used (%s)' % name)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))

    def run(cls, args):
        if cls is nix_activate.ActionModule:
            args = dict(args, platform='nixos', path='/nix/store/x-system')
        task = Task.load({'action': 'probe', 'args': dict(args)})
        task._uuid = 'task-1'
        action = cls(task, NoConnection(), PlayContext(), DataLoader(), None, None)
        return action.run(task_vars={'inventory_hostname': 'h1', 'ansible_play_batch': ['h1'],
                                     'hostvars': {}})
    return run


def test_the_error_keeps_stderr_apart_and_never_stdout_or_arguments():
    key = _keys.normalize_key('api', {'command': COMMAND})
    with pytest.raises(_keys.KeysError) as info:
        _keys_content.load_content(key, None)
    exc = info.value
    assert exc.message == "key 'api': command sh exited with 3"
    assert exc.detail == STDERR
    assert STDOUT not in repr(vars(exc)) and ARG not in repr(vars(exc))


@pytest.mark.parametrize('cls', [nix_keys.ActionModule, nix_activate.ActionModule])
@pytest.mark.parametrize('verbosity', [0, 1, 3])
def test_the_failed_result_shows_stderr_only_when_verbose(run, monkeypatch, cls, verbosity):
    monkeypatch.setattr(Display(), 'verbosity', verbosity)
    out = run(cls, {'keys': {'api': {'command': COMMAND}}})
    assert out['failed'] and out['phase'] == 'keys' and out['rolled_back'] is False
    if verbosity:
        assert out['msg'] == "h1: key 'api': command sh exited with 3: %s" % STDERR
    else:
        assert out['msg'] == "h1: key 'api': command sh exited with 3 (its stderr is shown with -v)"
    assert STDOUT not in repr(out) and ARG not in repr(out)


def test_a_command_without_stderr_says_only_its_exit():
    exc = _keys.KeysError("key 'api': command false exited with 1")
    assert _keys_upload.key_message(exc, 0) == _keys_upload.key_message(exc, 2) == exc.message
