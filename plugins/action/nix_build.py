# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_build (see plugins/modules/nix_build.py).

Each host asks its batch's build work (plugin_utils/task/_batch_work.py) for
its system: the hosts asking together share a wave (one ``nix build`` per
store, plugin_utils/builds/_build_stage.py), and each host's task ends as
soon as its own system is built, so its copy starts while others still
build. Builders are probed once per wave and the systems spread over the
healthy ones (plugin_utils/builds/_builders.py). A host built on itself
(build_on=target) builds in its own task, in parallel with the others
(plugin_utils/builds/_target_build.py).
"""

import os

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars, _specs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (
    _build, _builders, _gc_roots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._build_stage import SERVE
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._target_build import (
    build_on_target)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import normalised
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import loader_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions, options_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import NixdeployAction
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _waits
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import BatchWork

# How many waves of a batch build at once (each one ``nix build``, with
# Nix's own max-jobs inside it): a wave holding a slow system runs until
# that system is built, so more run at once than the two a quiet fleet
# needs (the hosts asking together, and the ones asking meanwhile)
WAVES_AT_ONCE = max(4, os.cpu_count() or 1)


def answer_wait(timeout):
    """Seconds a host waits for its build work's answer: ``ANSWER_WAIT``,
    or more where the task's ``timeout`` allows each Nix command more (a
    wave evaluates, builds and checks: three of them, and ten minutes for
    the rest and a wave ahead of it)."""
    return max(_waits.ANSWER_WAIT, 3 * timeout + 600) if timeout else _waits.ANSWER_WAIT


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = _specs.BUILD_SPEC
    ROLE_VARS = _role_vars.BUILD
    PHASE = 'build'

    def host_result(self, args, result):
        host, task_vars = self.host, self.task_vars
        self._vars = task_vars
        self._opts = NixOptions.from_params(args)
        self._check_mode = self.check_mode
        for_diff = (self._check_mode and self._task.diff and args['closure_diff']
                    and _build.build_place(args) == _build.CONTROLLER)
        if for_diff:
            # `--check --diff` compares closures, so the new systems must be
            # in the controller's store: build them there for real (no host
            # changes), under GC roots of their own so the roots of what is
            # deployed stay as they are.
            self._check_mode = False
            args = dict(args, gc_root_dir=args['gc_root_dir'].rstrip('/') + '-check')
        self._args = args
        try:
            request = _build.BuildRequest.for_host(host, args, task_vars,
                                                   loader_of(self).get_basedir())
        except NixdeployError:
            # it will not ask: no wave of the batch waits for it
            self.batch_decline(self._build_work(None))
            raise
        # what the serving process, the target build and the entry hold: JSON data;
        # the fleet names the folder of the host's GC root (builds/_gc_roots.py)
        data = normalised(request.data())
        data['fleet'] = _gc_roots.fleet_of(args.get('flake'), loader_of(self).get_basedir())
        if request.build_on not in (_build.CONTROLLER, _build.TARGET):
            # what the server reads of the inventory builders it names
            data['builders'] = _builders.builder_vars(
                _builders.names_of(request.build_on), task_vars.get('hostvars') or {})
        if request.build_on == _build.TARGET:
            # no wave of the batch waits for this host
            self.batch_decline(self._build_work(None))
            # the copy stage's probe: the host's store, the system's GC root there
            host_entry = build_on_target(self._opts, args, self._check_mode, host, data,
                                         self.target, _copy.probe_target)
        else:
            host_entry = self.batch_answer(self._build_work(data)).entry
        result.update(host_entry.get('result') or {})
        result['build_on'] = result.get('build_on') or _builders.label(request.build_on)
        if host_entry.get('error'):
            return self.failed(result, host_entry['error'])
        result['changed'] = bool(result.get('built')) or (
            self._check_mode and bool(result.get('would_build')))
        if for_diff:
            result['changed'] = bool(result.get('built'))
            result['built_for_diff'] = True
        return result

    # ----------------------------------------------------------- the build work
    def _build_work(self, request):
        """The batch's build server (``_batch_work``): one per task, play
        batch and the options its hosts share. The hosts asking together
        share a wave (the first one waits for the rest of the play batch
        while they keep asking: task/_stem_serving.GATHER_STALL), and each
        is answered as soon as its own system is built; a retry asks a
        server of its own, which waits for no other host."""
        args = self._args
        shared = self.filled.shared(args)
        # what the wave reads of the task's arguments (``serve_build``)
        context = {'args': dict(options_of(args), timeout=args.get('timeout'),
                                gc_root_dir=args.get('gc_root_dir'),
                                builder_min_free_mb=args.get('builder_min_free_mb')),
                   'check_mode': self._check_mode}
        return BatchWork(
            'build', [options_of(args), self._check_mode,
                      [shared.get(k) for k in _role_vars.per_host(self.ROLE_VARS)],
                      args.get('gc_root_dir'), args.get('builder_min_free_mb')],
            request, SERVE, context=context, waves_at_once=WAVES_AT_ONCE,
            answer_wait=answer_wait(args.get('timeout')))
