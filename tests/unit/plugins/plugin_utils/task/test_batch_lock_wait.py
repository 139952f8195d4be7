"""A bounded wait for a batch's lock (plugin_utils/task/_batch.py
``lock_wait``): against a real flock that another process holds and never
releases, the wait gives up at its bound with ``LockWaitTimeout`` and
computes nothing, and once the holder is stopped (by its pid) the lock is
taken at once; a lock released within the bound is taken."""

import subprocess
import sys
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _batch  # noqa: E402

# the holder: takes the lock, says so, and sleeps until it is killed
_HOLD = ('import fcntl, sys, time\n'
         'handle = open(sys.argv[1], "a")\n'
         'fcntl.flock(handle, fcntl.LOCK_EX)\n'
         'print("held", flush=True)\n'
         'time.sleep(3600)\n')


class LockHolder:
    """A real process holding an exclusive flock on ``path`` until ``stop``
    (its pid killed)."""

    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, '-c', _HOLD, str(path)],
                                     stdout=subprocess.PIPE, universal_newlines=True)
        assert self.proc.stdout.readline().strip() == 'held'

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def holders():
    """Start ``LockHolder``s with ``holders(path)``; all stopped after the test."""
    started = []

    def hold(path):
        started.append(LockHolder(path))
        return started[-1]
    yield hold
    for holder in started:
        holder.stop()


def test_a_bounded_wait_gives_up_on_a_lock_held_forever(tmp_path, holders):
    calls = []

    def compute():
        calls.append(1)
        return {'hosts': {'h1': {'x': 1}}}

    batch = _batch.Batch(str(tmp_path), 'copy', 'key')
    holder = holders(batch.lock_path)
    started = time.monotonic()
    with pytest.raises(_batch.LockWaitTimeout) as raised:
        with _batch.lock_wait(0.5):
            batch.results(compute)
    waited = time.monotonic() - started
    assert 0.5 <= waited < 5, waited
    assert raised.value.seconds == 0.5 and 'waited 0.5s for' in str(raised.value)
    assert calls == []
    holder.stop()
    with _batch.lock_wait(0.5):
        data, here = batch.results(compute)
    assert here is True and data['hosts']['h1'] == {'x': 1} and calls == [1]


def test_a_lock_released_within_the_bound_is_taken(tmp_path, holders):
    batch = _batch.Batch(str(tmp_path), 'copy', 'key')
    holder = holders(batch.lock_path)
    # the holder is stopped a moment after the wait began
    stopper = subprocess.Popen(['sh', '-c', 'sleep 0.3; kill %d' % holder.proc.pid])
    try:
        with _batch.lock_wait(10):
            data, here = batch.results(lambda: {'hosts': {'h1': {'x': 2}}})
    finally:
        stopper.wait()
    assert here is True and data['hosts']['h1'] == {'x': 2}
