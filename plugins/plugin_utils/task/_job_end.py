# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a batch's detached process may still finish after the job has ended.

ansible-playbook ends as soon as every host has its result, and takes its
temporary folder with it. A detached process (``_detached``) then stops:
nobody reads what it would still give. But some of its work is for the next
job, not for this one's hosts: an evaluator's record of what it read (reuse
across commits) is written after the evaluator has given its hosts their
answers. Cut off there, the next job evaluates those hosts again.

So the work says two things here:

- ``owe(count)``: answers it still owes the hosts (plus when it takes a
  batch, minus one for each answer given);
- ``finishing()``: a block that may go on after its hosts have their
  answers (an evaluator, until its record is kept).

When the job ends and nothing is owed, the process waits for the finishing
blocks, for at most ``_waits.AFTER_JOB_WAIT``, before it stops; first it
calls the work's ``when_job_ends`` hooks (the evaluation cache then holds a
lock that the next job's look-up waits on, so a job started right after
this one sees its records). When something is owed (a cancelled job, a
host that gave up waiting), it stops at once, its Nix processes with it.

Where nothing may outlive the job (an execution environment: the
container, every process in it, ends with ansible-playbook), the job's end
waits instead: a finishing block of a batch process holds a shared lock on
``FINISHING`` in the job's temporary folder, and ``wait_for_finishing``
(the summary callback, at the job's end) waits until it can take that lock
alone, for at most ``AFTER_JOB_WAIT`` too.

``temporary_folder`` gives such work a folder of its own outside Ansible's
temporary folder (which is gone once the job has ended); the folder is
removed by ``remove_folder`` when the work is done, or by
``remove_folders`` when the process is stopped.
"""

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
import threading
import time

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import (
    AFTER_JOB_WAIT, LockWaitTimeout, hold)

# in the job's temporary folder: locked (shared) while a batch process
# finishes something, so that the job's end can wait for it
FINISHING = _run_files.FINISHING
# seconds the job's end waits before it says what it waits for
NOTICE_AFTER = 2


class _Left(object):
    """The process's counts: answers owed, blocks finishing, folders."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owed = 0
        self.finishing = 0
        self.folders = set()
        self.hooks = []
        # the job's ansible-playbook, in a batch process (forked)
        self.main_pid = None


_LEFT = _Left()


def forked(main_pid):
    """In a newly forked batch process: nothing owed or finishing yet (what
    the worker it was forked from counted is the worker's). ``main_pid``:
    the job's ansible-playbook (``job_ended``)."""
    global _LEFT  # pylint: disable=global-statement
    _LEFT = _Left()
    _LEFT.main_pid = main_pid


def job_ended(folder, bound=5.0):
    """After a file of the job's ``folder`` could not be written or read:
    whether that is because the job has ended. Ansible removes its temporary
    folder as ansible-playbook exits, a file at a time: within ``bound``
    seconds the folder is gone or ansible-playbook is. False in a process
    that is not a batch's (its job cannot have ended while it runs)."""
    if _LEFT.main_pid is None:
        return False
    deadline = time.monotonic() + bound
    while True:
        if not os.path.isdir(folder) or not alive(_LEFT.main_pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def owe(count):
    """Add ``count`` answers the work owes its hosts (negative: given)."""
    with _LEFT.lock:
        _LEFT.owed += count


@contextlib.contextmanager
def finishing():
    """A block of work that may outlive the job once nothing is owed."""
    with _LEFT.lock:
        _LEFT.finishing += 1
    held = _hold_finishing()
    try:
        yield
    finally:
        with _LEFT.lock:
            _LEFT.finishing -= 1
        if held is not None:
            held.close()


def _hold_finishing():
    """In a batch process: the job's ``FINISHING`` file, locked shared
    (None elsewhere: a worker's own work ends before the job can, and a
    job already gone has nobody left to wait)."""
    if _LEFT.main_pid is None:
        return None
    try:
        handle = open(os.path.join(C.DEFAULT_LOCAL_TMP, FINISHING), 'a')
    except (IOError, OSError):
        return None
    try:
        # only the job's end takes it alone, and only for a moment
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except (IOError, OSError):
        handle.close()
        return None
    return handle


def wait_at_job_end(say, warn, folder=None):
    """The summary callback's end of the job: ``wait_for_finishing``, and
    past ``NOTICE_AFTER`` seconds ``say`` what it waits for; ``warn`` when
    it gave up (``AFTER_JOB_WAIT`` in all)."""
    if wait_for_finishing(folder, NOTICE_AFTER) is not None:
        return
    say('nixdeploy: keeping the evaluation records of this run for the next one '
        '(at most %d s)' % AFTER_JOB_WAIT)
    if wait_for_finishing(folder, AFTER_JOB_WAIT - NOTICE_AFTER) is None:
        warn('nixdeploy: gave up after %d s waiting for the evaluation records of this run: '
             'the next run evaluates those hosts again' % AFTER_JOB_WAIT)


def wait_for_finishing(folder=None, bound=None):
    """In ansible-playbook, as the job ends: wait until no batch process
    of the job is finishing something (the lock on ``FINISHING`` in the
    job's temporary ``folder`` is free), for at most ``bound`` seconds
    (``AFTER_JOB_WAIT``). Returns the seconds waited, or None when the
    bound passed first."""
    path = os.path.join(folder or C.DEFAULT_LOCAL_TMP, FINISHING)
    start = time.monotonic()
    try:
        handle = open(path, 'r')
    except (IOError, OSError):
        # no batch process of this job finished anything
        return 0.0
    with handle:
        try:
            hold(handle, AFTER_JOB_WAIT if bound is None else bound,
                 {'lock': "the job's evaluation records", 'do': 'the next run evaluates again'})
        except LockWaitTimeout:
            return None
        except OSError:
            # a file system without flock: no batch process could hold it either
            return 0.0
    return time.monotonic() - start


def may_finish():
    """Whether the job's end should wait: nothing owed, something finishing."""
    with _LEFT.lock:
        return _LEFT.owed <= 0 and _LEFT.finishing > 0


def when_job_ends(hook):
    """Call ``hook()`` if the job ends while work is finishing (``forget``
    it when that work is done)."""
    with _LEFT.lock:
        _LEFT.hooks.append(hook)


def forget(hook):
    with _LEFT.lock:
        if hook in _LEFT.hooks:
            _LEFT.hooks.remove(hook)


def wait_after_job(done, bound=None):
    """Called once the job has ended: wait while nothing is owed and work is
    finishing, until ``done`` (a threading.Event: the whole work has
    returned) is set or the bound passes. True when ``done`` was set."""
    deadline = time.monotonic() + (AFTER_JOB_WAIT if bound is None else bound)
    if may_finish():
        with _LEFT.lock:
            hooks = list(_LEFT.hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:  # pylint: disable=broad-except
                # a hook only helps the next job; the records go on
                pass
    while may_finish() and time.monotonic() < deadline:
        if done.wait(0.1):
            return True
    return done.is_set()


def temporary_folder(prefix):
    """A new folder (0700) in the system's temporary folder, not Ansible's:
    it outlives the job for as long as the work may (``finishing``). Its
    name holds this process's id: the folders of such processes that were
    killed (nothing could remove them) go when the next one is made."""
    _sweep(prefix)
    folder = tempfile.mkdtemp(prefix='%s%d-' % (prefix, os.getpid()))
    with _LEFT.lock:
        _LEFT.folders.add(folder)
    return folder


def _sweep(prefix):
    """Remove this user's folders ``<prefix><pid>-*`` whose process is gone."""
    parent = tempfile.gettempdir()
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split('-', 1)[0] if name.startswith(prefix) else ''
        if not pid.isdigit() or alive(int(pid)):
            continue
        path = os.path.join(parent, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        # only a real folder of this user's (never a link someone planted)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            shutil.rmtree(path, ignore_errors=True)


def alive(pid):
    """Whether process ``pid`` runs (another user's counts). A zombie does
    not: it has ended and only waits for its parent to read its exit (a
    job's ``ansible-playbook`` whose parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        # another user's process: alive
        return True
    return not _zombie(pid)


def _zombie(pid):
    """Whether ``pid`` is a zombie, where the system says (Linux's /proc;
    elsewhere it counts as running)."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as handle:
            line = handle.read()
    except OSError:
        return False
    # "pid (command) state ...": the command may hold any byte, ")" too
    return line[line.rfind(b')') + 2:line.rfind(b')') + 3] == b'Z'


def remove_folder(folder):
    """Remove a folder of ``temporary_folder`` once its work is done."""
    with _LEFT.lock:
        _LEFT.folders.discard(folder)
    shutil.rmtree(folder, ignore_errors=True)


def remove_folders():
    """Remove every folder of ``temporary_folder`` still there: the process
    is being stopped."""
    with _LEFT.lock:
        folders, _LEFT.folders = list(_LEFT.folders), set()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
