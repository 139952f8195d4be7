"""The job's evaluator slots (plugin_utils/evaluation/pool/_slots.py): never more
holders than slots, across threads and processes, and a slot whose holder
died is free again (the kernel drops its flock)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._slots import (  # noqa: E402
    EvalSlots)

DEADLINE = 60.0


def wait_for(predicate, what):
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_never_more_holders_than_slots(tmp_path):
    slots = EvalSlots(str(tmp_path), 2)
    lock, holding, most = threading.Lock(), [0], [0]
    go = threading.Event()

    def worker():
        handle = slots.acquire()
        with lock:
            holding[0] += 1
            most[0] = max(most[0], holding[0])
        go.wait(DEADLINE)
        with lock:
            holding[0] -= 1
        slots.release(handle)

    threads = [threading.Thread(target=worker) for _n in range(5)]
    for thread in threads:
        thread.start()
    wait_for(lambda: holding[0] == 2, 'two workers hold a slot')
    # the other three wait while the two hold theirs
    time.sleep(0.5)
    assert most[0] == 2
    go.set()
    for thread in threads:
        thread.join(DEADLINE)
    assert most[0] == 2 and holding[0] == 0
    # every slot is free again
    held = [slots.acquire(), slots.acquire()]
    for handle in held:
        slots.release(handle)


HOLDER = ('import sys, time\n'
          'sys.path.insert(0, %r)\n'
          'from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._slots '
          'import EvalSlots\n'
          'EvalSlots(sys.argv[1], 1).acquire()\n'
          'print("held", flush=True)\n'
          'time.sleep(600)\n')


def test_a_slot_whose_holder_died_is_free_again(tmp_path):
    """A killed evaluator's task (SIGKILL, no cleanup) leaves no slot taken."""
    holder = subprocess.Popen([sys.executable, '-c', HOLDER % collections_path(),
                               str(tmp_path)], stdout=subprocess.PIPE,
                              universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        slots = EvalSlots(str(tmp_path), 1)
        got = []
        waiter = threading.Thread(target=lambda: got.append(slots.acquire()))
        waiter.daemon = True
        waiter.start()
        time.sleep(0.5)
        assert not got, 'the one slot is held by the other process'
        os.kill(holder.pid, signal.SIGKILL)
        waiter.join(DEADLINE)
        assert got, 'the slot was freed with its holder'
        slots.release(got[0])
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def test_a_slot_held_forever_is_waited_for_within_a_bound(tmp_path):
    """Another process holds the job's one slot and never lets go: an
    evaluator waits at most its bound, then gives up saying which slots,
    where, and what to do; the holder keeps its slot."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._slots import (
        SlotWaitTimeout)
    holder = subprocess.Popen([sys.executable, '-c', HOLDER % collections_path(),
                               str(tmp_path)], stdout=subprocess.PIPE,
                              universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        started = time.monotonic()
        with pytest.raises(SlotWaitTimeout) as raised:
            EvalSlots(str(tmp_path), 1).acquire(timeout=1)
        message = u'%s' % raised.value
        assert time.monotonic() - started < 10
        assert message.startswith("waited 1 s for one of the job's 1 evaluator slots"), message
        assert str(tmp_path) in message and 'end the run and start it again' in message
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
