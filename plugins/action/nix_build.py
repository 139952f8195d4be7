# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_build (see plugins/modules/nix_build.py).

The first host of the play batch builds every controller- and builder-built
system of the batch (one ``nix build`` per store, plugin_utils/build/_build.py) and
sets their GC roots; the other hosts read their answer. Builders are probed
first, all at once, and the systems spread over the healthy ones
(plugin_utils/build/_builders.py); each builder runs its one build in a thread of
its own. A host built on itself (build_on=target) builds in its own task, in
parallel with the others.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars, _specs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build import (
    _build, _build_platforms, _builders, _closure)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build._eval import (
    EvalError, Evaluator, host_request, normalised)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._copy import (
    parse_probe, probe_script)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    remote_program, StoreError, Target, is_store_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._target_data import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._action import NixdeployAction
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._batch import (
    facts_in_flight, vars_of, with_facts)


def _same_system(entry, own):
    """Whether the batch's ``entry`` for this host answers ``own`` although
    their requests differ: the batch evaluated the host (its nix_eval fact
    was not set yet when the first host got here, as on the free strategy)
    and found the very derivation this host asks for, to build at the same
    place. Building it again alone would only cost time (and probes)."""
    request = entry.get('request') or {}
    return (own.get('drv') is not None and request.get('drv') is None
            and request.get('build_on') == own.get('build_on')
            and (entry.get('result') or {}).get('drv_path') == own['drv'])


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = _specs.BUILD_SPEC
    ROLE_VARS = _role_vars.BUILD
    PHASE = 'build'
    ERRORS = (EvalError, NixError, StoreError, OSError, _builders.BuildOnError)

    def run_host(self, args, result):
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
        own = normalised(self._request(host, args, task_vars))
        if own['build_on'] == _build.TARGET:
            entry = self._on_target(host, own)
        else:
            entry = self._from_batch(host, own)
        result.update(entry.get('result') or {})
        result['build_on'] = result.get('build_on') or _builders.label(own['build_on'])
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
        """{drv, eval (a nix_eval request when there is no drv), build_on}
        (``args``: the host's, ``drv_path`` its nix_eval fact when the task
        leaves it unset)."""
        drv = args.get('drv_path')
        request = {'drv': drv, 'eval': None, 'build_on': _build.build_place(args)}
        if drv is None:
            base_dir = self._loader.get_basedir()
            request['eval'] = host_request(host, args, hostvars,
                                           lambda flake: flake_ref(flake, base_dir))
        elif not (is_store_path(drv) and drv.endswith('.drv')):
            raise EvalError('drv_path %r is not a derivation in the Nix store' % (drv,))
        return request

    def _from_batch(self, host, own):
        args = self._args
        shared = self.filled.shared(args)

        def compute(hosts):
            requests, entries = {}, {}
            # the evaluation's facts of hosts whose eval result Ansible has not yet
            # handed to this worker (else they would be built apart)
            in_flight = facts_in_flight(C.DEFAULT_LOCAL_TMP, hosts)
            for name in hosts:
                try:
                    hostvars = with_facts(vars_of(self._vars, name), in_flight.get(name))
                    requests[name] = normalised(self._request(
                        name, self.filled.for_host(args, self.ROLE_VARS, hostvars), hostvars))
                except (EvalError, NixError, _builders.BuildOnError) as exc:
                    entries[name] = {'error': u'%s' % exc}
            entries.update(self._build_batch(requests))
            return {'hosts': entries}

        entry, data, _here = self.from_batch(
            'build', [options_of(self._args), self._check_mode,
                      [shared.get(k) for k in _role_vars.per_host(self.ROLE_VARS)],
                      self._args.get('gc_root_dir'), self._args.get('builder_min_free_mb')],
            compute, own)
        if entry is None:
            theirs = (data.get('hosts') or {}).get(host) or {}
            if not _same_system(theirs, own):
                # arguments templated differently for this host: build it alone
                theirs = self._build_batch({host: own})[host]
            entry = theirs
        return entry

    # ------------------------------------------------------------ batch
    def _build_batch(self, requests):
        """Controller and builder builds of ``requests`` ({host: request})."""
        entries = dict((h, {'request': r, 'result': {}}) for h, r in requests.items()
                       if r['build_on'] != _build.TARGET)
        drvs = self._drvs(entries)
        builder = _build.Builder(self._opts, self._args.get('timeout'))
        here, remote = [], []
        for name, entry in sorted(entries.items()):
            if drvs.get(name):
                (here if entry['request']['build_on'] == _build.CONTROLLER else remote).append(name)
        for names, build in ((here, self._build_here), (remote, self._build_remote)):
            if not names:
                continue
            try:
                build(builder, names, drvs, entries)
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

    def _build_here(self, builder, names, drvs, entries):
        """ONE build on the controller for ``names``."""
        wanted = sorted(set(drvs[n] for n in names))
        graph, needs = builder.derivations_and_needs(wanted)
        # a system this Nix cannot build fails here, named, not deep in the build
        local = _build_platforms.LocalBuilds(builder.runner, needs)
        answers = _build.build_group(builder, wanted, graph, check_mode=self._check_mode,
                                     local=local)
        self._answer(builder, names, drvs, entries, graph, answers)

    def _build_remote(self, builder, names, drvs, entries):
        """The hosts built on builders: probe the builders they name, spread
        the systems over the healthy ones, ONE build per builder (each in its
        own thread)."""
        wanted = sorted(set(drvs[n] for n in names))
        graph, needs = builder.derivations_and_needs(wanted)
        # what the controller holds is built: no builder needed, none probed
        outs = dict((d, _build.outputs_of(graph, d)) for d in wanted)
        missing = builder.invalid(sorted(p for ps in outs.values() for p in ps))
        done = [n for n in names
                if outs[drvs[n]] and not any(p in missing for p in outs[drvs[n]])]
        if done:
            answers = dict((drvs[n], {'built': False, 'would_build': [], 'would_fetch': []})
                           for n in done)
            self._answer(builder, done, drvs, entries, graph, answers)
        names = [n for n in names if n not in done]
        asked = []
        for name in names:
            asked += [b for b in _builders.names_of(entries[name]['request']['build_on'])
                      if b not in asked]
        if not asked:
            return
        hostvars = self._vars.get('hostvars') or {}
        min_free = self._args.get('builder_min_free_mb')
        probed = _builders.probe_all(asked, hostvars, self._opts, min_free)
        closures = dict((drvs[n], _build.drv_closure(graph, drvs[n])) for n in names)
        # one piece of work per system and list of usable builders: hosts
        # that deploy one system share its build
        usable, work = {}, {}
        for name in names:
            drv = drvs[name]
            asked_here = _builders.names_of(entries[name]['request']['build_on'])
            ok, skipped = _builders.choose(asked_here, probed,
                                           _builders.closure_needs(needs, closures[drv]))
            entries[name]['result'].update({'drv_path': drv, 'out_path': (outs[drv] or [None])[0],
                                            'builders_skipped': skipped})
            if ok:
                work[name] = (drv, tuple(ok))
                usable[work[name]] = ok
            else:
                entries[name]['error'] = _builders.no_builder_message(skipped)
        placed = _builders.spread(usable, dict((p, closures[p[0]]) for p in usable))
        groups = {}
        for name, piece in sorted(work.items()):
            groups.setdefault(placed[piece], []).append(name)
        threads = []
        for place, group in sorted(groups.items()):
            thread = threading.Thread(target=self._build_on, name='nixdeploy-build-%s' % place,
                                      args=(probed[place], group, drvs, entries, graph))
            thread.daemon = True
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    def _build_on(self, probed, names, drvs, entries, graph):
        """ONE build of ``names`` on the builder ``probed`` (a thread of its
        own: a Builder of its own)."""
        builder = _build.Builder(self._opts, self._args.get('timeout'))
        uri, env = probed.spec.uri, probed.spec.env
        store_args = ('--store', uri)
        for name in names:
            entries[name]['result'].update({'build_on': probed.name, 'builder': probed.name,
                                            'builder_store': uri})
        wanted = sorted(set(drvs[n] for n in names))
        try:
            if self._check_mode:
                answers = _build.remote_plan(builder, wanted, graph, store_args, env)
            else:
                builder.copy_derivations(wanted, uri, env)
                answers = _build.build_group(builder, wanted, graph, store_args, env)
                built = [p for d in wanted if 'error' not in answers[d]
                         for p in _build.outputs_of(graph, d)]
                if built:
                    builder.fetch(built, uri, env)
            self._answer(builder, names, drvs, entries, graph, answers)
        except Exception as exc:  # pylint: disable=broad-except
            # a thread's exception would be lost: each host says it instead
            for name in names:
                entries[name].setdefault('error', u'on the builder %s: %s' % (probed.name, exc))

    def _answer(self, builder, names, drvs, entries, graph, answers):
        """Each host's result from its system's answer; GC roots and closure
        sizes on the controller."""
        ok_outs = []
        for name in names:
            drv = drvs[name]
            answer = answers[drv]
            out = _build.outputs_of(graph, drv)[0]
            result = entries[name]['result']
            result.update({'drv_path': drv, 'out_path': out, 'built': answer['built'],
                           'would_build': answer['would_build'],
                           'would_fetch': answer['would_fetch']})
            if 'error' in answer:
                entries[name]['error'] = answer['error']
            elif not self._check_mode:
                root = _build.gc_root_path(self._args['gc_root_dir'], name)
                # exist_ok: the builders' threads may get here at once
                os.makedirs(self._args['gc_root_dir'], 0o755, exist_ok=True)
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
                        _closure.sizes(infos, result['out_path'])

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
        # the probe plants the GC root of the system to be built there (as a
        # copy's, copy-probe.sh): the activation releases it (not in check mode)
        rooted = not self.check_mode
        probe = probe_script(self._args.get('remote_nix_dir'), root_key=host if rooted else None,
                             root_path=out if rooted else None)
        _rc, stdout, _err = self.target_sh(probe, in_data=out + '\n', sudoable=True)
        facts = parse_probe(stdout, probe)
        if facts is None:
            raise StoreError('no nix found on the target (set remote_nix_dir)')
        uri = target.store_uri(remote_program=remote_program(facts['nix_dir']))
        env = target.nix_env()
        store_args = ('--store', uri)
        result = entry['result']
        result.update({'drv_path': drv, 'out_path': out, 'target_store': uri})
        dropped = dropped_warning(host, facts['dropped'])
        if dropped:
            result.setdefault('warnings', []).append(dropped)
        if rooted:
            result['target_gc_root'] = facts.get('gc_root')
            if facts.get('gc_root_error'):
                result.setdefault('warnings', []).append(
                    '%s: the system built there is not protected from a garbage collection '
                    'before its activation: %s' % (host, facts['gc_root_error']))
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
            result['closure_paths'], result['closure_bytes'] = _closure.sizes(infos, out)
        return entry
