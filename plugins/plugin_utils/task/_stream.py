# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Work done once for a play batch whose answers arrive host by host.

``_batch.Batch`` answers when the whole batch is computed: every host waits
for the slowest. A ``Stream`` is computed by ONE detached process per batch
(the first worker to get here starts it) that writes each host's entry as
soon as it is known; each host's worker waits for its own entry only, so a
host whose system is evaluated goes on to its build while the others are
still evaluated.

Why a detached process: Ansible's worker process ends with its host's task,
and the batch's work must outlive it. The process is forked from the worker
(the collection's modules are imported already, in the EE too), leaves the
worker's session and file descriptors (ansible-runner waits for the end of
the job's stdout), and ends when its work is done or when the
ansible-playbook process that started the job is gone (a cancelled job
leaves no evaluator behind). While it runs it holds a lock on
``<batch>.running``: a waiting host that finds the lock free and no entry of
its own knows the work died and says so (its host fails, with the log's
tail), instead of waiting forever.
"""

import fcntl
import json
import os
import signal
import threading
import time
import traceback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (
    NixdeployError, internal_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _wakeup
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch import (
    _entry_path, _folder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._forked import freeze_inherited

# How often a waiting host without a doorbell looks for its entry (and the
# serving process for requests): it backs off from the first to the last
# value, so a host that waits minutes costs little, and one whose answer
# comes at once is not held.
_LOOKS = (0.02, 0.05, 0.1, 0.2)
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


class StreamError(NixdeployError):
    """The batch's detached work ended without this host's entry.
    ``traceback``: an internal error's (for -vvv, never the message)."""

    def __init__(self, *args, **kwargs):
        self.traceback = kwargs.pop('traceback', None)
        super(StreamError, self).__init__(*args, **kwargs)


def work_failure(kind, exc):
    """A batch process's entry for an exception out of its work: the
    error family's own sentence (a missing nix_bin), or one line naming an
    internal error, its traceback under ``traceback`` (shown at -vvv only).
    Never a traceback in ``error``: it becomes a person's message."""
    if isinstance(exc, (NixdeployError, OSError)):
        return {'error': u'%s' % exc}
    return {'error': internal_error('the %s batch' % kind.split('-')[0], exc),
            'traceback': traceback.format_exc()}


# the line a Python traceback starts with, in a batch's log
_TRACEBACK = 'Traceback (most recent call last):'


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class Stream(object):
    """One batch's entries (``<kind>-<key>.d/<digest>.json``), its log, its
    end mark (``<kind>-<key>.json``: what the batch shares) and the lock its
    detached process holds while it runs."""

    def __init__(self, base_dir, kind, key):
        self.dir = _folder(base_dir)
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
    def start(self, work):
        """Start ``work(put)`` in a detached process unless this batch's was
        started already (by any host). ``put(host, entry)`` publishes one
        host's entry; ``work`` returns what the batch shares (a dict, kept
        as the end mark). Returns True when this call started it."""
        with open(self.lock_path, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.path.exists(self.running_path):
                    return False
                self._fork(work)
                return True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _fork(self, work):
        # The job's ansible-playbook process: the worker's parent. The
        # detached process ends when it is gone.
        main_pid = os.getppid()
        # taken before the fork: the worker sees it held as soon as start()
        # returns, so a fast waiter never reads "not running" by mistake
        running = os.open(self.running_path, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(running, fcntl.LOCK_EX)
        child = os.fork()
        if child:
            os.close(running)
            os.waitpid(child, 0)
            return
        # first child: a new session, then the grandchild does the work (it
        # is nobody's child, so it never becomes a zombie of the worker)
        try:
            os.setsid()
            if os.fork():
                os._exit(0)  # pylint: disable=protected-access
            # the worker's handlers pass signals on to its task: not ours
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            # the batch's work walks its own objects, not the worker's (_forked)
            freeze_inherited()
            self._detach(running)
            code = self._run(work, main_pid)
        except BaseException:  # pylint: disable=broad-except
            code = 1
        os._exit(code)  # pylint: disable=protected-access

    def _detach(self, keep):
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # the worker's pipes (the job's output, the results queue) must not
        # stay open in a process that outlives the job's tasks; closerange is
        # one system call where the kernel has close_range, not one a slot
        # (20,000 of them took 0.05-0.07 s a process)
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())

    def _run(self, work, main_pid):
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(main_pid, stop), name='nixdeploy-watch')
        watcher.daemon = True
        watcher.start()
        try:
            shared = work(self.put)
        except Exception as exc:  # pylint: disable=broad-except
            # the log keeps the traceback; the hosts without an entry get
            # one sentence (``entry``)
            os.write(2, traceback.format_exc().encode('utf-8', 'replace'))
            shared = work_failure(self.kind, exc)
        if shared is not None:
            write_json(self.done_path, shared)
        # the hosts still waiting (the work gave them no entry) learn it now
        _wakeup.ring_all(self.entries_dir)
        stop.set()
        return 0

    def put(self, host, host_entry):
        """Publish ``host``'s entry (a whole file: a reader never sees half)."""
        path = _entry_path(self.entries_dir, host)
        write_json(path, host_entry)
        _wakeup.ring(path)

    # ------------------------------------------------------------ waiting
    def entry(self, host, timeout=None, ends=True):
        """``host``'s entry, as soon as the detached work has written it.
        StreamError when the work ended (or died: ``ends``, its end mark)
        without it, or after ``timeout`` seconds.

        The host sleeps on its doorbell (``_wakeup``), rung when its entry
        is written or the work ends, and looks anyway every ``SAFETY``
        seconds; where no doorbell can be made it looks by the clock."""
        path = _entry_path(self.entries_dir, host)
        deadline = None if timeout is None else time.monotonic() + timeout
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
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left < 0:
                    raise StreamError('no answer for this host after %ss' % timeout)
                if bell.fd is not None:
                    bell.wait(_wakeup.SAFETY if left is None else min(_wakeup.SAFETY, left))
                else:
                    time.sleep(_LOOKS[min(looks, len(_LOOKS) - 1)])
                looks += 1

    def shared(self):
        """What the batch shares (its end mark), or None before it ends."""
        return _read(self.done_path)

    def _running(self):
        try:
            with open(self.running_path, 'a') as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except (OSError, IOError):
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
                return False
        except (OSError, IOError):
            return False

    def _log_tail(self):
        try:
            with open(self.log_path, 'rb') as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 2000))
                text = handle.read().decode('utf-8', 'replace').strip()
        except (OSError, IOError):
            return ''
        text = without_tracebacks(text)
        return (': ' + text) if text else ''


def without_tracebacks(text):
    """``text`` (a batch's log) with each Python traceback cut to its last
    line (the exception), which a message may show; the whole one stays
    in the log file."""
    out, inside = [], False
    for line in text.split('\n'):
        if line.startswith(_TRACEBACK):
            inside = True
            continue
        if inside:
            # a traceback's frames are indented; its last line is not
            if line.startswith(' ') or not line.strip():
                continue
            inside = False
            line = u'internal error: %s' % line
        out.append(line)
    return '\n'.join(out).strip()


def _read(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return None


def _max_fd():
    try:
        return min(os.sysconf('SC_OPEN_MAX'), 65536)
    except (ValueError, OSError):
        return 1024


# The process groups of the Nix processes a batch's work started: killed when
# the job is gone (each is a group leader: start_new_session).
CHILD_GROUPS = set()


def _watch(main_pid, stop):
    """End the batch's work (and its Nix processes) when the job is gone."""
    while not stop.wait(0.5):
        if not _alive(main_pid):
            for group in list(CHILD_GROUPS):
                try:
                    os.killpg(group, 9)
                except OSError:
                    pass
            # the rest of its Nix processes (a wave's nix build) share this
            # process's own group (its session, made when it was detached):
            # they end with it
            try:
                os.killpg(os.getpgrp(), 9)
            except OSError:
                pass
            os._exit(3)  # pylint: disable=protected-access


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
        return self._ensure(serve, slots, expected)

    def decline(self, host):
        """``host`` will not ask this time: no wave waits for it. Starts no
        process (a process started later takes it with the requests)."""
        write_json(_entry_path(self.requests_dir, host), {'host': host, 'declined': True})

    def _ensure(self, serve, slots, expected=None):
        with open(self.lock_path, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
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
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
        with open(self.lock_path, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._take(waiting)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _serve(self, serve, slots, put, waiting):
        waves, unsettled = [], set(waiting)
        # the first wave waits for the hosts expected; later ones (hosts
        # that come while waves run) for the quiet
        expecting = bool(waiting)
        self._to_come = set(waiting)
        busy = time.monotonic()
        while True:
            waves = [wave for wave in waves if wave.is_alive()]
            with open(self.lock_path, 'a') as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    taken = self._take(waiting) if len(waves) < slots else {}
                    if taken or waves:
                        busy = time.monotonic()
                    elif not self._to_come or time.monotonic() - busy > LINGER:
                        os.unlink(self.alive_path)
                        return None
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
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
        serving process died with the request taken, or when
        ``RESTARTS`` processes in a row ended without taking it)."""
        started = 0
        while True:
            try:
                return self.entry(host, timeout=timeout, ends=False)
            except StreamError:
                found = _read(_entry_path(self.entries_dir, host))
                if found is not None:
                    return found
                if not os.path.exists(_entry_path(self.requests_dir, host)) \
                        or started >= RESTARTS:
                    raise
                # asked after the last process decided to end, or it died
                # before it took the request: serve it
                if self._ensure(serve, slots):
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
