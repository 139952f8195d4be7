"""Every wait of the batch machinery has a bound (plugin_utils/task/_waits.py):
against a real process holding a real flock and never letting go, a batch
process that hangs (it holds its ``.running`` lock and never answers, its
doorbell never rung) or dies, each wait gives up at its bound with a message
that names the host, and says what to do. Each wait runs in a thread joined
with a deadline: without its bound the thread would still wait."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _batch, _play_batch, _waits)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._service import (  # noqa: E402
    Service)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream import (  # noqa: E402
    Stream, StreamError)
# holders: LockHolders started by a test, stopped after it (a fixture)
from tests.unit.plugins.plugin_utils.task.test_batch_lock_wait import (  # noqa: F401,E402  pylint: disable=unused-import
    holders)

# how long a test waits for a bounded wait to end (its bound is a second or less)
DEADLINE = 30


def ended(call):
    """(the exception ``call()`` raised or None, its value, seconds taken),
    or a failed test when it still waits after DEADLINE."""
    out = {}

    def run():
        try:
            out['value'] = call()
        except Exception as exc:  # pylint: disable=broad-except
            out['error'] = exc
    started = time.monotonic()
    thread = threading.Thread(target=run)
    thread.daemon = True
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), 'still waiting after %ss: the wait has no bound' % DEADLINE
    return out.get('error'), out.get('value'), time.monotonic() - started


def test_a_batch_lock_held_forever_fails_the_waiting_host_at_the_default_bound(
        tmp_path, holders, monkeypatch):
    """Publish and channel set no bound of their own: BATCH_LOCK_WAIT."""
    monkeypatch.setattr(_waits, 'BATCH_LOCK_WAIT', 0.5)
    batch = _batch.Batch(str(tmp_path), 'publish', 'key')
    holders(batch.lock_path)
    error, _value, took = ended(lambda: batch.results(lambda: pytest.fail('computed'), 'h2'))
    assert isinstance(error, _waits.LockWaitTimeout) and error.seconds == 0.5, error
    assert 0.5 <= took < 10
    text = str(error)
    assert text.startswith("h2: waited 0.5s for the lock of the play batch's publish work"), text
    assert batch.lock_path in text
    assert 'look for the host of this batch whose task still runs' in text


def test_the_plays_record_of_its_batches_is_waited_for_at_most_its_bound(
        tmp_path, holders, monkeypatch):
    monkeypatch.setattr(_play_batch, 'RECORD_LOCK_WAIT', 0.5)
    folder = os.path.join(_batch.batch_folder(str(tmp_path)),
                          'members-%s.d' % _batch.short_digest('play'))
    holders(folder + '.lock')
    error, _value, took = ended(lambda: _batch.task_batch(
        str(tmp_path), 'play', {'inventory_hostname': 'h1', 'ansible_play_batch': ['h1', 'h2']}))
    assert isinstance(error, _waits.LockWaitTimeout) and took < 10, error
    assert str(error).startswith(
        "h1: waited 0.5s for the lock of the play's record of its batches"), error


def test_a_streams_lock_held_forever_fails_the_host_that_starts_or_asks(
        tmp_path, holders, monkeypatch):
    """The lock a host takes to start a batch's process (eval) or to ask
    its service (build): STREAM_LOCK_WAIT, then the host fails naming it."""
    monkeypatch.setattr(_waits, 'STREAM_LOCK_WAIT', 0.5)
    stream = Stream(str(tmp_path), 'eval', 'k1')
    holders(stream.lock_path)
    error, _value, took = ended(lambda: stream.start(lambda put: {}, host='h1'))
    assert isinstance(error, _waits.LockWaitTimeout) and took < 10, error
    assert str(error).startswith("h1: waited 0.5s for the lock of the eval batch's process")
    service = Service(str(tmp_path), 'build', 'k2')
    holders(service.lock_path)
    error, _value, _took = ended(lambda: service.request('h2', 'r', lambda r, put: None))
    assert isinstance(error, _waits.LockWaitTimeout), error
    assert str(error).startswith("h2: waited 0.5s for the lock of the build batch's process")


def test_a_batch_process_that_hangs_fails_its_hosts_at_the_answer_bound(
        tmp_path, holders, monkeypatch):
    """A process holds the batch's ``.running`` lock (as the detached work
    does) and never writes the host's entry nor rings its doorbell: the
    host gives up at ANSWER_WAIT, naming itself, the phase and the log."""
    monkeypatch.setattr(_waits, 'ANSWER_WAIT', 1.0)
    stream = Stream(str(tmp_path), 'eval', 'k3')
    holders(stream.running_path)
    with open(stream.log_path, 'w') as handle:
        handle.write('evaluating h1\n')
    error, _value, took = ended(lambda: stream.entry('h1'))
    assert isinstance(error, StreamError) and 1.0 <= took < 10, error
    text = str(error)
    assert text.startswith("no answer for h1 from the eval batch's process after 1s"), text
    assert stream.log_path in text and 'evaluating h1' in text
    assert 'a larger time limit of the eval phase' in text


def test_a_batch_process_that_dies_is_noticed_long_before_the_bound(tmp_path, holders):
    """The holder of ``.running`` is killed while the host waits with a
    bound of ten minutes: the host learns it within a look (SAFETY)."""
    stream = Stream(str(tmp_path), 'eval', 'k4')
    holder = holders(stream.running_path)
    killer = subprocess.Popen(['sh', '-c', 'sleep 0.5; kill -9 %d' % holder.proc.pid])
    try:
        error, _value, took = ended(lambda: stream.entry('h1', timeout=600))
    finally:
        killer.wait()
    assert isinstance(error, StreamError) and took < 10, (error, took)
    assert 'stopped before answering this host' in str(error)


def test_a_service_whose_wave_hangs_fails_its_host_at_the_bound(tmp_path, monkeypatch):
    """A real serving process whose wave never ends (a hung build): the
    host's wait, counted once over the processes it may start, gives up
    at ANSWER_WAIT. The serving process is stopped by its pid afterwards."""
    monkeypatch.setattr(_waits, 'ANSWER_WAIT', 1.0)
    pid_file = str(tmp_path / 'wave.pid')

    def hangs(requests, put):
        with open(pid_file, 'w') as handle:
            handle.write(str(os.getpid()))
        time.sleep(3600)

    service = Service(str(tmp_path), 'build', 'k5')
    try:
        service.request('h1', 'r1', hangs)
        error, _value, took = ended(lambda: service.answer('h1', hangs))
    finally:
        deadline = time.monotonic() + 20
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(pid_file) as handle:
            os.kill(int(handle.read()), signal.SIGKILL)
    assert isinstance(error, StreamError) and took < 10, error
    assert str(error).startswith("no answer for h1 from the build batch's process after 1s")
