# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Nix process of the evaluators, from its start to its last answer.

``EvalPoolProcess`` holds the methods of ``EvalPool`` that run one piece of
hosts (``_Piece``) in one ``nix eval --apply`` (recorded under strace where
the run records the flake): within one of the job's slots, with the heap
and collector threads of the budget (``_eval_pool_budget``); each host's
answer delivered the moment the process traces it; the process stopped
after a host once it is over its memory (or, recording, has answered as
many hosts as one record should hold), its other hosts queued again; a host
that fails or takes longer than the timeout given Nix's message, the hosts
after it queued again. Below them: finding Nix under strace, stopping a
process and its group, the watch of each host's time. The queue those
pieces come from and go back to: ``_eval_pool``.
"""

import math
import os
import signal
import subprocess
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_pool_budget import (
    _median, gc_markers, initial_heap_bytes, rss_mb)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run


class _Piece(object):
    """Some hosts of one flake in one Nix process: it evaluates
    ``items[0:end]`` in order; ``pos`` is the first not yet traced."""

    def __init__(self, flake, items):
        self.flake, self.items = flake, list(items)
        self.end, self.pos = len(self.items), 0
        self.proc = None
        # its strace log when it is recorded (the evaluator is strace's child)
        self.log = None
        # when its current host started (the process, then each trace)
        self.since = time.monotonic()
        # its process was stopped: 'host' (its current host took longer than
        # the timeout) or 'batch' (the pool's time ran out); None: it was not
        self.timed_out = None

    def rest(self):
        return self.end - self.pos


class EvalPoolProcess(object):
    """The methods of ``EvalPool`` that run one Nix process over a piece
    (``_evaluate``); the pool's state they use (its runner, lock, queue and
    times) is ``EvalPool``'s."""

    def _evaluate(self, piece):
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_slots import (
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
            # controller-only code: there is no AnsibleModule.run_command here
            proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as exc:
            for index in range(piece.end):
                self._fail(piece, index, NixError('nix eval', argv=argv, rc=127,
                                                  stderr='%s' % exc))
            return
        piece.proc, piece.log = proc, log
        piece.since = time.monotonic()
        _run.CHILD_GROUPS.add(proc.pid)
        with self._lock:
            self._running.append(piece)
        if self.runner.timeout or self.deadline is not None:
            # a bound on each host, not on the process: a process may answer
            # many hosts, each within it; the one that exceeds it fails alone
            timer = threading.Thread(target=_watch, args=(piece, proc, self.runner.timeout,
                                                          self.deadline),
                                     name='nixdeploy-eval-timeout')
            timer.daemon = True
            timer.start()
        rest, stopped = self._read_traces(piece, proc, log, marker, self_marker)
        proc.stdout.read()
        rc = proc.wait()
        _run.CHILD_GROUPS.discard(proc.pid)
        if log is not None:
            # strace has written its log whole (it exits after its tracee)
            _kill(proc)
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
                with self._lock:
                    # what this host took (the first: the shared part too)
                    took = now - piece.since
                    piece.pos = index + 1
                    if index:
                        # the first host's time holds the shared part too
                        self._durations.append(now - piece.since)
                    else:
                        self._first.append(now - piece.since)
                    piece.since = now
                answer = result_of(value)
                answered_here += 1
                if log is not None:
                    self.recorder.result(piece.items[index][0], answer, took)
                self._give(piece.items[index][0], answer)
            with self._lock:
                done = piece.pos >= piece.end
            if done or (piece.pos < piece.end and (
                    rss_mb(_evaluator_pid(proc, log)) > self.max_memory_mb
                    or (log is not None and answered_here >= self._per_process()))):
                # over its memory, or (recording) as many hosts as a process
                # may record: the rest in a fresh process
                _stop(proc, log)
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
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_reuse import (
            MIN_HOST_SECONDS, RECORD_OVERHEAD)
        with self._lock:
            if not self._durations or not self._first:
                return float('inf')
            usual = _median(self._durations)
            startup = max(0.0, _median(self._first) - usual)
        if usual < MIN_HOST_SECONDS:
            return float('inf')
        return max(1, int(math.ceil(startup / (RECORD_OVERHEAD * usual))))


def _evaluator_pid(proc, log):
    """The pid of the Nix process: under strace, strace's child."""
    if log is None:
        return proc.pid
    try:
        with open('/proc/%d/task/%d/children' % (proc.pid, proc.pid)) as handle:
            children = handle.read().split()
        return int(children[0]) if children else proc.pid
    except (OSError, ValueError):
        return proc.pid


def _stop(proc, log):
    """Stop an evaluator and its group. Under strace, Nix first: strace
    with a seccomp filter leaves only when its tracee does (a SIGTERM to
    strace waits for Nix to finish all its hosts), and then writes its log
    whole."""
    if log is not None:
        child = _evaluator_pid(proc, log)
        try:
            if child != proc.pid:
                os.kill(child, signal.SIGKILL)
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
    _kill(proc)


def _watch(piece, proc, timeout, deadline):
    """Stops ``proc`` once its current host (``piece.since``: the start of
    the process, then each answer) has taken more than ``timeout`` seconds
    (None: no such bound), or at ``deadline`` (``time.monotonic()``; None:
    none), the end of the batch's time."""
    while proc.poll() is None:
        now = time.monotonic()
        if timeout and now - piece.since > timeout:
            piece.timed_out = 'host'
        elif deadline is not None and now > deadline:
            piece.timed_out = 'batch'
        if piece.timed_out:
            _kill(proc)
            return
        time.sleep(min(0.5, (timeout or 2.0) / 4.0))


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
