"""The controller side of a key upload (plugin_utils/keys/_keys_upload.py) and
nix_activate's keys option where no target is needed: what fails before any
connection is used. The uploads themselves run in the lab
(tests/integration/plugins/action/test_nix_keys.py)."""

import sys
from types import SimpleNamespace

import pytest
from ansible import constants as C
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.action import nix_activate, nix_keys  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import (  # noqa: E402
    _keys, _keys_upload)

SECRET = 'nixdeploy-unit-secret-0d9f'


class NoConnection:
    """Any use of the connection fails the test: these paths need none."""

    _shell = SimpleNamespace(tmpdir='/nonexistent')

    def __getattr__(self, name):
        raise AssertionError('the connection was used (%s)' % name)


def action_of(cls, args, check_mode=False):
    task = Task.load({'action': 'probe', 'args': dict(args)})
    task._uuid = 'task-1'
    task.check_mode = check_mode
    return cls(task, NoConnection(), PlayContext(), DataLoader(), None, None)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))

    def run(cls, args, check_mode=False):
        if cls is nix_activate.ActionModule:
            args = dict(args, platform='nixos')
        action = action_of(cls, args, check_mode)
        return action.run(task_vars={'inventory_hostname': 'h1', 'ansible_play_batch': ['h1'],
                                     'hostvars': {}})
    return run


def test_nothing_to_upload_is_no_round_trip():
    action = SimpleNamespace(host='h1')  # no connection, no loader: none may be used
    assert _keys_upload.upload(action, [], 'pre-activation', False, False, False) is None
    keys = _keys.normalize_keys({'late': {'text': 'x', 'upload_at': 'post-activation'}})
    assert _keys_upload.upload(action, keys, 'pre-activation', False, False, False) is None


BAD_SPEC = {'bad': {'text': SECRET, 'src': 'y'}}
FAILING_COMMAND = {'cmd': {'command': ['sh', '-c', 'echo "vault is locked" >&2; exit 3'],
                           'upload_at': 'post-activation'}, 'db': {'text': SECRET}}


@pytest.mark.parametrize('check_mode', [False, True])
def test_a_bad_spec_fails_the_activation_before_anything_runs(run, check_mode):
    out = run(nix_activate.ActionModule, {'path': '/nix/store/x-system', 'keys': BAD_SPEC},
              check_mode=check_mode)
    assert out['failed'] and out['phase'] == 'keys' and out['rolled_back'] is False
    assert out['activated'] is False and not out['changed'] and out['connection_lost'] is False
    assert out['msg'] == "h1: key 'bad': give exactly one of text, src or command (got text and src)"
    assert out['keys_pre'] == dict(
        key_files={}, removed=[], failed=True, changed=False, msg=out['msg'], phase='keys',
        rolled_back=False, connection_lost=False)
    assert 'keys_post' not in out and SECRET not in repr(out)
    # nix_keys says the same
    keys = run(nix_keys.ActionModule, {'keys': BAD_SPEC})
    assert keys['msg'] == out['msg'] and keys['phase'] == 'keys' and keys['rolled_back'] is False


def test_every_content_is_read_before_the_first_upload(run):
    """A post-activation key's command runs after the activation; a pre-activation
    one's before anything is sent."""
    pre = dict(FAILING_COMMAND, cmd=dict(FAILING_COMMAND['cmd'], upload_at='pre-activation'))
    out = run(nix_activate.ActionModule, {'path': '/nix/store/x-system', 'keys': pre})
    assert out['failed'] and out['phase'] == 'keys' and out['activated'] is False
    # the program and its exit code, never its arguments; stderr only with -v
    assert out['msg'] == "h1: key 'cmd': command sh exited with 3 (its stderr is shown with -v)", \
        out['msg']
    assert out['keys_pre']['key_files'] == {} and SECRET not in repr(out)


@pytest.mark.parametrize('state', ['confirmed', 'rolled_back'])
@pytest.mark.parametrize('keys', [{'keys': {'db': {'text': SECRET}}}, {'keys_prune': True}])
def test_keys_go_with_state_activated_only(run, state, keys):
    out = run(nix_activate.ActionModule, dict(keys, state=state))
    assert out['failed'] and out['phase'] == 'activate'
    assert out['msg'].startswith('h1: keys and keys_prune go with state=activated only (state=%s'
                                 % state)
    assert SECRET not in repr(out)
