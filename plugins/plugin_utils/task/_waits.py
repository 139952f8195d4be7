# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every wait of the batch machinery has a bound: the values, and the lock
wait that keeps to them.

A host of a play batch waits for other processes in three ways: for a lock
that another host holds while it computes for the batch (a flock on a file
of the batch's folder), for its own answer from a batch's detached process
(``_stream_entries.Stream.entry``), and, in that detached process, for the
lock the hosts take to ask. Each wait gives up at its bound below and says
so in a message that names the host, the phase and what to do; the batch
table of docs/architecture.md lists them.

``lock_wait`` sets a phase's own bound for its ``Batch`` lock waits (the
copy's cascade and closure batches: their own work's bound and a margin);
without it a ``Batch`` waits ``BATCH_LOCK_WAIT``.
"""

import contextlib
import errno
import fcntl
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

# The bounds, in seconds.
# The play's record of its batches (task_batch): its holder writes one small
# file for each host of its batch, a second at 1,000 hosts.
RECORD_LOCK_WAIT = 120
# A Batch whose phase sets no bound of its own (publish, channel): the host
# that holds the lock computes for the whole batch (every system pushed to a
# cache, every git ref moved), each Nix or git call bounded only by the
# task's timeout, if any; four hours is far beyond a working batch's.
BATCH_LOCK_WAIT = 4 * 3600
# The serial gate's Batch: its holder reads and writes one small file.
SERIAL_LOCK_WAIT = 120
# The lock of a stream or a service (``<kind>-<key>.lock``): held while a
# host starts the batch's process (a fork of its worker) or writes its
# request, and by the serving process while it takes the requests.
STREAM_LOCK_WAIT = 120
# A host's wait for its own answer from a batch's detached process (the
# evaluation, the build service), when the phase gives no bound of its own:
# a batch's evaluation or build that outlasts it is taken as stuck.
ANSWER_WAIT = 8 * 3600
# A batch's detached process once the job has ended, every host answered:
# how long it may still take to finish what is for the next job (an
# evaluator's record of its reads, ``_job_end``). Parsing and keeping a large
# evaluation's record takes seconds.
AFTER_JOB_WAIT = 60

# seconds between two tries of a lock wait, growing to the last: a host
# notices a released lock within half a second, and a thousand waiting hosts
# make a few thousand flock calls a second between them
_LOCK_POLLS = (0.01, 0.05, 0.1, 0.2, 0.5)


class LockWaitTimeout(NixdeployError):
    """A host waited ``seconds`` for a lock of the batch's files (another
    host, or the batch's process, holding it) and gave up."""

    def __init__(self, message, seconds, **kwargs):
        super(LockWaitTimeout, self).__init__(message, **kwargs)
        self.seconds = seconds


# the bound ``lock_wait`` sets for this thread's Batch lock waits
_WAIT = threading.local()


@contextlib.contextmanager
def lock_wait(seconds):
    """Within it, ``Batch.results`` waits at most ``seconds`` for the lock
    of the batch's work (``LockWaitTimeout`` after); outside, at most
    ``BATCH_LOCK_WAIT``. The phase that calls it says why its value (the
    holder's own bound and a margin)."""
    before = getattr(_WAIT, 'seconds', None)
    _WAIT.seconds = seconds
    try:
        yield
    finally:
        _WAIT.seconds = before


def batch_lock_wait():
    """The bound of a Batch lock wait here: ``lock_wait``'s, or the default."""
    seconds = getattr(_WAIT, 'seconds', None)
    return BATCH_LOCK_WAIT if seconds is None else seconds


def hold(handle, seconds, what):
    """Take an exclusive flock on ``handle`` (an open file), waiting at most
    ``seconds``; ``LockWaitTimeout`` past it, whose message says what the
    lock is and what to do (``what``: made by ``batch_work``,
    ``record_work`` or ``stream_work``)."""
    deadline = time.monotonic() + seconds
    tries = 0
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockWaitTimeout(u'%swaited %ss for %s (%s) and gave up; %s' % (
                _whose(what.get('host')), _seconds(seconds), what['lock'],
                getattr(handle, 'name', handle), what['do']), seconds)
        time.sleep(min(left, _LOCK_POLLS[min(tries, len(_LOCK_POLLS) - 1)]))
        tries += 1


@contextlib.contextmanager
def held(path, seconds, what):
    """The flock on the file ``path`` (made when missing), waited for at
    most ``seconds`` (``hold``), released at the end."""
    with open(path, 'a') as handle:
        hold(handle, seconds, what)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _seconds(value):
    return ('%d' % value) if float(value) == int(value) else ('%s' % value)


def _whose(host):
    return (u'%s: ' % host) if host else u''


def batch_work(host, kind):
    """A Batch's lock, for ``hold``: one host computes for all while it holds it."""
    return {'host': host,
            'lock': 'the lock of the play batch\'s %s work, which one host of the batch '
                    'holds while it computes for all' % kind,
            'do': 'that host\'s %s task has not ended: look for the host of this batch whose '
                  'task still runs, or end the run and start it again' % kind}


def record_work(host):
    """The lock of the play's record of its batches (``task_batch``)."""
    return {'host': host,
            'lock': 'the lock of the play\'s record of its batches, which the first host of '
                    'a batch holds while it writes one small file for each of its hosts',
            'do': 'that host\'s worker is stuck (a stopped process, a full or hung disk '
                  'under ansible\'s local temp folder): look at that folder, then run again'}


def stream_work(host, kind):
    """A stream's or a service's lock: held by a host that starts the
    batch's process or asks it, and by the serving process taking requests."""
    phase = kind.split('-')[0]
    return {'host': host,
            'lock': 'the lock of the %s batch\'s process, which a host holds while it starts '
                    'that process or asks it, and the process while it takes the requests'
                    % phase,
            'do': 'one of them is stuck (a stopped process, a full or hung disk under '
                  'ansible\'s local temp folder): look at that folder, then run again'}
