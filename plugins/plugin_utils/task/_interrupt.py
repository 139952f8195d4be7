# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A run stopped by SIGINT (Ctrl-C) or SIGTERM, told to the callbacks that
end it as a run: the summary says what each host had reached and what
happens to the ones in flight, the report is written as an interrupted run.

ansible-playbook ends such a run without any callback's end of run: its
task queue manager's handler of both signals (installed before the
callbacks load) passes the signal on to the workers and then raises
KeyboardInterrupt (SIGINT; the CLI prints "User interrupted execution" and
exits 99) or kills the process by the same signal again (SIGTERM, which
runs no ``finally`` and no ``atexit``). So the first callback that listens
puts a handler of its own in front, in the main thread: it tells each
listener once, then hands the signal to the handler it found, which does
what it did before (the exit code stays Ansible's). A second signal goes
straight on (the first one's handler put the default back).

Listeners are held weakly, as in _batch_end.py; one that fails is told
through ``warn`` and the others still run.
"""

import os
import signal
import threading
import weakref

from ansible.utils.display import Display

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_LISTENERS = weakref.WeakSet()
_STATE = {'previous': {}, 'pid': None, 'told': False}


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return 'signal %d' % signum


def _handler(signum, frame):
    previous = _STATE['previous'].get(signum)
    # a forked worker keeps this handler until it sets its own: not ours to tell
    if os.getpid() == _STATE['pid'] and not _STATE['told']:
        _STATE['told'] = True
        interrupted(signal_name(signum), Display().warning)
    if callable(previous):
        return previous(signum, frame)
    # the default (or ignored) before us: as it would have been
    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    if previous == signal.SIG_IGN:
        return None
    if signum == signal.SIGINT:
        # Python's own (it raises KeyboardInterrupt)
        return signal.default_int_handler(signum, frame)
    os.kill(os.getpid(), signum)
    return None


def listen(callback):
    """Call ``callback.interrupted(signal_name)`` when the run is stopped
    by SIGINT or SIGTERM. Only where signal handlers can be set (the main
    thread of ansible-playbook); elsewhere the callback is never called."""
    _LISTENERS.add(callback)
    if threading.current_thread() is not threading.main_thread():
        return
    # in front of the handlers found: the task queue manager's, a new one's
    # when another run in this process made one
    if _STATE['pid'] != os.getpid():
        _STATE.update(pid=os.getpid(), told=False, previous={})
    for signum in SIGNALS:
        if signal.getsignal(signum) is not _handler:
            _STATE['previous'][signum] = signal.getsignal(signum)
            _STATE['told'] = False
            signal.signal(signum, _handler)


def forget(callback):
    """No call for ``callback`` (its run is over: nothing to interrupt)."""
    _LISTENERS.discard(callback)


def interrupted(name, warn=None):
    """The run is stopped by ``name`` (SIGINT, SIGTERM): each listener says
    what it has to say now; one that fails is told through ``warn``."""
    for callback in list(_LISTENERS):
        try:
            callback.interrupted(name)
        except Exception as exc:  # pylint: disable=broad-except
            if warn is not None:
                warn('nixdeploy: %s could not end the interrupted run (%s: %s)'
                     % (type(callback).__name__, type(exc).__name__, exc))
