# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress of the collection's deploy tasks while they run, for the
progress lines of the callback nixdeploy.fleet.summary: how many hosts of a
play batch are done with each phase, which ones still run it and for how
long, and the step inside an activation a person waits on (its health
checks, its confirmation).

The activation runs in a forked worker process, the callback in the main
process: the worker keeps the host's step in a small file of its own under
the run's Ansible temp folder (``C.DEFAULT_LOCAL_TMP``, the same path in
both), named by a digest of the host name, and the callback reads it. What
it reads is untrusted: a file that is not what the worker writes is ignored.
"""

import json
import math
import os
import time
from contextlib import contextmanager

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import PHASE_ORDER

# The steps of an activation a progress line names; a file that names
# anything else is ignored, so only these words reach the terminal.
HEALTH_CHECKS = 'health checks'
AWAITING_CONFIRMATION = 'awaiting confirmation'
# Waiting on the target for what another run holds (its lock, or the
# platform's own switch lock), each saying which: the lock's holder is
# activating, awaits its confirmation, or rolls back (it lets go once that
# is over), or another switch (an auto-upgrade) runs.
WAITING_ACTIVATION = "waiting for another run's activation"
WAITING_CONFIRMATION = "waiting for another run's unconfirmed activation to be confirmed or rolled back"
WAITING_ROLLBACK = "waiting for another run's rollback"
WAITING_SWITCH = 'waiting for another switch of the system, an auto-upgrade?'
WAITS = (WAITING_ACTIVATION, WAITING_CONFIRMATION, WAITING_ROLLBACK, WAITING_SWITCH)
# The activation launched and not yet at a step above, or confirmed and
# finishing on the target (the boot entry after the confirmation): never in
# a progress line (the phase says it), read when the run is interrupted.
ACTIVATING = 'activating'
CONFIRMED = 'confirmed'
STEPS = (HEALTH_CHECKS, AWAITING_CONFIRMATION, ACTIVATING, CONFIRMED) + WAITS
# steps a progress line names
SHOWN_STEPS = (HEALTH_CHECKS, AWAITING_CONFIRMATION) + WAITS
# the most host names a phase of a progress line lists; the rest are counted
SHOWN_HOSTS = 5
# A step file written this many seconds before the callback saw the host's
# task start still counts (the start reaches the callback a moment after
# the worker began); an older one is left from an earlier task.
STEP_SLACK = 2.0
# the most bytes of a step file read (the worker writes under a hundred)
STEP_FILE_MAX = 4096


def _step_path(base_dir, host, make=False):
    # a folder of the run's own, beside the batch files (task/_batch_files.py)
    folder = os.path.join(base_dir, _run_files.STEPS_FOLDER)
    if make:
        private_folder(folder)
    # the host name comes from the flake: a digest of it, never a path of its own
    return os.path.join(folder, short_digest('step', host) + '.json')


def set_step(base_dir, host, step, until=None, rolls_back=None):
    """Say that ``host`` is at ``step`` (one of STEPS) of its activation,
    and (``until``, a time) when it is over at the latest: the wait gives
    up, or (``rolls_back``: the target's watchdog decides) the run rolls
    back unconfirmed. Never fails the activation: a file that cannot be
    written is no line."""
    record = {'host': host, 'step': step, 'since': time.time()}
    if until is not None:
        record.update(until=float(until), rolls_back=bool(rolls_back))
    try:
        write_json(_step_path(base_dir, host, make=True), record)
    except (OSError, IOError, TypeError, ValueError):
        pass


def clear_step(base_dir, host):
    """``host`` is past the step it was at (no file: nothing to do)."""
    try:
        os.unlink(_step_path(base_dir, host))
    except (OSError, IOError):
        pass


@contextmanager
def in_step(base_dir, host, step, **bound):
    """``host`` is at ``step`` while the ``with`` block runs (``bound``:
    set_step's ``until`` and ``rolls_back``)."""
    set_step(base_dir, host, step, **bound)
    try:
        yield
    finally:
        clear_step(base_dir, host)


def read_step(base_dir, host, started):
    """(step, since) of ``host``, or None: no file, a file of an earlier
    task (set before ``started``, when the callback saw the task start), or
    one that is not what set_step writes (it is ignored)."""
    found = read_step_record(base_dir, host, started)
    return (found['step'], found['since']) if found else None


def _time(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and \
        not math.isnan(value) and not math.isinf(value)


def read_step_record(base_dir, host, started):
    """What set_step wrote for ``host`` ({step, since, until, rolls_back};
    until None where it set none), or None as ``read_step``."""
    try:
        with open(_step_path(base_dir, host), 'rb') as handle:
            data = json.loads(handle.read(STEP_FILE_MAX).decode('utf-8'))
    except (OSError, IOError, ValueError, RecursionError):
        # (a UnicodeDecodeError is a ValueError; RecursionError: nested too deep)
        return None
    if not isinstance(data, dict) or data.get('host') != host or data.get('step') not in STEPS:
        return None
    since = data.get('since')
    if not _time(since) or since < started - STEP_SLACK:
        return None
    until = data.get('until') if _time(data.get('until')) else None
    return {'step': data['step'], 'since': since, 'until': until,
            'rolls_back': until is not None and data.get('rolls_back') is True}


class BatchProgress(object):
    """Which hosts of a play batch started each phase's task and which are
    done with it (ok, failed, unreachable or skipped). A host runs one task
    at a time: a task that starts ends the host's run of any other phase."""

    def __init__(self):
        self.running = {}   # phase -> {host: when its task started}
        self.done = {}      # phase -> {host: its status}
        self.words = {}     # phase -> {host: what its task there is, when not the phase}

    def call(self, host, phase, word):
        """``host``'s task of ``phase`` is a ``word`` (a rollback's
        nix_activate: ``rollback``). The line names the phase so when every
        host in it is one."""
        self.words.setdefault(phase, {})[host] = word

    def _word(self, phase, hosts):
        words = set(self.words.get(phase, {}).get(host) for host in hosts)
        return words.pop() if len(words) == 1 and None not in words else phase

    def start(self, host, phase, now):
        for hosts in self.running.values():
            hosts.pop(host, None)
        self.running.setdefault(phase, {})[host] = now
        # a second task of the same phase (nix_activate state=confirmed)
        self.done.get(phase, {}).pop(host, None)
        # what this task is, the caller says again (call)
        self.words.get(phase, {}).pop(host, None)

    def end(self, host, phase, status):
        self.running.get(phase, {}).pop(host, None)
        self.done.setdefault(phase, {})[host] = status

    def forget(self, host):
        """``host`` is not part of this batch after all (its batch stopped)."""
        for table in (self.running, self.done, self.words):
            for hosts in table.values():
                hosts.pop(host, None)

    def hosts(self):
        """Every host of the batch the callback saw start a task."""
        return set(host for table in (self.running, self.done)
                   for hosts in table.values() for host in hosts)

    def copy(self):
        other = BatchProgress()
        other.running = dict((phase, dict(hosts)) for phase, hosts in self.running.items())
        other.done = dict((phase, dict(hosts)) for phase, hosts in self.done.items())
        other.words = dict((phase, dict(hosts)) for phase, hosts in self.words.items())
        return other

    def long_running(self, now, interval):
        """Whether some host has run its task ``interval`` seconds or more."""
        return any(now - started >= interval
                   for hosts in self.running.values() for started in hosts.values())

    def line(self, now, interval, steps=None):
        """The progress line: for each phase a host of the batch started, in
        phase order, how many are done of the batch's hosts (how many
        failed), how many run it and which, the longest first, each with
        how long it has run and (``steps``: host -> (step, since, until)) the
        step of its activation. None while no task has run ``interval``
        seconds. Host names are shown printable: the line goes to a
        terminal."""
        if not self.long_running(now, interval):
            return None
        steps = steps or {}
        batch = len(self.hosts())
        parts = []
        for phase in PHASE_ORDER:
            running, done = self.running.get(phase, {}), self.done.get(phase, {})
            if not running and not done:
                continue
            word = self._word(phase, set(running) | set(done))
            text = '%s: %d of %d done' % (word, len(done), batch)
            failed = len([s for s in done.values() if s in ('failed', 'unreachable')])
            if failed:
                text += ' (%d failed)' % failed
            if running:
                text += ', %d running: %s' % (len(running), _running_text(running, now, steps))
            parts.append(text)
        return 'nixdeploy: progress: %s' % '; '.join(parts)


def _running_text(running, now, steps):
    """The running hosts of a phase: those at a step first, then the
    longest running; past SHOWN_HOSTS, counted."""
    order = sorted(running, key=lambda host: (host not in steps, running[host], host))
    shown = []
    for host in order[:SHOWN_HOSTS]:
        what = '%ds' % max(0, now - running[host])
        if host in steps:
            step, since, until = (tuple(steps[host]) + (None,))[:3]
            what += ', %s %ds' % (step, max(0, now - since))
            if step in WAITS and until is not None:
                # the wait's bound: past it the activation fails, saying so
                what += ', at most %ds more' % max(0, until - now)
        shown.append('%s (%s)' % (printable(host), what))
    if len(order) > SHOWN_HOSTS:
        shown[-1] += ' and %d more' % (len(order) - SHOWN_HOSTS)
    return ', '.join(shown)
