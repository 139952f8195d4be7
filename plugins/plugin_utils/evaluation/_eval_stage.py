# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluation of a play batch: requests in, each host's answer out as
soon as it is known.

Hosts that ask the same (flake, attribute) share one evaluation; answers an
earlier run left in the evaluation cache (``_eval_cache``) come first and
cost no evaluator; the rest go to the parallel evaluators of ``_eval_pool``.
Every evaluator of the run evaluates the one content the run pinned of each
flake (``_flake_source``), and each answer names it (``source``).
The host whose answer completes the batch carries the batch's figures
(``batch``: Nix processes, evaluators, peak memory, answers from the cache),
so a report counts them once.
"""

import random
import tempfile
import threading
import time

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
    EvalError, EvalRequest, apply_expression, evaluation_opts, normalised, request_key)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_pool import (
    DEFAULT_MAX_MEMORY_MB, EvalPool, default_workers)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_slots import EvalSlots
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._flake_source import (
    ACCEPTED_CONFIG, RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    loader_of, task_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._flake_ref import flake_ref
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixOptions, NixCommand, options_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    ACCEPTED_NOTE, accepts_flake_config, refused_note)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch import (
    _folder as batch_folder, batch_key, play_uuid, record_facts, task_batch, vars_of, work_key)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream import Service, Stream


class EvalStage(object):
    """``evaluate(requests, put)`` for one batch.

    ``workers``/``max_memory_mb``/``chunk_size``: the evaluators (default:
    cores and free memory, ``_eval_pool.default_workers``); ``cache``: an
    ``EvalCache`` or None (no cache); ``slots``: the job's ``EvalSlots``
    (None: no bound but ``workers``); ``sources``: the run's
    ``RunSources`` (None: pinned by this stage alone)."""

    def __init__(self, opts, workers=None, max_memory_mb=None, chunk_size=None, cache=None,
                 timeout=None, slots=None, sources=None, reuse=True, reuse_check=None):
        self.runner = NixCommand(evaluation_opts(opts), timeout)
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
        # reuse across commits where the cache is used (_eval_reuse), and
        # {flake: why none of its hosts is}
        self.reuse = reuse
        # reused hosts evaluated again before their answers are given
        self.reuse_check = int(reuse_check or 0)
        self.reuse_reasons = {}
        self._lock = threading.Lock()

    def evaluate(self, requests, put, failed=None):
        """``requests``: {host: request} in the order the hosts should get
        their answers; ``failed``: {host: entry} of hosts whose request could
        not be formed (answered first). ``put(host, entry)`` gets
        {'request', 'answer', 'from_cache'} (or the failed entry), once per
        host, from any thread. Returns the batch's figures."""
        failed, requests = dict(failed or {}), dict(requests)
        hosts_of, by_key = {}, {}
        for host, request in requests.items():
            key = request_key(request)
            hosts_of.setdefault(key, []).append(host)
            by_key.setdefault(key, request)
        # the controller's Nix configuration is read beside the pin: two Nix
        # calls that need nothing of each other
        self.runner.features()  # one `nix --version` for both
        config = threading.Thread(target=self._read_config, name='nixdeploy-config')
        config.start()
        try:
            self._pin(by_key)
        finally:
            config.join()
        for key in list(by_key):
            source = self.pinned[by_key[key]['flake']]
            if source.local and source.reason:
                # a folder of the controller is evaluated only as one pinned
                # content: a moment's error at the pin must not leave every
                # evaluator reading the live tree
                for host in hosts_of.pop(key):
                    failed[host] = {'request': requests.pop(host), 'error': (
                        u'%s could not be pinned (%s): nothing of it is evaluated'
                        % (_redact.url(source.flake), source.reason))}
                del by_key[key]
        cache_keys = self._cache_keys(by_key)
        reuse = self._reuse(by_key, cache_keys)
        hits = self._hits(cache_keys)
        misses = [k for k in by_key if k not in hits]
        reused = reuse.lookup(misses, lambda k: self.pinned[by_key[k]['flake']].ref) \
            if reuse is not None and misses else {}
        misses = [k for k in misses if k not in reused]
        if reused and self.reuse_check:
            reused, wrong = self._spot_check(reuse, reused, by_key)
            for key, message in wrong.items():
                for host in hosts_of.pop(key):
                    failed[host] = {'request': requests.pop(host), 'error': message}
                del by_key[key]
            misses = [k for k in by_key if k not in hits and k not in reused]
        if reuse is not None:
            misses.sort(key=lambda k: reuse.rank.get(k, 1))
        workers = min(self.workers or default_workers(len(misses), self.max_memory_mb),
                      max(1, len(misses)))
        pool = EvalPool(self.runner, apply_expression, workers, self.max_memory_mb,
                        self.chunk_size, slots=self.slots, recorder=reuse)
        left = [len(requests) + len(failed)]

        def figures():
            return {'processes': pool.processes,
                    'other_processes': self.runner.processes - pool.processes,
                    'workers': workers if misses else 0,
                    'budget_mb': workers * self.max_memory_mb if misses else 0,
                    'peak_mb': pool.peak_mb, 'peak_total_mb': pool.peak_total_mb,
                    'from_cache': sum(len(hosts_of[k]) for k in hits),
                    'reused': sum(len(hosts_of[k]) for k in reused),
                    'evaluated': sum(len(hosts_of[k]) for k in misses)}

        def give(host, host_entry):
            with self._lock:
                left[0] -= 1
                if left[0] == 0:
                    # the batch's last answer: its figures are final
                    host_entry = dict(host_entry, batch=figures())
            put(host, host_entry)

        def deliver(key, result, from_cache=False, reused_from=None):
            if not from_cache and 'error' not in result and key in cache_keys:
                # only what Nix answered for this content is kept under its
                # key: a reused answer stays a reuse on every later run
                # (named so, and open to the spot check), never a plain hit
                self.cache.put(cache_keys[key], result)
            source = self.pinned[by_key[key]['flake']]
            with self._lock:
                refused = sorted(set(pool.refused.get(source.ref) or ()) | (
                    reuse.refused.get(source.ref, set()) if reuse is not None else set()))
            how = 'reused' if reused_from else 'cached' if from_cache else 'evaluated'
            for host in hosts_of[key]:
                host_entry = {'request': requests[host], 'answer': result,
                              'from_cache': from_cache, 'evaluation': how,
                              'source': source.provenance,
                              'notes': self._notes(source, refused)}
                if reused_from:
                    host_entry['reused'] = reused_from
                give(host, host_entry)

        for host, host_entry in failed.items():
            give(host, host_entry)
        for key, result in hits.items():
            deliver(key, result, from_cache=True)
        for key, (result, reused_from) in reused.items():
            deliver(key, result, from_cache=True, reused_from=reused_from)
        if misses:
            by_flake = {}
            for key in misses:
                source = self.pinned[by_key[key]['flake']]
                by_flake.setdefault(source.ref, []).append((key, by_key[key]['attr']))
            # messages name the flake as the user gave it
            pool.shown = dict((source.ref, flake) for flake, source in self.pinned.items())
            # a lock graph the pin resolved: every evaluator reads that one
            pool.flake_args = dict((source.ref, source.eval_args())
                                   for source in self.pinned.values() if source.lock_file)
            pool.run(by_flake, deliver)
        return figures()

    # ------------------------------------------------------------ sources
    def _pin(self, by_key):
        """Fill ``self.pinned``: the run's one content of each flake asked
        (``_flake_source``), evaluated by every evaluator of the run, cache
        or no cache."""
        sources = self.sources or RunSources(None)
        runner = self._pin_runner()
        for request in by_key.values():
            flake = request['flake']
            if flake not in self.pinned:
                self.pinned[flake] = sources.source(runner, flake, batch_key(
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

    def _notes(self, source, refused=()):
        """What the run should say once about this answer (each note once a
        run, whichever host carries it first: the action's ``warn_once``): a
        flake it could not pin, a lock graph the run resolved for it, the
        settings of its nixConfig Nix did not apply (``refused``, from its
        evaluators' warnings), the operator's opting in to them, a cache
        folder it could not use."""
        notes = []
        shown = _redact.url(source.flake)
        if source.reason:
            notes.append(u'%s is not pinned (%s): each evaluator reads it as it is, and '
                         u'nothing of it is cached' % (shown, source.reason))
        if source.lock_file:
            notes.append(u"%s: its flake.lock has a %s; every evaluator of the run reads the "
                         u'lock graph the run resolved once, and nothing of it is cached: run '
                         u'`nix flake lock` and commit flake.lock' % (shown, source.lock_note))
        if refused:
            notes.append(refused_note(refused, shown))
        accepted = accepts_flake_config(self.runner.opts.options, self.runner.opts.extra_args)
        if accepted:
            # said with or without a cache: it is the threat model's too
            notes.append(ACCEPTED_NOTE)
        if self.cache is not None and not self.cache.usable:
            notes.append(u'the evaluation cache %s is not used: %s'
                         % (self.cache.folder, self.cache.reason))
        ignored = self.cache.ignored_note() if self.cache is not None and self.cache.usable \
            else None
        if ignored:
            notes.append(ignored)
        if self.cache is not None and self.impure_config and not (
                accepted and self.impure_config == ACCEPTED_CONFIG):
            notes.append(u'nothing is cached: %s' % self.impure_config)
        why = self.reuse_reasons.get(source.flake)
        if why:
            notes.append(u'%s: no host is reused across commits (%s); each is evaluated when '
                         u'the flake changes' % (shown, why))
        return notes

    def _spot_check(self, reuse, reused, by_key):
        """(the reused answers still given, {key: error}): ``reuse_check`` of
        them, drawn at random, evaluated again by Nix first. One that
        differs fails its hosts, turns reuse off for its flake (a file in the
        cache folder) and sends every other reused host of that flake to be
        evaluated."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_reuse import (
            spot_check)
        checked = self.cache.last_checked([reuse.keys[k] for k in reused])
        sample = spot_check_sample(
            reused, dict((k, checked[reuse.keys[k]]) for k in reused if reuse.keys[k] in checked),
            self.reuse_check)
        wrong = spot_check(self.runner, dict((k, reused[k]) for k in sample), lambda key: {
            'flake': self.pinned[by_key[key]['flake']].ref, 'attr': by_key[key]['attr']})
        self.cache.mark_checked([reuse.keys[k] for k in sample if k not in wrong])
        if not wrong:
            return reused, {}
        flakes = set(by_key[key]['flake'] for key in wrong)
        errors = {}
        for key, fresh in wrong.items():
            flake = by_key[key]['flake']
            given = reused[key]
            self.cache.distrust(flake, {'attr': by_key[key]['attr'], 'reused': given[0],
                                        'from': given[1].get('from'), 'nix': fresh,
                                        'when': int(time.time())})
            errors[key] = (
                u'nixdeploy: the answer reused for %s#%s (%s, from %s) is not what Nix gives for '
                u'this commit (%s): reuse across commits is now off for this flake (the cache '
                u'folder holds why); please report this with the flake\'s two commits'
                % (_redact.url(flake), attr_string(by_key[key]['attr']), given[0].get('drv_path'),
                   (given[1].get('from') or {}).get('revision') or 'another content',
                   fresh.get('drv_path') or fresh.get('error')))
        kept = dict((k, v) for k, v in reused.items() if by_key[k]['flake'] not in flakes)
        return kept, errors

    def _reuse(self, by_key, cache_keys):
        """The run's ``_eval_reuse.Reuse`` for the requests the cache may
        answer (None: nothing to reuse or record)."""
        if not cache_keys or not self.reuse:
            return None
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_reuse import (
            Reuse)
        folder = (self.sources.folder if self.sources is not None else None) or \
            tempfile.mkdtemp(prefix='nixdeploy-record-')
        features = self.runner.features()
        reuse = Reuse(self.cache, self.runner, self.sources or RunSources(None), folder,
                      lambda fingerprint, attr: self.cache.key(fingerprint, attr, features,
                                                               self.runner.opts))
        reuse.prepare(self.pinned, dict((k, by_key[k]) for k in cache_keys))
        self.reuse_reasons = reuse.reasons
        return reuse

    # ------------------------------------------------------------ cache
    def _cache_keys(self, by_key):
        """{request key: cache key} of the requests the cache may answer: a
        pinned flake whose inputs are all locked (``FlakeSource.identity``),
        evaluated with options known to be pure (``EvalCache.key``). A miss
        is evaluated from that pinned source, so what is stored under its
        identity is what Nix evaluated."""
        if self.cache is None or self.impure_config:
            return {}
        features = self.runner.features()
        keys = {}
        for key, request in by_key.items():
            identity = self.pinned[request['flake']].identity
            found = identity and self.cache.key(identity, request['attr'], features,
                                                self.runner.opts)
            if found:
                keys[key] = found
        return keys

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
                runner, batch_key('config', opts.nix_bin, opts.config_lines()))
        finally:
            with self._lock:
                self.runner.processes += runner.processes

    def _hits(self, cache_keys):
        if not cache_keys:
            return {}
        found = self.cache.get_many(self.runner, sorted(set(cache_keys.values())))
        return dict((key, found[ck]) for key, ck in cache_keys.items() if ck in found)


# nix_args that decide how a flake is fetched and locked, and how many values
# each takes: the pin takes them as the evaluation does
FETCH_ARGS = {'--no-write-lock-file': 0, '--no-update-lock-file': 0, '--offline': 0,
              '--no-registries': 0, '--refresh': 0, '--store': 1}


def spot_check_sample(reused, checked, count, now=None, draw=None):
    """The ``count`` keys of ``reused`` a spot check evaluates again.
    ``checked``: {key: when a spot check last found it right}.

    The least recently checked first (never checked: first of all), a draw
    among equals, so that no host is always the one left out. Where some of
    them have a check time and others none, one more, drawn from the rest at
    random, weighted by the time since its last check (one with none as the
    oldest): a writer of the cache folder who deletes the other hosts' times
    (and keeps one host's genuine old one) cannot keep that host out of every
    draw. ``draw``: a random.Random (the system's random source if None)."""
    draw = draw or random.SystemRandom()
    now = time.time() if now is None else now
    order = sorted(reused, key=lambda k: (checked.get(k, 0), draw.random()))
    sample, rest = order[:count], order[count:]
    ages = dict((k, max(now - checked[k], 1)) for k in order if k in checked)
    if not count or not rest or not ages or len(ages) == len(order):
        return sample
    oldest = max(ages.values())
    return sample + draw.choices(rest, [ages.get(k, oldest) for k in rest])


# ------------------------------------------------------------ the task's side
# reused hosts of each batch evaluated again before answers are given, the
# least recently checked first (nix_eval's eval_reuse_check; nix_build's
# evaluations take the same)
DEFAULT_REUSE_CHECK = 1

# The arguments that tune the evaluators: part of the batch's key
TUNING = ('eval_chunk_size', 'eval_workers', 'eval_max_memory_mb', 'eval_cache', 'eval_reuse',
          'eval_reuse_check', 'eval_timeout')


def stage_of(opts, args, workers=None):
    """The ``EvalStage`` a task's arguments ask for (``workers``: fewer
    evaluators than they ask, still within the job's slots)."""
    cache = None
    if args.get('eval_cache', True):
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_cache import (
            EvalCache)
        cache = EvalCache(EvalCache.default_folder())
    max_memory_mb = args.get('eval_max_memory_mb') or DEFAULT_MAX_MEMORY_MB
    folder = batch_folder(C.DEFAULT_LOCAL_TMP)
    # every evaluation of the job (per-host ones too) within the evaluators
    # the arguments allow: slots shared by all of them (_eval_slots)
    slots = EvalSlots(folder, args.get('eval_workers') or default_workers(None, max_memory_mb))
    # every evaluator of the run evaluates one content of each flake
    # nix_eval's eval_timeout; nix_build's timeout bounds its evaluations too
    timeout = args.get('eval_timeout') or args.get('timeout') or None
    return EvalStage(opts, workers=workers or args.get('eval_workers'),
                     max_memory_mb=max_memory_mb, chunk_size=args.get('eval_chunk_size'),
                     timeout=timeout,
                     cache=cache, slots=slots, sources=RunSources(folder),
                     reuse=args.get('eval_reuse', True),
                     reuse_check=args.get('eval_reuse_check', DEFAULT_REUSE_CHECK))


def own_entry(opts, args, task, hosts, host, request):
    """``host``'s entry for its own ``request``, which differs from what its
    batch evaluated for it (an argument templated per host from another
    variable than nix_flake or nix_attr: the batch's process, which forms
    every host's request, sees only the first host's value). The hosts that
    ask so together share a wave (``task/_stream.Service``): one EvalStage
    for all of them, its cache first, then evaluators side by side within
    the job's slots, so the flake's shared part (a nixpkgs) is evaluated
    once per evaluator, not once per host."""
    service = Service(C.DEFAULT_LOCAL_TMP, 'eval-own', work_key(
        'eval-own', task, hosts, options_of(args), [args.get(k) for k in TUNING]))

    def serve(requests, put):
        stage_of(opts, args).evaluate(requests, _recording(hosts, put))

    service.request(host, request, serve)
    return service.answer(host, serve)


def batch_entry(action, args, opts, kind='eval'):
    """This host's entry of its play batch's evaluation (started by the
    first of the batch's hosts to ask, in a detached process: task/_stream.py),
    as soon as it is known: (the entry, started here, the batch's hosts,
    this host's own request).

    ``action``: a NixdeployAction whose task evaluates (nix_eval, or
    nix_build without a derivation)."""
    host, task_vars = action.host, action.task_vars
    base_dir = loader_of(action).get_basedir()
    task = task_of(action)

    def resolve(flake):
        return flake_ref(flake, base_dir)

    request = normalised(EvalRequest.for_host(host, args, task_vars, resolve).data())
    hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(task), task_vars)
    # Not part of the key: flake and attr. Where they are each host's own
    # variables (_role_vars.Filled) the batch's process reads them per host;
    # where the task templates them per host from other variables, every
    # host still shares the batch (one key each would start a batch, and
    # an evaluation, per host): the batch's process forms every request
    # from the first host's values, and the hosts whose own request differs
    # ask again, together (own_entry).
    stream = Stream(C.DEFAULT_LOCAL_TMP, kind, work_key(
        kind, task, hosts, options_of(args), [args.get(k) for k in TUNING]))

    def work(put):
        # in the batch's detached process: every host's request, then each
        # answer as soon as it is known
        requests, failed, unknown = {}, {}, {}
        for name in hosts:
            try:
                hostvars = vars_of(task_vars, name)
                refused = _refused(name, hostvars, unknown) if check_vars else None
                if refused:
                    # its own task fails it before evaluating: none of its
                    # evaluation is done here either
                    failed[name] = {'error': refused}
                    continue
                requests[name] = normalised(EvalRequest.for_host(
                    name, action.filled.for_host(args, action.ROLE_VARS, hostvars), hostvars,
                    resolve).data())
            except (EvalError, NixError) as exc:
                failed[name] = {'error': u'%s' % exc}

        # Each host's facts in flight are its own request's answer: the
        # batch keeps them as it answers only where every request is formed
        # from each host's own variables; otherwise each host keeps its own
        # once it has checked that the answer is to its own request (below)
        put_with = _recording(hosts, put) if _own_requests(action, args) else put
        if unknown:
            put_with = _noting(put_with, unknown_notes(unknown))
        return stage_of(opts, args).evaluate(requests, put_with, failed)

    # the role's variables are checked (the deploy role's first phase)
    check_vars = _role_vars.FLAG in task.args and boolean(task.args.get(_role_vars.FLAG),
                                                          strict=False)
    here = stream.start(work)
    host_entry = stream.entry(host)
    # Not the answer to this host's own request: the batch formed another
    # (from the first host's values), or could not form one from them (an
    # entry with no request; this host's own was formed above, so the
    # batch's failure is not this host's)
    if host_entry.get('request') != request:
        first = host_entry.get('batch')
        host_entry = own_entry(opts, args, task, hosts, host, request)
        if first is not None:
            # this host completed the batch: its figures stay counted
            host_entry = dict(host_entry, batch=added_figures(first, host_entry.get('batch')))
    evaluated = host_entry.get('answer') or {}
    if 'error' in host_entry or not evaluated or 'error' in evaluated:
        # a host whose own evaluation failed has no system a batch may copy
        record_facts(C.DEFAULT_LOCAL_TMP, hosts, {host: None})
    elif not _own_requests(action, args):
        record_facts(C.DEFAULT_LOCAL_TMP, hosts, {host: facts_of(evaluated)})
    return host_entry, here, hosts, request


def _refused(name, hostvars, unknown):
    """Why host ``name``'s own task refuses its role variables (the
    message its task gives), or None; its unknown ``nix_*`` variables are
    added to ``unknown`` ({variable: [nearest, hosts]}) unless they are its
    error (nix_unknown_vars).
    A value that is still a template is left to its own task."""
    try:
        problems = _role_vars.variable_problems(hostvars)
        found = _role_vars.unknown_variables(hostvars)
        mode = hostvars.get(_role_vars.BY_OPTION['unknown_vars'].variable) or 'warn'
    except Exception:  # pylint: disable=broad-except
        # a variable that cannot be templated: its own task says so
        return None
    if found and mode == 'error':
        problems.extend('%s (nix_unknown_vars is error)' % _role_vars.unknown_message(
            var, near) for var, near in sorted(found.items()))
    else:
        for var, near in found.items():
            unknown.setdefault(var, [near, []])[1].append(name)
    return '; '.join(problems) or None


def unknown_notes(unknown):
    """{variable: warning} of the batch's unknown ``nix_*`` variables
    ({variable: [nearest, hosts]}): one warning each, naming its hosts."""
    notes = {}
    for var, (near, names) in unknown.items():
        names = sorted(names)
        shown = ', '.join(names[:5]) + (' and %d more' % (len(names) - 5) if len(names) > 5 else '')
        notes[var] = u'%s (set for %d host%s: %s)' % (
            _role_vars.unknown_message(var, near), len(names), '' if len(names) == 1 else 's',
            shown)
    return notes


def _noting(put, notes):
    """``put`` that adds the batch's unknown-variable warnings to each
    entry (the action says each once a run)."""
    def put_noted(name, host_entry):
        put(name, dict(host_entry, unknown_vars=notes))
    return put_noted


def _own_requests(action, args):
    """Whether the batch's process forms each host's request from that
    host's own variables: ``flake``, ``attr`` and ``platform`` each unset or
    filled from the host's own variable (``_role_vars.Filled.own_options``),
    not a value the task templated for the first host."""
    filled_from_own = action.filled.own_options
    return all(args.get(name) in (None, '') or name in filled_from_own
               for name in ('flake', 'attr', 'platform'))


# figures of two evaluations one host carries: counts add up, bounds and
# peaks are the larger one's (the two ran one after the other)
_COUNTS = ('processes', 'other_processes', 'from_cache', 'evaluated')


def added_figures(first, second):
    """``first`` and ``second`` (EvalStage.evaluate's figures, or None) as
    one host's figures."""
    if second is None:
        return first
    return dict((key, (first.get(key) or 0) + (second.get(key) or 0) if key in _COUNTS
                 else max(first.get(key) or 0, second.get(key) or 0))
                for key in set(first) | set(second))


def _recording(hosts, put):
    """``put`` that also keeps each answered host's facts for the play batch
    ``hosts``: what a later batch would evaluate again for a host whose facts
    its worker does not see yet (_batch.with_facts). A host's own answer
    (``own_entry``) comes later and replaces what the batch's process kept
    for it."""
    def put_with_facts(name, host_entry):
        put(name, host_entry)
        evaluated = host_entry.get('answer') or {}
        if evaluated and 'error' not in evaluated:
            record_facts(C.DEFAULT_LOCAL_TMP, hosts, {name: facts_of(evaluated)})
    return put_with_facts


def facts_of(evaluated):
    """The facts a host's evaluation sets."""
    return {'nix_drv_path': evaluated['drv_path'], 'nix_out_path': evaluated['out_path']}
