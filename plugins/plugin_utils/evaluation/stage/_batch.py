# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluation of a play batch: requests in, each host's answer out as
soon as it is known.

Hosts that ask the same (flake, attribute) share one evaluation; answers an
earlier run left in the evaluation cache (``cache/_cache``) come first and
cost no evaluator; the rest go to the parallel evaluators of ``pool/_pool``.
Every evaluator of the run evaluates the one content the run pinned of each
flake (``flake/_source``), and each answer names it (``source``).
The host whose answer completes the batch carries the batch's figures
(``batch``: Nix processes, evaluators, peak memory, answers from the cache),
so a report counts them once.

This file holds ``EvalStage``, whose ``evaluate`` is a few named steps
(pin, look up, spot check, evaluate), and ``_BatchAnswers``, one call's
state: the batch's requests grouped by what they ask, and the order in
which answers are given (hosts that failed before evaluating, then the
cache's, then reused ones, then the evaluators'), the last one with the
batch's figures. ``EvalStage`` hands two steps to helpers it makes and
holds: ``_lookup.Lookup`` (the cache and reuse across commits,
before any evaluator) and ``reuse/_spot_check.SpotCheck`` (reused and
recorded answers evaluated again first); ``_notes`` words what
the run says once about an answer. How a task reaches it: ``_stage``.
"""

import threading

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
    apply_expression, evaluation_opts, request_key)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._pool import EvalPool
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._budget import (
    DEFAULT_MAX_MEMORY_MB, default_workers)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._lookup import (
    Lookup)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._notes import (
    answer_notes)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._spot_check import (
    SpotCheck)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import (
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions, NixCommand
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import short_digest


class EvalStage(object):
    """``evaluate(requests, put)`` for one batch.

    ``workers``/``max_memory_mb``/``chunk_size``: the evaluators (default:
    cores and free memory, ``pool/_budget.default_workers``); ``cache``: an
    ``EvalCache`` or None (no cache); ``slots``: the job's ``EvalSlots``
    (None: no bound but ``workers``); ``sources``: the run's
    ``RunSources`` (None: pinned by this stage alone)."""

    def __init__(self, opts, workers=None, max_memory_mb=None, chunk_size=None, cache=None,
                 timeout=None, slots=None, sources=None, reuse=True, reuse_check=None,
                 batch_timeout=None):
        self.runner = NixCommand(evaluation_opts(opts), timeout)
        # seconds the evaluators of one evaluate() may take in all (None: only
        # each host's own bound, ``timeout``)
        self.batch_timeout = batch_timeout
        self.workers = workers
        self.max_memory_mb = max_memory_mb or DEFAULT_MAX_MEMORY_MB
        self.chunk_size = chunk_size
        self.cache = cache
        self.slots = slots
        self.sources = sources
        # {flake: FlakeSource} of this stage's requests
        self.pinned = {}
        # why the controller's Nix configuration keeps this run from the cache
        self.impure_config = None
        # reuse across commits where the cache is used (reuse/_reuse), and
        # {flake: why none of its hosts is}
        self.reuse = reuse
        # reused hosts evaluated again before their answers are given
        self.reuse_check = int(reuse_check or 0)
        self.reuse_reasons = {}
        # the records a job that had just ended was keeping were not done in
        # time for this batch's look-up (reuse/_reuse.Reuse.late)
        self.records_late = False
        self._lock = threading.Lock()
        self.lookup = Lookup(cache, self.runner, sources, reuse, self.pinned)
        self.spot_check = SpotCheck(cache, self.runner, slots, self.reuse_check, self.pinned)

    def evaluate(self, requests, put):
        """``requests``: {host: request} in the order the hosts should get
        their answers. ``put(host, entry)`` gets {'request', 'answer',
        'from_cache'} (or {'request', 'error'}: a flake that could not be
        pinned, a reused answer found wrong), once per host, from any
        thread. Returns the batch's figures."""
        batch = _BatchAnswers(self, requests, put)
        self._pin_with_config(batch.by_key)
        self._fail_unpinned(batch)
        batch.cache_keys = self.lookup.cache_keys(batch.by_key, self.impure_config)
        reuse = batch.reuse = self.lookup.reuse(batch.by_key, batch.cache_keys)
        if reuse is not None:
            self.reuse_reasons = reuse.reasons
            _run.when_job_ends(self.cache.hold_records)
        try:
            check = self._look_up(batch)
            batch.start_pool()
            batch.give_all(check)
            if check is not None:
                check.finish()
            return batch.figures()
        finally:
            if reuse is not None:
                _run.forget(self.cache.hold_records)
                _run.remove_folder(reuse.folder)

    def _pin_with_config(self, by_key):
        """Pin every flake asked; the controller's Nix configuration is
        read beside the pin: two Nix calls that need nothing of each other."""
        self.runner.features()  # one `nix --version` for both
        config = threading.Thread(target=self._read_config, name='nixdeploy-config')
        config.start()
        try:
            self._pin(by_key)
        finally:
            config.join()

    def notes(self, source, refused=()):
        """What the run should say once about an answer of ``source``
        (``_notes.answer_notes``), from what this stage found."""
        return answer_notes(source, refused, self.runner, self.cache, {
            'impure_config': self.impure_config, 'records_late': self.records_late,
            'reuse_reasons': self.reuse_reasons})

    def _fail_unpinned(self, batch):
        """A folder of the controller is evaluated only as one pinned
        content: a moment's error at the pin must not leave every evaluator
        reading the live tree. Its hosts fail before any evaluation."""
        for key in list(batch.by_key):
            source = self.pinned[batch.by_key[key]['flake']]
            if source.local and source.reason:
                batch.drop(key, u'%s could not be pinned (%s): nothing of it is evaluated'
                           % (_redact.url(source.flake), source.reason))

    def _look_up(self, batch):
        """What answers before any evaluator: the cache's hits, then reuse
        across commits, then the spot check of what was reused or will be
        recorded (its wrong answers fail their hosts). Leaves in
        ``batch.misses`` what the evaluators answer, in reuse's order;
        returns the recorded answers' check, or None."""
        reuse, by_key = batch.reuse, batch.by_key
        batch.hits = self.lookup.hits(batch.cache_keys)
        misses = [k for k in by_key if k not in batch.hits]
        batch.reused = reuse.lookup(misses, lambda k: self.pinned[by_key[k]['flake']].ref) \
            if reuse is not None and misses else {}
        misses = [k for k in misses if k not in batch.reused]
        self.records_late = reuse is not None and reuse.late
        check = None
        recorded = self._recorded(reuse, misses, by_key)
        if (batch.reused or recorded) and self.reuse_check:
            batch.reused, wrong, check = self.spot_check.run(reuse, batch.reused, recorded,
                                                             by_key)
            for key, message in wrong.items():
                batch.drop(key, message)
            misses = [k for k in by_key if k not in batch.hits and k not in batch.reused]
        if reuse is not None:
            misses.sort(key=lambda k: reuse.rank.get(k, 1))
        batch.misses = misses
        return check

    def _recorded(self, reuse, misses, by_key):
        """The keys of ``misses`` a recorded evaluator will answer (the
        spot check may draw them): those with a reuse key, of a flake
        whose hosts are recorded."""
        if reuse is None or reuse.strace is None:
            return []
        return [key for key in misses if key in reuse.keys
                and self.pinned[by_key[key]['flake']].ref in reuse.specs]

    # ------------------------------------------------------------ sources
    def _pin(self, by_key):
        """Fill ``self.pinned``: the run's one content of each flake asked
        (``flake/_source``), evaluated by every evaluator of the run, cache
        or no cache."""
        sources = self.sources or RunSources(None)
        runner = self._pin_runner()
        for request in by_key.values():
            flake = request['flake']
            if flake not in self.pinned:
                self.pinned[flake] = sources.source(runner, flake, short_digest(
                    'source', flake, runner.opts.options.get('store'), runner.opts.extra_args))
        with self._lock:
            self.runner.processes += runner.processes

    def _pin_runner(self):
        """The runner that pins: the flake's own content, whatever a batch's
        impure or overridden inputs, with the nix_args that decide how it is
        fetched and locked (``FETCH_ARGS``: ``--no-update-lock-file`` must
        hold for the pin as it does for the evaluation)."""
        opts = self.runner.opts
        args, idx = [], 0
        while idx < len(opts.extra_args):
            arg = u'%s' % opts.extra_args[idx]
            width = FETCH_ARGS.get(arg)
            if width is not None:
                args += [u'%s' % a for a in opts.extra_args[idx:idx + 1 + width]]
                idx += 1 + width
            else:
                idx += 1
        return NixCommand(NixOptions(nix_bin=opts.nix_bin, options=opts.options,
                                     extra_args=args), self.runner.timeout)

    def _read_config(self):
        """The controller's own nix.conf may allow more than the flake
        (native code, plugins): then nothing of this run is cached (nix.conf,
        NIX_CONFIG and nix_options; a setting in nix_args is not on the
        allow-list of pure ones, and keeps its batch uncached). Read only
        where a cache is used."""
        if self.cache is None:
            return
        # nothing is cached until the configuration is known to allow it
        self.impure_config = 'the Nix configuration was not read'
        opts = self.runner.opts
        runner = NixCommand(NixOptions(nix_bin=opts.nix_bin, options=opts.options),
                            self.runner.timeout)
        try:
            self.impure_config = (self.sources or RunSources(None)).config_reason(
                runner, short_digest('config', opts.nix_bin, opts.config_lines()))
        finally:
            with self._lock:
                self.runner.processes += runner.processes


def _alone(reuse, misses):
    """The hosts to evaluate each in a process of its own: the ones whose
    record no longer held only because of what a host before them in
    their process read. Evaluated alone, their new record is their own
    reads, so a later commit to that other host leaves them reused."""
    if reuse is None:
        return ()
    return [key for key in misses if key in reuse.alone]


class _BatchAnswers(object):
    """One ``EvalStage.evaluate`` call: who asked what (``hosts_of``,
    ``by_key``: the hosts that ask the same share one evaluation), what
    answers them (``hits``, ``reused``, ``misses`` for the evaluators), and
    how each host is given its answer: each once, in order, the last one
    carrying the batch's figures."""

    def __init__(self, stage, requests, put):
        self.stage, self.put = stage, put
        self.requests = dict(requests)
        # hosts answered with an error before any evaluation, first
        self.failed = {}
        self.hosts_of, self.by_key = {}, {}
        for host, request in self.requests.items():
            key = request_key(request)
            self.hosts_of.setdefault(key, []).append(host)
            self.by_key.setdefault(key, request)
        self.cache_keys, self.reuse = {}, None
        self.hits, self.reused, self.misses = {}, {}, []
        self.pool, self.workers, self.left = None, 0, 0
        self._lock = threading.Lock()

    def drop(self, key, message):
        """The hosts of ``key`` fail with ``message`` before any evaluation."""
        for host in self.hosts_of.pop(key):
            self.failed[host] = {'request': self.requests.pop(host), 'error': message}
        del self.by_key[key]

    def start_pool(self):
        """The evaluators for ``misses``, and the answers owed from now on."""
        stage = self.stage
        self.workers = min(stage.workers or default_workers(len(self.misses),
                                                            stage.max_memory_mb),
                           max(1, len(self.misses)))
        self.pool = EvalPool(stage.runner, apply_expression, self.workers, stage.max_memory_mb,
                             stage.chunk_size, slots=stage.slots, recorder=self.reuse,
                             batch_timeout=stage.batch_timeout)
        self.left = len(self.requests) + len(self.failed)
        # what a job that ends now would cut off (_job_end): answers still
        # owed stop the process at once, a record being kept not
        _run.owe(self.left)

    def figures(self):
        pool, stage, misses = self.pool, self.stage, self.misses
        return {'processes': pool.processes,
                'other_processes': stage.runner.processes - pool.processes,
                'workers': self.workers if misses else 0,
                'budget_mb': self.workers * stage.max_memory_mb if misses else 0,
                'peak_mb': pool.peak_mb, 'peak_total_mb': pool.peak_total_mb,
                'from_cache': sum(len(self.hosts_of[k]) for k in self.hits),
                'reused': sum(len(self.hosts_of[k]) for k in self.reused),
                'evaluated': sum(len(self.hosts_of[k]) for k in misses)}

    def give_all(self, check):
        """Every host its answer: the failed first, then the cache's, the
        reused ones, then the evaluators' as each is known (through
        ``check`` where a recorded answer is drawn: they wait for it)."""
        for host, host_entry in self.failed.items():
            self.give(host, host_entry)
        for key, result in self.hits.items():
            self.deliver(key, result, from_cache=True)
        for key, (result, reused_from) in self.reused.items():
            self.deliver(key, result, from_cache=True, reused_from=reused_from)
        if not self.misses:
            return
        given = check.wrap(self.deliver, self.fail) if check is not None else self.deliver
        pinned, pool = self.stage.pinned, self.pool
        by_flake = {}
        for key in self.misses:
            source = pinned[self.by_key[key]['flake']]
            by_flake.setdefault(source.ref, []).append((key, self.by_key[key]['attr']))
        # messages name the flake as the user gave it
        pool.shown = dict((source.ref, flake) for flake, source in pinned.items())
        # a lock graph the pin resolved: every evaluator reads that one
        pool.flake_args = dict((source.ref, source.eval_args())
                               for source in pinned.values() if source.lock_file)
        pool.run(by_flake, given, alone=_alone(self.reuse, self.misses))

    def give(self, host, host_entry):
        with self._lock:
            self.left -= 1
            if self.left == 0:
                # the batch's last answer: its figures are final
                host_entry = dict(host_entry, batch=self.figures())
        try:
            self.put(host, host_entry)
        finally:
            _run.owe(-1)

    def deliver(self, key, result, from_cache=False, reused_from=None):
        stage, reuse = self.stage, self.reuse
        if not from_cache and 'error' not in result and key in self.cache_keys:
            # only what Nix answered for this content is kept under its key:
            # a reused answer stays a reuse on every later run (named so, and
            # open to the spot check), never a plain hit
            stage.cache.put(self.cache_keys[key], result)
        source = stage.pinned[self.by_key[key]['flake']]
        with self._lock:
            refused = sorted(set(self.pool.refused.get(source.ref) or ()) | (
                reuse.refused.get(source.ref, set()) if reuse is not None else set()))
        how = 'reused' if reused_from else 'cached' if from_cache else 'evaluated'
        for host in self.hosts_of[key]:
            host_entry = {'request': self.requests[host], 'answer': result,
                          'from_cache': from_cache, 'evaluation': how,
                          'source': source.provenance, 'notes': stage.notes(source, refused)}
            if reused_from:
                host_entry['reused'] = reused_from
            self.give(host, host_entry)

    def fail(self, key, message):
        for host in self.hosts_of[key]:
            self.give(host, {'request': self.requests[host], 'error': message})


# nix_args that decide how a flake is fetched and locked, and how many values
# each takes: the pin takes them as the evaluation does
FETCH_ARGS = {'--no-write-lock-file': 0, '--no-update-lock-file': 0, '--offline': 0,
              '--no-registries': 0, '--refresh': 0, '--store': 1}
