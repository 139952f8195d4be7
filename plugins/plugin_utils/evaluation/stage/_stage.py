# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How nix_eval's hosts reach their batch's evaluation (nix_build, where it
evaluates, calls ``stage_of(...).evaluate`` inside its own wave).

The first host of a play batch to ask starts the batch's server
(``task/_batch_work``) and hands it the request it foresees for every host
of the batch (``BatchEval.foresee``); every host reads its own answer as
soon as it is known. The hosts whose own request differs from the one
foreseen for them (an argument templated per host) ask it, and are
answered together in a later wave. ``stage_of`` makes
the ``EvalStage`` a task's arguments ask for (``_batch``: the
evaluation of one batch, and the files beside it); the role's variables
are checked before a request is formed (``_vars``). What a
host's answer sets: ``facts_of``, kept for later batches (``_recording``).
"""

import threading

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
    EvalError, EvalRequest, normalised)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._budget import (
    DEFAULT_MAX_MEMORY_MB, default_workers)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._slots import (
    EvalSlots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._batch import (
    EvalStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._vars import (
    noting, refused_vars, unknown_notes)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import (
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    loader_of, task_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    PlayBatch, batch_folder, play_uuid, record_facts, task_batch, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
    BatchWork, serves)

# reused hosts of each batch evaluated again before answers are given, the
# least recently checked first (nix_eval's eval_reuse_check; nix_build's
# evaluations take the same)
DEFAULT_REUSE_CHECK = 1
# Seconds one host's evaluation may take when the task gives no eval_timeout
# (or timeout): a bound on an evaluator that hangs (a fetch that never ends,
# an import-from-derivation build stuck), far above what one host takes
DEFAULT_EVAL_TIMEOUT = 1800

# The arguments that tune the evaluators: part of the batch's key
TUNING = ('eval_chunk_size', 'eval_workers', 'eval_max_memory_mb', 'eval_cache', 'eval_reuse',
          'eval_reuse_check', 'eval_timeout', 'eval_batch_timeout')


def stage_of(opts, args, workers=None):
    """The ``EvalStage`` a task's arguments ask for (``workers``: fewer
    evaluators than they ask, still within the job's slots)."""
    cache = None
    if args.get('eval_cache', True):
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache import (
            EvalCache)
        cache = EvalCache(EvalCache.default_folder())
    max_memory_mb = args.get('eval_max_memory_mb') or DEFAULT_MAX_MEMORY_MB
    folder = batch_folder(C.DEFAULT_LOCAL_TMP)
    # every evaluation of the job (per-host ones too) within the evaluators
    # the arguments allow: slots shared by all of them (pool/_slots)
    slots = EvalSlots(folder, args.get('eval_workers') or default_workers(None, max_memory_mb))
    # every evaluator of the run evaluates one content of each flake
    # nix_eval's eval_timeout; nix_build's timeout bounds its evaluations too
    timeout = args.get('eval_timeout')
    if timeout is None:
        timeout = args.get('timeout') or DEFAULT_EVAL_TIMEOUT
    return EvalStage(opts, workers=workers or args.get('eval_workers'),
                     max_memory_mb=max_memory_mb, chunk_size=args.get('eval_chunk_size'),
                     # 0: no limit
                     timeout=timeout or None, batch_timeout=args.get('eval_batch_timeout') or None,
                     cache=cache, slots=slots, sources=RunSources(folder),
                     reuse=args.get('eval_reuse', True),
                     reuse_check=args.get('eval_reuse_check', DEFAULT_REUSE_CHECK))


# what a host's wait for its batch's answer may take beyond the batch's own
# bound (eval_batch_timeout): the pin, the cache, the processes' start
ANSWER_MARGIN = 600


def answer_wait(args):
    """Seconds a host waits for its batch's evaluation: the batch's bound
    and a margin where the task sets one (eval_batch_timeout), else None (the
    batch machinery's own bound, ``task/_waits.ANSWER_WAIT``)."""
    bound = args.get('eval_batch_timeout')
    return bound + ANSWER_MARGIN if bound else None


class BatchEval(object):
    """A play batch's evaluation, as one host's task asks for it: what this
    host asks (``request``), the requests the first host foresees for every
    host of the batch (``foresee``: each formed from that host's own
    variables) and what the batch's server evaluates a wave of requests
    with (``context``, for ``serve_eval``: ``EvalStage.evaluate``, which
    puts each answer as soon as it is known).

    ``action``: nix_eval's NixdeployAction."""

    def __init__(self, action, args, opts):
        self.action, self.args, self.opts = action, args, opts
        self.base_dir = loader_of(action).get_basedir()
        task = task_of(action)
        # the role's variables are checked (the deploy role's first phase)
        self.check_vars = _role_vars.FLAG in task.args and boolean(
            task.args.get(_role_vars.FLAG), strict=False)
        self.request = normalised(EvalRequest.for_host(
            action.host, args, action.task_vars, self.resolve).data())
        # the batch's unknown nix_* variables, found while foreseeing:
        # {variable: [nearest, hosts]}
        self.unknown = {}

    def resolve(self, flake):
        return flake_ref(flake, self.base_dir)

    def work(self):
        """The ``BatchWork`` of the batch. Not part of its key: flake and
        attr. Where they are each host's own variables (_role_vars.Filled)
        the first host foresees every host's own request; where the task
        templates them per host from other variables, every host still
        shares the batch's server (one key each would start a server, and
        an evaluation, per host): the first host foresees every request
        from its own values, and a host whose own request differs asks it,
        answered in a later wave with the others that do."""
        args = self.args
        return BatchWork('eval', [options_of(args), [args.get(k) for k in TUNING]],
                         self.request, SERVE, context=self.context, foresee=self.foresee,
                         answer_wait=answer_wait(args))

    def foresee(self, hosts):
        """{host: request} of the play batch ``hosts``, each formed from the
        host's own variables, for the first wave. A host left out asks its
        own: one whose role variables its own task refuses (it fails before
        asking), or whose request cannot be formed here (its own task forms
        it, and says why it cannot)."""
        action, args = self.action, self.args
        requests = {}
        for name in hosts:
            try:
                hostvars = vars_of(action.task_vars, name)
                if self.check_vars and refused_vars(name, hostvars, self.unknown):
                    continue
                requests[name] = normalised(EvalRequest.for_host(
                    name, action.filled.for_host(args, action.ROLE_VARS, hostvars), hostvars,
                    self.resolve).data())
            except (EvalError, NixError, KeyError):
                # KeyError: a host the first host's hostvars do not hold
                continue
        return requests

    def context(self):
        """What the batch's server evaluates with (``serve_eval``), as data:
        called by the host that registers it, after its foresight (the unknown
        variables it found)."""
        action, args = self.action, self.args
        hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(task_of(action)), action.task_vars)
        return {'options': options_of(args),
                'args': dict((k, args.get(k)) for k in TUNING + ('timeout',)),
                'hosts': hosts.data(), 'own': _own_requests(action, args),
                'unknown': unknown_notes(self.unknown) if self.unknown else None}


@serves
def serve_eval(context, requests, put):
    """The batch's evaluation (``SERVE``), in its server: a wave's
    evaluation, each answer put as soon as it is known. ``context``
    (``BatchEval.context``): {options, args: the tuning arguments, hosts: the
    play batch, own: whether every request is formed from each host's own
    variables, unknown: the batch's unknown-variable warnings}. Where
    ``own``, the server keeps each host's facts in flight as it answers;
    otherwise each host keeps its own once it has its answer (``_record``)."""
    hosts = PlayBatch.from_data(context['hosts'])
    put_with = _recording(hosts, put) if context['own'] else put
    if context['unknown']:
        put_with = noting(put_with, context['unknown'])
    # Where every request is formed from each host's own variables, the
    # one foreseen for a host is the one it asks: every answer is read,
    # the last one may carry the figures and nobody waits for them.
    # Otherwise a foreseen answer may never be read: the figures go to
    # the host the wave was opened for, whose answer waits for them.
    reporting = _Reporting(put_with, None if context['own'] else getattr(put, 'opener', None))
    try:
        return stage_of(NixOptions.from_params(context['options']), context['args']).evaluate(
            requests, reporting.put)
    finally:
        reporting.flush()


# the name the evaluation's BatchWork gives its serve function
SERVE = '%s:serve_eval' % __name__


class _Reporting(object):
    """``put`` that gives the wave's figures to ``reporter`` (the host the
    wave was opened for, sure to read its answer) instead of the host whose
    answer came last, which may be a foreseen answer its host never reads
    (it asked a request of its own): the reporter's answer is held until
    the figures are final, so it waits for the wave's slowest host. None:
    the figures stay with the last answer, and no answer waits."""

    def __init__(self, put, reporter):
        self._put, self.reporter = put, reporter
        self._held = None
        self._lock = threading.Lock()

    def put(self, host, host_entry):
        with self._lock:
            if host == self.reporter and 'batch' not in host_entry:
                self._held = host_entry
                return
            held, figures = self._held, host_entry.get('batch')
            if held is not None and figures is not None:
                self._held = None
        if held is not None and figures is not None:
            self._put(host, dict((k, v) for k, v in host_entry.items() if k != 'batch'))
            self._put(self.reporter, dict(held, batch=figures))
        else:
            self._put(host, host_entry)

    def flush(self):
        """The reporter's answer, if still held (the evaluation ended
        without a last answer: it raised)."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            self._put(self.reporter, held)


def batch_entry(action, args, opts):
    """This host's entry of its play batch's evaluation (served by the
    run's serving process), as soon as it is known: (the entry, whether
    the wave that answered it was opened for it, the batch's hosts, this
    host's own request)."""
    evaluation = BatchEval(action, args, opts)
    got = action.batch_answer(evaluation.work())
    _record(got.hosts, action.host, got.entry, action, args)
    return got.entry, got.here, got.hosts, evaluation.request


def _record(hosts, host, host_entry, action, args):
    """Keep the host's facts for the later phases of its batch, where the
    batch's process did not keep them already."""
    evaluated = host_entry.get('answer') or {}
    if 'error' in host_entry or not evaluated or 'error' in evaluated:
        # a host whose own evaluation failed has no system a batch may copy
        record_facts(C.DEFAULT_LOCAL_TMP, hosts, {host: None})
    elif not _own_requests(action, args):
        record_facts(C.DEFAULT_LOCAL_TMP, hosts, {host: facts_of(evaluated)})


def _own_requests(action, args):
    """Whether the batch's process forms each host's request from that
    host's own variables: ``flake``, ``attr`` and ``platform`` each unset or
    filled from the host's own variable (``_role_vars.Filled.own_options``),
    not a value the task templated for the first host."""
    filled_from_own = action.filled.own_options
    return all(args.get(name) in (None, '') or name in filled_from_own
               for name in ('flake', 'attr', 'platform'))


def _recording(hosts, put):
    """``put`` that also keeps each answered host's facts for the play batch
    ``hosts``: what a later batch would evaluate again for a host whose facts
    its worker does not see yet (_run.with_facts). A host's answer to
    its own request, where it differs from the one foreseen, comes later
    and replaces what the server kept for it."""
    def put_with_facts(name, host_entry):
        put(name, host_entry)
        evaluated = host_entry.get('answer') or {}
        if evaluated and 'error' not in evaluated:
            try:
                record_facts(C.DEFAULT_LOCAL_TMP, hosts, {name: facts_of(evaluated)})
            except OSError:
                if not _run.job_ended(C.DEFAULT_LOCAL_TMP):
                    raise
                # the job has ended (Ansible removed its folder) since the
                # host had its answer: no later batch reads these facts
    return put_with_facts


def facts_of(evaluated):
    """The facts a host's evaluation sets."""
    return {'nix_drv_path': evaluated['drv_path'], 'nix_out_path': evaluated['out_path']}
