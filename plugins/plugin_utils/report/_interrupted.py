# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each host had reached when its run was interrupted, and what
happens next to the ones in flight: the words of the summary and of the
report (their ``interrupted`` part) for a run stopped by SIGINT or SIGTERM.

A host is one of: done (its activate task ended: its outcome as any run
says it), ``activating`` (its activation under way: it goes on on the
target, detached, and unconfirmed its watchdog rolls it back by itself),
``stopped`` (at or after an earlier phase: nothing changed on it) or not
started. What an activation in flight does next, and by when, is read
from its step file (task/_progress.py), which the activation keeps with
the bounds of its own arguments (activation/_activation_steps.py).
"""

import math
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_steps import (
    read_window)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_order import (
    ACTIVATING, INTERRUPTED_WORDS, STOPPED)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_outcome import (
    outcome_record)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import HostOutcome

# what a host had reached (with the statuses of a host that is done), in the
# order the closing line counts them
STATES = ('changed', ACTIVATING, 'failed', 'rolled_back', 'unreachable', 'unchanged',
          'incomplete', STOPPED)
WORDS = dict(INTERRUPTED_WORDS, changed='changed', failed='failed', rolled_back='rolled back',
             unreachable='unreachable', unchanged='unchanged', incomplete='not activated')


def _seconds(until, now):
    return int(max(0, math.ceil(until - now)))


def in_flight(step, now, window=None):
    """(words, rolls_back_within) for a host whose activation was under
    way: ``step`` is its step record (read_step_record) or None, ``now``
    the time of the interruption, ``window`` the watchdog's window after
    the activation (read_window) or None. ``rolls_back_within``: the
    seconds by which its watchdog has rolled it back at the latest, or
    None."""
    if not step:
        return ('activation under way when interrupted; it goes on on the target, and with '
                'magic rollback, unconfirmed, rolls back by itself'), None
    until, guarded = step.get('until'), step.get('rolls_back')
    left = _seconds(until, now) if until is not None else None
    if step['step'] == _progress.CONFIRMED:
        return ('confirmed when interrupted: it keeps its new system (the rest of its '
                'activation goes on on the target)'), None
    if step['step'] == _progress.AWAITING_CONFIRMATION and guarded and left is not None:
        # the confirmation may have reached the host a moment before the
        # interrupt: the controller learns it only when its login returns
        return ('awaiting its confirmation when interrupted: if the confirmation reached it, '
                'it keeps its new system; if not, it rolls back by itself within %d s '
                '(nixdeploy.fleet.status tells which)' % left), left
    if step['step'] in _progress.WAITS:
        # the run on the target waits on, up to its own lock timeout: it
        # may get the lock and activate, or give up with nothing changed
        head = '%s when interrupted; its run on the target waits on' % step['step']
        if left is not None:
            head += ' (at most %d s more)' % left
        head += ': if the lock is freed in time it activates'
        if guarded:
            head += ' and, unconfirmed, rolls back by itself'
        else:
            head += ' (no magic rollback: the host keeps what it ends with)'
        return head + '; else it gives up and nothing changes on the host', None
    if not guarded:
        text = 'activation under way when interrupted; no magic rollback: the host keeps what it ends with'
        if left is not None:
            text += ' (within %d s)' % left
        return text, None
    if left is None:
        return 'activation under way when interrupted; unconfirmed, it rolls back by itself', None
    if step['step'] == _progress.ACTIVATING and window is not None and left > window + 1:
        # the activation itself still ran: the watchdog's window starts when
        # it ends, which may be now or up to its timeout later
        return ('activation under way when interrupted; unconfirmed, it rolls back by itself '
                '%d s after its activation ends, within %d s at the latest'
                % (int(math.ceil(window)), left)), left
    return ('activation under way when interrupted; unconfirmed, it rolls back by itself '
            'within %d s' % left), left


def stopped_words(running, last_phase):
    """The words of a host stopped before its activation: ``running``, the
    phase it was at (None: between tasks), ``last_phase``, the last it
    finished."""
    if running:
        return 'stopped at %s when interrupted: not activated, nothing changed on it' % running
    if last_phase:
        return 'stopped after %s when interrupted: not activated, nothing changed on it' % last_phase
    return 'stopped when interrupted: not activated, nothing changed on it'


def host_record(host, outcome, running, base_dir, check_mode, now):
    """The summary's record of one host when the run was interrupted
    (``outcome_record``'s, its outcome words and ``status`` those of what it
    had reached) with ``interrupted``: {state, phase, rolls_back_within}.
    ``outcome``: its HostOutcome (None: no result yet), ``running``:
    (phase, started) of its task under way or None, ``base_dir``: where
    the step files are (None: none read)."""
    outcome = outcome or HostOutcome(host)
    rec = outcome_record(outcome, check_mode)
    phase = running[0] if running else None
    within = None
    if phase == 'activate':
        step = _progress.read_step_record(base_dir, outcome.host, running[1]) if base_dir else None
        window = read_window(base_dir, outcome.host, running[1]) if base_dir else None
        words, within = in_flight(step, now, window)
        state = ACTIVATING
    elif rec['failed'] or outcome.results.get('activate'):
        # its activate task ended (or it failed): what any run says of it
        state, words = rec['status'], rec['outcome']
    else:
        state, words = STOPPED, stopped_words(phase, outcome.last_phase)
    if state != rec['status']:
        rec.update(outcome=words, summary_head=None, summary_tail=None)
    rec['interrupted'] = {'state': state, 'phase': phase, 'rolls_back_within': within}
    return rec


def batch_records(outcomes, running, base_dir, check_mode, counts):
    """The summary's records of a batch stopped by a signal (host_record,
    by name): ``outcomes`` {host: HostOutcome}, ``running`` {phase: {host:
    started}} (BatchProgress.running). Returns (records, reached: {state:
    hosts} with the earlier batches' ``counts`` (status -> hosts), the
    names of the hosts under way)."""
    now = time.time()
    under_way = dict((host, (phase, started)) for phase, hosts in running.items()
                     for host, started in hosts.items())
    records = [host_record(host, outcomes.get(host), under_way.get(host), base_dir, check_mode, now)
               for host in sorted(set(outcomes) | set(under_way))]
    reached = dict((status, n) for status, n in counts.items() if status in STATES)
    for rec in records:
        state = rec['interrupted']['state']
        reached[state] = reached.get(state, 0) + 1
    return records, reached, set(under_way)


def closing_line(signal_name, reached, not_started):
    """The summary's last line of an interrupted run: ``reached`` {state:
    hosts}, ``not_started``: how many hosts of the play never began."""
    parts = ['%d %s' % (reached[state], WORDS[state]) for state in STATES if reached.get(state)]
    if not_started:
        parts.append('%d not started' % not_started)
    return 'nixdeploy: interrupted by %s: %s' % (signal_name, ', '.join(parts) or 'no host started')
