# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end of a play batch, told to the callbacks that summarise it.

ansible-core has no callback for the end of a ``serial`` batch: the next
batch begins with ``v2_playbook_on_play_start``, which reaches the stdout
callback before any other. A summary printed there would come after the
next batch's PLAY header. So the summary callback listens here, and the
console (a stdout callback, the first to hear of the next batch) calls
``batch_over`` before it prints that header. With another stdout callback
nobody calls it, and the summary prints where it can, after the header.

Both callbacks live in the one ansible-playbook process, so they share this
module. Listeners are held weakly: a callback that is gone is not called.
"""

import weakref

_LISTENERS = weakref.WeakSet()


def listen(callback):
    """Call ``callback.batch_over()`` at the end of each play batch."""
    _LISTENERS.add(callback)


def forget(callback):
    """No more calls for ``callback`` (its run is over)."""
    _LISTENERS.discard(callback)


def batch_over(warn):
    """The play batch is over: each listener says what it has to say now.
    A listener that fails is its own problem, not the caller's: the console
    must still print the next batch's header, so the error is only told
    through ``warn`` (a function of one message)."""
    for callback in list(_LISTENERS):
        try:
            callback.batch_over()
        except Exception as exc:  # pylint: disable=broad-except
            warn('nixdeploy: the summary of the last batch failed (%s: %s); the run goes on'
                 % (type(exc).__name__, exc))
