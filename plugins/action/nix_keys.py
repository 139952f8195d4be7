# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_keys.

The logic lives in plugin_utils/keys/_keys*.py; the controller's part of an upload
(the task's host, whose ``Host.sh`` runs each program with the key on stdin
and become when the task has it; Ansible's file search path with vault
decryption for ``src``) in plugin_utils/keys/_keys_upload.py, which
nix_activate's ``keys`` option uses too.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _specs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys, _keys_upload
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import NixdeployAction


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = _specs.KEYS_SPEC
    PHASE = 'keys'
    # the host's key is judged before the first program runs on it (Host.sh,
    # plugin_utils/task/_action.py), before anything is uploaded or activated

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        if result.get('failed'):
            # keys are deployed before activation: nothing to roll back
            result.setdefault('rolled_back', False)
        return result

    def host_result(self, args, result):
        try:
            keys = _keys.normalize_keys(args['keys'])
        except _keys.KeysError as exc:
            result.update(_keys_upload.failure(self, {'key_files': {}, 'removed': []}, exc.message))
            return result
        outcome = _keys_upload.upload(self, keys, args['upload_at'], args['prune'],
                                      check_mode=self._task.check_mode, diff=self._task.diff)
        result.update(outcome if outcome is not None
                      else {'changed': False, 'key_files': {}, 'removed': []})
        return result
