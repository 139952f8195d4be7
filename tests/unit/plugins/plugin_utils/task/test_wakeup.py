"""A host waiting for its answer from its batch server sleeps on its
doorbell (a FIFO) and wakes when the server's detached process writes the
answer or ends; real processes, real FIFOs. SAFETY (the look a host takes
anyway) is set far beyond each test's deadline, so only a ring can make
these pass in time."""

import os
import resource
import stat
import sys
import threading
import time

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _stem_serving, _wakeup)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)

DEADLINE = 60.0


@pytest.fixture
def no_safety_look(monkeypatch):
    monkeypatch.setattr(_wakeup, 'SAFETY', 600.0)


def _gate(path):
    """Work that waits for a file the test creates (the detached process
    runs in another process: no threading.Event crosses the fork)."""
    while not os.path.exists(path):
        time.sleep(0.01)


def _ask(server, hosts, serve):
    """Every host asks (its request: its name), one wave for them all."""
    for host in hosts:
        server.request(host, host, serve, expected=hosts)


def _waiters(server, hosts, serve, timeout):
    got, threads = {}, []

    def wait(host):
        try:
            got[host] = server.answer(host, host, serve, timeout=timeout)[0]
        except BatchError as exc:
            got[host] = exc

    for host in hosts:
        thread = threading.Thread(target=wait, args=(host,))
        thread.start()
        threads.append(thread)
    return got, threads


def _is_fifo(path):
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _bells_made(server, hosts):
    """Each waiter has made its doorbell (so the test rings after that)."""
    bells = [_wakeup.bell_path(server.answer_path(h, h)) for h in hosts]
    end = time.monotonic() + DEADLINE
    while not all(_is_fifo(bell) for bell in bells):
        if time.monotonic() > end:
            raise AssertionError('the waiters made no doorbells')
        time.sleep(0.01)


def test_each_host_wakes_when_its_own_answer_is_written(tmp_path, no_safety_look):
    """The wave answers five of six hosts, then holds until the test lets
    it end: each of the five wakes on its own answer while the process
    still runs; the sixth learns the wave forgot it when the wave ends."""
    server = BatchServer(str(tmp_path), 'eval', 'k1')
    gate, end = str(tmp_path / 'go'), str(tmp_path / 'end')
    hosts = ['h%d' % n for n in range(1, 7)]

    @named
    def serve(requests, put):
        _gate(gate)
        for host in reversed(hosts[1:]):
            put(host, {'answer': host})
            time.sleep(0.05)
        _gate(end)

    _ask(server, hosts, serve)
    got, threads = _waiters(server, hosts, serve, timeout=DEADLINE)
    _bells_made(server, hosts)
    started = time.monotonic()
    open(gate, 'w').close()
    for thread in threads[1:]:
        thread.join(DEADLINE + 10)
    elapsed = time.monotonic() - started
    open(end, 'w').close()
    threads[0].join(DEADLINE + 10)
    # every host answered got its own; the one the work forgot is told so
    assert dict((h, got[h]) for h in hosts[1:]) == dict((h, {'answer': h}) for h in hosts[1:])
    assert got['h1']['error'].startswith(_stem_serving.UNANSWERED % 'eval'), got['h1']
    # rung, not found by a look: the safety look is 600 s away
    assert elapsed < DEADLINE / 2
    # each waiter removed its doorbell
    assert not [n for n in os.listdir(server.answers.folder) if n.endswith('.wake')]


def test_a_batch_process_that_dies_is_noticed_by_the_safety_look(tmp_path, monkeypatch):
    monkeypatch.setattr(_wakeup, 'SAFETY', 0.2)
    server = BatchServer(str(tmp_path), 'eval', 'k2')
    gate = str(tmp_path / 'go')

    @named
    def serve(requests, put):
        put('h1', {'answer': 'h1'})
        _gate(gate)
        # killed mid-work: no answer, no ring
        os._exit(9)  # pylint: disable=protected-access

    _ask(server, ['h1', 'h2'], serve)
    got, threads = _waiters(server, ['h1', 'h2'], serve, timeout=DEADLINE)
    _bells_made(server, ['h2'])
    open(gate, 'w').close()
    for thread in threads:
        thread.join(DEADLINE + 10)
    assert got['h1'] == {'answer': 'h1'}
    assert isinstance(got['h2'], BatchError)
    assert 'stopped before answering' in str(got['h2'])


def test_without_a_fifo_the_host_looks_by_the_clock(tmp_path, no_safety_look):
    server = BatchServer(str(tmp_path), 'eval', 'k3')
    gate = str(tmp_path / 'go')
    # something that is not a FIFO where h1's doorbell would be
    os.mkdir(_wakeup.bell_path(server.answer_path('h1', 'h1')))

    @named
    def serve(requests, put):
        _gate(gate)
        put('h1', {'answer': 'h1'})

    _ask(server, ['h1'], serve)
    got, threads = _waiters(server, ['h1'], serve, timeout=DEADLINE)
    open(gate, 'w').close()
    threads[0].join(DEADLINE + 10)
    assert got['h1'] == {'answer': 'h1'}


def test_a_ring_nobody_waits_for_leaves_nothing_behind(tmp_path):
    entry = str(tmp_path / 'abc.json')
    _wakeup.ring(entry)
    assert os.listdir(str(tmp_path)) == []
    with _wakeup.Wakeup(entry) as bell:
        assert bell.fd is not None
        assert not bell.wait(0)
        _wakeup.ring(entry)
        _wakeup.ring(entry)
        assert bell.wait(0)
        # both rings drained: the next wait sleeps again
        assert not bell.wait(0)
    assert os.listdir(str(tmp_path)) == []


def test_a_bell_past_select_s_limit_still_rings(tmp_path):
    """A worker of an ansible-playbook with a thousand forks inherits that
    many descriptors: its bell's is past select()'s 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1600:
        pytest.skip('the hard limit of open files is below 1600')
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1600), hard))
    entry = str(tmp_path / 'abc.json')
    try:
        with _wakeup.Wakeup(entry) as bell:
            os.dup2(bell.fd, 1500)
            os.close(bell.fd)
            bell.fd = 1500
            _wakeup.ring(entry)
            assert bell.wait(5)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_bell_that_cannot_be_waited_on_gives_way_to_the_clock(tmp_path):
    with _wakeup.Wakeup(str(tmp_path / 'abc.json')) as bell:
        broken = bell.fd
        os.close(broken)
        # the descriptor is gone: waiting must not return at once forever
        assert not bell.wait(0.01)
        assert bell.fd is None
