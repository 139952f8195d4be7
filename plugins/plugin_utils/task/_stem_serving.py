# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One batch work as the run's serving process serves it (``_run_server``):
the requests of one stem (a kind and a key) taken under that stem's lock,
in waves, each wave one call of the work's ``serve(context, {host:
request}, put)`` in a thread of its own. A stem is served by a thread of
the process of its own (``StemServing.serve``), started when a host
registers it, ended when nothing of it waits and no wave of it runs.

A host may also ask the process directly (``StemServing.ask``, over the
run's socket): its request joins the stem's requests in memory, and the
process tells it its answer as soon as a wave puts it, on the same
connection. That is one round trip where the files take the stem's lock,
a request file and a doorbell; the files stay for the host that registers
a stem, and for any host that finds the stem not served (it ended, or its
process died).
"""

import os
import threading
import time
import traceback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _job_end, _waits
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_answers import LOOKS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    read_json as _read)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_requests import (
    ASKED, DECLINED, FORESAW)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_serve import (
    serve_function)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import work_failure
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import held, server_lock

# A wave waits for the hosts of the batch that have not asked yet while they
# keep coming: until none came for GATHER_STALL (an expected host that failed
# before it could ask holds the wave only so long after the last one), at
# most GATHER_MAX in all. A loaded controller forks a task's workers, and
# the evaluation answers its hosts, seconds apart, but rarely a second between two.
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


class StemServing(object):
    """The serving state of one stem (``files``: its ``BatchServer``, the
    stem's files) in the run's serving process: what it serves with
    (``work``: the serve function's name and its context, as the host that
    registered it sent them), the hosts it waits for
    (``waiting``, from its registration), the host that registered it
    (``starter``), the hosts taken that asked on their own, and the last
    request taken of each host. ``log_tail()``: what the process's log
    last says."""

    def __init__(self, files, work, waves_at_once, waiting, starter, log_tail):
        self.files = files
        # (the serve function's name, its context): data, in this
        # process's memory only
        self.work = work
        self.waves_at_once = waves_at_once
        self.waiting = set(waiting)
        self.log_tail = log_tail
        # the hosts expected that have not asked yet
        self._to_come = set()
        # the host that registered the stem, and the hosts taken that asked
        # on their own (in the order taken)
        self._starter = starter
        self._asked = []
        # the last request taken of each host, and the hosts whose last one
        # was their own (not foreseen for them)
        self._taken = {}
        self._own = set()
        # what hosts asked over the socket (``ask``): their requests not yet
        # taken ({host: request}), who waits for which answer file
        # ({path: [waiter]}), and whether the stem has ended (an ask is then
        # refused: its host asks through the files, which start it again)
        self._mutex = threading.Lock()
        self._queued = {}
        self._waiters = {}
        self._ended = False

    def _take(self, waiting):
        """Every request waiting, each once: {host: request} (the foreseen
        ones too). The hosts taken, or declined, leave ``waiting`` (and the
        hosts yet to come). A request this process took before for the same
        host (foreseen, then asked by its host) is not taken again: one
        wave answers it; nor is a request foreseen for a host whose own
        request was taken (its own wins, whichever came first)."""
        taken = {}
        for host, request, how in self.files.requests.take():
            self._keep(host, request, how, taken, waiting)
        # the requests asked over the socket, after the files' foresight;
        # each asking host learns that its request is taken: a process that
        # dies now owes it
        with self._mutex:
            queued, self._queued = self._queued, {}
            for host, request in queued.items():
                for waiter in self._waiters.get(self.files.answer_path(host, request), ()):
                    waiter.taken()
        for host, request in sorted(queued.items()):
            self._keep(host, request, ASKED, taken, waiting)
        return taken

    def _keep(self, host, request, how, taken, waiting):
        """Take one request into ``taken`` unless it is taken already (the
        same request of the same host, or a foresight for a host whose own
        request was taken)."""
        waiting.discard(host)
        self._to_come.discard(host)
        if how == DECLINED:
            return
        if host in self._taken and (self._taken[host] == request or
                                    (how == FORESAW and host in self._own)):
            return
        self._taken[host] = request
        taken[host] = request
        if how == FORESAW:
            self._own.discard(host)
        else:
            self._own.add(host)
            self._asked.append(host)

    def ask(self, host, request, waiter):
        """``host`` asks for its answer to ``request`` over the run's
        socket (``_run_server``). ``waiter.taken()`` is called once the
        request is taken (at once for one taken before, foreseen), and
        ``waiter.tell(answer)`` with the answer's data (what its file
        holds) once a wave puts it, or with None when the stem ends without
        it. False when the stem has ended already: nothing is kept, and the
        host asks through the files. The caller reads the answer's file
        once after this returns True: an answer put before the waiter was
        kept is found there."""
        # named first: a request that cannot name its answer's file is
        # refused here, before anything of it is kept
        path = self.files.answer_path(host, request)
        with self._mutex:
            if self._ended:
                return False
            if host in self._taken and self._taken[host] == request:
                waiter.taken()
            else:
                self._queued[host] = request
            self._waiters.setdefault(path, []).append(waiter)
        return True

    def _end_unless_queued(self):
        """Mark the stem ended (True) unless a host asked over the socket
        meanwhile (the caller holds the stem's lock)."""
        with self._mutex:
            if self._queued:
                return False
            self._ended = True
            return True

    def ended(self):
        """Whether the stem's serving has ended (an ask then gets False)."""
        with self._mutex:
            return self._ended

    def close(self):
        """The stem's serving has ended (or failed): every host still
        waiting over the socket is told None, and asks through the files."""
        with self._mutex:
            self._ended = True
            waiters, self._waiters = self._waiters, {}
        for path_waiters in waiters.values():
            for waiter in path_waiters:
                waiter.tell(None)

    def _lock(self):
        """The stem's lock, as the serving process takes it."""
        return held(self.files.lock_path, _waits.SERVER_LOCK_WAIT,
                    server_lock(None, self.files.kind))

    def _locked_take(self, waiting):
        with self._lock():
            return self._take(waiting)

    def _opener(self, taken):
        """The host a wave of ``taken`` is opened for: the host that started
        the process, or the first taken that asked on its own (None when
        every request in it was foreseen)."""
        own = [host for host in self._asked if host in taken]
        self._asked = [host for host in self._asked if host not in taken]
        opener = self._starter if self._starter in own else (own[0] if own else None)
        self._starter = None
        return opener

    def _put_answer(self, host, request, host_entry, opener):
        """Keep ``host``'s answer to ``request`` (``opener``: the host its
        wave was opened for)."""
        path = self.files.answer_path(host, request)
        answer = {'answer': host_entry, 'opened': host == opener}
        self.files.answers.put(path, answer)
        with self._mutex:
            waiters = self._waiters.pop(path, ())
        for waiter in waiters:
            waiter.tell(answer)

    def serve(self):
        """Serve the stem until nothing waits and no wave runs (while hosts
        it expects have yet to ask, ``LINGER`` seconds after that)."""
        waves_at_once, waiting = self.waves_at_once, self.waiting
        serve = self.work
        waves, unsettled = [], set(waiting)
        # the first wave waits for the hosts expected; later ones (hosts
        # that come while waves run) for the quiet
        expecting = bool(waiting)
        self._to_come = set(waiting)
        busy = time.monotonic()
        while True:
            waves = [wave for wave in waves if wave.is_alive()]
            try:
                with self._lock():
                    taken = self._take(waiting) if len(waves) < waves_at_once else {}
                    if taken or waves:
                        busy = time.monotonic()
                    elif (not self._to_come or time.monotonic() - busy > LINGER) \
                            and self._end_unless_queued():
                        os.unlink(self.files.alive_path)
                        return None
            except OSError:
                if not _job_end.job_ended(self.files.dir):
                    raise
                # the job has ended and Ansible removed its folder: no request
                # comes any more. The waves in flight end here (what they
                # still keep for the next job, _job_end), or are stopped
                # with the process when their hosts were still owed answers
                for wave in waves:
                    wave.join()
                return None
            if not taken:
                time.sleep(LOOKS[1])
                continue
            taken.update(self._gather(waiting, expecting))
            if expecting:
                # asked, declined or given up on by the first gather
                settled = set(_read(self.files.settled_path) or ()) | unsettled
                write_json(self.files.settled_path, sorted(settled))
            expecting = False
            # by host name, whoever asked first: a work that plans by the
            # hosts' order (the cascade's sites) plans as for the play batch
            taken = dict(sorted(taken.items()))
            opener = self._opener(taken)

            def put(host, host_entry, request_of=taken.copy(), opener=opener):
                if host in request_of:  # a host it was not asked for: nobody reads it
                    self._put_answer(host, request_of[host], host_entry, opener)
            put.opener = opener  # sure to read its answer: the wave's figures go to it
            wave = threading.Thread(target=_wave,
                                    args=(serve, taken, put, self.files.kind, self.log_tail),
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
            time.sleep(LOOKS[0] if expecting else GATHER_QUIET)
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


# what a host is told when its wave ended without answering it (a bug:
# every ``serve`` answers each host it is given)
UNANSWERED = 'internal error in the %s wave: it ended without an answer for this host'


def _wave(serve, taken, put, kind='batch', log_tail=lambda: ''):
    """One wave: the function named ``serve[0]`` called with its context
    ``serve[1]``, ``taken`` and ``put``, then an answer for each host it did
    not answer (it raised, its name was refused, or a thread of its work
    died), so that no host waits for one that never comes. A host answered
    keeps its answer. ``log_tail()``: what the process's log last says (the
    reason, if any)."""
    answered = set()

    def put_counted(host, host_entry):
        answered.add(host)
        put(host, host_entry)
    put_counted.opener = getattr(put, 'opener', None)
    try:
        name, context = serve
        serve_function(kind, name)(context, taken, put_counted)
        failure = {'error': UNANSWERED % kind.split('-')[0] + log_tail()}
    except Exception as exc:  # pylint: disable=broad-except
        os.write(2, traceback.format_exc().encode('utf-8', 'replace'))
        failure = work_failure(kind, exc)
    for host in taken:
        if host not in answered:
            put(host, dict(failure))
