"""A forked process freezes what it inherited (task/_forked.py), for real:
a multiprocessing child as Ansible's workers are, and a batch server's
detached process (task/_batch_server.py)."""

import gc
import multiprocessing
import sys

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _forked  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)


def _child(queue):
    before = gc.get_freeze_count()
    inside = _forked.in_forked_worker()
    _forked.freeze_inherited()
    queue.put((inside, before, gc.get_freeze_count()))


def test_a_worker_knows_it_was_forked_and_freezes_what_it_inherited():
    # this test's process is no worker: an action called here (unit tests,
    # ansible-test) freezes nothing, or its garbage would never be freed
    assert not _forked.in_forked_worker()
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    worker = context.Process(target=_child, args=(queue,))
    worker.start()
    inside, before, after = queue.get(timeout=60)
    worker.join(60)
    assert inside is True
    assert before == gc.get_freeze_count() == 0
    # every object it inherited (this test run's modules, at least)
    assert after > 10000, after


def test_a_batch_process_collects_only_its_own_objects(tmp_path):
    server = BatchServer(str(tmp_path), 'eval', 'frozen')
    assert gc.get_freeze_count() == 0

    @named
    def serve(requests, put):
        put('h1', {'frozen': gc.get_freeze_count()})

    assert server.request('h1', 'r1', serve)
    frozen = server.answer('h1', 'r1', serve, timeout=60)[0]['frozen']
    # every object the detached process inherited from this test run
    assert frozen > 10000, frozen
