# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each host's evaluation reused across commits while nothing it read has
changed (docs/eval-cache.md, "Reuse across commits").

The evaluation cache answers a flake whose content is exactly the one it
saw. This answers a host of another commit: its reuse entry is keyed by
what does not change with a commit (the flake as the hosts name it, its
lock graph, the attribute, Nix, the options, which attributes the source
has) and holds the answer with the record of what its evaluation read
(``record/_record``). A host is reused when every recorded path looks the
same in the run's pinned content, every attribute of ``self`` it forced has
the same value, and its derivation is still in the store; every other host
is evaluated, through ``record.nix`` under strace, and recorded anew.

Nothing is reused (and the run says why, once) where reads cannot all be
seen: each such reason is one row of ``_rules.RULES``.
"""

import os
import shutil
import tempfile
import threading

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record import (
    _flake_call, _record, _trace)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import (
    _mentions, _rules)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._order import (
    ReuseOrder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixCommand, NixError, NixOptions, nix_string)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import AFTER_JOB_WAIT, short_digest

# while recording, a process is replaced after as many hosts as keep its
# start (Nix, the flake's top and what all hosts share, a nixpkgs) within
# this share of their own evaluation: a host that costs eight times a start
# gets a process of its own (its record is then exactly what it read)
RECORD_OVERHEAD = 0.125
# hosts cheaper than this (CPU seconds each, the usual one) are not worth a
# fresh process: evaluating them again costs little, and a loaded machine's
# noise in their few milliseconds must not decide how many processes run
MIN_HOST_SECONDS = 0.25


# the Nix versions whose fetchTree of the pinned store copy hashes all of
# it again unless the fetcher cache says its store path (Reuse._warm): 2.8
# reads it through the file system without hashing, 2.34 records the store
# path in the fetcher cache itself (seen with the EE's 2.26 and the two
# stacks' 2.8 and 2.34; outside this range a Nix that hashed it again would
# be recorded as reading every file: no reuse, never a wrong answer)
WARM_FROM, WARM_UNTIL = (2, 20), (2, 34)


class RecordSpec(object):
    """How to record the evaluation of one pinned source: ``call`` (what
    record.nix is given: the store copy ``root``, its ``narHash``, the
    folder ``sub``, the attributes ``info`` Nix gives ``self``, the lock
    graph ``lock``, the ``layout`` of this Nix's flake call and what it
    ``adds`` last to each node), ``root``,
    ``sub``, ``values`` (each attribute's value, outPath included)."""

    def __init__(self, call, values):
        self.call = call
        # the fetcher cache rows of the pinned copy's root (Reuse._warm)
        self.warm = None
        self.root, self.sub, self.values = call['root'], call['sub'], values


class Reuse(object):
    """Reuse for one stage's run. ``prepare`` decides per flake whether its
    hosts may be reused and recorded; ``lookup`` answers the hosts it can;
    ``finished`` keeps what one evaluator read."""

    def __init__(self, cache, runner, sources, folder, cache_key):
        self.cache = cache
        self.runner = runner
        self.sources = sources
        # the batch's private folder (_job_end.temporary_folder): logs and
        # the evaluators' own Nix caches
        self.folder = folder
        # the reuse key of a request: cache_key(fingerprint, attr)
        self._cache_key = cache_key
        # {flake evaluated (source.ref): RecordSpec}
        self.specs = {}
        # {flake as named: why nothing of it is reused}
        self.reasons = {}
        # {flake evaluated (source.ref): settings of its nixConfig Nix does
        # not apply}: recorded evaluators never make Nix's own flake call,
        # which is what warns of them
        self.refused = {}
        # {request key: reuse key}
        self.keys = {}
        # {request key: -1 evaluate first (a recorded host the spot check
        # drew) .. 3 last} (lookup, the spot check)
        self.rank = {}
        # request keys to evaluate each in a process of its own (lookup)
        self.alone = set()
        self._origin = {}
        self._results = {}
        self._describers = {}
        self._lock = threading.Lock()
        self.strace = None
        # the records a job that had just ended was keeping were not done
        # within the bound (lookup): their hosts are evaluated
        self.late = False
        # {drv: whether it holds the source's own path} (_mentions.mentions)
        self._mentions = {}
        # {request key: its reuse entry as lookup read it, or None}: the
        # spot check weighs hosts by their costs without reading them again
        self.entries = {}

    # ------------------------------------------------------------ deciding
    def prepare(self, pinned, by_key):
        """Decide for each flake of ``pinned`` ({flake: FlakeSource}) of the
        requests ``by_key``: the first row of ``_rules.RULES``
        that applies says why its hosts are not reused; else they may be."""
        opts = self.runner.opts
        self.strace = _trace.which_strace()
        info_runner = self._info_runner()
        for flake, source in pinned.items():
            facts = _rules.Facts(
                opts, self.runner.features, source,
                distrust=lambda f=flake: self.cache.trust.distrust_said(f),
                trace=lambda: _rules.strace_problem(
                    self.sources, self.strace, opts.nix_bin,
                    short_digest('trace', self.strace, opts.nix_bin)),
                info=lambda s=source: self.sources.once(
                    'info-%s' % short_digest('info', s.ref, info_runner.opts.nix_bin),
                    lambda: query_info(info_runner, s.ref)),
                call=lambda: self._flake_call(info_runner))
            why = _rules.why_not(facts)
            if why is not None:
                self.reasons[flake] = why
                continue
            spec = self._spec(source, facts.info(), facts.features(), facts.call())
            if WARM_FROM <= facts.like() < WARM_UNTIL:
                spec.warm = self._warm(spec)
            self.refused[source.ref] = set(facts.info().get('refused') or ())
            self.specs[source.ref] = spec
            self._origin[source.ref] = dict(source.provenance)
            for key, request in by_key.items():
                if request['flake'] == flake:
                    fingerprint = {'reuse': _record.FORMAT, 'flake': flake,
                                   'sub': source.sub,
                                   'locks': (source.identity or {}).get('locks'),
                                   'attributes': sorted(spec.values)}
                    found = self._cache_key(fingerprint, request['attr'])
                    if found:
                        self.keys[key] = found

    def _flake_call(self, runner):
        """What this Nix's flake call puts last on each node, asked of Nix
        once a run and Nix version (``record/_flake_call.ask``), or why nothing of
        it can be recorded."""
        features = runner.features()
        key = short_digest('flake-call', runner.opts.nix_bin, features.flavour,
                           '.'.join('%s' % n for n in features.version))
        return self.sources.once('flake-call-%s' % key,
                                 lambda: _flake_call.ask(runner, self.folder))

    def _warm(self, spec):
        """The fetcher cache rows that spare every recorded evaluator of this
        source hashing its pinned copy again (``record/_record.warm_rows``);
        one Nix process a run and source. Never raises: without them the
        evaluators read the whole source (no reuse, no wrong answer)."""
        expr = ('builtins.seq (builtins.fetchTree { type = "path"; path = %s; narHash = %s; })'
                '.outPath null' % (nix_string(spec.root), nix_string(spec.call['narHash'])))
        runner = self._info_runner()

        def fetch(env):
            runner.run('eval', ['--json', '--expr', expr], env=env, flake_command=True)
        try:
            return _record.warm_rows(tempfile.mkdtemp(prefix='warm-', dir=self.folder),
                                     fetch)
        except (OSError, NixError):
            return None

    @staticmethod
    def _spec(source, asked, features, adds):
        """The RecordSpec of a source no rule refused."""
        info = asked['info']
        locks = (source.identity or {}).get('locks')
        call = {'root': source.store_path, 'narHash': source.provenance['nar_hash'],
                'sub': source.sub or '',
                'info': dict((k, v) for k, v in info.items() if k != 'outPath'),
                'lock': dict(locks, version=7) if isinstance(locks, dict) else None,
                # Nix 2.25+ makes a subflake's outPath its own folder
                'layout': 'folder' if features.path_dir else 'source',
                # what Nix's own call puts last on each node, whatever its
                # outputs define (record/_flake_call: the same for every node)
                'adds': {'flake': adds['flake'], 'plain': adds['plain']}}
        return RecordSpec(call, dict(info, outPath=source.store_path))

    def _info_runner(self):
        opts = self.runner.opts
        return NixCommand(NixOptions(nix_bin=opts.nix_bin, options=opts.options),
                          self.runner.timeout)

    # ------------------------------------------------------------ reusing
    def lookup(self, keys, request_flake):
        """{request key: (result, reused)} of ``keys`` whose record holds in
        the run's content (``request_flake(key)``: the source.ref it would be
        evaluated from); ``reused`` is {'from': provenance, 'checked': N}."""
        found = {}
        chains = {}
        # {chain name: the pinned source it is checked in}
        roots = {}
        back = []
        if any(k in self.keys for k in keys):
            # a job that ended just now may still be keeping its records
            # here: a few seconds' wait spares evaluating its hosts again.
            # Once a job: its later batches find them kept, or wait no more
            self.late = not self.sources.once(
                'records-%s' % short_digest('records', self.cache.folder),
                lambda: self.cache.wait_for_records(AFTER_JOB_WAIT))
        for key in keys:
            reuse_key = self.keys.get(key)
            spec = self.specs.get(request_flake(key))
            if reuse_key is None or spec is None:
                continue
            entry = self.entries[key] = self.cache.get_reuse(reuse_key)
            if entry is None:
                # new, or never kept (its system names the source): ordered too
                back.append((key, None, spec, 0))
                continue
            if entry['chain'] not in chains:
                chains[entry['chain']] = self._holds(entry['chain'], spec)
                roots[entry['chain']] = spec.root
            valid, checked = chains[entry['chain']]
            # a record that checked nothing proves nothing
            if entry['upto'] < valid and checked:
                found[key] = (entry, checked)
            else:
                back.append((key, entry, spec, valid))
        rank, alone = ReuseOrder(self.cache, self._describer).order(back, chains, roots)
        self.rank.update(rank)
        self.alone |= alone
        tied = self.cache.tie(self.runner, dict((k, v[0]) for k, v in found.items())) \
            if found else set()
        answers = {}
        for key, (entry, checked) in found.items():
            if tied and key in tied:
                result = dict((f, entry[f]) for f in ('drv_path', 'out_path', 'system'))
                answers[key] = (result, {'from': entry['origin'], 'checked': checked})
        return answers

    def _holds(self, chain_name, spec):
        chain = self.cache.get_chain(chain_name)
        if chain is None or chain.get('format') != _record.FORMAT:
            return 0, 0
        try:
            return _record.valid_upto(chain, self._describer(spec.root), spec.values)
        except (OSError, ValueError, TypeError, AttributeError):
            return 0, 0

    def _describer(self, root):
        with self._lock:
            if root not in self._describers:
                self._describers[root] = _record.Describer(root)
            return self._describers[root]

    # ------------------------------------------------------------ recording
    def command(self, flake_ref, apply_text, marker, self_marker, argv_of):
        """(argv, env, log path) of a recorded evaluator of ``flake_ref``, or
        None when it is not recorded. ``argv_of(args)``: the nix eval argv."""
        spec = self.specs.get(flake_ref)
        if spec is None or self.strace is None:
            return None
        # A place of its own (0700), whoever else records in this folder: the
        # two waves of one serving process run a stage each at once, and a
        # name counted per stage let one's cleanup remove the other's place
        # (its evaluator died, its host got no answer) and both straces write
        # one log (a record holding the other's reads, or missing its own)
        place = tempfile.mkdtemp(prefix='record-', dir=self.folder)
        env = _record.private_cache(place, warm=spec.warm)
        expr = _record.expression(apply_text, spec.call, self_marker)
        log = os.path.join(place, 'strace.log')
        argv = argv_of(['--json', '--expr', expr])
        return _trace.strace_argv(self.strace, log, argv), env, log

    def result(self, key, result, seconds=None):
        """Remember a host's answer for its reuse entry, and what its
        evaluation took (the spot check's cost of checking it)."""
        with self._lock:
            self._results[key] = (result, seconds)

    def _names_source(self, drv, root):
        with self._lock:
            return _mentions.mentions(drv, _mentions.hash_part(root), self._mentions)

    def finished(self, flake_ref, log_path, marker, self_marker, keys_at):
        """Keep what one evaluator read: ``keys_at`` is its items' request
        keys by trace index. Never raises: a record that cannot be made is
        no record (its hosts are evaluated next time)."""
        spec = self.specs.get(flake_ref)
        if spec is None:
            return
        try:
            log = _trace.Log.read(log_path, spec.root, marker, self_marker, spec.sub)
            if not _record.reads_are_visible(log):
                return
            chain = _record.chain_of(log, self._describer(spec.root), spec.values)
            if chain is None:
                return
            name = self.cache.put_chain(chain)
            if name is None:
                return
            for upto, index in enumerate(log.answered):
                if index >= len(keys_at):
                    continue
                key = keys_at[index]
                with self._lock:
                    result, seconds = self._results.get(key, (None, None))
                reuse_key = self.keys.get(key)
                if result and 'error' not in result and reuse_key \
                        and not self._names_source(result['drv_path'], spec.root):
                    self.cache.put_reuse(reuse_key, result, name, upto,
                                         self._origin.get(flake_ref), cost=seconds)
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            return
        finally:
            # its log and Nix cache folder: the links in it to the user's
            # caches are removed, never followed
            shutil.rmtree(os.path.dirname(log_path), ignore_errors=True)


def spot_check(runner, reused, requests_of, also=None, slots=None):
    """The keys of ``reused`` ({key: (result, reused)}) whose answer a fresh
    evaluation does not give ({key: what Nix gave}); ``requests_of(key)``:
    {flake (the pinned reference), attr}. Each key is evaluated by Nix
    (``_eval.Evaluator``), not recorded; so is each key of ``also`` (a dict
    filled with what Nix gave for it: a recorded answer, compared later).
    ``slots``: the job's ``EvalSlots``; the check's Nix process evaluates
    hosts' systems like any evaluator, so it takes one of them first (the
    caller must hold none: a thread holding the last one would wait for
    itself)."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
        Evaluator)
    if not reused and not also:
        return {}
    evaluator = Evaluator(runner.opts, timeout=runner.timeout)
    slot = slots.acquire() if slots is not None else None
    try:
        fresh = evaluator.evaluate(dict((key, requests_of(key))
                                        for key in list(reused) + list(also or ())))
    finally:
        if slot is not None:
            slots.release(slot)
    runner.processes += evaluator.processes
    for key in also or ():
        also[key] = fresh[key]
    fields = ('drv_path', 'out_path', 'system')
    return dict((key, fresh[key]) for key, (result, _how) in reused.items()
                if dict((f, fresh[key].get(f)) for f in fields) != dict(
                    (f, result.get(f)) for f in fields))


def info_expression(ref):
    """The ``--apply`` function (whatever the value it is applied to) that
    gives the flake's source attributes but its path (``info``). What
    Nix's call adds beside them is asked of Nix apart (``record/_flake_call``):
    never inferred from what one flake's outputs lack."""
    return ('_: let flake = builtins.getFlake %s; in { '
            'info = builtins.removeAttrs flake.sourceInfo [ "outPath" ]; }' % nix_string(ref))


def query_info(runner, ref):
    """{'info': the flake's source attributes as Nix gives them to ``self``
    (its rev, revCount, lastModified, narHash...) but outPath, 'refused':
    the settings of its nixConfig Nix said it does not apply}, or an error
    text. This is Nix's own flake call (getFlake), in a process of its own:
    record.nix never makes it, so this is where Nix warns of them."""
    said = []
    try:
        # the flake as an installable, which is what makes Nix read its
        # nixConfig and warn of the settings it does not apply
        data = runner.json('eval', ['--json'] + runner.outputs(ref)
                           + ['--apply', info_expression(ref)],
                           "reading the flake's attributes", flake_command=True, said=said)
    except NixError as exc:
        return exc.nix_message() or exc.message
    if not isinstance(data, dict) or not isinstance(data.get('info'), dict):
        return 'not an attribute set'
    refused = set()
    for text in said:
        refused.update(_nix_stderr.refused_flake_settings(text or ''))
    return {'info': data['info'], 'refused': sorted(refused)}
