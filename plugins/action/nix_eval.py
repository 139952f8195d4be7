# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_eval (see plugins/modules/nix_eval.py).

Runs once per host like any task, but the first host of the play batch
evaluates the systems of the whole batch in as few ``nix eval`` processes as
the chunk size allows (plugin_utils/run/_batch.py, plugin_utils/build/_eval.py); the
other hosts read their answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import EVAL_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build._eval import (
    EvalError, Evaluator, host_request, normalised)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._action import NixdeployAction
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._batch import (
    Batch, batch_key, play_uuid, record_facts, task_batch, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._serial import gate


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = EVAL_SPEC
    ROLE_VARS = _role_vars.EVAL
    PHASE = 'eval'
    ERRORS = (EvalError, NixError, OSError)

    def run_host(self, args, result):
        # the batch before this one failed too many hosts: nothing of this
        # batch starts (the role ends the play on ``stopped``)
        judged = self._serial_gate(args.get('max_fail_percentage'))
        result['batch'] = judged['batch']
        result['play_hosts'] = len(self.task_vars.get('ansible_play_hosts_all') or ()) or 1
        if judged['stop']:
            result.update(stopped=True, msg=u'nixdeploy: %s' % judged['stop'])
            return result
        return self._evaluate(args, result)

    def _serial_gate(self, max_fail_percentage):
        """This play batch's number and whether it may start
        (plugin_utils/run/_serial.py); judged once per batch."""
        hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(self._task), self.task_vars)
        batch = Batch(C.DEFAULT_LOCAL_TMP, 'serial',
                      batch_key(self._task._uuid, sorted(hosts), max_fail_percentage))
        # one file per play (its first task) lists the batches so far
        record = os.path.join(batch.dir, 'serial-%s.json' % batch_key(self._task._uuid))
        active = self.task_vars.get('ansible_play_hosts')
        judged, _here = batch.results(
            lambda: gate(record, hosts, active, max_fail_percentage))
        return judged

    def _evaluate(self, args, result):
        host, task_vars = self.host, self.task_vars
        base_dir = self._loader.get_basedir()

        def resolve(flake):
            return flake_ref(flake, base_dir)

        own = normalised(host_request(host, args, task_vars, resolve))
        opts = NixOptions.from_params(args)
        # what every host shares; flake and attr each host's own when this
        # host's are its own variables' (_role_vars.Filled)
        shared = self.filled.shared(args)

        def evaluate(requests, entries, chunk_size):
            evaluator = Evaluator(opts, chunk_size)
            answers = evaluator.evaluate(requests)
            for name, request in requests.items():
                entries[name] = {'request': request, 'answer': answers[name]}
            return {'hosts': entries, 'processes': evaluator.processes, 'by': host}

        def compute(hosts):
            requests, entries = {}, {}
            for name in hosts:
                try:
                    hostvars = vars_of(task_vars, name)
                    requests[name] = host_request(
                        name, self.filled.for_host(args, self.ROLE_VARS, hostvars), hostvars,
                        resolve)
                except (EvalError, NixError) as exc:
                    entries[name] = {'error': u'%s' % exc}
            data = evaluate(requests, entries, args.get('eval_chunk_size'))
            # what the build and copy batches would evaluate again for a host
            # whose facts their worker does not see yet (_batch.with_facts)
            record_facts(C.DEFAULT_LOCAL_TMP, hosts, dict(
                (name, _facts(entry['answer'])) for name, entry in entries.items()
                if 'answer' in entry and 'error' not in entry['answer']))
            return data

        entry, data, here = self.from_batch(
            'eval', [options_of(args), shared.get('flake'), shared.get('attr'),
                     args.get('eval_chunk_size')],
            # this host's arguments differ from what the batch assumed
            # (templated per host): it is evaluated on its own
            compute, own, alone=lambda: evaluate({host: own}, {}, 1))
        answer = entry['answer']
        result.update({
            # shown in the report: a credential in the reference is masked
            'flake': _redact.url(own['flake']),
            'attr': own['attr_string'],
            'platform': own['platform'],
            'batch_hosts': len(data.get('hosts', {})) or 1,
            'evaluated_here': here,
        })
        if here:
            result['nix_processes'] = data['processes']
        if 'error' in answer:
            return self.failed(result, answer['error'])
        result.update({
            'drv_path': answer['drv_path'],
            'out_path': answer['out_path'],
            'system': answer['system'],
            'ansible_facts': _facts(answer),
        })
        return result


def _facts(answer):
    """The facts a host's evaluation sets."""
    return {'nix_drv_path': answer['drv_path'], 'nix_out_path': answer['out_path']}
