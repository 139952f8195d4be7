# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_publish (see plugins/modules/nix_publish.py).

Runs once per host like any task, but the batch's server publishes the
systems of the whole batch, as the first host foresees them (one query, one
``nix copy``, one check; plugin_utils/publish/_publish.py); the other hosts
read their answer.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import fact_or_var
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import PUBLISH_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions, options_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish._publish import (
    PER_HOST_ARGS, SERVE)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import NixdeployAction
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import BatchWork
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    unlink_host_args, vars_of)


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = PUBLISH_SPEC
    PHASE = 'publish'

    def run(self, tmp=None, task_vars=None):
        # every text Nix said that became a key, not only msg, with the
        # credentials of any URL in it masked
        return _redact.data(super(ActionModule, self).run(tmp, task_vars))

    def host_result(self, args, result):
        host, task_vars = self.host, self.task_vars
        check_mode = self.check_mode
        # the fact, templated as hostvars gives it for the other hosts
        fact_path = fact_or_var(task_vars, 'nix_out_path')
        host_vars = {'nix_out_path': self._templar.template(fact_path)} if fact_path else {}
        system = args.get('path') or host_vars.get('nix_out_path')
        if not system:
            return self.failed(result, 'no system to publish: give path, or evaluate first '
                                       '(nixdeploy.fleet.nix_eval sets the fact nix_out_path)')
        # an option Nix would misread is refused here, before the batch's work
        NixOptions.from_params(args)
        batch_args = unlink_host_args(args, host_vars, PER_HOST_ARGS)

        def foresee(hosts):
            """Every host's system, from its variables."""
            paths = {}
            for name in hosts:
                known = host_vars if name == host else vars_of(task_vars, name)
                path = batch_args.get('path') or fact_or_var(known, 'nix_out_path')
                if path:
                    paths[name] = u'%s' % path
            return paths

        got = self.batch_answer(BatchWork(
            'publish', [options_of(args), check_mode, args['cache'], args['signing_key'],
                        batch_args.get('path')],
            system, SERVE, foresee=foresee,
            context={'options': options_of(args), 'cache': args['cache'],
                     'signing_key': args['signing_key'], 'timeout': args.get('timeout'),
                     'check_mode': check_mode}))
        host_entry, here = got.entry, got.here
        if 'answer' not in host_entry:
            # the batch's publish failed as a whole (a Nix process that
            # could not start): its sentence
            return self.failed(result, host_entry['error'],
                               traceback=host_entry.get('traceback'))
        published = host_entry['answer']
        result.update(dict((k, v) for k, v in published.items() if k != 'error'))
        result.update({'path': system, 'cache': _redact.url(args['cache']),
                       'batch_hosts': host_entry['batch']['hosts'], 'published_here': here})
        if here:
            result['nix_processes'] = host_entry['batch']['processes']
        if published.get('error'):
            return self.failed(result, published['error'])
        # what nixdeploy.fleet.nix_channel requires before moving a ref (in
        # check mode: what would be published)
        result['ansible_facts'] = {'nix_published_path': system}
        return result
