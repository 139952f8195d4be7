# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A batch's entries, written host by host by its detached process, and a
host's wait for its own.

The batch server (``_batch_server.BatchServer``) is built on a ``Stream``:
ONE detached process per batch work (``_detached``) writes each host's
entry as soon as it is known; each host's worker waits for its own
entry only, so a host whose system is evaluated goes on to its build while
the others are still evaluated. A host waits at most the phase's bound, or
``_waits.ANSWER_WAIT``: a process that hangs costs its hosts that long, one
that dies about two seconds (``_wakeup.SAFETY``).
"""

import os
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _job_end, _waits, _wakeup
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    _entry_path, batch_folder, _read_json as _read)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (
    DetachedWork, StreamError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import held, stream_work

# How often a waiting host without a doorbell looks for its entry (and the
# serving process for requests): it backs off from the first to the last
# value, so a host that waits minutes costs little, and one whose answer
# comes at once is not held.
_LOOKS = (0.02, 0.05, 0.1, 0.2)


class Stream(DetachedWork):
    """One batch's entries (``<kind>-<key>.d/<digest>.json``), its log, its
    end mark (``<kind>-<key>.json``: what the batch shares) and the lock its
    detached process holds while it runs."""

    def __init__(self, base_dir, kind, key):
        self.dir = batch_folder(base_dir)
        self.kind = kind
        stem = os.path.join(self.dir, '%s-%s' % (kind, key))
        self.done_path = stem + '.json'
        self.entries_dir = stem + '.d'
        self.lock_path = stem + '.lock'
        self.running_path = stem + '.running'
        self.log_path = stem + '.log'
        if not os.path.isdir(self.entries_dir):
            try:
                os.mkdir(self.entries_dir, 0o700)
            except OSError:
                pass

    # ------------------------------------------------------------ starting
    def start(self, work, host=None):
        """Start ``work(put)`` in a detached process unless this batch's was
        started already (by any host). ``put(host, entry)`` publishes one
        host's entry; ``work`` returns what the batch shares (a dict, kept
        as the end mark). Returns True when this call started it. The lock
        is waited for at most ``STREAM_LOCK_WAIT`` (``host``: the host
        that waits, named if it gives up)."""
        with held(self.lock_path, _waits.STREAM_LOCK_WAIT, stream_work(host, self.kind)):
            if os.path.exists(self.running_path):
                return False
            self._fork(work)
            return True

    def put(self, host, host_entry):
        """Publish ``host``'s entry (a whole file: a reader never sees half).
        Once the job has ended (its folder gone), nobody reads it: nothing
        is written, and the work goes on to keep what it keeps for the next
        job (``_job_end``)."""
        self.put_at(_entry_path(self.entries_dir, host), host_entry)

    def put_at(self, path, host_entry):
        """Publish one entry at ``path`` (``put``'s, for a file named as the
        caller names it)."""
        try:
            write_json(path, host_entry)
        except OSError:
            if not _job_end.job_ended(self.entries_dir):
                raise
            return
        _wakeup.ring(path)

    # ------------------------------------------------------------ waiting
    def entry(self, host, timeout=None, ends=True, path=None):
        """``host``'s entry (the file ``path``, else its own), as soon as the
        detached work has written it.
        StreamError when the work ended (or died: ``ends``, its end mark)
        without it, or after ``timeout`` seconds (None: ``ANSWER_WAIT``).

        The host sleeps on its doorbell (``_wakeup``), rung when its entry
        is written or the work ends, and looks anyway every ``SAFETY``
        seconds; where no doorbell can be made it looks by the clock."""
        if path is None:
            path = _entry_path(self.entries_dir, host)
        if timeout is None:
            timeout = _waits.ANSWER_WAIT
        deadline = time.monotonic() + timeout
        # opened before the first look: a ring after that look is heard
        with _wakeup.Wakeup(path) as bell:
            looks = 0
            while True:
                found = _read(path)
                if found is not None:
                    return found
                if ends and os.path.exists(self.done_path):
                    found = _read(path)
                    if found is not None:
                        return found
                    shared = self.shared() or {}
                    if shared.get('error'):
                        # the work failed as a whole: its sentence
                        raise StreamError(u'%s' % shared['error'],
                                          traceback=shared.get('traceback'))
                    raise StreamError('the batch finished without an answer for this host%s'
                                      % self._log_tail())
                if (bell.fd is not None or looks % 10 == 9) and not self._running():
                    found = _read(path)
                    if found is not None:
                        return found
                    raise StreamError('the batch\'s work stopped before answering this host%s'
                                      % self._log_tail())
                left = deadline - time.monotonic()
                if left < 0:
                    raise StreamError(self.gave_up(host, timeout))
                if bell.fd is not None:
                    bell.wait(min(_wakeup.SAFETY, left))
                else:
                    time.sleep(_LOOKS[min(looks, len(_LOOKS) - 1)])
                looks += 1

    def gave_up(self, host, seconds):
        """What a host says that waited ``seconds`` for its answer in vain."""
        phase = self.kind.split('-')[0]
        return (u'no answer for %s from the %s batch\'s process after %ss, while that process '
                u'still runs (it computes for every host of the batch); its log, %s, says what '
                u'it does%s. Look at what it runs (a hung Nix process?); a batch that needs '
                u'longer needs a larger time limit of the %s phase'
                % (host, phase, int(seconds) if seconds == int(seconds) else seconds,
                   self.log_path, self._log_tail() or ' (it is empty)', phase))

    def shared(self):
        """What the batch shares (its end mark), or None before it ends."""
        return _read(self.done_path)
