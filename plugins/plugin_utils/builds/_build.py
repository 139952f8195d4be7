# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the systems of many hosts: one ``nix build`` per store.

Where a system is built:
- ``controller``: every controller-built derivation of the batch goes into
  ONE ``nix build --keep-going`` (Nix shares and parallelises common
  dependencies; one failure does not stop the others).
- remote builders (inventory host names or ``ssh-ng://`` URIs, one or
  several): each is probed first and the systems are spread over the
  healthy ones (``_builders``); on each builder the derivation closures go
  there with ``nix copy --derivation``, ONE ``nix build --store <builder>``
  builds them, and ``nix copy --from <builder>`` brings the outputs back
  to the controller, so the usual nix_copy_closure (controller -> target)
  and the controller's GC roots work unchanged. (Nix 2.8's ``--eval-store
  auto`` does not copy a store-path installable's derivation to the build
  store by itself.) Outputs the controller already holds need no builder.
- ``target``: the same, with the target's own store and no copy back: the
  output never passes through the controller (colmena's buildOnTarget).

A derivation is built as ``X.drv^*`` (all its outputs; Nix 2.15+ reads a
bare ``X.drv`` as the file itself), or as the bare ``X.drv`` on a Nix older
than 2.13, which has no ``^`` syntax (``NixCommand.built``). The .drv files come
from nix_eval, which instantiates them in the controller's store. What Nix
prints (derivations, path infos) is read by ``_nix_output``, its build errors
by ``_nix_stderr``, so ``graph`` and ``infos`` below have one shape on every
Nix version.
"""

import dataclasses
import os
import threading
import typing

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (
    _build_platforms, _builders, _closure, _gc_roots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
    EvalError, EvalRequest)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output, _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError, NixCommand

GCROOTS_DIR = '/nix/var/nix/gcroots'
CONTROLLER = _builders.CONTROLLER
TARGET = _builders.TARGET
LOG_TAIL_LINES = 25


def gc_root_path(gc_root_dir, host, fleet=None):
    """The GC root of ``host`` of ``fleet``: ``<gc_root_dir>/<fleet>/<host>``,
    or the flat ``<gc_root_dir>/<host>`` without a fleet (``_gc_roots``)."""
    return _gc_roots.root_path(gc_root_dir, host, fleet)


def build_place(args):
    """``controller``, ``target``, a builder or a list of builders (inventory
    names or store URIs) from ``build_on`` (a string, comma-separated names,
    or a list; the host var ``nix_build_on`` when the task leaves it unset),
    else ``controller``. BuildOnError when controller or target stands in a
    list."""
    return _builders.parse_build_on(args.get('build_on')) or CONTROLLER


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """What one host asks its batch's build work, built by ``for_host``;
    ``data()`` is the form that crosses processes (the batch server's request
    file, the entry's ``request``, read by ``BuildStage.wave`` and
    ``build_on_target``).

    ``drv``: the system's derivation (a ``.drv`` store path), None when it
    is still to be evaluated; ``evaluation``: then the host's
    ``EvalRequest`` (data key ``eval``), else None; ``build_on``: where it
    is built (``build_place``: ``controller``, ``target``, a builder, or a
    tuple of builders)."""

    drv: typing.Optional[str]
    evaluation: typing.Optional[EvalRequest]
    build_on: typing.Union[str, tuple]

    @classmethod
    def for_host(cls, host, args, hostvars, base_dir):
        """What to build for ``host`` (``args``: its arguments, ``drv_path``
        its nix_eval fact when the task leaves it unset; ``hostvars``: its
        variables; ``base_dir``: where a relative flake starts). EvalError
        for a ``drv_path`` that is not a derivation in the store or an
        evaluation that cannot be asked; BuildOnError for a bad
        ``build_on``."""
        drv = args.get('drv_path')
        place = build_place(args)
        evaluation = None
        if drv is None:
            evaluation = EvalRequest.for_host(host, args, hostvars,
                                              lambda flake: flake_ref(flake, base_dir))
        elif not (is_store_path(drv) and drv.endswith('.drv')):
            raise EvalError('drv_path %r is not a derivation in the Nix store' % (drv,))
        return cls(drv=drv, evaluation=evaluation,
                   build_on=tuple(place) if isinstance(place, list) else place)

    def data(self):
        """{drv, eval, build_on (a list of builders, or one string)}, in this
        order: the keys and values a run before this type wrote."""
        return {'drv': self.drv,
                'eval': self.evaluation.data() if self.evaluation is not None else None,
                'build_on': list(self.build_on) if isinstance(self.build_on, tuple)
                else self.build_on}


# ------------------------------------------------------------------ graphs
def drv_closure(graph, drv):
    """Every derivation ``drv`` needs (itself included), from ``graph``
    (``NixCommand.derivations``: derivation show -r, read)."""
    return _closure.walk(graph, drv, 'input_drvs')


def tail(text, lines=LOG_TAIL_LINES):
    return '\n'.join(text.splitlines()[-lines:])


# ------------------------------------------------------------------ running
class Builder:
    """Runs the Nix commands of one build task; counts its processes."""

    def __init__(self, opts, timeout=None):
        self.runner = NixCommand(opts, timeout)
        self._run = self.runner.run
        self._check = self.runner.check

    @property
    def processes(self):
        return self.runner.processes

    def derivations(self, drvs, store_args=()):
        """{drv: {outputs, input_drvs}} of ``drvs`` and everything they need."""
        return self.runner.derivations(drvs, store_args, 'reading derivations')

    def derivations_and_needs(self, drvs):
        """(graph as ``derivations`` gives it, {drv: {system, features}}) from
        ONE ``derivation show -r`` (``show-derivation`` before Nix 2.15)."""
        what = 'reading derivations'
        sub = 'derivation show' if self.runner.features().derivation_show else 'show-derivation'
        data = self.runner.json(sub, ['-r'] + list(drvs), what)
        try:
            return _nix_output.derivations(data), _nix_output.derivation_needs(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise NixError('%s: nix printed JSON of a shape this collection does not know (%s)'
                           % (what, exc))

    def dry_run(self, drvs, store_args=(), env=None):
        argv, rc, _out, err = self._run('build', ['--dry-run', '--no-link'] + list(store_args)
                                        + self.runner.built(drvs), env=env)
        if rc != 0:
            raise NixError('finding what to build', argv=argv, rc=rc, stderr=err)
        return _nix_stderr.dry_run(err)

    def copy_derivations(self, drvs, uri, env):
        args = ['--derivation', '--to', uri] + list(drvs)
        try:
            self._check('copy', args, 'copying the derivations to %s' % uri, env=env)
        except NixError:
            # Nix 2.8's daemon can lose the protocol when two clients add the
            # same paths at once (a builder that is also a target): the
            # second attempt finds them valid.
            self._check('copy', args, 'copying the derivations to %s' % uri, env=env)

    def build(self, drvs, store_args=(), env=None, jobs=None):
        """Build with --keep-going (``jobs``: its --max-jobs, else Nix's);
        (rc, stderr). Failures are sorted out by the caller from the outputs'
        validity and the error blocks."""
        _argv, rc, _out, err = self._run(
            'build', ['--no-link', '--keep-going', '--option', 'log-lines', str(LOG_TAIL_LINES)]
            + (['--max-jobs', str(jobs)] if jobs else []) + list(store_args)
            + self.runner.built(drvs), env=env)
        return rc, err

    def fetch(self, paths, uri, env):
        """Outputs built on a builder -> the controller's store. We asked that
        builder to build them, so its word is the signature (--no-check-sigs)."""
        self._check('copy', ['--no-check-sigs', '--from', uri] + list(paths),
                    'copying the outputs from %s' % uri, env=env)

    def path_infos(self, paths, store_args=(), env=None):
        """{path: info or None} of the closures of ``paths``."""
        return self.runner.path_infos(paths, ['-r'] + list(store_args),
                                      'reading closure sizes', env=env)

    def invalid(self, paths, store_args=(), env=None):
        """The paths of ``paths`` not valid in the store."""
        out = self._check(None, list(store_args) + ['--check-validity', '--print-invalid']
                          + list(paths), 'checking which outputs exist', env=env,
                          tool='nix-store')
        return _nix_output.listed_paths(out)

    def add_root(self, root, path):
        """``root`` -> ``path`` as a GC root; replaces. Under the store's own
        gcroots folder a symlink to the store path IS a root (Nix's collector
        reads that folder): no process per host. Elsewhere it is registered
        as an indirect root by ``nix-store --add-root``."""
        if _in_gcroots(root):
            tmp = '%s.tmp-%d' % (root, os.getpid())
            try:
                os.symlink(path, tmp)
                os.replace(tmp, root)
            except OSError as exc:
                raise NixError('adding the GC root %s: %s' % (root, exc))
            return
        self._check(None, ['--add-root', root, '--realise', path],
                    'adding the GC root %s' % root, tool='nix-store')


def _in_gcroots(root):
    """Whether ``root`` lies in the default store's gcroots folder."""
    folder = os.path.realpath(os.path.dirname(root))
    return (folder + '/').startswith(GCROOTS_DIR + '/')


def outputs_of(graph, drv):
    """The output paths of ``drv`` (``out`` first)."""
    outputs = (graph.get(drv) or {}).get('outputs') or {}
    names = sorted(outputs, key=lambda n: (n != 'out', n))
    return [outputs[n] for n in names if outputs[n]]


def remote_plan(builder, drvs, graph, store_args=(), env=None):
    """Check mode for another store: what of each closure it lacks, read-only
    (no derivation is copied there)."""
    every = set()
    for drv in drvs:
        every |= drv_closure(graph, drv)
    outs = dict((d, outputs_of(graph, d)) for d in every)
    missing = builder.invalid(sorted(p for ps in outs.values() for p in ps), store_args, env)
    to_build = sorted(d for d in every if any(p in missing for p in outs[d]))
    answers = {}
    for drv in drvs:
        needed = drv_closure(graph, drv)
        answers[drv] = {'would_build': [d for d in to_build if d in needed],
                        'would_fetch': [], 'built': False}
    return answers


class Plan(object):
    """What building ``drvs`` in the controller's store would build and
    fetch (``Builder.dry_run``), asked in a thread of its own as soon as the
    wave knows its derivations: beside the read of their graph, two Nix
    calls that need nothing of each other. ``result()`` waits for it and
    raises what it raised."""

    def __init__(self, opts, timeout, drvs):
        self._builder = Builder(opts, timeout)
        self._builder.runner.features()  # `nix --version` once, not in the thread
        self._out = {}
        self._thread = threading.Thread(target=self._ask, args=(drvs,), name='nixdeploy-plan')
        self._thread.daemon = True
        self._thread.start()

    def _ask(self, drvs):
        try:
            self._out['plan'] = self._builder.dry_run(drvs)
        except Exception as exc:  # pylint: disable=broad-except
            self._out['error'] = exc  # raised in the wave's thread, by result()

    def result(self):
        self._thread.join()
        if 'error' in self._out:
            raise self._out['error']
        return self._out['plan']


def build_group(builder, drvs, graph, store_args=(), env=None, check_mode=False, local=None,
                progress=None, plan=None):
    """Build ``drvs`` in one store. Returns {drv: {would_build, would_fetch,
    built, error}} where ``error`` carries the builder's log tail.

    ``progress(outcomes)``: told of the systems ({drv: outcome}) whose
    outputs one look found in the store, while the others still build
    (``_Watch``).

    ``local`` (the controller's builds: ``_build_platforms.LocalBuilds``)
    takes out, before the build, the systems that need a derivation this Nix
    cannot build: they fail with its message, in check mode too, and the
    others build.

    ``plan``: a ``Plan`` of ``drvs`` already asked, else the dry run is
    asked here."""
    to_build, to_fetch = plan.result() if plan is not None else builder.dry_run(
        drvs, store_args, env)
    wanted = set(to_build)
    refused = local.refused(to_build) if local is not None and to_build else {}
    answers = _planned(drvs, graph, to_build, to_fetch, refused, local)
    drvs = [d for d in drvs if 'error' not in answers[d]]
    # nothing to build but paths to fetch (every system in a cache): the
    # build fetches them, else a later step finds them missing
    if check_mode or not drvs or not (to_fetch or any(answers[d]['would_build'] for d in drvs)):
        return answers
    outs = dict((drv, outputs_of(graph, drv)) for drv in drvs)
    watch = None
    if progress is not None and len(drvs) > 1:
        # each look one nix-store call within WATCH_TIMEOUT, whatever the build's
        watch = _Watch(Builder(builder.runner.opts, _Watch.WATCH_TIMEOUT), outs,
                       lambda found: progress(dict((drv, dict(answers[drv], built=drv in wanted))
                                                   for drv in found)),
                       store_args, env)
    # systems built side by side, not one behind the other (LocalBuilds.jobs_for)
    systems = len([d for d in drvs if d in wanted])
    jobs = local.jobs_for(systems) if local is not None else None
    rc, err = builder.build(drvs, store_args, env, jobs=jobs)
    if watch is not None:
        watch.stop()
    missing = builder.invalid([p for ps in outs.values() for p in ps], store_args, env) \
        if rc != 0 else set()
    _say_built(answers, graph, outs, missing, err, wanted)
    return answers


def _planned(drvs, graph, to_build, to_fetch, refused, local):
    """Each system's answer before the build: what it would build and fetch
    (its error when ``local`` refused a derivation it needs)."""
    answers = {}
    for drv in drvs:
        needed = drv_closure(graph, drv)
        answers[drv] = {
            'would_build': sorted(d for d in to_build if d in needed),
            'would_fetch': sorted(to_fetch),
            'built': False,
        }
        mine = dict((d, s) for d, s in refused.items() if d in needed)
        if mine:
            answers[drv]['error'] = local.message(drv, mine)
    return answers


def _say_built(answers, graph, outs, missing, err, wanted):
    """After the build: each system of ``outs`` built, or its error (Nix's
    failures of its own derivations, else the build's tail)."""
    by_drv, other = _nix_stderr.build_failures(err)
    for drv in outs:
        if any(p in missing for p in outs[drv]):
            needed = drv_closure(graph, drv)
            mine = [text for failed, text in sorted(by_drv.items()) if failed in needed]
            detail = '\n'.join(mine or other) or tail(err)
            answers[drv]['error'] = 'building %s failed:\n%s%s' % (
                drv, tail(detail, 60), _ways_out(mine or other))
        else:
            answers[drv]['built'] = drv in wanted


class _Watch(object):
    """While a build of several systems runs, look every ``PERIOD`` seconds
    (one ``nix-store --check-validity`` for the systems not yet seen) for
    systems whose outputs are all in the store, and tell ``done(drvs)`` of
    those one look found, together (their hosts are answered with one
    closure listing): the host of a fast system goes on while a slow one of
    the same build still builds. A build shorter than one period costs no
    look."""

    PERIOD = 1.0
    # seconds one look (nix-store --check-validity of a few paths, a few
    # milliseconds) may take; ``stop`` waits for a look under way that long
    WATCH_TIMEOUT = 60

    def __init__(self, builder, outs, done, store_args=(), env=None):
        self._builder, self._outs, self._done = builder, dict(outs), done
        self._args, self._env = store_args, env
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='nixdeploy-build-watch')
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        while self._outs and not self._stop.wait(self.PERIOD):
            paths = sorted(p for ps in self._outs.values() for p in ps)
            try:
                missing = self._builder.invalid(paths, self._args, self._env)
            except NixError:
                continue
            found = [drv for drv, outs in sorted(self._outs.items())
                     if outs and not any(p in missing for p in outs)]
            if found and not self._stop.is_set():
                for drv in found:
                    del self._outs[drv]
                self._done(found)

    def stop(self):
        """Stop looking (the build ended: its answer covers the rest); a
        look under way ends within its time limit (the thread is a daemon:
        one that would not end is left behind, never waited for)."""
        self._stop.set()
        self._thread.join(self.WATCH_TIMEOUT + 5)


def _ways_out(blocks):
    """After Nix's own message of a platform mismatch: the ways out."""
    for block in blocks:
        mismatch = _nix_stderr.platform_mismatch(block)
        if mismatch:
            return '\n' + _build_platforms.ways_out(*mismatch)
    return ''
