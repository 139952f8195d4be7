# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A batch's service: requests the hosts write as they come, answered in
waves by one detached process (the build, and the evaluation of the hosts
whose own request differs from the batch's).

Every lock wait here has its bound (``_waits.STREAM_LOCK_WAIT``), and so
has a host's wait for its answer (the phase's, or ``_waits.ANSWER_WAIT``),
counted once over the processes it may start.
"""

import os
import threading
import time
import traceback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _job_end, _waits
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    _entry_path, _read_json as _read)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (
    StreamError, work_failure)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream_entries import (
    _LOOKS, Stream)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import held, stream_work

# A wave waits for the hosts of the batch that have not asked yet while they
# keep coming: until none came for GATHER_STALL (an expected host that failed
# before it could ask holds the wave only so long after the last one), at
# most GATHER_MAX in all. A loaded controller forks a task's workers, and
# eval streams its answers, seconds apart, but rarely a second between two.
# Where it does not know who is to ask (no expected hosts, or all of them
# asked before: a loop's next item), it waits for requests that follow
# closely: until none came for GATHER_QUIET
GATHER_QUIET = 0.05
GATHER_STALL = 1.0
GATHER_MAX = 5.0
# A serving process whose batch still has hosts to come (expected, and
# neither asked nor declined) waits for them up to LINGER seconds after its
# last wave instead of ending. On host_pinned the hosts reach the build one
# by one, and a new process is two forks of a worker: each costs in
# proportion to ansible-playbook's heap, which grows with the fleet.
LINGER = 30.0


# serving processes a host starts for its request before it gives up: one
# is the normal case (it asked as the last one ended); more only when they
# die before taking it
RESTARTS = 3


class Service(Stream):
    """Requests answered in waves by one detached process per batch.

    A host writes its request, then starts the batch's process unless one
    is serving; the process takes every request waiting, up to ``slots``
    waves at once (a wave: ``serve({host: request}, put)`` in a thread of
    its own), and ends when nothing waits and no wave runs (while hosts it
    expects have yet to ask, ``LINGER`` seconds after that). Hosts that ask
    together share a wave (one ``nix build`` for their systems), a host that
    asks while other waves run does not wait for them. The process decides
    to end under the same lock a host takes to ask, so no request is left
    unserved.

    Who is to ask: the hosts ``expected`` by the worker that starts the
    process (its play batch), less the ones that said they will not
    (``decline``: a host built elsewhere, or whose request could not be
    formed). A wave starts as soon as all of them have asked, so a batch
    whose workers fork far apart (a loaded controller) still shares one
    wave, and a lone host does not wait at all. The hosts no longer waited
    for (asked, declined, or given up on) are kept beside the requests
    (``<stem>.settled``): a process started later for the same batch does
    not wait for them again."""

    def __init__(self, base_dir, kind, key):
        super(Service, self).__init__(base_dir, kind, key)
        # the serving process's: the hosts expected that have not asked yet
        self._to_come = set()
        stem = self.done_path[:-len('.json')]
        self.requests_dir = stem + '.requests'
        self.alive_path = stem + '.alive'
        self.settled_path = stem + '.settled'
        if not os.path.isdir(self.requests_dir):
            try:
                os.mkdir(self.requests_dir, 0o700)
            except OSError:
                pass

    def request(self, host, request, serve, slots=2, expected=None):
        """Ask for ``host``'s answer to ``request`` (JSON data); returns True
        when this call started the serving process (``expected``: the hosts
        that process waits for before its first wave, or a function that
        gives them, called only by the host that starts it)."""
        # the answer to this host's previous request (a loop's earlier item)
        # is not this one's (that request was answered, or given up, before this)
        try:
            os.unlink(_entry_path(self.entries_dir, host))
        except OSError:
            pass
        write_json(_entry_path(self.requests_dir, host), {'host': host, 'request': request})
        return self._ensure(serve, slots, expected, host)

    def decline(self, host):
        """``host`` will not ask this time: no wave waits for it. Starts no
        process (a process started later takes it with the requests)."""
        write_json(_entry_path(self.requests_dir, host), {'host': host, 'declined': True})

    def _ensure(self, serve, slots, expected=None, host=None):
        with held(self.lock_path, _waits.STREAM_LOCK_WAIT, stream_work(host, self.kind)):
            if os.path.exists(self.alive_path):
                if self._running():
                    return False
                # its process is gone without ending (killed, out of
                # memory) and left its mark: the requests it did not
                # take need another, or their hosts would wait forever
            with open(self.alive_path, 'w'):
                pass
            if callable(expected):
                expected = expected()
            waiting = set(expected or ()) - set(_read(self.settled_path) or ())
            self._fork(lambda put: self._serve(serve, slots, put, waiting))
            return True

    def _take(self, waiting):
        """Every request waiting, each once: {host: request}. The hosts
        taken, or declined, leave ``waiting`` (and the hosts yet to come)."""
        taken = {}
        for name in sorted(os.listdir(self.requests_dir)):
            if name.startswith('.'):
                continue  # a request being written (write_json's temp file)
            path = os.path.join(self.requests_dir, name)
            found = _read(path)
            try:
                os.unlink(path)
            except OSError:
                pass
            if isinstance(found, dict) and 'host' in found:
                waiting.discard(found['host'])
                self._to_come.discard(found['host'])
                if not found.get('declined'):
                    taken[found['host']] = found.get('request')
        return taken

    def _locked_take(self, waiting):
        with held(self.lock_path, _waits.STREAM_LOCK_WAIT, stream_work(None, self.kind)):
            return self._take(waiting)

    def _serve(self, serve, slots, put, waiting):
        waves, unsettled = [], set(waiting)
        # the first wave waits for the hosts expected; later ones (hosts
        # that come while waves run) for the quiet
        expecting = bool(waiting)
        self._to_come = set(waiting)
        busy = time.monotonic()
        while True:
            waves = [wave for wave in waves if wave.is_alive()]
            try:
                with held(self.lock_path, _waits.STREAM_LOCK_WAIT, stream_work(None, self.kind)):
                    taken = self._take(waiting) if len(waves) < slots else {}
                    if taken or waves:
                        busy = time.monotonic()
                    elif not self._to_come or time.monotonic() - busy > LINGER:
                        os.unlink(self.alive_path)
                        return None
            except OSError:
                if not _job_end.job_ended(self.dir):
                    raise
                # the job has ended and Ansible removed its folder: no request
                # comes any more. The waves in flight end here (what they
                # still keep for the next job, _job_end), or are stopped
                # with the process when their hosts were still owed answers
                for wave in waves:
                    wave.join()
                return None
            if not taken:
                time.sleep(_LOOKS[1])
                continue
            taken.update(self._gather(waiting, expecting))
            if expecting:
                # asked, declined or given up on by the first gather
                settled = set(_read(self.settled_path) or ()) | unsettled
                write_json(self.settled_path, sorted(settled))
            expecting = False
            wave = threading.Thread(target=_wave,
                                    args=(serve, taken, put, self.kind, self._log_tail),
                                    name='nixdeploy-wave-%d' % len(waves))
            wave.daemon = True
            wave.start()
            waves.append(wave)

    def _gather(self, waiting, expecting):
        """The requests that follow the first ones: one wave for them, not
        one each. ``expecting``: while hosts of ``waiting`` have not asked,
        until they all have or none asked for ``GATHER_STALL``; else (nobody
        is known to be waited for) until a quiet ``GATHER_QUIET`` (the hosts
        of a linear strategy's task come within milliseconds of each other
        on a quiet controller). At most ``GATHER_MAX`` seconds either way."""
        more, start = {}, time.monotonic()
        last = start
        while time.monotonic() - start < GATHER_MAX:
            if expecting and (not waiting or time.monotonic() - last > GATHER_STALL):
                break
            time.sleep(_LOOKS[0] if expecting else GATHER_QUIET)
            found = self._locked_take(waiting)
            if not found and not expecting:
                break
            if found:
                last = time.monotonic()
            more.update(found)
        # the ones that did not come in time (a host that failed before it
        # could ask or decline) hold no later wave
        waiting.clear()
        return more

    def answer(self, host, serve, slots=2, timeout=None):
        """``host``'s entry once its wave has it (StreamError when the
        serving process died with the request taken, when ``RESTARTS``
        processes in a row ended without taking it, or after ``timeout``
        seconds in all: None, ``ANSWER_WAIT``)."""
        if timeout is None:
            timeout = _waits.ANSWER_WAIT
        deadline = time.monotonic() + timeout
        started = 0
        while True:
            try:
                return self.entry(host, timeout=max(0.0, deadline - time.monotonic()), ends=False)
            except StreamError:
                found = _read(_entry_path(self.entries_dir, host))
                if found is not None:
                    return found
                if time.monotonic() >= deadline:
                    raise StreamError(self.gave_up(host, timeout))
                if not os.path.exists(_entry_path(self.requests_dir, host)) \
                        or started >= RESTARTS:
                    raise
                # asked after the last process decided to end, or it died
                # before it took the request: serve it
                if self._ensure(serve, slots, host=host):
                    started += 1


# what a host is told when its wave ended without answering it (a bug:
# every ``serve`` answers each host it is given)
UNANSWERED = 'internal error in the %s wave: it ended without an answer for this host'


def _wave(serve, taken, put, kind='service', log_tail=lambda: ''):
    """One wave: ``serve(taken, put)``, then an answer for each host it
    did not answer (it raised, or a thread of its work died), so that no
    host waits for one that never comes. A host answered keeps its answer.
    ``log_tail()``: what the process's log last says (the reason, if any)."""
    answered = set()

    def put_counted(host, host_entry):
        answered.add(host)
        put(host, host_entry)
    try:
        serve(taken, put_counted)
        failure = {'error': UNANSWERED % kind.split('-')[0] + log_tail()}
    except Exception as exc:  # pylint: disable=broad-except
        os.write(2, traceback.format_exc().encode('utf-8', 'replace'))
        failure = work_failure(kind, exc)
    for host in taken:
        if host not in answered:
            put(host, dict(failure))
