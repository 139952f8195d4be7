# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The batches' work in a detached process (the run's one serving
process, ``_run_server``), and what it says when it fails.

Why a detached process: Ansible's worker process ends with its host's task,
and the batches' work must outlive it. The process is forked from the
worker (the collection's modules are imported already, in the EE too),
leaves the worker's session and file descriptors (ansible-runner waits for
the end of the job's stdout), and ends when its work is done or when the
ansible-playbook process that started the job is gone (a cancelled job
leaves no evaluator behind). While it runs it holds a lock on
``<stem>.running``: a waiting host that finds the lock free and no entry of
its own knows the work died and says so (its host fails, with the log's
tail), instead of waiting forever.
"""

import fcntl
import os
import signal
import threading
import traceback

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (
    NixdeployError, internal_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _job_end, _waits, _wakeup
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._forked import freeze_inherited
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import (
    hold, server_lock)


class BatchError(NixdeployError):
    """The batch server could not answer this host (it died, it hung
    past the bound, its lock was never free).
    ``traceback``: an internal error's (for -vvv, never the message)."""

    def __init__(self, *args, **kwargs):
        self.traceback = kwargs.pop('traceback', None)
        super(BatchError, self).__init__(*args, **kwargs)


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


def _max_fd():
    try:
        return min(os.sysconf('SC_OPEN_MAX'), 65536)
    except (ValueError, OSError):
        return 1024


class ChildGroups(object):
    """The process groups of the Nix processes a batch's work started, each
    a group leader in a session of its own (``start_new_session``): what
    ``stop`` kills when the job is gone. A process is started and its group
    added under ``lock``, which ``stop`` takes too: a stop that comes while
    a process starts waits the moment it takes and kills that one as well
    (added only after its start, it was in no group anyone killed, and ran
    on after its job). Once stopped, no process starts."""

    def __init__(self):
        self.lock, self.stopping, self._groups = None, False, None
        self.forked()

    def forked(self):
        """In a newly forked batch process: no group, not stopping, a lock
        of its own (one a thread of the worker held at the fork would stay
        held here, with no thread to release it)."""
        # reentrant: ``start`` adds the group while it holds it
        self.lock = threading.RLock()
        self.stopping = False
        self._groups = set()

    def start(self, start):
        """``start()``'s process (a ``subprocess.Popen`` in a session of its
        own), its group added; None, and nothing started, once stopping."""
        with self.lock:
            if self.stopping:
                return None
            proc = start()
            self._groups.add(proc.pid)
            return proc

    def add(self, group):
        with self.lock:
            self._groups.add(group)

    def discard(self, group):
        with self.lock:
            self._groups.discard(group)

    def __contains__(self, group):
        with self.lock:
            return group in self._groups

    def __iter__(self):
        with self.lock:
            return iter(list(self._groups))

    def stop(self):
        """Kill every group, and start none from now on."""
        with self.lock:
            self.stopping = True
            groups = list(self._groups)
        for group in groups:
            try:
                os.killpg(group, 9)
            except OSError:
                pass


# The Nix processes of this process's batch work (``ChildGroups``)
CHILD_GROUPS = ChildGroups()


def _stop_children():
    """Stop the Nix processes the work started and remove its folders
    (``_job_end``): the process is ending without its work."""
    _job_end.remove_folders()
    CHILD_GROUPS.stop()


def _watch(main_pid, stop):
    """End the batch's work (and its Nix processes) when the job is gone;
    where every host has its answer, once what it finishes for the next job
    is done (``_job_end``: an evaluator's record), within a bound."""
    while not stop.wait(0.5):
        if not _job_end.alive(main_pid):
            if _job_end.wait_after_job(stop):
                return
            _stop_children()
            # the rest of its Nix processes (a wave's nix build) share this
            # process's own group (its session, made when it was detached):
            # they end with it
            try:
                os.killpg(os.getpgrp(), 9)
            except OSError:
                pass
            os._exit(3)  # pylint: disable=protected-access


class DetachedProcess(object):
    """The detached process of the run's batch server: its lock file
    (``<stem>.running``, held while it runs), its log (``<stem>.log``)
    and, when it ends, a ring of every doorbell in the folders
    ``wake_dirs()`` gives (the answers' folders: a host still waiting looks
    again and learns it)."""

    def __init__(self, stem, kind, wake_dirs):
        self.kind = kind
        self.running_path = stem + '.running'
        self.log_path = stem + '.log'
        self.wake_dirs = wake_dirs

    def fork(self, work, keep=()):
        """Run ``work()`` in a detached process; returns in the caller once
        the process runs (and holds ``.running``). ``keep``: the file
        descriptors the process keeps open (its listening socket); it
        closes every other one it inherited."""
        # The job's ansible-playbook process: the worker's parent. The
        # detached process ends when it is gone.
        main_pid = os.getppid()
        # taken before the fork: the worker sees it held as soon as fork()
        # returns, so a fast waiter never reads "not running" by mistake (a
        # waiter's own look holds it a moment: bounded all the same)
        running = open(self.running_path, 'a')
        hold(running, _waits.SERVER_LOCK_WAIT, server_lock(None, self.kind))
        child = os.fork()
        if child:
            running.close()
            # the first child only makes a session and forks: it ends at once
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
            _job_end.forked(main_pid)
            CHILD_GROUPS.forked()
            self._detach((running.fileno(),) + tuple(keep))
            code = self._run(work, main_pid)
        except BaseException:  # pylint: disable=broad-except
            code = 1
        if code:
            # a work that did not end well leaves no evaluator running
            _stop_children()
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
        start = 3
        for fd in sorted(keep):
            os.closerange(start, fd)
            start = fd + 1
        os.closerange(start, _max_fd())

    def _run(self, work, main_pid):
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(main_pid, stop), name='nixdeploy-watch')
        watcher.daemon = True
        watcher.start()
        code = 0
        try:
            work()
        except Exception:  # pylint: disable=broad-except
            # the log keeps the traceback; a host still waiting reads its
            # last line (``log_tail``)
            os.write(2, traceback.format_exc().encode('utf-8', 'replace'))
            code = 1
        # the hosts still waiting (given no answer) learn it now
        for folder in self.wake_dirs():
            _wakeup.ring_all(folder)
        stop.set()
        return code

    def running(self):
        """Whether the batch's process holds ``.running`` (a look that
        never waits)."""
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

    def log_tail(self):
        try:
            with open(self.log_path, 'rb') as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 2000))
                text = handle.read().decode('utf-8', 'replace').strip()
        except (OSError, IOError):
            return ''
        text = without_tracebacks(text)
        return (': ' + text) if text else ''
