"""Every wait of the batch machinery has a bound (plugin_utils/task/_waits.py):
against a real process holding a real flock and never letting go, a batch
process that hangs (it holds its ``.running`` lock and never answers, its
doorbell never rung) or dies, each wait gives up at its bound with a message
that names the host, and says what to do. Each wait runs in a thread joined
with a deadline: without its bound the thread would still wait."""

import os
import subprocess
import sys
import threading
import time

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import Hung, named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _run, _play_batch, _waits)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)
# holders: LockHolders started by a test, stopped after it (a fixture)
from tests.unit.plugins.plugin_utils.task.lock_holders import (  # noqa: F401,E402  pylint: disable=unused-import
    holders)

# how long a test waits for a bounded wait to end (its bound is a second or less)
DEADLINE = 30


def serving(server):
    """Mark ``server`` served by the run's process whose ``.running`` a
    LockHolder holds (its token, and the stem's mark with it)."""
    for path in (server.run.alive_path, server.alive_path):
        with open(path, 'w') as handle:
            handle.write('held')


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


def test_the_plays_record_of_its_batches_is_waited_for_at_most_its_bound(
        tmp_path, holders, monkeypatch):
    monkeypatch.setattr(_play_batch, 'RECORD_LOCK_WAIT', 0.5)
    folder = os.path.join(_run.batch_folder(str(tmp_path)),
                          'members-%s.d' % _run.short_digest('play'))
    holders(folder + '.lock')
    error, _value, took = ended(lambda: _run.task_batch(
        str(tmp_path), 'play', {'inventory_hostname': 'h1', 'ansible_play_batch': ['h1', 'h2']}))
    assert isinstance(error, _waits.LockWaitTimeout) and took < 10, error
    assert str(error).startswith(
        "h1: waited 0.5s for the lock of the play's record of its batches"), error


def test_a_servers_lock_held_forever_fails_the_host_that_asks(tmp_path, holders, monkeypatch):
    """The lock a host takes to ask its batch server (and start its
    process): SERVER_LOCK_WAIT, then the host fails naming it and the phase."""
    monkeypatch.setattr(_waits, 'SERVER_LOCK_WAIT', 0.5)
    for host, kind in (('h1', 'eval'), ('h2', 'build')):
        server = BatchServer(str(tmp_path), kind, 'k-' + kind)
        holders(server.lock_path)
        error, _value, took = ended(lambda: server.request(host, 'r', named(lambda r, put: None)))
        assert isinstance(error, _waits.LockWaitTimeout) and took < 10, error
        assert str(error).startswith(
            "%s: waited 0.5s for the lock of the %s batch's process" % (host, kind)), error


def test_a_batch_process_that_hangs_fails_its_hosts_at_the_answer_bound(
        tmp_path, holders, monkeypatch):
    """A process holds the server's ``.running`` lock (as the serving
    process does) and never writes the host's answer nor rings its
    doorbell: the host gives up at ANSWER_WAIT, naming itself, the phase
    and the log."""
    monkeypatch.setattr(_waits, 'ANSWER_WAIT', 1.0)
    server = BatchServer(str(tmp_path), 'eval', 'k3')
    holders(server.process.running_path)
    serving(server)
    with open(server.process.log_path, 'w') as handle:
        handle.write('evaluating h1\n')
    error, _value, took = ended(lambda: server.answer('h1', 'r1', named(lambda r, put: None)))
    assert isinstance(error, BatchError) and 1.0 <= took < 10, error
    text = str(error)
    assert text.startswith("no answer for h1 from the eval batch's process after 1s"), text
    assert server.process.log_path in text and 'evaluating h1' in text
    assert 'a larger time limit of the eval phase' in text


def test_a_batch_process_that_dies_is_noticed_long_before_the_bound(tmp_path, holders):
    """The holder of ``.running`` is killed while the host waits with a
    bound of ten minutes: the host learns it within a look (SAFETY)."""
    server = BatchServer(str(tmp_path), 'eval', 'k4')
    holder = holders(server.process.running_path)
    serving(server)
    killer = subprocess.Popen(['sh', '-c', 'sleep 0.5; kill -9 %d' % holder.proc.pid])
    try:
        error, _value, took = ended(
            lambda: server.answer('h1', 'r1', named(lambda r, put: None), timeout=600))
    finally:
        killer.wait()
    assert isinstance(error, BatchError) and took < 10, (error, took)
    assert str(error).startswith('h1: the batch\'s work stopped before answering this host')


def test_a_server_whose_wave_hangs_fails_its_host_at_the_bound(tmp_path, monkeypatch):
    """A real serving process whose wave never ends (a hung build): the
    host's wait, counted once over the processes it may start, gives up
    at ANSWER_WAIT. The serving process is stopped by its pid afterwards."""
    monkeypatch.setattr(_waits, 'ANSWER_WAIT', 1.0)
    hangs = Hung(tmp_path)
    server = BatchServer(str(tmp_path), 'build', 'k5')
    try:
        server.request('h1', 'r1', named(hangs))
        error, _value, took = ended(lambda: server.answer('h1', 'r1', named(hangs)))
    finally:
        hangs.stop()
    assert isinstance(error, BatchError) and took < 10, error
    assert str(error).startswith("no answer for h1 from the build batch's process after 1s")


def test_a_lock_released_within_the_bound_is_taken(tmp_path, holders):
    """A server's lock held a moment (a host asking, the server taking the
    requests) is taken once it is free, well within its bound."""
    path = str(tmp_path / 'k.lock')
    holder = holders(path)
    # the holder is stopped a moment after the wait began
    stopper = subprocess.Popen(['sh', '-c', 'sleep 0.3; kill %d' % holder.proc.pid])
    try:
        error, _value, took = ended(lambda: _held_once(path))
    finally:
        stopper.wait()
    assert error is None and 0.2 < took < 10, (error, took)


def _held_once(path):
    with _waits.held(path, 10, _waits.server_lock('h1', 'publish')):
        return True
