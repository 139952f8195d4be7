# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_keys.

The logic lives in module_utils/_keys.py; this plugin supplies the two things
only a controller-side action has: the host's own connection (sh with the
key on stdin, become when the task has it) and Ansible's file search path
with vault decryption for ``src``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _keys
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._action import NixdeployAction


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = _keys.ARGUMENT_SPEC
    PHASE = 'keys'

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        if result.get('failed'):
            # keys are deployed before activation: nothing to roll back
            result.setdefault('rolled_back', False)
        return result

    def run_host(self, args, result):
        host = self.host
        uploader = None
        try:
            keys = _keys.normalize_keys(args['keys'])
            handled = _keys.select(keys, args['upload_at'])
            if not handled and not args['prune']:
                result.update(changed=False, key_files={}, removed=[])
                return result
            uploader = _keys.Uploader(self._sh, self._read_src, cwd=self._loader.get_basedir())
            outcome = uploader.run(keys, handled, args['prune'], check_mode=self._task.check_mode,
                                   diff=self._task.diff)
        except _keys.KeysError as exc:
            outcome = self.failed(_done_so_far(uploader), exc.message)
        except AnsibleConnectionFailure as exc:
            outcome = self.failed(_done_so_far(uploader),
                                  'host unreachable while uploading keys: %s' % exc,
                                  connection_lost=True)
        if uploader and uploader.warnings:
            outcome['warnings'] = ['%s: %s' % (host, w) for w in uploader.warnings]
        result.update(outcome)
        return result

    def _sh(self, script, in_data):
        """Run ``script`` with sh on the target; the key content, if any, is
        its stdin (never an argument, so never in ps or -vvv)."""
        return self.target_sh(script, in_data, sudoable=True)

    def _read_src(self, name):
        """A controller file: relative names searched like ansible.builtin.copy's
        src (the role's files/, the playbook's), vault-encrypted files decrypted
        in memory."""
        try:
            path = self._find_needle('files', name)
        except AnsibleError:
            raise _keys.KeysError('src %s not found (searched files/ of the role and the '
                                  'playbook, and the playbook folder)' % name)
        try:
            # decrypts vault files in memory, no decrypted copy on disk
            content, _show = self._loader._get_file_contents(path)
        except AnsibleError as exc:
            raise _keys.KeysError('cannot read src %s: %s' % (path, to_text(exc.message)))
        return bytes(content)


def _done_so_far(uploader):
    """The keys written (and removed) before a failure stay in the result."""
    return dict(uploader.result if uploader else {'key_files': {}, 'removed': []})
