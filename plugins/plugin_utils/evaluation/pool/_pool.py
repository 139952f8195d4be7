# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evaluate many hosts' systems in parallel Nix processes, each host's
result delivered the moment its process traces it.

The shape of one process is ``_eval``'s (one ``nix eval --apply`` over a
list of attributes, each result traced with a marker nobody can guess as
soon as it is known, a failure naming the first untraced host). Around it,
as nix-eval-jobs does with its workers:

- ``workers`` threads, each running one Nix process at a time, so the
  controller's cores evaluate side by side; a shared part of the flake (a
  nixpkgs) is evaluated once per process, so the hosts are split into as
  few pieces as there are workers.
- A worker whose piece is done takes the second half of what a process
  stuck on one host has not started yet (the stuck one stops where the
  taken part begins): one slow host holds only itself, not the hosts
  queued behind it.
- After each host, a process whose memory (RSS) passed ``max_memory_mb``
  is stopped and the rest of its piece goes to a fresh process: memory
  stays within workers x max_memory_mb plus one host's own.
- A failed host costs one process: the hosts traced before it keep their
  results, it gets Nix's message, the hosts after it go to a new process.

This file holds ``EvalPool``, the one class callers use: its queue of
pieces, what an idle evaluator takes, one Nix process over a piece, and the
figures it counts. Beside it: ``_process`` (a piece, and stopping
or watching one process) and ``_budget`` (how many evaluators,
how much memory, what they use).
"""

import math
import os
import subprocess
import threading
import time
import traceback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._budget import (
    DEFAULT_MAX_MEMORY_MB, RESERVED_MB, median, available_mb, cpu_seconds, default_workers,
    gc_markers, initial_heap_bytes, rss_mb)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._process import (
    Piece, evaluator_pid, kill_group, stop_evaluator, watch_piece)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import internal_error
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run

# what callers may import from here: EvalPool, and the names this file
# offered before its parts moved to the files beside it
__all__ = ['DEFAULT_MAX_MEMORY_MB', 'EvalPool', 'RESERVED_MB', 'STEAL_AFTER', 'UNANSWERED',
           'available_mb', 'default_workers', 'gc_markers', 'initial_heap_bytes', 'rss_mb']

# what a host is told that no evaluator answered (a bug: every piece's
# hosts are answered, by a trace or a failure)
UNANSWERED = 'internal error in the evaluators: none of them answered for this host'
# An idle evaluator takes hosts from a process whose current host has run
# this long (or three times the usual host's time, if longer)
STEAL_AFTER = 1.0


def _start_evaluator(argv, env):
    """An evaluator's process, in a session (and process group) of its own:
    stopped with its group, whatever it started."""
    # controller-only code: there is no AnsibleModule.run_command here
    return subprocess.Popen(  # pylint: disable=ansible-bad-function
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, start_new_session=True)


class EvalPool(object):
    """``run(pieces, deliver)``; counts its processes and the largest RSS
    seen (``processes``, ``peak_mb``)."""

    def __init__(self, runner, apply_expression, workers, max_memory_mb=None, chunk_size=None,
                 slots=None, recorder=None, batch_timeout=None):
        self.runner = runner
        # seconds all of run()'s evaluators may take; then every host not
        # answered yet fails saying so (None: only each host's own bound)
        self.batch_timeout = batch_timeout
        self.deadline = None
        # the run's ``reuse/_reuse.Reuse`` (None: nothing recorded): where it
        # records a flake, its evaluators run through it, under strace
        self.recorder = recorder
        # the job's evaluator slots (``_slots``): None, no bound beyond ours
        self.slots = slots
        self.apply = apply_expression
        self.workers = max(1, int(workers))
        self.max_memory_mb = int(max_memory_mb or DEFAULT_MAX_MEMORY_MB)
        self.chunk_size = int(chunk_size) if chunk_size else None
        # {flake evaluated: the flake as the user named it}, for messages
        self.shown = {}
        # {flake evaluated: argv its evaluators add} (the run's resolved lock
        # graph: FlakeSource.eval_args)
        self.flake_args = {}
        # {flake evaluated: set of its nixConfig settings Nix did not apply}
        # (its warning, seen on the stderr of any of its processes)
        self.refused = {}
        self.processes = 0
        self.peak_mb = 0
        self.peak_total_mb = 0
        self._lock = threading.Lock()
        self._queue = []
        self._running = []
        self._delivered = set()
        self._durations = []
        # each process's time to its first answer: its shared part and a host
        self._first = []
        # the same two in CPU seconds of the evaluator, where the system
        # tells (what decides how many hosts a recorded process holds: a
        # loaded machine stretches the wall time of a cheap host, not its CPU)
        self._cpu_durations = []
        self._cpu_first = []
        self._deliver = None

    def run(self, by_flake, deliver, alone=()):
        """``by_flake``: {flake: [(key, attribute path)]} in the order they
        should start; ``deliver(key, answer)`` once per key, from any thread,
        as soon as it is known ({drv_path, out_path, system} or {error}).
        Each key of ``alone`` is evaluated in a process of its own, before
        the others: a recorded host's record is then what it read itself."""
        self._deliver = deliver
        if self.batch_timeout:
            self.deadline = time.monotonic() + self.batch_timeout
        alone = set(alone)
        total = sum(1 for items in by_flake.values() for key, _path in items if key not in alone)
        per_piece = max(1, -(-total // self.workers))
        if self.chunk_size:
            per_piece = min(per_piece, self.chunk_size)
        shared = []
        for flake, items in by_flake.items():
            self._queue.extend(Piece(flake, [item]) for item in items if item[0] in alone)
            items = [item for item in items if item[0] not in alone]
            for start in range(0, len(items), per_piece):
                shared.append(Piece(flake, items[start:start + per_piece]))
        self._queue.extend(shared)
        sampler = threading.Thread(target=self._sample, name='nixdeploy-eval-rss')
        sampler.daemon = True
        sampler.start()
        threads = [threading.Thread(target=self._work, name='nixdeploy-eval-%d' % n)
                   for n in range(min(self.workers, len(self._queue)) or 1)]
        for thread in threads:
            thread.daemon = True
            thread.start()
        for thread in threads:
            thread.join()
        self._queue = None
        # every host answered, whatever became of the workers: a host left
        # without an answer waits for one that never comes
        for items in by_flake.values():
            for key, _path in items:
                self._give(key, {'error': UNANSWERED})

    # ------------------------------------------------------------ scheduling
    def _next(self):
        """The next piece for an idle worker: a queued one, else the back
        half of what a process stuck on one host has not started yet; None
        when nothing is left to take or wait for."""
        while True:
            late = []
            with self._lock:
                if self._queue and self.past_deadline():
                    # the batch's time is up: what no evaluator started fails
                    late, self._queue[:] = list(self._queue), []
            for piece in late:
                for index in range(piece.end):
                    self._give(piece.items[index][0], self.batch_timeout_error(piece, index))
            with self._lock:
                if self._queue:
                    return self._queue.pop(0)
                if not self._running:
                    return None
                taken = self._steal(time.monotonic())
                if taken is not None:
                    return taken
            time.sleep(0.1)

    def _steal(self, now):
        # A new process pays the shared part again (``startup`` below): worth it
        # for the hosts waiting behind a process stuck on one host (longer
        # than its hosts usually take), or when the hosts waiting in a
        # process would take it longer than twice that start (an uneven
        # tail), not to shave a fleet of quick ones.
        if self.past_deadline():
            return None
        usual = median(self._durations)
        startup = max(0.0, median(self._first) - usual)
        worth = [p for p in self._running if p.rest() >= 2 and (
            now - p.since > max(STEAL_AFTER, 3 * usual)
            or (self._durations and self._first
                and (p.rest() - 1) * usual > 2 * max(startup, STEAL_AFTER)))]
        if not worth:
            return None
        busy = max(worth, key=lambda p: p.rest())
        waiting = busy.rest() - 1
        cut = busy.end - (waiting + 1) // 2
        taken = Piece(busy.flake, busy.items[cut:busy.end])
        busy.end = cut
        return taken

    def _work(self):
        while True:
            piece = self._next()
            if piece is None:
                return
            try:
                self._evaluate(piece)
            except Exception as exc:  # pylint: disable=broad-except
                self._broken(piece, exc)

    def _broken(self, piece, exc):
        """A bug of ours in the middle of ``piece``: its hosts not answered
        yet fail in one line (the traceback beside it for -vvv, and on
        stderr: the batch's log), its process goes, the other evaluators go
        on. A worker thread that died instead left those hosts without any
        answer, and the other workers waiting for a piece that never ended."""
        trace = traceback.format_exc()
        os.write(2, trace.encode('utf-8', 'replace'))
        if piece.proc is not None:
            kill_group(piece.proc)
            _run.CHILD_GROUPS.discard(piece.proc.pid)
            try:
                piece.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        with self._lock:
            if piece in self._running:
                self._running.remove(piece)
            end = piece.end
        failure = {'error': internal_error('an evaluator', exc), 'traceback': trace}
        for index in range(piece.pos, end):
            self._give(piece.items[index][0], dict(failure))

    # ------------------------------------------------------- one Nix process
    def _evaluate(self, piece):
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._slots import (
            SlotWaitTimeout)
        try:
            slot = self.slots.acquire() if self.slots is not None else None
        except SlotWaitTimeout as exc:
            shown = self.shown.get(piece.flake, piece.flake)
            for index in range(piece.end):
                self._give(piece.items[index][0], {'error': u'evaluating %s#%s: %s' % (
                    shown, attr_string(piece.items[index][1]), exc)})
            return
        try:
            # its hosts' answers come before the end of the process, and its
            # record after: a job that ends in between still lets it be kept
            with _run.finishing():
                self._evaluate_in_slot(piece)
        finally:
            if slot is not None:
                self.slots.release(slot)

    def _evaluate_in_slot(self, piece):
        """One Nix process over ``piece``, within one of the job's slots:
        each host answered as Nix traces it; what is left when the process
        ends goes to a fresh process, or fails with Nix's words."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
            trace_marker)
        marker, self_marker = trace_marker(), trace_marker()
        argv, env, log = self._command(piece, marker, self_marker)
        with self._lock:
            self.processes += 1
            self.runner.processes += 1
        try:
            # started and its group kept in one step (CHILD_GROUPS.start): a
            # job that ends meanwhile stops this process with the others
            proc = _run.CHILD_GROUPS.start(lambda: _start_evaluator(argv, env))
        except OSError as exc:
            for index in range(piece.end):
                self._fail(piece, index, NixError('nix eval', argv=argv, rc=127,
                                                  stderr='%s' % exc))
            return
        if proc is None:
            # the job has ended and this process is stopping: nobody waits
            # for these hosts' answers any more
            return
        piece.proc, piece.log = proc, log
        piece.since, piece.cpu_since = time.monotonic(), 0.0
        with self._lock:
            self._running.append(piece)
        if self.runner.timeout or self.deadline is not None:
            # a bound on each host, not on the process: a process may answer
            # many hosts, each within it; the one that exceeds it fails alone
            timer = threading.Thread(target=watch_piece,
                                     args=(piece, proc, self.runner.timeout, self.deadline),
                                     name='nixdeploy-eval-timeout')
            timer.daemon = True
            timer.start()
        rest, stopped = self._read_traces(piece, proc, log, marker, self_marker)
        proc.stdout.read()
        rc = proc.wait()
        _run.CHILD_GROUPS.discard(proc.pid)
        if log is not None:
            # strace has written its log whole (it exits after its tracee)
            kill_group(proc)
            self.recorder.finished(piece.flake, log, marker, self_marker,
                                   [key for key, _path in piece.items])
        with self._lock:
            self._running.remove(piece)
            end = piece.end
        self._after_process(piece, end, argv, rc, rest, stopped)

    def _command(self, piece, marker, self_marker):
        """(argv, environment, strace log or None) of the process for
        ``piece``: a recorded one where the recorder records its flake."""
        apply_text = self.apply([p for _k, p in piece.items], marker, whole=False)
        recorded = self.recorder.command(
            piece.flake, apply_text, marker, self_marker,
            lambda args: self.runner.argv('eval', args, flake_command=True)) \
            if self.recorder is not None else None
        if recorded is not None:
            argv, record_env, log = recorded
        else:
            record_env, log = {}, None
            argv = self.runner.argv('eval', ['--json'] + list(self.flake_args.get(piece.flake, ()))
                                    + self.runner.outputs(piece.flake) + ['--apply', apply_text],
                                    flake_command=True)
        env = dict(os.environ)
        env.update(self.runner.opts.environment())
        env.update(record_env)
        # Nix starts its heap at 384 MiB and collects every time it grows:
        # an evaluator that will hold gigabytes spends much of its CPU in
        # collections (and two of them contend for the memory bus). Three
        # quarters of the memory bound are used anyway before the evaluator
        # is replaced; the user's own GC_INITIAL_HEAP_SIZE wins.
        env.setdefault('GC_INITIAL_HEAP_SIZE', str(initial_heap_bytes(self.max_memory_mb)))
        # Nix's collector marks with one thread per core. With an evaluator
        # per core, each collection started as many threads as there are
        # cores in every evaluator: they spun on the mark locks while the
        # others ran (+8-10% CPU for two evaluators on 2 cores, none alone).
        # The cores are shared among the evaluators at once: this pool's, or
        # the job's slots if more (other pools beside it: a wave of hosts
        # asking again, a build wave's). The user's own GC_MARKERS wins.
        at_once = max(self.workers, self.slots.count if self.slots is not None else 1)
        env.setdefault('GC_MARKERS', str(gc_markers(at_once)))
        return argv, env, log

    def _read_traces(self, piece, proc, log, marker, self_marker):
        """Each host's answer as the process traces it, given at once;
        (the other lines of its stderr, whether it was stopped early: over
        its memory, or as many hosts recorded as a process may record)."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
            result_of)
        rest = []
        # hosts answered by this process: a recorded one is replaced after
        # ``_per_process`` of them, so a host's record holds a few hosts' reads
        answered_here = 0
        for raw in proc.stderr:
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            found, other = _nix_stderr.traces(line, marker)
            if not found:
                if log is not None and self_marker in other:
                    # record.nix's line of a forced attribute of self: the log has it
                    continue
                rest.append(other)
                # Nix warns of the flake's settings it does not apply before
                # the process traces anything: known before its hosts' answers
                refused = _nix_stderr.refused_flake_settings(other)
                if refused:
                    with self._lock:
                        self.refused.setdefault(piece.flake, set()).update(refused)
                continue
            for index, value in found.items():
                if index != piece.pos or index >= len(piece.items):
                    continue
                now = time.monotonic()
                cpu = cpu_seconds(evaluator_pid(proc, log)) if log is not None else None
                with self._lock:
                    # what this host took (the first: the shared part too)
                    took = now - piece.since
                    piece.pos = index + 1
                    if index:
                        # the first host's time holds the shared part too
                        self._durations.append(now - piece.since)
                    else:
                        self._first.append(now - piece.since)
                    if cpu is not None:
                        (self._cpu_durations if index else self._cpu_first).append(
                            cpu - piece.cpu_since)
                        piece.cpu_since = cpu
                    piece.since = now
                answer = result_of(value)
                answered_here += 1
                if log is not None:
                    self.recorder.result(piece.items[index][0], answer, took)
                self._give(piece.items[index][0], answer)
            with self._lock:
                done = piece.pos >= piece.end
            if done or (piece.pos < piece.end and (
                    rss_mb(evaluator_pid(proc, log)) > self.max_memory_mb
                    or (log is not None and answered_here >= self._per_process()))):
                # over its memory, or (recording) as many hosts as a process
                # may record: the rest in a fresh process
                stop_evaluator(proc, log)
                return rest, True
        return rest, False

    def _after_process(self, piece, end, argv, rc, rest, stopped):
        """The hosts of ``piece`` (up to ``end``) the process left
        unanswered: to a fresh process when it was stopped early, failed
        with the batch's bound, or the first of them failed with Nix's words
        and the rest to a fresh process."""
        if piece.pos >= end:
            return
        if stopped:
            # over its memory: the rest of its hosts in a fresh process
            self._requeue(piece, piece.pos, end)
            return
        if piece.timed_out == 'batch':
            for index in range(piece.pos, end):
                self._give(piece.items[index][0], self.batch_timeout_error(piece, index))
            return
        text = _redact.text('\n'.join(rest))
        shown = self.shown.get(piece.flake, piece.flake)
        what = attr_string(piece.items[piece.pos][1])
        if piece.timed_out:
            error = NixError('evaluating %s#%s took longer than the timeout (%d s): stopped' % (
                shown, what, self.runner.timeout), argv=argv, rc=rc, stderr=text)
        elif rc == 0:
            error = NixError('nix eval traced no result for %s' % what, argv=argv, rc=rc,
                             stderr=text)
        else:
            error = NixError('evaluating %s#%s failed' % (shown, what), argv=argv, rc=rc,
                             stderr=text)
        self._fail(piece, piece.pos, error)
        self._requeue(piece, piece.pos + 1, end)

    def _per_process(self):
        """How many hosts one recorded process evaluates before a fresh one
        takes the rest: a host's record is its process's reads up to its
        answer, so the fewer hosts a process holds, the fewer a change to one
        host's file sends back to be evaluated. As few as keep the extra
        starts within RECORD_OVERHEAD of the hosts' own work (one, for hosts
        that cost many times a start); unbounded until two hosts of one
        process have shown what a host and a start cost."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse._reuse import (
            MIN_HOST_SECONDS, RECORD_OVERHEAD)
        with self._lock:
            # CPU seconds where the system tells them, else wall seconds
            durations, first = ((self._cpu_durations, self._cpu_first)
                                if self._cpu_durations and self._cpu_first
                                else (self._durations, self._first))
            if not durations or not first:
                return float('inf')
            usual = median(durations)
            startup = max(0.0, median(first) - usual)
        if usual < MIN_HOST_SECONDS:
            return float('inf')
        return max(1, int(math.ceil(startup / (RECORD_OVERHEAD * usual))))

    # ------------------------------------------------------------ answers
    def past_deadline(self):
        return self.deadline is not None and time.monotonic() > self.deadline

    def batch_timeout_error(self, piece, index):
        """What a host not answered when the batch's time ran out is told."""
        shown = self.shown.get(piece.flake, piece.flake)
        return {'error': u'evaluating %s#%s was stopped: the evaluations of its batch took '
                         u'longer than eval_batch_timeout (%d s); raise it, or evaluate fewer '
                         u'hosts at once (serial)' % (shown, attr_string(piece.items[index][1]),
                                                      self.batch_timeout)}

    def _give(self, key, result):
        with self._lock:
            if key in self._delivered:
                return
            self._delivered.add(key)
        self._deliver(key, result)

    def _fail(self, piece, index, error):
        self._give(piece.items[index][0], {'error': u'%s' % error,
                                           'nix_message': error.nix_message()})

    def _requeue(self, piece, start, end):
        if start < end:
            with self._lock:
                self._queue.insert(0, Piece(piece.flake, piece.items[start:end]))

    def _sample(self):
        """The largest RSS of one evaluator and of all of them at once."""
        while self._queue is not None:
            with self._lock:
                pids = [evaluator_pid(p.proc, p.log) for p in self._running
                        if p.proc is not None]
            sizes = [rss_mb(pid) for pid in pids]
            if sizes:
                self.peak_mb = max(self.peak_mb, *sizes)
                self.peak_total_mb = max(self.peak_total_mb, sum(sizes))
            time.sleep(0.1)
