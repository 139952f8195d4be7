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
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch import (  # noqa: E402
    Batch)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    Place, answer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import (  # noqa: E402
    play_uuid, task_batch)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import (  # noqa: E402
    work_name)

TASK = type('Task', (), {'_uuid': 'task-1'})()


def batch_answer(host, task_vars, names, before=None):
    """``host``'s ``batch_answer(work)`` in a play batch of ``names``;
    ``before(work, batch)``, if given, runs first with the ``Batch`` (ONCE)
    whose files the work will use (to hold its lock, say)."""
    place = Place(host, TASK, dict(task_vars, inventory_hostname=host,
                                   ansible_play_batch=list(names)))

    def ask(work):
        if before is not None:
            before(work, batch_of(place, work))
        return answer(place, work)
    return ask


def batch_of(place, work):
    """The ``Batch`` of ``work`` (ONCE) as ``answer`` names its files."""
    hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(place.task), place.task_vars)
    key, _again = work_name(work.kind, place.task, hosts, *work.key_parts)
    return Batch(C.DEFAULT_LOCAL_TMP, work.kind, key)
