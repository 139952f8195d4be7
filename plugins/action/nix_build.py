# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_build (see plugins/modules/nix_build.py).

The first host of the play batch builds every controller- and builder-built
system of the batch (one ``nix build`` per store, module_utils/_build.py) and
sets their GC roots; the other hosts read their answer. A host built on
itself (build_on=target) builds in its own task, in parallel with the others.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _build
from ansible_collections.nixdeploy.fleet.plugins.module_utils._batch import (
    unlink_host_args, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._copy import (
    parse_probe, probe_script, remote_program)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._eval import (
    EvalError, Evaluator, host_request, normalised)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._nix import (
    NixError, NixOptions, flake_ref, options_of)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._store import (
    StoreError, Target, is_store_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._action import NixdeployAction


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = _build.ARGUMENT_SPEC
    PHASE = 'build'
    ERRORS = (EvalError, NixError, StoreError, OSError)

    def run_host(self, args, result):
        host, task_vars = self.host, self.task_vars
        self._vars = task_vars
        self._opts = NixOptions.from_params(args)
        self._check_mode = self.check_mode
        for_diff = (self._check_mode and self._task.diff and args['closure_diff']
                    and _build.build_place(args, task_vars) == _build.CONTROLLER)
        if for_diff:
            # `--check --diff` compares closures, so the new systems must be
            # in the controller's store: build them there for real (no host
            # changes), under GC roots of their own so the roots of what is
            # deployed stay as they are.
            self._check_mode = False
            args = dict(args, gc_root_dir=args['gc_root_dir'].rstrip('/') + '-check')
        self._args = args
        own = normalised(self._request(host, args, task_vars))
        if own['build_on'] == _build.TARGET:
            entry = self._on_target(host, own)
        else:
            entry = self._from_batch(host, own)
        result.update(entry.get('result') or {})
        result['build_on'] = own['build_on']
        if entry.get('error'):
            return self.failed(result, entry['error'])
        result['changed'] = bool(result.get('built')) or (
            self._check_mode and bool(result.get('would_build')))
        if for_diff:
            result['changed'] = bool(result.get('built'))
            result['built_for_diff'] = True
        return result

    # ------------------------------------------------------------ requests
    def _request(self, host, args, hostvars):
        """{drv, eval (a nix_eval request when there is no drv), build_on}."""
        drv = _build.drv_of(args, hostvars)
        request = {'drv': drv, 'eval': None, 'build_on': _build.build_place(args, hostvars)}
        if drv is None:
            base_dir = self._loader.get_basedir()
            request['eval'] = host_request(host, args, hostvars,
                                           lambda flake: flake_ref(flake, base_dir))
        elif not (is_store_path(drv) and drv.endswith('.drv')):
            raise EvalError('drv_path %r is not a derivation in the Nix store' % (drv,))
        return request

    def _from_batch(self, host, own):
        args = unlink_host_args(self._args, self._vars, _build.PER_HOST_ARGS)

        def compute(hosts):
            requests, entries = {}, {}
            for name in hosts:
                try:
                    requests[name] = normalised(self._request(name, args, vars_of(self._vars, name)))
                except (EvalError, NixError) as exc:
                    entries[name] = {'error': u'%s' % exc}
            entries.update(self._build_batch(requests))
            return {'hosts': entries}

        entry, _data, _here = self.from_batch(
            'build', [options_of(self._args), self._check_mode,
                      [args.get(k) for k in sorted(_build.PER_HOST_ARGS)],
                      self._args.get('gc_root_dir')],
            # arguments templated differently for this host: build it alone
            compute, own, alone=lambda: {'hosts': self._build_batch({host: own})})
        return entry

    # ------------------------------------------------------------ batch
    def _build_batch(self, requests):
        """Controller and builder builds of ``requests`` ({host: request})."""
        entries = dict((h, {'request': r, 'result': {}}) for h, r in requests.items()
                       if r['build_on'] != _build.TARGET)
        drvs = self._drvs(entries)
        builder = _build.Builder(self._opts, self._args.get('timeout'))
        groups = {}
        for name, entry in entries.items():
            if drvs.get(name):
                groups.setdefault(entry['request']['build_on'], []).append(name)
        for place, names in sorted(groups.items()):
            try:
                self._build_place(builder, place, names, drvs, entries)
            except (NixError, StoreError) as exc:
                for name in names:
                    entries[name].setdefault('error', u'%s' % exc)
        return entries

    def _drvs(self, entries):
        """{host: drv}; evaluates (one batch) the hosts given no drv_path."""
        drvs, to_eval = {}, {}
        for name, entry in entries.items():
            if entry['request']['drv']:
                drvs[name] = entry['request']['drv']
            else:
                to_eval[name] = entry['request']['eval']
        if to_eval:
            answers = Evaluator(self._opts).evaluate(to_eval)
            for name, answer in answers.items():
                if 'error' in answer:
                    entries[name]['error'] = answer['error']
                else:
                    drvs[name] = answer['drv_path']
        return drvs

    def _build_place(self, builder, place, names, drvs, entries):
        wanted = sorted(set(drvs[n] for n in names))
        graph = builder.derivations(wanted)
        store_args, env, uri = (), None, None
        if place != _build.CONTROLLER:
            uri, env = self._builder_store(place)
            store_args = ('--store', uri)
            if self._check_mode:
                answers = _build.remote_plan(builder, wanted, graph, store_args, env)
            else:
                builder.copy_derivations(wanted, uri, env)
                answers = _build.build_group(builder, wanted, graph, store_args, env)
                built = [p for d in wanted if 'error' not in answers[d]
                         for p in _build.outputs_of(graph, d)]
                if built:
                    builder.fetch(built, uri, env)
        else:
            answers = _build.build_group(builder, wanted, graph, check_mode=self._check_mode)
        ok_outs = []
        for name in names:
            drv = drvs[name]
            answer = answers[drv]
            out = _build.outputs_of(graph, drv)[0]
            result = entries[name]['result']
            result.update({'drv_path': drv, 'out_path': out, 'built': answer['built'],
                           'would_build': answer['would_build'],
                           'would_fetch': answer['would_fetch']})
            if uri:
                result['builder_store'] = uri
            if 'error' in answer:
                entries[name]['error'] = answer['error']
            elif not self._check_mode:
                root = _build.gc_root_path(self._args['gc_root_dir'], name)
                if not os.path.isdir(self._args['gc_root_dir']):
                    os.makedirs(self._args['gc_root_dir'], 0o755)
                try:
                    builder.add_root(root, out)
                except NixError as exc:
                    # this host's root only: the others' builds stand
                    entries[name]['error'] = u'%s' % exc
                    continue
                ok_outs.append(out)
                result['gc_root'] = root
        if ok_outs:
            infos = builder.path_infos(sorted(set(ok_outs)))
            for name in names:
                result = entries[name]['result']
                if result.get('gc_root'):
                    result['closure_paths'], result['closure_bytes'] = \
                        _build.closure_sizes(infos, result['out_path'])

    def _builder_store(self, place):
        """(store URI, env) of a remote builder: an inventory host or a URI."""
        if '://' in place:
            return place, None
        hostvars = self._vars.get('hostvars') or {}
        if place not in hostvars:
            raise StoreError('build_on %r is neither controller, target, an inventory host '
                             'nor a store URI' % (place,))
        target = Target.from_hostvars(hostvars[place], name=place)
        return target.store_uri(), target.nix_env()

    # ------------------------------------------------------------ target
    def _on_target(self, host, own):
        """Copy the derivation closure to the host and realise it there."""
        entry = {'request': own, 'result': {}}
        drvs = self._drvs({host: entry})
        if host not in drvs:
            return entry
        drv = drvs[host]
        builder = _build.Builder(self._opts, self._args.get('timeout'))
        graph = builder.derivations([drv])
        out = _build.outputs_of(graph, drv)[0]
        target = Target.from_connection(self._connection, self._vars)
        _rc, stdout, _err = self.target_sh(probe_script(self._args.get('remote_nix_dir')),
                                           in_data=out + '\n', sudoable=True)
        facts = parse_probe(stdout)
        if facts is None:
            raise StoreError('no nix found on the target (set remote_nix_dir)')
        uri = target.store_uri(remote_program=remote_program(facts['nix_dir']))
        env = target.nix_env()
        store_args = ('--store', uri)
        result = entry['result']
        result.update({'drv_path': drv, 'out_path': out, 'target_store': uri})
        if out not in facts.get('invalid', []) and facts.get('complete'):
            result.update({'built': False, 'would_build': [], 'would_fetch': []})
        elif self._check_mode:
            result.update(_build.remote_plan(builder, [drv], graph, store_args, env)[drv])
        else:
            builder.copy_derivations([drv], uri, env)
            answer = _build.build_group(builder, [drv], graph, store_args, env)[drv]
            result.update(dict((k, v) for k, v in answer.items() if k != 'error'))
            if 'error' in answer:
                entry['error'] = answer['error']
                return entry
        if not self._check_mode:
            infos = builder.path_infos([out], store_args, env)
            result['closure_paths'], result['closure_bytes'] = _build.closure_sizes(infos, out)
        return entry
