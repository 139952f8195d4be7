# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job's evaluator slots: at most N ``nix eval`` processes at once,
whoever starts them.

A play batch normally has one evaluation (one wave of its batch server, one
``EvalPool``), whose workers already stay within the budget. But a task
whose ``flake``/``attr`` are templated per host to something other than the
hosts' own ``nix_flake``/``nix_attr`` has the hosts whose request differs
from the one foreseen for them ask it, in later waves
(``stage/_stage.BatchEval``), each wave a pool of its own, and nix_build
evaluates in its build waves; they run
beside the batch's and each other; the spot check of reused and recorded
answers (``reuse/_reuse.spot_check``) evaluates hosts' systems too. Without a
bound shared between them, the evaluators at once add up, each with its heap
of gigabytes. Every evaluator, the spot check's included, takes one of these
slots first: ``flock`` on ``eval-slot-<n>`` in the job's
own batch folder, released when the process ends, or by the kernel when the
holder dies.
"""

import fcntl
import os
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

# how often a process without a slot looks again
WAIT = 0.1
# the longest an evaluator waits for a slot: the other evaluations of the
# job are bounded themselves (each host by eval_timeout), this is the net
# under a holder that never lets go
SLOT_WAIT = 8 * 3600


class SlotWaitTimeout(NixdeployError):
    """No slot came free within the wait."""


class EvalSlots(object):
    """``acquire()`` returns a held slot (give it to ``release``), waiting
    for one of ``count`` to be free, at most ``timeout`` seconds
    (``SlotWaitTimeout`` after)."""

    def __init__(self, folder, count):
        self.folder = folder
        self.count = max(1, int(count))

    def acquire(self, timeout=SLOT_WAIT):
        deadline = time.monotonic() + timeout
        handles = [os.open(os.path.join(self.folder, _run_files.EVALUATOR_SLOT % number),
                           os.O_WRONLY | os.O_CREAT, 0o600) for number in range(self.count)]
        held = None
        try:
            while held is None:
                for handle in handles:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except (OSError, IOError):
                        continue
                    held = handle
                    break
                else:
                    if time.monotonic() > deadline:
                        raise SlotWaitTimeout(
                            'waited %d s for one of the job\'s %d evaluator slots (eval_workers; '
                            'the lock files eval-slot-N in %s), which other evaluations of '
                            'this run hold, and gave up: one of them is stuck; end the run and '
                            'start it again' % (timeout, self.count, self.folder))
                    time.sleep(WAIT)
            return held
        finally:
            for handle in handles:
                if handle != held:
                    os.close(handle)

    @staticmethod
    def release(handle):
        if handle is not None:
            os.close(handle)
