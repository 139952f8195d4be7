# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every wait of the batch machinery has a bound: the values, and the lock
wait that keeps to them.

A host of a play batch waits for other processes in two ways: for its own
answer from its batch server (``_batch_server.BatchServer.answer``,
the phase's ``answer_wait``), and for a lock of the batch's files (the
play's record of its batches, the lock a host takes to ask a server, which
the server takes too). Each wait gives up at its bound below and says so in
a message that names the host, the phase and what to do; the batch table of
docs/architecture.md lists them.
"""

import contextlib
import errno
import fcntl
import random
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

# The bounds, in seconds.
# The play's record of its batches (task_batch): its holder writes one small
# file for each host of its batch, a second at 1,000 hosts.
RECORD_LOCK_WAIT = 120
# A host's wait for the serial gate's verdict: the server reads and writes
# one small file.
SERIAL_ANSWER_WAIT = 120
# The lock of a batch server (``<kind>-<key>.lock``): held while a host
# writes its request or registers the work with the run's serving process
# (and starts that process, a fork of its worker, under the run's lock,
# ``run-server.lock``), and by the serving process while it takes the
# requests or decides to end.
SERVER_LOCK_WAIT = 120
# Each wait of a host that registers a batch work with the run's serving
# process (``_run_server``): its connection to the process's socket, its
# message, the process's acknowledgement. The process takes one
# registration at a time, each a file written and a thread started.
REGISTER_WAIT = 30
# A host's wait for its own answer from its batch server, when the
# phase gives no bound of its own (the evaluation, the build, publish,
# channel: every system pushed to a cache, every git ref moved, each Nix or
# git call bounded only by the task's timeout, if any): a batch's work that
# outlasts it is taken as stuck.
ANSWER_WAIT = 8 * 3600
# The run's serving process (``_run_server``) once it serves nothing: how
# long it waits for the run's next batch work before it ends. A play's next
# batch phase comes within moments of the last one (its hosts' results,
# then the next task), so a run keeps one process from its first batch to
# its last; a long stretch without batch work (slow activations) ends it,
# and the next batch's first host starts another. The job's end ends it at
# once whatever is left of this wait.
IDLE_WAIT = 5
# A batch's detached process once the job has ended, every host answered:
# how long it may still take to finish what is for the next job (an
# evaluator's record of its reads, ``_job_end``). Parsing and keeping a large
# evaluation's record takes seconds.
AFTER_JOB_WAIT = 60

# seconds between two tries of a lock wait, growing to the last, each drawn
# between half and one and a half of its step: hosts that began to wait
# together (a play batch's first forks) do not try in step, which let the
# serving process's short holds turn most of them away at every try (fifty
# hosts at once took 2.4-5.1 s to get through, against 0.5 s). A host
# notices a released lock within a third of a second; forks F waiting hosts
# make about 5 F flock calls a second between them
_LOCK_POLLS = (0.01, 0.05, 0.1, 0.2)


class LockWaitTimeout(NixdeployError):
    """A host waited ``seconds`` for a lock of the batch's files (another
    host, or the batch's process, holding it) and gave up."""

    def __init__(self, message, seconds, **kwargs):
        super(LockWaitTimeout, self).__init__(message, **kwargs)
        self.seconds = seconds


def hold(handle, seconds, what):
    """Take an exclusive flock on ``handle`` (an open file), waiting at most
    ``seconds``; ``LockWaitTimeout`` past it, whose message says what the
    lock is and what to do (``what``: made by ``record_work`` or
    ``server_lock``)."""
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
        step = _LOCK_POLLS[min(tries, len(_LOCK_POLLS) - 1)]
        time.sleep(min(left, step * random.uniform(0.5, 1.5)))
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


def record_work(host):
    """The lock of the play's record of its batches (``task_batch``)."""
    return {'host': host,
            'lock': 'the lock of the play\'s record of its batches, which the first host of '
                    'a batch holds while it writes one small file for each of its hosts',
            'do': 'that host\'s worker is stuck (a stopped process, a full or hung disk '
                  'under ansible\'s local temp folder): look at that folder, then run again'}


def server_lock(host, kind):
    """A batch server's lock: held by a host that asks the server or starts
    its process, and by the serving process taking requests."""
    phase = kind.split('-')[0]
    return {'host': host,
            'lock': 'the lock of the %s batch\'s process, which a host holds while it starts '
                    'that process or asks it, and the process while it takes the requests'
                    % phase,
            'do': 'one of them is stuck (a stopped process, a full or hung disk under '
                  'ansible\'s local temp folder): look at that folder, then run again'}
