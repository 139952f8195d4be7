# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Nix process of the evaluators, as the pool (``_pool.EvalPool``)
starts, watches and stops it: ``Piece``, the hosts of one flake a process
evaluates in order; finding Nix under strace (a recorded process is
strace's child); stopping a process and its group; the watch that stops a
process whose current host took longer than its timeout, or at the end of
the batch's time.
"""

import os
import signal
import subprocess
import time


class Piece(object):
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
        # the CPU seconds its process had used then (a process starts at 0)
        self.cpu_since = 0.0
        # its process was stopped: 'host' (its current host took longer than
        # the timeout) or 'batch' (the pool's time ran out); None: it was not
        self.timed_out = None

    def rest(self):
        return self.end - self.pos


def evaluator_pid(proc, log):
    """The pid of the Nix process: under strace, strace's child."""
    if log is None:
        return proc.pid
    try:
        with open('/proc/%d/task/%d/children' % (proc.pid, proc.pid)) as handle:
            children = handle.read().split()
        return int(children[0]) if children else proc.pid
    except (OSError, ValueError):
        return proc.pid


def stop_evaluator(proc, log):
    """Stop an evaluator and its group. Under strace, Nix first: strace
    with a seccomp filter leaves only when its tracee does (a SIGTERM to
    strace waits for Nix to finish all its hosts), and then writes its log
    whole."""
    if log is not None:
        child = evaluator_pid(proc, log)
        try:
            if child != proc.pid:
                os.kill(child, signal.SIGKILL)
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
    kill_group(proc)


def watch_piece(piece, proc, timeout, deadline):
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
            kill_group(proc)
            return
        time.sleep(min(0.5, (timeout or 2.0) / 4.0))


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
