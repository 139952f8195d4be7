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

import json
import os
import time

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (
    AWAITING)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run

# the run's waiting_for (activate-lock.sh) -> the words of its step
WAIT_STEPS = {
    'activation': _run.WAITING_ACTIVATION,
    'confirmation': _run.WAITING_CONFIRMATION,
    'rollback': _run.WAITING_ROLLBACK,
    'switch': _run.WAITING_SWITCH,
}


def _window_path(base_dir, host, make=False):
    folder = os.path.join(base_dir, _run_files.WINDOWS_FOLDER)
    if make:
        private_folder(folder)
    # the host name comes from the flake: a digest of it, never a path of its own
    return os.path.join(folder, short_digest('window', host) + '.json')


def write_window(base_dir, host, window):
    """Keep the watchdog's window of ``host``'s activation (seconds after
    the activation ends): while the activation runs, its step's bound holds
    the activation's timeout too, and an interrupted run says both. Never
    fails the activation."""
    try:
        write_json(_window_path(base_dir, host, make=True),
                   {'host': host, 'window': window, 'since': time.time()})
    except (OSError, IOError, TypeError, ValueError):
        pass


def read_window(base_dir, host, started):
    """The window write_window kept for ``host`` since ``started`` (when its
    task started), or None."""
    try:
        with open(_window_path(base_dir, host), 'rb') as handle:
            data = json.loads(handle.read(_run.STEP_FILE_MAX).decode('utf-8'))
    except (OSError, IOError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get('host') != host:
        return None
    window, since = data.get('window'), data.get('since')
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (window, since))
    return window if numbers and since >= started - _run.STEP_SLACK else None


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
        if window is not None:
            write_window(C.DEFAULT_LOCAL_TMP, self._host, window)

    def _set(self, step, until):
        # once a step: its start and bound stay what they were when it began,
        # unless the bound comes nearer (an activation that ended awaits its
        # confirmation: the watchdog's window is all that is left of it,
        # not the activation's timeout too);
        # rolls_back: a watchdog guards the run (it rolls back unconfirmed)
        nearer = until is not None and self._until is not None and until < self._until
        if step != self._step or nearer:
            self._step, self._until = step, until
            _run.set_step(C.DEFAULT_LOCAL_TMP, self._host, step, until=until,
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
            self._set(_run.ACTIVATING, self.window_end)
        elif state in (None, 'starting', 'running', 'waiting_lock'):
            # under way: its end, then (magic rollback) the watchdog's window
            self._set(_run.ACTIVATING, now + self._activation + (self._window or 0))

    def over(self):
        """The task is done with its run: no step is left for its host."""
        _run.clear_step(C.DEFAULT_LOCAL_TMP, self._host)
        try:
            os.unlink(_window_path(C.DEFAULT_LOCAL_TMP, self._host))
        except (OSError, IOError):
            pass
