# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The batch server: one detached process per batch work answers the
requests its hosts write, a wave at a time, each wave one call of the
phase's ``serve(context, {host: request}, put)``. Every phase's batch work
comes here, the evaluation's included (plugin_utils/task/_batch_work.py
says how a phase asks). The process knows its work from data only: the
serve function's name and its context, which the host that starts the
process hands it in memory as it forks (no file holds them: a context
may carry a cache's credentials); it imports the function itself
(``_batch_serve``).

A host's answer is kept under its name and its request, so an answer to
another request of the same host (one the first host foresaw for it, a
loop's earlier item) is never taken for its own. **Foresight**: the first
host of a slot (a task, a play batch, a loop item) to ask may write the
requests it foresees for every host of its batch beside its own; the first
wave then serves the batch, and a host that comes later whose own request is
the one foreseen waits for that answer instead of asking.

Every lock wait here has its bound (``_waits.SERVER_LOCK_WAIT``), and so
has a host's wait for its answer (the phase's, or ``_waits.ANSWER_WAIT``),
counted once over the processes it may start.
"""

import os
import threading
import time
import traceback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _job_end, _waits
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_answers import (
    LOOKS, AnswerFiles)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    batch_folder, _read_json as _read)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_requests import (
    ASKED, DECLINED, RequestFiles, as_json)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_serve import (
    serve_function)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (
    BatchError, DetachedProcess, work_failure)
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


# serving processes a host starts for its request before it gives up: one
# is the normal case (it asked as the last one ended); more only when they
# die before taking it
RESTARTS = 3


class BatchServer(object):
    """Requests answered in waves by one detached process per batch work.

    A host writes its request, then starts the batch's process unless one
    is serving; the process takes every request waiting, up to ``waves_at_once``
    waves at once (a wave: ``serve(context, {host: request}, put)`` in a
    thread of its own), and ends when nothing waits and no wave runs (while hosts it
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
    not wait for them again.

    Each answer says whether its host opened the wave that answered it
    (``opener``): the host whose own request the wave was started for, which
    reports the wave's shared figures (its Nix processes); a wave's ``put``
    names it (``put.opener``, None when all were foreseen): a foreseen
    answer may never be read, the opener's is.

    What the process serves with: ``serve``, the name of the function
    (``_batch_serve``), and ``context``, its data, or a function that gives
    it, called only by the host that starts the process, after its
    foresight (so the context may hold what that host saw of the batch).
    The starting host hands both to the process in memory, as it forks: a
    process started again (the last one died) has its starter's, which is
    the same wherever the context is data, since the server's key holds it
    (``_batch_work.server_key``)."""

    def __init__(self, base_dir, kind, key):
        self.dir = batch_folder(base_dir)
        self.kind = kind
        stem = os.path.join(self.dir, _run_files.SERVER_STEM % (kind, key))
        self.lock_path = stem + '.lock'
        self.alive_path = stem + '.alive'
        self.settled_path = stem + '.settled'
        self.requests = RequestFiles(stem + '.requests')
        self.answers = AnswerFiles(stem + '.d')
        self.process = DetachedProcess(stem, kind, self.answers.folder)
        # the serving process's: the hosts expected that have not asked yet
        self._to_come = set()
        # the serving process's: the host whose worker started it, and the
        # hosts taken that asked on their own (in the order taken)
        self._starter = None
        self._asked = []
        # the serving process's: the last request taken of each host
        self._taken = {}

    def answer_path(self, host, request):
        """The file of ``host``'s answer to ``request``."""
        return self.answers.path(host, request)

    def request(self, host, request, serve, waves_at_once=2, expected=None, foresee=None,
                context=None):
        """Ask for ``host``'s answer to ``request`` (JSON data), served by the
        function named ``serve`` with ``context`` (the class's docstring);
        returns True when this call started the serving process (``expected``: the hosts
        that process waits for before its first wave, or a function that
        gives them, called only by the host that starts it). ``foresee``:
        None, or a function that gives {host: request} for the hosts this
        host foresees, or None when it is not the first of its slot (it
        claims the slot: ``_work_keys.claim_slot``); called under the lock,
        so a host that waits for it while the first one foresees finds its
        answer asked for. A host whose answer is there asks nothing."""
        request = as_json(request)
        if os.path.exists(self.answer_path(host, request)):
            return False  # foreseen and answered already: no lock, no claim
        with held(self.lock_path, _waits.SERVER_LOCK_WAIT, server_lock(host, self.kind)):
            if foresee is not None:
                self.requests.foresee(host, foresee() or {})
            if os.path.exists(self.answer_path(host, request)):
                return False  # answered already (foreseen): no process to start
            # the server serves a request once: one foreseen for this host
            # and taken already is not served again
            self.requests.ask(host, request)
            return self._start(serve, context, waves_at_once, expected, host)

    def decline(self, host):
        """``host`` will not ask this time: no wave waits for it. Starts no
        process (a process started later takes it with the requests)."""
        self.requests.decline(host)

    def _ensure(self, serve, context, waves_at_once, host=None):
        with held(self.lock_path, _waits.SERVER_LOCK_WAIT, server_lock(host, self.kind)):
            return self._start(serve, context, waves_at_once, None, host)

    def _start(self, serve, context, waves_at_once, expected, host):
        """Start the serving process unless one runs (the caller holds the
        lock); True when this call started it."""
        if os.path.exists(self.alive_path):
            if self.process.running():
                return False
            # its process is gone without ending (killed, out of
            # memory) and left its mark: the requests it did not
            # take need another, or their hosts would wait forever
        # the work as data, handed over in the fork's memory: never a file
        work = (serve, context() if callable(context) else context)
        with open(self.alive_path, 'w'):
            pass
        if callable(expected):
            expected = expected()
        waiting = set(expected or ()) - set(_read(self.settled_path) or ())
        self._starter = host
        self.process.fork(lambda: self._serve(work, waves_at_once, waiting))
        return True

    def _take(self, waiting):
        """Every request waiting, each once: {host: request} (the foreseen
        ones too). The hosts taken, or declined, leave ``waiting`` (and the
        hosts yet to come). A request this process took before for the same
        host (foreseen, then asked by its host) is not taken again: one
        wave answers it."""
        taken = {}
        for host, request, how in self.requests.take():
            waiting.discard(host)
            self._to_come.discard(host)
            if how == DECLINED or (host in self._taken and self._taken[host] == request):
                continue
            self._taken[host] = request
            taken[host] = request
            if how == ASKED:
                self._asked.append(host)
        return taken

    def _locked_take(self, waiting):
        with held(self.lock_path, _waits.SERVER_LOCK_WAIT, server_lock(None, self.kind)):
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
        self.answers.put(self.answer_path(host, request),
                         {'answer': host_entry, 'opened': host == opener})

    def _serve(self, serve, waves_at_once, waiting):
        """The process's loop: ``serve`` is (the serve function's name, its
        context), as its starter gave them."""
        waves, unsettled = [], set(waiting)
        # the first wave waits for the hosts expected; later ones (hosts
        # that come while waves run) for the quiet
        expecting = bool(waiting)
        self._to_come = set(waiting)
        busy = time.monotonic()
        while True:
            waves = [wave for wave in waves if wave.is_alive()]
            try:
                with held(self.lock_path, _waits.SERVER_LOCK_WAIT, server_lock(None, self.kind)):
                    taken = self._take(waiting) if len(waves) < waves_at_once else {}
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
                time.sleep(LOOKS[1])
                continue
            taken.update(self._gather(waiting, expecting))
            if expecting:
                # asked, declined or given up on by the first gather
                settled = set(_read(self.settled_path) or ()) | unsettled
                write_json(self.settled_path, sorted(settled))
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
                                    args=(serve, taken, put, self.kind, self.process.log_tail),
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

    def answer(self, host, request, serve, waves_at_once=2, timeout=None, context=None):
        """(``host``'s answer to ``request`` once its wave has it, whether
        its wave was opened for it). BatchError when the serving process
        died with the request taken, when ``RESTARTS`` processes in a row
        ended without taking it, or after ``timeout`` seconds in all (None:
        ``ANSWER_WAIT``); its message names the host."""
        request = as_json(request)
        if timeout is None:
            timeout = _waits.ANSWER_WAIT
        deadline = time.monotonic() + timeout
        path = self.answer_path(host, request)
        found = self.answers.read(path)
        if found is not None:
            # ready (foreseen, served before this host came): no doorbell
            return found['answer'], found['opened']
        started = 0
        while True:
            try:
                found = self.answers.wait(path, deadline, self.process)
            except BatchError as exc:
                found = self.answers.read(path)
                if found is None and (not self.requests.pending(host) or started >= RESTARTS):
                    raise BatchError(u'%s: %s' % (host, exc))
            if found is not None:
                return found['answer'], found['opened']
            if time.monotonic() >= deadline:
                raise BatchError(self.gave_up(host, timeout))
            # asked after the last process decided to end, or it died
            # before it took the request: serve it
            if self._ensure(serve, context, waves_at_once, host=host):
                started += 1

    def gave_up(self, host, seconds):
        """What a host says that waited ``seconds`` for its answer in vain."""
        phase = self.kind.split('-')[0]
        return (u'no answer for %s from the %s batch\'s process after %ss, while that process '
                u'still runs (it computes for every host of the batch); its log, %s, says what '
                u'it does%s. Look at what it runs (a hung Nix process?); a batch that needs '
                u'longer needs a larger time limit of the %s phase'
                % (host, phase, int(seconds) if seconds == int(seconds) else seconds,
                   self.process.log_path, self.process.log_tail() or ' (it is empty)', phase))


# what a host is told when its wave ended without answering it (a bug:
# every ``serve`` answers each host it is given)
UNANSWERED = 'internal error in the %s wave: it ended without an answer for this host'


def _wave(serve, taken, put, kind='service', log_tail=lambda: ''):
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
