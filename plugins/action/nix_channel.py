# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_channel (see plugins/modules/nix_channel.py).

Runs once per host, but the first host of the play batch reads the refs of
the whole batch (one ``git ls-remote``) and moves them (one ``git push``);
the other hosts read their answer. Thin: the work, and when a host moves its
ref on its own, is plugin_utils/publish/_channel_stage.py; this shapes the
result (credentials masked, the query's facts, the message and the diff).
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import CHANNEL_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish._channel_stage import (
    ChannelStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import NixdeployAction

_MOVED = ('moved', 'new')


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = CHANNEL_SPEC
    PHASE = 'channel'

    def host_result(self, args, result):
        host = self.host
        stage = ChannelStage(host, args, self.task_vars, self.check_mode,
                             self._loader.get_basedir(), self._templar.template, self.batch_answer)
        host_entry = stage.host_entry()
        ref_result = host_entry.get('result') or {}
        result.update(ref_result)
        # what the result shows has its credentials masked; the fact
        # nix_flake_pinned keeps the reference whole (it is fetched from)
        for key in ('flake', 'source'):
            if result.get(key):
                result[key] = _redact.url(result[key])
        result['repo'] = _redact.url(args['repo'])
        batch = host_entry.get('batch') or {}
        result.update(batch_hosts=batch.get('batch_hosts', 1),
                      pushed_here=batch.get('pushed_here', False))
        if 'processes' in batch:
            result['processes'] = batch['processes']
        if host_entry.get('error') or ref_result.get('error'):
            result.pop('error', None)
            return self.failed(result, host_entry.get('error') or ref_result['error'])
        if args['state'] == 'query':
            result['ansible_facts'] = {'nix_flake_revision': ref_result['revision'],
                                       'nix_flake_pinned': ref_result['flake']}
            result['msg'] = '%s: %s at %s, %s' % (
                host, _redact.url(ref_result['flake']), ref_result['revision'][:12],
                '%s at %s' % (ref_result['ref'], ref_result['before'][:12]) if ref_result.get('before')
                else '%s does not exist yet' % ref_result['ref'])
            return result
        return self._report(host, result, ref_result)

    def _report(self, host, result, ref_result):
        status = ref_result['status']
        ref, before, after = ref_result['ref'], ref_result.get('before'), ref_result['revision']
        result['moved'] = status in _MOVED
        result['changed'] = result['moved'] or status == 'would move'
        if status == 'current':
            result['msg'] = '%s: %s is at %s' % (host, ref, after[:12])
        elif status == 'ahead':
            result['msg'] = ('%s: %s holds %s, which already contains %s: not moved back'
                             % (host, ref, before[:12], after[:12]))
            result['warnings'] = [result['msg']]
        else:
            result['msg'] = '%s: %s %s %s -> %s' % (
                host, ref, 'would move' if status == 'would move' else 'moved',
                before[:12] if before else '(new)', after[:12])
        if result['changed'] and self._task.diff:
            result['diff'] = {'before': '%s %s\n' % (ref, before or '(none)'),
                              'after': '%s %s\n' % (ref, after),
                              'before_header': ref, 'after_header': ref}
        return result
