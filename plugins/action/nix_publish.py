# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_publish (see plugins/modules/nix_publish.py).

Runs once per host like any task, but the first host of the play batch
publishes the systems of the whole batch (one query, one ``nix copy``, one
check; module_utils/_publish.py); the other hosts read their answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible import constants as C
from ansible.plugins.action import ActionBase

from ansible_collections.nixdeploy.fleet.plugins.module_utils._batch import (
    Batch, batch_key, play_batch, unlink_host_args, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._nix import (
    NixError, NixOptions, options_of)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._publish import (
    ARGUMENT_SPEC, PER_HOST_ARGS, PublishError, Publisher)


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
        check_mode = bool(self._play_context.check_mode)
        result['changed'] = False
        # the fact, templated as hostvars gives it for the other hosts
        own_vars = dict((k, self._templar.template(task_vars[k]))
                        for k in ('nix_out_path',) if k in task_vars)
        own = args.get('path') or own_vars.get('nix_out_path')
        if not own:
            return _failed(result, host, 'no system to publish: give path, or evaluate first '
                                         '(nixdeploy.fleet.nix_eval sets the fact nix_out_path)')
        opts = NixOptions.from_params(args)
        batch_args = unlink_host_args(args, own_vars, PER_HOST_ARGS)
        hosts = play_batch(task_vars)
        shared = options_of(args)
        key = batch_key('nix_publish', self._task._uuid, sorted(hosts), shared, check_mode,
                        args['cache'], args['signing_key'], batch_args.get('path'))

        def publish(paths):
            """{host: {path, answer}} for ``paths`` ({host: system})."""
            publisher = Publisher(opts, args['cache'], args['signing_key'], args.get('timeout'))
            answers = publisher.publish(sorted(set(paths.values())), check_mode)
            entries = dict((name, {'path': path, 'answer': answers[path]})
                           for name, path in paths.items())
            return {'hosts': entries, 'processes': publisher.processes}

        def compute():
            paths = {}
            for name in hosts:
                known = own_vars if name == host else vars_of(task_vars, name)
                path = batch_args.get('path') or known.get('nix_out_path')
                if path:
                    paths[name] = u'%s' % path
            return publish(paths)

        try:
            data, here = Batch(C.DEFAULT_LOCAL_TMP, 'publish', key).results(compute)
            entry = data['hosts'].get(host) or {}
            if entry.get('path') != own:
                # templated differently for this host: publish it on its own
                data, here = publish({host: own}), True
                entry = data['hosts'][host]
        except (PublishError, NixError, OSError) as exc:
            return _failed(result, host, u'%s' % exc)
        answer = entry['answer']
        result.update(dict((k, v) for k, v in answer.items() if k != 'error'))
        result.update({'path': own, 'cache': args['cache'],
                       'batch_hosts': len(data['hosts']), 'published_here': here})
        if here:
            result['nix_processes'] = data['processes']
        if answer.get('error'):
            return _failed(result, host, answer['error'])
        # what nixdeploy.fleet.nix_channel requires before moving a ref (in
        # check mode: what would be published)
        result['ansible_facts'] = {'nix_published_path': own}
        return result


def _failed(result, host, message):
    result['failed'] = True
    result['changed'] = False
    result['msg'] = u'%s: %s' % (host, message)
    return result
