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
"""

import math
import os
import signal
import subprocess
import threading
import time
import traceback

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import internal_error
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stream

# what a host is told that no evaluator answered (a bug: every piece's
# hosts are answered, by a trace or a failure)
UNANSWERED = 'internal error in the evaluators: none of them answered for this host'
# nix-eval-jobs' default --max-memory-size
DEFAULT_MAX_MEMORY_MB = 4096
RESERVED_MB = 1024
# An idle evaluator takes hosts from a process whose current host has run
# this long (or three times the usual host's time, if longer)
STEAL_AFTER = 1.0


def rss_mb(pid):
    """A process's resident memory in MB (0 when it is gone)."""
    try:
        with open('/proc/%d/status' % pid) as handle:
            for line in handle:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) // 1024
    except (OSError, IOError, ValueError, IndexError):
        pass
    return 0


def initial_heap_bytes(max_memory_mb):
    """The heap an evaluator starts with: three quarters of its memory
    bound, at least Nix's own 384 MiB."""
    return max(384, int(max_memory_mb) * 3 // 4) * 2 ** 20


def gc_markers(workers, cpus=None):
    """The marker threads each evaluator's collector may use: the cores
    shared among the evaluators, at least one."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, int(workers)))


def available_mb(meminfo='/proc/meminfo'):
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) // 1024
    except (OSError, IOError, ValueError, IndexError):
        pass
    return None


def default_workers(hosts, max_memory_mb, cpus=None, free_mb=None):
    """As many evaluators as cores, as the memory budget (free memory less
    1 GB, ``max_memory_mb`` each) and as hosts allow (``hosts`` None: any
    number); at least one."""
    cpus = cpus or os.cpu_count() or 1
    free_mb = available_mb() if free_mb is None else free_mb
    by_memory = cpus if free_mb is None else (free_mb - RESERVED_MB) // max(1, max_memory_mb)
    return int(max(1, min(cpus, by_memory, cpus if hosts is None else hosts)))


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
        # its process was stopped for taking longer than the timeout on a host
        self.timed_out = False

    def rest(self):
        return self.end - self.pos


class EvalPool(object):
    """``run(pieces, deliver)``; counts its processes and the largest RSS
    seen (``processes``, ``peak_mb``)."""

    def __init__(self, runner, apply_expression, workers, max_memory_mb=None, chunk_size=None,
                 slots=None, recorder=None):
        self.runner = runner
        # the run's ``_eval_reuse.Reuse`` (None: nothing recorded): where it
        # records a flake, its evaluators run through it, under strace
        self.recorder = recorder
        # the job's evaluator slots (``_eval_slots``): None, no bound beyond ours
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
        self._deliver = None

    def run(self, by_flake, deliver):
        """``by_flake``: {flake: [(key, attribute path)]} in the order they
        should start; ``deliver(key, answer)`` once per key, from any thread,
        as soon as it is known ({drv_path, out_path, system} or {error})."""
        self._deliver = deliver
        total = sum(len(items) for items in by_flake.values())
        per_piece = max(1, -(-total // self.workers))
        if self.chunk_size:
            per_piece = min(per_piece, self.chunk_size)
        for flake, items in by_flake.items():
            for start in range(0, len(items), per_piece):
                self._queue.append(_Piece(flake, items[start:start + per_piece]))
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
        # A new process pays the shared part again (``_startup``): worth it
        # for the hosts waiting behind a process stuck on one host (longer
        # than its hosts usually take), or when the hosts waiting in a
        # process would take it longer than twice that start (an uneven
        # tail), not to shave a fleet of quick ones.
        usual = _median(self._durations)
        startup = max(0.0, _median(self._first) - usual)
        worth = [p for p in self._running if p.rest() >= 2 and (
            now - p.since > max(STEAL_AFTER, 3 * usual)
            or (self._durations and self._first
                and (p.rest() - 1) * usual > 2 * max(startup, STEAL_AFTER)))]
        if not worth:
            return None
        busy = max(worth, key=lambda p: p.rest())
        waiting = busy.rest() - 1
        cut = busy.end - (waiting + 1) // 2
        taken = _Piece(busy.flake, busy.items[cut:busy.end])
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
            _kill(piece.proc)
            _stream.CHILD_GROUPS.discard(piece.proc.pid)
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

    def _give(self, key, result):
        with self._lock:
            if key in self._delivered:
                return
            self._delivered.add(key)
        self._deliver(key, result)

    # ------------------------------------------------------------ one process
    def _evaluate(self, piece):
        slot = self.slots.acquire() if self.slots is not None else None
        try:
            self._evaluate_in_slot(piece)
        finally:
            if slot is not None:
                self.slots.release(slot)

    def _evaluate_in_slot(self, piece):
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
            result_of, trace_marker)
        marker, self_marker = trace_marker(), trace_marker()
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
        _stream.CHILD_GROUPS.add(proc.pid)
        with self._lock:
            self._running.append(piece)
        timer = None
        if self.runner.timeout:
            # a bound on each host, not on the process: a process may answer
            # many hosts, each within it; the one that exceeds it fails alone
            timer = threading.Thread(target=_watch, args=(piece, proc, self.runner.timeout),
                                     name='nixdeploy-eval-timeout')
            timer.daemon = True
            timer.start()
        rest, stopped = [], False
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
                    self.recorder.result(piece.items[index][0], answer)
                self._give(piece.items[index][0], answer)
            with self._lock:
                done = piece.pos >= piece.end
            if done or (piece.pos < piece.end and (
                    rss_mb(_evaluator_pid(proc, log)) > self.max_memory_mb
                    or (log is not None and answered_here >= self._per_process()))):
                # over its memory, or (recording) as many hosts as a process
                # may record: the rest in a fresh process
                stopped = True
                _stop(proc, log)
                break
        proc.stdout.read()
        rc = proc.wait()
        _stream.CHILD_GROUPS.discard(proc.pid)
        if log is not None:
            # strace has written its log whole (it exits after its tracee)
            _kill(proc)
            self.recorder.finished(piece.flake, log, marker, self_marker,
                                   [key for key, _path in piece.items])
        with self._lock:
            self._running.remove(piece)
            end = piece.end
        if piece.pos >= end:
            return
        if stopped:
            # over its memory: the rest of its hosts in a fresh process
            self._requeue(piece, piece.pos, end)
            return
        text = _redact.text('\n'.join(rest))
        if piece.timed_out:
            shown = self.shown.get(piece.flake, piece.flake)
            error = NixError('evaluating %s#%s took longer than the timeout (%d s): stopped' % (
                shown, attr_string(piece.items[piece.pos][1]), self.runner.timeout),
                argv=argv, rc=rc, stderr=text)
        elif rc == 0:
            error = NixError('nix eval traced no result for %s' % attr_string(
                piece.items[piece.pos][1]), argv=argv, rc=rc, stderr=text)
        else:
            shown = self.shown.get(piece.flake, piece.flake)
            error = NixError('evaluating %s#%s failed' % (shown, attr_string(
                piece.items[piece.pos][1])), argv=argv, rc=rc, stderr=text)
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

    def _fail(self, piece, index, error):
        self._give(piece.items[index][0], {'error': u'%s' % error,
                                           'nix_message': error.nix_message()})

    def _requeue(self, piece, start, end):
        if start < end:
            with self._lock:
                self._queue.insert(0, _Piece(piece.flake, piece.items[start:end]))

    def _sample(self):
        """The largest RSS of one evaluator and of all of them at once."""
        while self._queue is not None:
            with self._lock:
                pids = [_evaluator_pid(p.proc, p.log) for p in self._running
                        if p.proc is not None]
            sizes = [rss_mb(pid) for pid in pids]
            if sizes:
                self.peak_mb = max(self.peak_mb, *sizes)
                self.peak_total_mb = max(self.peak_total_mb, sum(sizes))
            time.sleep(0.1)


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


def _median(values):
    return sorted(values)[len(values) // 2] if values else 0.0


def _watch(piece, proc, timeout):
    """Stops ``proc`` once its current host (``piece.since``: the start of
    the process, then each answer) has taken more than ``timeout`` seconds."""
    while proc.poll() is None:
        if time.monotonic() - piece.since > timeout:
            piece.timed_out = True
            _kill(proc)
            return
        time.sleep(min(0.5, timeout / 4.0))


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
