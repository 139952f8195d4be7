# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of a key upload, for the two actions that upload keys:
nix_keys and nix_activate (its ``keys`` option, around the activation).

The logic lives in plugin_utils/keys/_keys*.py (specs, content, target scripts);
this supplies the two things only a controller-side action has: its host
(``action.target``, whose ``sh`` runs each program over the task's connection)
and Ansible's file search path with vault decryption for ``src``. ``upload``
returns exactly what nix_keys returns.
"""

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.utils.display import Display

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    file_contents, find_needle, loader_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import NoAnswer
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys, _keys_target
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import host_message


def upload(action, keys, upload_at, prune, check_mode, diff):
    """Upload the keys of ``keys`` (normalized, _keys.normalize_keys) that
    ``upload_at`` selects, over ``action``'s connection (a NixdeployAction
    whose ``host`` is set), pruning with ``prune``.

    Returns nix_keys' result: ``key_files``, ``removed``, ``changed``
    (``diff`` in diff mode, ``warnings`` naming the host); a failure is that
    result with ``failed``, ``msg`` (``<host>: key '<name>' ...``),
    ``phase: keys``, ``rolled_back: false`` and ``connection_lost``, holding
    what was done before it. None when there is nothing to do: no key of
    ``upload_at`` and no prune (no round trip to the host)."""
    handled = _keys.select(keys, upload_at)
    if not handled and not prune:
        return None
    uploader = None
    try:
        uploader = _keys_target.Uploader(action.target, lambda name: read_src(action, name),
                                         cwd=loader_of(action).get_basedir())
        outcome = dict(uploader.run(keys, handled, prune, check_mode=check_mode, diff=diff))
    except _keys.KeysError as exc:
        outcome = failure(action, done_so_far(uploader), key_message(exc, Display().verbosity))
    except (AnsibleConnectionFailure, NoAnswer) as exc:
        # the connection failed, or a program gave no answer within its time limit
        outcome = failure(action, done_so_far(uploader),
                          'host unreachable while uploading keys: %s' % exc, connection_lost=True)
    if uploader and uploader.warnings:
        outcome['warnings'] = ['%s: %s' % (action.host, w) for w in uploader.warnings]
    return outcome


def key_message(exc, verbosity):
    """A KeysError's message; with ``-v`` or more also what the key command
    wrote to stderr (``detail``), else a pointer to it. A command's stdout
    (the key) and arguments never reach a message."""
    if not exc.detail:
        return exc.message
    if verbosity >= 1:
        return '%s: %s' % (exc.message, exc.detail)
    return '%s (its stderr is shown with -v)' % exc.message


def failure(action, result, message, connection_lost=False):
    """``result`` as nix_keys' failed result: the host named, phase keys,
    nothing rolled back (keys never roll a host back)."""
    result.update(failed=True, changed=False, msg=host_message(action.host, message),
                  phase='keys', rolled_back=False, connection_lost=connection_lost)
    return result


def done_so_far(uploader):
    """The keys written (and removed) before a failure stay in the result."""
    result = dict(uploader.result) if uploader else {'key_files': {}, 'removed': []}
    result.pop('diff', None)
    return result


def read_src(action, name):
    """A controller file: relative names searched like ansible.builtin.copy's
    src (the role's files/, the playbook's), vault-encrypted files decrypted
    in memory."""
    try:
        path = find_needle(action, 'files', name)
    except AnsibleError:
        raise _keys.KeysError('src %s not found (searched files/ of the role and the '
                              'playbook, and the playbook folder)' % name)
    try:
        # decrypts vault files in memory, no decrypted copy on disk
        return file_contents(loader_of(action), path)
    except AnsibleError as exc:
        raise _keys.KeysError('cannot read src %s: %s' % (path, to_text(exc.message)))
