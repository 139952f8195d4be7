# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The spot check: reused and recorded answers evaluated again by Nix,
within a budget, before any of them is given.

Reuse across commits trusts a record of what a host's evaluation read, and
the answer a recorded evaluator (``record.nix`` under strace) gave; the
spot check trusts neither. In each batch it draws, from the reused hosts
and the hosts a recorded evaluator is about to answer, up to
``reuse_check`` (nix_eval's ``eval_reuse_check``) hosts, the least recently
checked first, within a budget: a quarter of the evaluation time reuse
saved in the batch (``BUDGET_SHARE``), from each host's recorded cost. A
host that does not fit waits; one that has waited its turn out
(``due_after``) is drawn whatever it costs, and so is one host of a
recorder never checked before (a new flake, a new Nix, a new record.nix):
the rule is ``spot_check_sample``. A reused answer that differs fails its
hosts loudly, marks its flake distrusted in the cache (reuse stays off for
it until the mark is removed) and sends the flake's other reused hosts to
be evaluated; a recorded one that differs does the same when it arrives
(``_recorded_check``). ``SpotCheck``, one of ``EvalStage``'s
helpers, does it (``run``). Nix's own evaluation of the sample is
``_reuse.spot_check``; the marks, check times and waits it reads and
writes are ``cache/_marks``.
"""

import hashlib
import json
import random
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record import _record
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache_keys import (
    cache_key)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._recorded_check import (
    RecordedCheck)

# the share of the evaluation time reuse saved in a batch (the reused
# hosts' recorded costs) that its spot check may spend, and seconds it may
# spend whatever reuse saved (a few cheap hosts check as they always did)
BUDGET_SHARE = 0.25
BUDGET_FLOOR = 1.0
# batches a host may wait beyond its turn for a budget it fits in
SLACK = 2


class _Beside(object):
    """``function(argument)`` in a thread of its own; ``join()`` waits for
    it, ``result()`` too and then raises what it raised."""

    def __init__(self, function, argument):
        self._failure = None
        self._thread = threading.Thread(target=self._run, args=(function, argument),
                                        name='nixdeploy-waited')
        self._thread.start()

    def _run(self, function, argument):
        try:
            function(argument)
        except Exception as exc:  # pylint: disable=broad-except
            self._failure = exc

    def join(self):
        self._thread.join()

    def result(self):
        self.join()
        if self._failure is not None:
            raise self._failure


class SpotCheck(object):
    """Checks reused and recorded answers before they are given.
    ``cache``: the stage's ``EvalCache``; ``runner``: its ``NixCommand``;
    ``slots``: the job's ``EvalSlots`` (None: no bound); ``reuse_check``:
    how many hosts a batch draws at most; ``pinned``: the stage's {flake:
    FlakeSource}, filled by its pin before any check."""

    def __init__(self, cache, runner, slots, reuse_check, pinned):
        self.cache, self.runner, self.slots = cache, runner, slots
        self.reuse_check, self.pinned = reuse_check, pinned

    def run(self, reuse, reused, recorded, by_key):
        """(the reused answers still given, {key: error}, the
        ``RecordedCheck`` the recorded answers go through or None).
        ``recorded``: the keys recorded evaluators are about to answer.
        The drawn ones (``spot_check_sample``) are evaluated by Nix first:
        a reused one that differs fails its hosts, turns reuse off for its
        flake (a file in the cache folder) and sends every other reused
        host of that flake to be evaluated; a recorded one is compared when
        its answer arrives."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._reuse import (
            spot_check)
        candidates = list(reused) + [k for k in recorded if k not in reused]
        hosts = dict((k, self._host_key(reuse, by_key, k)) for k in candidates)
        marks = self.cache.trust.check_marks(sorted(set(hosts.values())))
        marks = dict((k, marks[hosts[k]]) for k in candidates if hosts[k] in marks)
        costs = self._costs(reuse, candidates)
        recorders = self._new_recorders(recorded, by_key)
        sample = spot_check_sample(
            candidates, marks, costs, self.reuse_check,
            budget=max(BUDGET_FLOOR, BUDGET_SHARE * sum(costs.get(k) or 0 for k in reused)),
            forced=[_cheapest(keys, costs) for keys in recorders.values()])
        fresh = dict.fromkeys(k for k in sample if k not in reused)
        # the batch the hosts left out waited is counted while Nix checks
        # the sample: what is counted does not depend on what Nix says
        counting = _Beside(self.cache.trust.mark_waited,
                           dict((hosts[k], marks.get(k)) for k in candidates if k not in sample))
        try:
            # before the pool starts: this stage holds no slot yet
            wrong = spot_check(self.runner, dict((k, reused[k]) for k in sample if k in reused),
                               self._nix_request(by_key), also=fresh, slots=self.slots)
        finally:
            counting.join()
        # its failure (a full disk) is the batch's, as when it ran after
        counting.result()
        self.cache.trust.mark_checked([hosts[k] for k in sample if k in reused and k not in wrong])
        check = self._recorded_check(reuse, hosts, fresh, recorders, by_key, spot_check) \
            if fresh else None
        if not wrong:
            return reused, {}, check
        flakes = set(by_key[key]['flake'] for key in wrong)
        errors = {}
        for key, nix in wrong.items():
            given = reused[key]
            errors[key] = self._wrong(key, by_key, given[0], nix, given[1].get('from') or {})
        kept = dict((k, v) for k, v in reused.items() if by_key[k]['flake'] not in flakes)
        return kept, errors, check

    def _wrong(self, key, by_key, given, nix, origin=None):
        """What the hosts of ``key`` are told when the answer ``given`` (a
        reused one, from ``origin``; or a recorded one, ``origin`` None) is
        not ``nix``, what Nix gives: its flake is marked distrusted first."""
        flake = by_key[key]['flake']
        self.cache.trust.distrust(flake, {'attr': by_key[key]['attr'],
                                          'reused' if origin is not None else 'recorded': given,
                                          'from': origin, 'nix': nix, 'when': int(time.time())})
        what = (u'the answer reused for %s#%s (%s, from %s)' % (
            _redact.url(flake), attr_string(by_key[key]['attr']), given.get('drv_path'),
            origin.get('revision') or 'another content') if origin is not None else
            u'the answer a recorded evaluation gave for %s#%s (%s)' % (
                _redact.url(flake), attr_string(by_key[key]['attr']), given.get('drv_path')))
        return (u'nixdeploy: %s is not what Nix gives for this commit (%s): reuse across '
                u'commits is now off for this flake (the cache folder holds why); please report '
                u'this with the flake\'s commits' % (what, nix.get('drv_path') or nix.get('error')))

    def _nix_request(self, by_key):
        """``requests_of`` of ``_reuse.spot_check``: a key's request,
        of the run's pinned content."""
        return lambda key: {'flake': self.pinned[by_key[key]['flake']].ref,
                            'attr': by_key[key]['attr']}

    def _costs(self, reuse, keys):
        """{key: the seconds its last recorded evaluation took} of ``keys``
        whose reuse entry says (a host evaluated before costs were kept has
        none: it counts as free, and is drawn in its turn)."""
        costs = {}
        for key in keys:
            # the entry the look-up read, not read and verified again
            entry = reuse.entries[key] if key in reuse.entries else \
                self.cache.get_reuse(reuse.keys[key])
            if entry is not None and 'cost' in entry:
                costs[key] = entry['cost']
        return costs

    def _new_recorders(self, recorded, by_key):
        """{recorder key: the keys of ``recorded`` it answers} of each
        recorder no spot check has found right yet: a flake as the hosts
        name it, recorded by this Nix with this record.nix."""
        features = self.runner.features()
        found = {}
        for key in recorded:
            found.setdefault(recorder_key(by_key[key]['flake'], features.flavour,
                                          features.version), []).append(key)
        known = self.cache.trust.check_marks(list(found))
        return dict((rkey, keys) for rkey, keys in found.items() if rkey not in known)

    def _host_key(self, reuse, by_key, key):
        """The key of the check mark of request ``key``: its host
        (``host_key``), the same on every commit and lock; its reuse key
        where the options give none (never: such a request is not reused)."""
        return host_key(by_key[key]['flake'], by_key[key]['attr'], self.runner.opts) \
            or reuse.keys[key]

    def _recorded_check(self, reuse, hosts, fresh, recorders, by_key, spot_check):
        """The ``RecordedCheck`` of the drawn recorded keys (``fresh``:
        {key: what Nix gave}); each drawn key is evaluated first in its
        evaluator, so that its flake's answers wait for it the least.
        ``hosts``: {key: its check mark's key}; ``spot_check``:
        ``_reuse.spot_check``, Nix's own evaluation."""
        for key in fresh:
            reuse.rank[key] = -1
        recorder_of = dict((key, rkey) for rkey, keys in recorders.items() for key in keys)

        def right(key):
            self.cache.trust.mark_checked([hosts[key]] + (
                [recorder_of[key]] if key in recorder_of else []))

        def nix(keys):
            # called by RecordedCheck.finish, once the pool has ended and
            # given its slots back
            answers = dict.fromkeys(keys)
            spot_check(self.runner, {}, self._nix_request(by_key), also=answers,
                       slots=self.slots)
            return answers

        return RecordedCheck(fresh, lambda key: by_key[key]['flake'], right, nix,
                             lambda key, given, fresh_answer: self._wrong(
                                 key, by_key, given, fresh_answer))


def recorder_key(flake, flavour, version):
    """The key of a recorder: ``flake`` as the hosts name it, recorded by
    this Nix (``flavour``, ``version``) with this record.nix and record
    format. Its check mark says a spot check found one of its answers right."""
    return hashlib.sha256(json.dumps(
        ['recorder', flake, flavour, list(version), _record.FORMAT,
         hashlib.sha256(_record.record_text().encode('utf-8')).hexdigest()],
        sort_keys=True).encode('utf-8')).hexdigest()


def host_key(flake, attr, options):
    """The key of a host's check mark (when a spot check last found its
    answer right, and how many batches gave it unchecked since): ``flake``
    as the hosts name it, the host's ``attr`` and the run's Nix
    ``options``; not its content, its locks nor the Nix version, so that
    its wait goes on across commits and lock changes and the bound holds
    whatever changes. None where the options are not pure (nothing of such
    a run is reused)."""
    return cache_key({'spot-check': 'host', 'flake': flake}, attr, 'any', options)


def due_after(hosts, count):
    """Batches a host may be reused unchecked before it is drawn whatever
    it costs: its turn, with ``count`` drawn a batch from ``hosts``, and
    ``SLACK`` batches more to wait for a budget it fits in."""
    return -(-hosts // max(1, count)) + SLACK


def spot_check_sample(keys, marks, costs, count, budget, forced=(), now=None, draw=None):
    """The keys of ``keys`` a spot check evaluates again. ``marks``: {key:
    {'when': its last check (0: never), 'waited': batches reused unchecked
    since}}; ``costs``: {key: seconds} (none: counts as free); ``count``:
    how many to draw; ``budget``: seconds they may cost together.

    First every key of ``forced`` and every key that has waited
    ``due_after`` batches, whatever they cost. Then, up to ``count`` in
    all, the least recently checked first (never checked: first of all, a
    draw among equals), each that fits in what is left of ``budget``; one
    that does not waits, and its wait counts. Where some keys have a check
    time and others none, one more, drawn from the rest at random, weighted
    by the time since its last check (one with none as the oldest),
    whatever it costs: a writer of the cache folder who deletes the other
    hosts' times (and replays one host's genuine old one) cannot keep that
    host out of every draw. ``draw``: a random.Random (the system's random
    source if None)."""
    draw = draw or random.SystemRandom()
    now = time.time() if now is None else now
    when = dict((k, (marks.get(k) or {}).get('when', 0)) for k in keys)
    order = sorted(keys, key=lambda k: (when[k], draw.random()))
    limit = due_after(len(order), count)
    sample = [k for k in order
              if k in forced or (marks.get(k) or {}).get('waited', 0) >= limit]
    spent = sum(costs.get(k) or 0 for k in sample)
    for key in order:
        if len(sample) >= count:
            break
        if key not in sample and spent + (costs.get(key) or 0) <= budget:
            sample.append(key)
            spent += costs.get(key) or 0
    rest = [k for k in order if k not in sample]
    ages = dict((k, max(now - when[k], 1)) for k in order if when[k])
    if not count or not rest or not ages or len(ages) == len(order):
        return sample
    oldest = max(ages.values())
    return sample + draw.choices(rest, [ages.get(k, oldest) for k in rest])


def _cheapest(keys, costs):
    """The key of ``keys`` whose recorded cost is least; where none has
    one (a new flake: nothing recorded yet), the first (its evaluator's
    first host: drawing it changes no evaluator's order)."""
    known = [k for k in keys if k in costs]
    return min(known, key=lambda k: costs[k]) if known else keys[0]
