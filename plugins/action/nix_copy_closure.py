# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_copy_closure (see the module docs).

Thin: parses the arguments, hands them to the task's CopyStage
(plugin_utils/copy/_copy_stage.py: one probe over the Ansible connection,
then plugin_utils/copy/_copy_send.py does the sending; cascade mode is
_cascade_stage.py) and shapes its result: the seconds it took, every text in
it masked, a failure's details.
"""

import time

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars, _specs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _builders
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._copy_stage import CopyStage
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import NixdeployAction


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = _specs.COPY_SPEC
    ROLE_VARS = _role_vars.COPY
    VALIDATION = _specs.COPY_VALIDATION
    PHASE = 'copy'
    # the host's key is judged before anything runs (plugin_utils/task/_action.py):
    # a cascade and nix copy reach the host over ssh, not Ansible's connection
    HOST_KEYS = True
    # the deprecated option names too (Ansible refuses any other argument)
    _VALID_ARGS = frozenset(_specs.COPY_SPEC) | frozenset(_role_vars.aliases(_role_vars.COPY))

    def run(self, tmp=None, task_vars=None):
        started = time.time()
        if self._built_on_target(task_vars or {}):
            return {'skipped': True, 'changed': False,
                    'skip_reason': 'nix_build_on is target: the host builds its system itself, '
                                   'nothing to copy'}
        result = super(ActionModule, self).run(tmp, task_vars)
        result['seconds'] = round(time.time() - started, 3)
        # every text a target or Nix said that became a key (stderr, a hop's
        # error, a warning), not only msg, with any credential masked
        return _redact.data(result)

    def _built_on_target(self, task_vars):
        """With from_role_vars (the deploy role), a host whose nix_build_on is
        ``target`` is skipped: its build task built the system there. Said
        here rather than as the role task's ``when``: a condition costs every
        host a Jinja compilation in its own worker (docs/scale.md)."""
        if not boolean(self._task.args.get(_role_vars.FLAG, False), strict=False):
            return False
        value = task_vars.get('nix_build_on')
        if value is None:
            return False
        try:
            return _builders.parse_build_on(self._templar.template(value)) == _builders.TARGET
        except _builders.BuildOnError:
            return False

    def host_result(self, args, result):
        # HOST_KEYS: the host's key is judged by now (_unchecked: what its opt-out let through)
        stage = CopyStage(self.host, args, self.task_vars, self.target,
                          check_mode=self._task.check_mode, diff=self._task.diff,
                          unchecked=bool(self._unchecked), filled=self.filled,
                          batch_answer=self.batch_answer)
        result.update(stage.run())
        return result

    def failure_details(self, error):
        stderr = getattr(error, 'stderr', '') or ''
        details = {'connection_lost': _connection_lost(stderr)}
        # the target's own words: masked as the message is (a cache's login
        # in a URL Nix echoes), since AWX keeps every key of a result; only
        # the lines the message does not say already (a failure is printed
        # once), under details (readers get them back: _outcome.result_data)
        said = u'%s' % error
        rest = [line for line in _redact.text(stderr).splitlines()
                if line.strip() and line.strip() not in said]
        if rest:
            details['details'] = {'stderr': u'\n'.join(rest)}
        return details


def _connection_lost(stderr):
    """Whether ssh failed to reach the host (not a host key or sudo refusal)."""
    problem = _diagnosis.ssh_problem(stderr)
    # a refused login: the host answered (a wrong key or user)
    return bool(problem) and 'host key' not in problem and 'sudo' not in problem \
        and not _diagnosis.login_refused(stderr)
