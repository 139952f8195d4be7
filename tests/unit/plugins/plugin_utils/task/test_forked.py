"""A forked process freezes what it inherited (task/_forked.py), for real:
a multiprocessing child as Ansible's workers are, and a batch's detached
process (task/_stream.py)."""

import gc
import multiprocessing
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _forked  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream import (  # noqa: E402
    Stream, StreamError)


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
    stream = Stream(str(tmp_path), 'eval', 'frozen')
    assert gc.get_freeze_count() == 0

    def work(put):
        put('h1', {'answer': 'h1'})
        return {'frozen': gc.get_freeze_count()}

    assert stream.start(work)
    assert stream.entry('h1', timeout=60) == {'answer': 'h1'}
    # h2 never gets an entry: the wait ends when the work has ended (its
    # end mark, what it shares, is written)
    with pytest.raises(StreamError):
        stream.entry('h2', timeout=60)
    # every object the detached process inherited from this test run
    assert stream.shared()['frozen'] > 10000, stream.shared()
