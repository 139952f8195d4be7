"""The action base's ``batch_answer`` for tests that play several hosts of
one task in one process: the real ``_batch_work.answer`` over the real
batch files in ``C.DEFAULT_LOCAL_TMP``, for a task whose uuid is
``task-1``. A stage under test gets ``batch_answer(host, task_vars)`` where
an action would pass its own."""

import sys

from ansible import constants as C

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    Place, answer, server_key)
from tests.unit.plugins.plugin_utils.task.batch_serves import COUNTED  # noqa: E402

TASK = type('Task', (), {'_uuid': 'task-1'})()


def batch_answer(host, task_vars, names, before=None):
    """``host``'s ``batch_answer(work)`` in a play batch of ``names``;
    ``before(work, server)``, if given, runs first with the ``BatchServer``
    whose files the work will use (to stand for a server that hangs, say)."""
    place = Place(host, TASK, dict(task_vars, inventory_hostname=host,
                                   ansible_play_batch=list(names)))

    def ask(work):
        if before is not None:
            before(work, batch_of(place, work))
        return answer(place, work)
    return ask


def batch_of(place, work):
    """The ``BatchServer`` of ``work`` as ``answer`` names its files."""
    return BatchServer(C.DEFAULT_LOCAL_TMP, work.kind, server_key(place, work)[1])


class ServedBy:
    """Which hosts' servers served a batch work, kept in the file ``log``
    (the server is another process: a file is what a test can read).
    ``hook(host, kind)`` is a ``batch_answer`` ``before`` that counts the
    waves of ``host``'s server of ``kind`` (any kind: None)."""

    def __init__(self, log):
        self.log = str(log)

    def hook(self, host, kind=None):
        def count(work, _server):
            if kind is not None and work.kind != kind:
                return
            inner, inner_context = work.serve, work.context

            def context():
                return {'log': self.log, 'host': host, 'kind': work.kind, 'serve': inner,
                        'context': inner_context() if callable(inner_context)
                        else inner_context}
            work.serve, work.context = COUNTED, context
        return count

    def hosts(self):
        """The hosts whose servers served a wave, a line a wave."""
        try:
            with open(self.log) as handle:
                return handle.read().split()
        except FileNotFoundError:
            return []
