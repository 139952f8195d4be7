# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The spot check of a recorded evaluator's answers (docs/eval-cache.md,
"The spot check").

A recorded evaluator calls the flake through ``record.nix``, not Nix's
own flake call: where the two differ (a new flake shape, a new Nix, a new
record.nix), its answer is not Nix's. The spot check draws some of the
hosts recorded evaluators are about to answer (``_spot_check``)
and has Nix evaluate them first; ``RecordedCheck`` stands between the
evaluators and the hosts: every recorded answer of a flake with a drawn
host waits until that host's recorded answer is compared with Nix's.
Right, they are given. Wrong, the drawn host fails loudly, the flake is
marked distrusted (reuse and recording stay off for it), and every other
recorded answer of that flake in the batch is replaced by Nix's own
evaluation. (Reused answers are the reuse check's: given before.)
"""

import threading

# answer fields compared: those a host's deploy uses
FIELDS = ('drv_path', 'out_path', 'system')


class RecordedCheck(object):
    """``deliver`` between the evaluators and the stage's own ``deliver``
    for one batch.

    ``fresh``: {drawn key: what Nix gave}; ``flake_of(key)``; ``right(key)``
    notes a drawn key found right; ``nix(keys)``: {key: Nix's own answer};
    ``wrong(key, given, fresh)``: the error its hosts are told (and the
    flake marked)."""

    def __init__(self, fresh, flake_of, right, nix, wrong):
        self.fresh = dict(fresh)
        self.flake_of = flake_of
        self.right = right
        self.nix = nix
        self.wrong = wrong
        # {flake: drawn keys not compared yet}
        self.pending = {}
        for key in self.fresh:
            self.pending.setdefault(flake_of(key), set()).add(key)
        # {flake: [(key, answer)]} waiting for the comparison
        self.held = {}
        # flakes a recorded answer was found wrong for
        self.distrusted = set()
        # keys of those flakes whose Nix answer is owed (``_replace``)
        self.to_replace = []
        self._lock = threading.Lock()

    def wrap(self, deliver, fail):
        """The ``deliver(key, answer)`` of the evaluators that goes through
        the check: ``deliver`` is the stage's, ``fail(key, message)`` fails
        a key's hosts."""
        self._deliver, self._fail = deliver, fail
        return self.deliver

    def deliver(self, key, answer):
        """Give ``answer`` now, hold it for its flake's comparison, compare
        it (a drawn key's recorded answer), or replace it by Nix's (its
        flake was found wrong)."""
        flake = self.flake_of(key)
        with self._lock:
            if flake in self.distrusted:
                step = 'replace'
            elif key in self.pending.get(flake, ()):
                step = 'compare'
            elif self.pending.get(flake):
                self.held.setdefault(flake, []).append((key, answer))
                return
            else:
                step = 'give'
        if step == 'give':
            self._deliver(key, answer)
        elif step == 'replace':
            self._replace([key])
        else:
            self._compare(flake, key, answer)

    def finish(self):
        """Once the evaluators have ended: Nix's own answers for the keys of
        a flake found wrong, then whatever still waits (a drawn key that was
        never answered: the evaluators answer every key, so nothing)."""
        with self._lock:
            held, self.held = self.held, {}
            self.pending = {}
            owed, self.to_replace = self.to_replace, []
        if owed:
            answers = self.nix(owed)
            for key in owed:
                self._deliver(key, answers[key])
        for items in held.values():
            for key, answer in items:
                self._deliver(key, answer)

    def _compare(self, flake, key, answer):
        fresh = self.fresh[key]
        if 'error' in answer or same(answer, fresh):
            # right, or the recorded evaluation failed (a timeout, memory):
            # nothing to compare, and a failure is never deployed
            if 'error' not in answer:
                self.right(key)
            with self._lock:
                self.pending[flake].discard(key)
                released = [] if self.pending[flake] else self.held.pop(flake, [])
            self._deliver(key, answer)
            for other, other_answer in released:
                self._deliver(other, other_answer)
            return
        message = self.wrong(key, answer, fresh)
        with self._lock:
            self.distrusted.add(flake)
            self.pending.pop(flake, None)
            held = self.held.pop(flake, [])
        self._fail(key, message)
        self._replace([other for other, _answer in held])

    def _replace(self, keys):
        """``keys`` of a flake found wrong: none of its recorder's answers is
        given; Nix's own answers replace them at ``finish``. Not here: the
        evaluator thread that calls this holds one of the job's evaluator
        slots, and Nix's own evaluation takes one (with every slot held by
        threads waiting here, none would come free)."""
        with self._lock:
            self.to_replace.extend(keys)


def same(answer, fresh):
    """Whether a host's ``answer`` is Nix's ``fresh`` one, field by field."""
    return dict((f, answer.get(f)) for f in FIELDS) == dict((f, fresh.get(f)) for f in FIELDS)
