# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_eval (see plugins/modules/nix_eval.py).

Runs once per host like any task, but the first host of the play batch
evaluates the systems of the whole batch in as few ``nix eval`` processes as
the chunk size allows (module_utils/_batch.py, module_utils/_eval.py); the
other hosts read their answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible import constants as C
from ansible.plugins.action import ActionBase

from ansible_collections.nixdeploy.fleet.plugins.module_utils._batch import (
    Batch, batch_key, play_batch, unlink_host_args, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._eval import (
    ARGUMENT_SPEC, PER_HOST_ARGS, EvalError, Evaluator,
    host_request, normalised)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._nix import (
    NixError, NixOptions, flake_ref, options_of)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = task_vars.get('inventory_hostname')
        result['changed'] = False
        base_dir = self._loader.get_basedir()

        def resolve(flake):
            return flake_ref(flake, base_dir)

        try:
            own = normalised(host_request(host, args, task_vars, resolve))
        except (EvalError, NixError) as exc:
            return self._failed(result, host, u'%s' % exc)

        opts = NixOptions.from_params(args)
        shared = options_of(args)
        batch_args = unlink_host_args(args, task_vars, PER_HOST_ARGS)
        hosts = play_batch(task_vars)
        key = batch_key('nix_eval', self._task._uuid, sorted(hosts), shared,
                        batch_args.get('flake'), batch_args.get('attr'), args.get('chunk_size'))

        def compute():
            requests, entries = {}, {}
            for name in hosts:
                try:
                    requests[name] = host_request(name, batch_args, vars_of(task_vars, name), resolve)
                except (EvalError, NixError) as exc:
                    entries[name] = {'error': u'%s' % exc}
            evaluator = Evaluator(opts, args.get('chunk_size'))
            answers = evaluator.evaluate(requests)
            for name, request in requests.items():
                entries[name] = {'request': request, 'answer': answers[name]}
            return {'hosts': entries, 'processes': evaluator.processes, 'by': host}

        try:
            data, here = Batch(C.DEFAULT_LOCAL_TMP, 'eval', key).results(compute)
        except (EvalError, NixError, OSError) as exc:
            return self._failed(result, host, u'%s' % exc)
        entry = data['hosts'].get(host) or {}
        if entry.get('request') != own:
            # This host's arguments differ from what the batch assumed
            # (templated per host): evaluate it on its own.
            evaluator = Evaluator(opts, 1)
            entry = {'request': own, 'answer': evaluator.evaluate({host: own})[host]}
            data, here = {'processes': evaluator.processes}, True
        answer = entry['answer']
        result.update({
            'flake': own['flake'],
            'attr': own['attr_string'],
            'platform': own['platform'],
            'batch_hosts': len(data.get('hosts', {})) or 1,
            'evaluated_here': here,
        })
        if here:
            result['nix_processes'] = data['processes']
        if 'error' in answer:
            return self._failed(result, host, answer['error'])
        result.update({
            'drv_path': answer['drv_path'],
            'out_path': answer['out_path'],
            'system': answer['system'],
            'ansible_facts': {'nix_drv_path': answer['drv_path'],
                              'nix_out_path': answer['out_path']},
        })
        return result

    @staticmethod
    def _failed(result, host, message):
        result['failed'] = True
        result['msg'] = u'%s: %s' % (host, message)
        return result
