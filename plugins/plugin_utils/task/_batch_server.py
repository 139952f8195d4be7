# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The batch server: the run's one detached process (``_run_server``)
answers the requests the hosts of each batch work write, a wave at a time,
each wave one call of the phase's ``serve(context, {host: request}, put)``
(``_stem_serving``). Every phase's batch work
comes here, the evaluation's included (plugin_utils/task/_batch_work.py
says how a phase asks). The process knows its work from data only: the
serve function's name and its context, which the host that registers the
work sends it over the run's socket (``_run_server``: no file holds them,
a context may carry a cache's credentials); it imports the function
itself (``_batch_serve``).

A host's answer is kept under its name and its request, so an answer to
another request of the same host (one the first host foresaw for it, a
loop's earlier item) is never taken for its own. **Foresight**: the first
host of a slot (a task, a play batch, a loop item) to ask may write the
requests it foresees for every host of its batch beside its own; the first
wave then serves the batch, and a host that comes later whose own request is
the one foreseen waits for that answer instead of asking.

A host asks with ``BatchServer.ask``: its answer's file if it is there;
else over the run's socket where the run's process serves the stem
(``_run_asks``: no lock, no request file, no doorbell); else through the
files (``request``, then ``answer``), which register the stem.

Every lock wait here has its bound (``_waits.SERVER_LOCK_WAIT``), and so
has a host's wait for its answer (the phase's, or ``_waits.ANSWER_WAIT``),
counted once over the processes it may start.
"""

import os
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run_asks, _waits
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_answers import (
    AnswerFiles)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    batch_folder, read_json as _read)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_requests import (
    RequestFiles, as_json)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import BatchError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run_server import (
    RunServer, registration)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import held, server_lock

# registrations of its work a host makes for its request before it gives
# up: one is the normal case (it asked as the work's last serving ended);
# more only when the run's process dies before taking the request
RESTARTS = 3


class BatchServer(object):
    """Requests answered in waves by the run's serving process, one thread
    of it per batch work (a stem: a kind and a key).

    A host writes its request, then registers the work with the run's
    process unless it serves it (``_run_server``); the work's thread takes
    every request waiting, up to ``waves_at_once`` waves at once (a wave:
    ``serve(context, {host: request}, put)`` in a thread of its own), and
    ends when nothing waits and no wave runs (while hosts it expects have
    yet to ask, ``LINGER`` seconds after that). Hosts that ask together
    share a wave (one ``nix build`` for their systems), a host that asks
    while other waves run does not wait for them. The thread decides to
    end under the same lock a host takes to ask, so no request is left
    unserved.

    Who is to ask: the hosts ``expected`` by the worker that registers the
    work (its play batch), less the ones that said they will not
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
    it, called only by the host that registers the work, after its
    foresight (so the context may hold what that host saw of the batch).
    That host sends both to the run's process, which holds them in memory
    (``_run_server``): a work registered again (the last process died) has
    its new registrant's, which is the same wherever the context is data,
    since the server's key holds it (``_batch_work.server_key``)."""

    def __init__(self, base_dir, kind, key):
        self.base_dir, self.dir = base_dir, batch_folder(base_dir)
        self.kind, self.key = kind, key
        self.name = _run_files.SERVER_STEM % (kind, key)
        stem = os.path.join(self.dir, self.name)
        self.lock_path = stem + '.lock'
        self.alive_path = stem + '.alive'
        self.settled_path = stem + '.settled'
        self.requests = RequestFiles(stem + '.requests')
        self.answers = AnswerFiles(stem + '.d')
        # the run's one serving process
        self.run = RunServer(base_dir)
        self.process = self.run.process
        # what a waiting host looks at: whether this stem is still served
        self._served = _Served(self)

    def answer_path(self, host, request):
        """The file of ``host``'s answer to ``request``."""
        return self.answers.path(host, request)

    def ask(self, host, request, serve, waves_at_once=2, expected=None, foresee=None,
            context=None, timeout=None):
        """(``host``'s answer to ``request``, whether its wave was opened for
        it): read where it is written already; else asked of the run's
        process over its socket where that process serves the stem (one
        round trip, ``_run_asks``); else through the files (``request``,
        then ``answer``: the stem registered, the process started). One
        bound in all, ``timeout`` (None: ``ANSWER_WAIT``); the arguments
        are ``request``'s and ``answer``'s."""
        request = as_json(request)
        if timeout is None:
            timeout = _waits.ANSWER_WAIT
        deadline = time.monotonic() + timeout
        found = self.answers.read(self.answer_path(host, request))
        if found is None:
            told = _run_asks.ask(self.run.socket_path, self.kind, self.key, host, request,
                                 deadline)
            if told.waited:
                raise BatchError(self.gave_up(host, timeout))
            found = told.answer
            if found is None and not told.taken:
                self.request(host, request, serve, waves_at_once=waves_at_once,
                             expected=expected, foresee=foresee, context=context)
        if found is not None:
            return found['answer'], found['opened']
        # taken and owed, or asked through the files: what they say
        return self.answer(host, request, serve, waves_at_once=waves_at_once, timeout=timeout,
                           context=context, deadline=deadline)

    def request(self, host, request, serve, waves_at_once=2, expected=None, foresee=None,
                context=None):
        """Ask for ``host``'s answer to ``request`` (JSON data), served by the
        function named ``serve`` with ``context`` (the class's docstring);
        returns True when this call registered the work with the run's
        serving process (``expected``: the hosts the work's first wave waits
        for, or a function that gives them, called only by the host that
        registers it). ``foresee``:
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
        """Register the stem with the run's serving process unless it
        serves it, starting that process first unless it runs (the caller
        holds the stem's lock); True when this call registered it."""
        if self.run.serves(self):
            return False
        # no process serves it: none ran, the last one ended, or it died
        # (killed, out of memory) and left its mark: the requests it did
        # not take need another, or their hosts would wait forever. The
        # context is formed before anything is marked: a host that fails
        # to form it leaves the stem to the next host
        work = context() if callable(context) else context
        if callable(expected):
            expected = expected()
        waiting = set(expected or ()) - set(_read(self.settled_path) or ())
        message = registration(host, self.kind, self.key, serve, work, waves_at_once, waiting)
        self.run.register(host, self.kind, message,
                          lambda kind, key: BatchServer(self.base_dir, kind, key))
        return True

    def answer(self, host, request, serve, waves_at_once=2, timeout=None, context=None,
               deadline=None):
        """(``host``'s answer to ``request`` once its wave has it, whether
        its wave was opened for it). BatchError when the serving process
        died with the request taken, when ``RESTARTS`` processes in a row
        ended without taking it, or after ``timeout`` seconds in all (None:
        ``ANSWER_WAIT``; ``deadline``: when they end, where the host began
        to wait before this call); its message names the host."""
        request = as_json(request)
        if timeout is None:
            timeout = _waits.ANSWER_WAIT
        if deadline is None:
            deadline = time.monotonic() + timeout
        path = self.answer_path(host, request)
        found = self.answers.read(path)
        if found is not None:
            # ready (foreseen, served before this host came): no doorbell
            return found['answer'], found['opened']
        started = 0
        while True:
            try:
                found = self.answers.wait(path, deadline, self._served)
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


class _Served(object):
    """A stem's serving as a waiting host looks at it
    (``AnswerFiles.wait``): running while the run's process serves it."""

    def __init__(self, server):
        self.server = server

    def running(self):
        return self.server.run.serves(self.server)

    def log_tail(self):
        return self.server.process.log_tail()
