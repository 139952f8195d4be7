# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where one activation is, told through its host's step file
(plugin_utils/task/_progress.py) with the time it is over at the latest.

Two readers need it while the task runs in its worker: the progress lines
(a host waiting for another run's lock says for which and how much longer)
and a run that is interrupted (the summary says when a host whose
activation was under way rolls back by itself, unconfirmed). The bounds
come from the task's own arguments: the lock wait (``lock_timeout``, the
profile's lock, then the platform's switch lock), the activation
(``activation_timeout`` a step) and, under magic rollback, the watchdog's
window (``confirm_timeout`` and the health checks' budget).
"""

import time

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (
    AWAITING)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress

# the run's waiting_for (activate-lock.sh) -> the words of its step
WAIT_STEPS = {
    'activation': _progress.WAITING_ACTIVATION,
    'confirmation': _progress.WAITING_CONFIRMATION,
    'rollback': _progress.WAITING_ROLLBACK,
    'switch': _progress.WAITING_SWITCH,
}


class ActivationSteps:
    """The steps of one activation run (``task``: an ``ActivateTask``;
    ``activation``: the seconds its activation may take, every step of it;
    ``window``: the watchdog's window after it, None without magic
    rollback)."""

    def __init__(self, task, activation, window, clock=time.time):
        self._host = task.host
        self._lock_timeout = task.args['lock_timeout']
        self._activation = activation
        self._window = window
        self._clock = clock
        self._step = None
        self._until = None
        self._lock_seen = {}    # 'lock' or 'switch' -> when the wait was first seen
        # when the watchdog rolls back an unconfirmed run at the latest
        self.window_end = None

    def _set(self, step, until):
        # once a step: its start and bound stay what they were when it began,
        # unless the bound comes nearer (an activation that ended awaits its
        # confirmation: the watchdog's window is all that is left of it,
        # not the activation's timeout too);
        # rolls_back: a watchdog guards the run (it rolls back unconfirmed)
        nearer = until is not None and self._until is not None and until < self._until
        if step != self._step or nearer:
            self._step, self._until = step, until
            _progress.set_step(C.DEFAULT_LOCAL_TMP, self._host, step, until=until,
                               rolls_back=self._window is not None)

    def bound(self):
        """set_step's ``until`` and ``rolls_back`` for a step past the
        activation (health checks, confirmation): the watchdog's end."""
        return {'until': self.window_end, 'rolls_back': self._window is not None}

    def seen(self, values):
        """The run's latest status values (None: none yet, just launched)."""
        state = (values or {}).get('state')
        now = self._clock()
        waiting = (values or {}).get('waiting_for')
        if state == 'waiting_lock' and waiting in WAIT_STEPS:
            # each lock is waited for lock_timeout at most, from when this
            # task first saw it held (the target's own clock is not ours)
            first = self._lock_seen.setdefault('switch' if waiting == 'switch' else 'lock', now)
            self._set(WAIT_STEPS[waiting], first + self._lock_timeout)
        elif state == AWAITING:
            if self.window_end is None and self._window is not None:
                self.window_end = now + self._window
            self._set(_progress.ACTIVATING, self.window_end)
        elif state in (None, 'starting', 'running', 'waiting_lock'):
            # under way: its end, then (magic rollback) the watchdog's window
            self._set(_progress.ACTIVATING, now + self._activation + (self._window or 0))

    def over(self):
        """The task is done with its run: no step is left for its host."""
        _progress.clear_step(C.DEFAULT_LOCAL_TMP, self._host)
