"""Serve functions for the batch engine's tests.

A batch work names its serve function (``'<module>:<function>'``), and
the serving process imports it (plugin_utils/task/_batch_serve.py), trusting
only the collection's modules and the ones a test trusted by code: this
module trusts itself as it is imported. A test that proves how the engine
serves (waves, errors, restarts) writes its serve as a local function of
``(requests, put)``; ``named`` gives it a module-level name here, in this
process's memory, which the serving process (a fork of the test's
process, or of its worker) finds by that name: a name given before the
run's process started (a later one is unknown to it). Each phase's own serve is
a function of its module, proven by that phase's tests.
"""

import itertools
import os
import signal
import sys
import time

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _batch_serve)

_batch_serve.trust(__name__)
_NUMBERS = itertools.count()


def named_serve(function):
    """The serve name of ``function(context, requests, put)``."""
    name = 'serve_%d' % next(_NUMBERS)

    def serve(context, requests, put):
        return function(context, requests, put)
    serve.__name__ = name
    globals()[name] = _batch_serve.serves(serve)
    return '%s:%s' % (__name__, name)


def named(function):
    """The serve name of a test's ``function(requests, put)`` (its context
    unused); usable as a decorator."""
    return named_serve(lambda _context, requests, put: function(requests, put))


@_batch_serve.serves
def echo_context(context, requests, put):
    """Each host's answer: {request, context}."""
    for host, request in requests.items():
        put(host, {'request': request, 'context': context})


# its serve name
ECHO_CONTEXT = '%s:echo_context' % __name__


@_batch_serve.serves
def counted(context, requests, put):
    """A work served as another (``context``: {kind, serve, context: the
    other's}), each wave noted in the file ``log`` by the name ``host``
    (``batch_place.ServedBy``)."""
    with open(context['log'], 'a') as handle:
        handle.write(context['host'] + '\n')
    serve = _batch_serve.serve_function(context['kind'], context['serve'])
    return serve(context['context'], requests, put)


# its serve name
COUNTED = '%s:counted' % __name__


class Hung(object):
    """A batch work that never ends (a hung build, a hung disk), run by a
    real serving process: it notes that process's pid in ``folder``, and
    ``stop`` kills it by that pid."""

    def __init__(self, folder):
        self.pid_file = str(folder / 'hung.pid')

    def __call__(self, *_args):
        with open(self.pid_file, 'w') as handle:
            handle.write(str(os.getpid()))
        time.sleep(3600)

    @property
    def name(self):
        """Its serve name."""
        return named(self)

    def stop(self):
        deadline = time.monotonic() + 20
        while not os.path.exists(self.pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(self.pid_file) as handle:
            os.kill(int(handle.read()), signal.SIGKILL)
