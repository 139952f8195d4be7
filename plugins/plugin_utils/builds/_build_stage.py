# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The build of a play batch: each host's system built as soon as the host
asks, its answer given as soon as its own system is built.

Hosts that ask together share a wave (``task/_batch_server``): ONE ``nix
build`` on the controller for the wave's systems (Nix shares and
parallelises their common dependencies), or for builder-built systems the
builders probed once per wave and the systems spread over the healthy ones,
one build per builder (``_builders``). A wave tells each host as soon as its
own system is in the store (``_build.build_group``'s ``progress``), so a
slow system in the same wave holds only its own host; a host that asks
while waves run starts a wave of its own.
"""

import threading

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (
    _build, _build_platforms, _builders, _closure, _gc_roots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._stage import stage_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import AddressError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import serves
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    batch_folder)


@serves
def serve_build(context, requests, put):
    """nix_build's batch work (``SERVE``): one wave of ``requests``.
    ``context``: {args: the task's Nix options, ``timeout``, ``gc_root_dir``
    and ``builder_min_free_mb``; check_mode}."""
    args = context['args']
    BuildStage(NixOptions.from_params(args), args, context['check_mode']).wave(requests, put)


# the name nix_build's BatchWork gives its serve function
SERVE = '%s:serve_build' % __name__


class BuildStage(object):
    """Builds waves of hosts' requests ({drv, eval, build_on, fleet, and
    builders: the variables of the inventory builders it names,
    ``_builders.builder_vars``}); ``put(host, entry)`` answers each host
    ({'request', 'result', 'error'?})."""

    def __init__(self, opts, args, check_mode):
        self.opts, self.args, self.check_mode = opts, args, check_mode
        # the builders' variables the wave's requests brought
        self.hostvars = {}
        self._lock = threading.Lock()

    def wave(self, requests, put):
        """Build ``requests`` ({host: request}), answering each host when its
        system is built (or failed)."""
        entries = {}
        for name, request in requests.items():
            request = dict(request)
            self.hostvars.update(request.pop('builders', None) or {})
            entries[name] = {'request': request, 'result': {}}
        answered = set()

        def give(names):
            for name in names:
                with self._lock:
                    if name in answered:
                        continue
                    answered.add(name)
                host_entry = dict(entries[name])
                host_entry['result'] = dict((k, v) for k, v in host_entry['result'].items()
                                            if not k.startswith('_'))
                put(name, host_entry)

        drvs = self.drvs(entries)
        give([n for n in entries if n not in drvs])
        builder = _build.Builder(self.opts, self.args.get('timeout'))
        here, remote = [], []
        for name, host_entry in sorted(entries.items()):
            if drvs.get(name):
                (here if host_entry['request']['build_on'] == _build.CONTROLLER else remote).append(name)
        for names, build in ((here, self._build_here), (remote, self._build_remote)):
            if not names:
                continue
            try:
                build(builder, names, drvs, entries, give)
            except (NixError, AddressError) as exc:
                for name in names:
                    entries[name].setdefault('error', u'%s' % exc)
            give(names)

    def drvs(self, entries):
        """{host: drv}; the hosts given no drv_path are evaluated first as
        nix_eval evaluates with its default options (``stage/_stage``): the
        evaluation cache, then evaluators side by side within the job's
        evaluator slots (one process for the whole wave kept the others'
        cores idle and took no slot)."""
        drvs, to_eval = {}, {}
        for name, host_entry in entries.items():
            if host_entry['request']['drv']:
                drvs[name] = host_entry['request']['drv']
            else:
                to_eval[name] = host_entry['request']['eval']
        if to_eval:
            found = {}
            # put() is called from the evaluators' threads: one key each;
            # the task's timeout bounds each host's evaluation too
            stage_of(self.opts, {'timeout': self.args.get('timeout')}).evaluate(
                to_eval, found.__setitem__)
            for name in to_eval:
                # evaluate() answers every host it is given (failures too)
                evaluation = found[name]
                evaluated = evaluation.get('answer') or {}
                error = evaluation.get('error') or evaluated.get('error')
                if error:
                    entries[name]['error'] = error
                else:
                    drvs[name] = evaluated['drv_path']
        return drvs

    # ------------------------------------------------------------ controller
    def _build_here(self, builder, names, drvs, entries, give):
        """ONE build on the controller for ``names``; each host answered as
        soon as its own system is in the store."""
        wanted = sorted(set(drvs[n] for n in names))
        plan = _build.Plan(self.opts, self.args.get('timeout'), wanted)
        graph, needs = builder.derivations_and_needs(wanted)
        # a system this Nix cannot build fails here, named, not deep in the build
        local = _build_platforms.LocalBuilds(builder.runner, needs)
        by_drv = {}
        for name in names:
            by_drv.setdefault(drvs[name], []).append(name)

        def progress(outcomes):
            # these systems are built while the wave's others still build:
            # their hosts are answered with one closure listing
            done = [name for drv in sorted(outcomes) for name in by_drv.get(drv) or []]
            self._fill_results(_build.Builder(self.opts, self.args.get('timeout')), done, drvs,
                               entries, graph, outcomes)
            give(done)

        outcomes = _build.build_group(builder, wanted, graph, check_mode=self.check_mode,
                                      local=local, progress=progress, plan=plan)
        self._fill_results(builder, names, drvs, entries, graph, outcomes)

    # ------------------------------------------------------------ builders
    def _build_remote(self, builder, names, drvs, entries, give):
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
            outcomes = dict((drvs[n], {'built': False, 'would_build': [], 'would_fetch': []})
                            for n in done)
            self._fill_results(builder, done, drvs, entries, graph, outcomes)
            give(done)
        names = [n for n in names if n not in done]
        asked = []
        for name in names:
            asked += [b for b in _builders.names_of(entries[name]['request']['build_on'])
                      if b not in asked]
        if not asked:
            return
        min_free = self.args.get('builder_min_free_mb')
        probed = _builders.probe_all(asked, self.hostvars, self.opts, min_free)
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
                                      args=(probed[place], group, drvs, entries, graph, give))
            thread.daemon = True
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    def _build_on(self, probed, names, drvs, entries, graph, give):
        """ONE build of ``names`` on the builder ``probed`` (a thread of its
        own: a Builder of its own); its hosts answered when it is done."""
        builder = _build.Builder(self.opts, self.args.get('timeout'))
        uri, env = probed.spec.uri, probed.spec.env
        store_args = ('--store', uri)
        for name in names:
            entries[name]['result'].update({'build_on': probed.name, 'builder': probed.name,
                                            'builder_store': uri})
        wanted = sorted(set(drvs[n] for n in names))
        try:
            if self.check_mode:
                outcomes = _build.remote_plan(builder, wanted, graph, store_args, env)
            else:
                builder.copy_derivations(wanted, uri, env)
                outcomes = _build.build_group(builder, wanted, graph, store_args, env)
                built = [p for d in wanted if 'error' not in outcomes[d]
                         for p in _build.outputs_of(graph, d)]
                if built:
                    builder.fetch(built, uri, env)
            self._fill_results(builder, names, drvs, entries, graph, outcomes)
        except Exception as exc:  # pylint: disable=broad-except
            # a thread's exception would be lost: each host says it instead
            for name in names:
                entries[name].setdefault('error', u'on the builder %s: %s' % (probed.name, exc))
        give(names)

    # ------------------------------------------------------------ answers
    def _fill_results(self, builder, names, drvs, entries, graph, outcomes):
        """Each host's result from its system's answer; GC roots and closure
        sizes on the controller. Hosts already answered are left as they are."""
        ok_outs, mine = [], []
        for name in names:
            drv = drvs[name]
            result = entries[name]['result']
            if drv not in outcomes or result.get('_answered'):
                continue
            result['_answered'] = True
            mine.append(name)
            outcome = outcomes[drv]
            out = _build.outputs_of(graph, drv)[0]
            result.update({'drv_path': drv, 'out_path': out, 'built': outcome['built'],
                           'would_build': outcome['would_build'],
                           'would_fetch': outcome['would_fetch']})
            if 'error' in outcome:
                entries[name]['error'] = outcome['error']
            elif not self.check_mode:
                # <gc_root_dir>/<fleet>/<host>; the host's old flat root goes
                try:
                    root, warning = _gc_roots.write_root(
                        builder, self.args['gc_root_dir'],
                        entries[name]['request'].get('fleet'), name, out)
                except NixError as exc:
                    # this host's root only: the others' builds stand
                    entries[name]['error'] = u'%s' % exc
                    continue
                if warning:
                    result.setdefault('warnings', []).append(u'%s: %s' % (name, warning))
                ok_outs.append(out)
                result['gc_root'] = root
        if ok_outs:
            infos = builder.path_infos(sorted(set(ok_outs)))
            _closure.keep_listings(batch_folder(C.DEFAULT_LOCAL_TMP), options_of(self.args),
                                   infos, sorted(set(ok_outs)))
            for name in mine:
                result = entries[name]['result']
                if result.get('gc_root'):
                    result['closure_paths'], result['closure_bytes'] = \
                        _closure.sizes(infos, result['out_path'])
