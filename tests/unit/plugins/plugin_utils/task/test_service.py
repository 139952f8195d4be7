"""task/_service.Service for real: a forked serving process, real files."""

import os
import signal
import sys
import threading
import time

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _service, _stream  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (  # noqa: E402
    _entry_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream import (  # noqa: E402
    GATHER_QUIET, GATHER_STALL, Service)


def echo(requests, put):
    """A wave that answers each host with its request."""
    for host, request in requests.items():
        put(host, {'request': request, 'answer': request})


def test_a_hosts_next_request_gets_its_own_answer_not_the_last_one(tmp_path):
    """The same task asks again for a host (a loop's next item, a host
    whose own request follows the batch's): the answer its previous
    request left must not be taken for this one's, while another host's
    answer stays."""
    service = Service(str(tmp_path), 'eval-own', 'k')
    service.request('h1', 'first', echo)
    service.request('h2', 'other', echo)
    assert service.answer('h1', echo, timeout=60)['answer'] == 'first'
    assert service.answer('h2', echo, timeout=60)['answer'] == 'other'
    again = Service(str(tmp_path), 'eval-own', 'k')
    again.request('h1', 'second', echo)
    assert again.answer('h1', echo, timeout=60)['answer'] == 'second'
    assert again.answer('h2', echo, timeout=60)['answer'] == 'other'


def members(requests, put):
    """A wave that answers each host with the hosts of its wave."""
    for host in requests:
        put(host, {'wave': sorted(requests)})


def test_the_hosts_of_a_batch_share_one_wave_however_far_apart_they_ask(tmp_path):
    """A loaded controller forks a task's workers more than GATHER_QUIET
    apart: the hosts expected still share one wave (one nix build)."""
    service = Service(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'h3']
    service.request('h1', 'a', members, expected=batch)
    time.sleep(GATHER_QUIET * 3)
    service.request('h2', 'b', members, expected=batch)
    time.sleep(GATHER_QUIET * 3)
    service.request('h3', 'c', members, expected=batch)
    for host in batch:
        assert service.answer(host, members, timeout=60)['wave'] == batch


def test_a_batch_that_trickles_in_for_seconds_shares_one_wave(tmp_path):
    """Eval streams its answers and a loaded controller forks workers
    slowly: the hosts ask over more than a second, under GATHER_STALL
    between two. They still share one wave (it failed in CI at load 10,
    when the first wave waited half a second in all)."""
    service = Service(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'h3', 'h4', 'h5']
    for host in batch:
        service.request(host, host, members, expected=batch)
        time.sleep(GATHER_STALL * 0.4)
    for host in batch:
        assert service.answer(host, members, timeout=60)['wave'] == batch


def test_only_the_host_that_starts_the_process_lists_the_hosts_expected(tmp_path):
    """``expected`` as a function: the names of a batch of 1,000 are made by
    the one worker that starts the serving process, not by every worker."""
    service = Service(str(tmp_path), 'build', 'k')
    batch, listed = ['h1', 'h2'], []

    def expected():
        listed.append(1)
        return batch
    service.request('h1', 'a', members, expected=expected)
    service.request('h2', 'b', members, expected=expected)
    for host in batch:
        assert service.answer(host, members, timeout=60)['wave'] == batch
    assert listed == [1]


def test_a_host_that_will_not_ask_holds_no_wave(tmp_path, monkeypatch):
    """A host built on itself says so: the wave of the others starts
    without it (were it waited for, the gather, stretched to a minute
    here, would outlast the answer's 20 s)."""
    monkeypatch.setattr(_service, 'GATHER_MAX', 60)
    service = Service(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'on-itself']
    service.decline('on-itself')
    service.request('h1', 'a', members, expected=batch)
    service.request('h2', 'b', members, expected=batch)
    for host in ('h1', 'h2'):
        assert service.answer(host, members, timeout=20)['wave'] == ['h1', 'h2']


def test_a_host_that_never_asks_holds_the_first_wave_only_so_long(tmp_path):
    """An expected host that fails before it can ask or decline holds the
    first wave at most GATHER_MAX; a request that comes later is served by
    a wave of its own."""
    service = Service(str(tmp_path), 'build', 'k')
    service.request('h1', 'a', members, expected=['h1', 'gone'])
    assert service.answer('h1', members, timeout=60)['wave'] == ['h1']
    service.request('late', 'b', members)
    assert service.answer('late', members, timeout=60)['wave'] == ['late']


def test_a_host_of_the_batch_that_comes_after_a_wave_finds_the_process_serving(tmp_path):
    """On host_pinned the hosts reach the build one by one: a host of the
    batch that asks after the last wave ended is served by the same
    process, not by a new one (two forks of a worker, whose cost grows
    with ansible-playbook's heap)."""
    service = Service(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2']
    assert service.request('h1', 'a', members, expected=batch)
    assert service.answer('h1', members, timeout=60)['wave'] == ['h1']
    # a process that ends after its last wave (the old rule) takes one look
    # (_LOOKS[1], 0.05 s) to end: after 2 s it would be gone even on a
    # loaded machine, and this one must still be serving
    time.sleep(2)
    assert os.path.exists(service.alive_path) and service._running()  # pylint: disable=protected-access
    assert not service.request('h2', 'b', members, expected=batch)
    assert service.answer('h2', members, timeout=60)['wave'] == ['h2']


def test_a_process_waits_for_a_host_that_never_asks_only_so_long(tmp_path, monkeypatch):
    """An expected host that never asks (it failed before its build) keeps
    the process no longer than LINGER after its last wave."""
    monkeypatch.setattr(_service, 'LINGER', 0.5)
    service = Service(str(tmp_path), 'build', 'k')
    service.request('h1', 'a', members, expected=['h1', 'gone'])
    assert service.answer('h1', members, timeout=60)['wave'] == ['h1']
    deadline = time.monotonic() + 20
    while os.path.exists(service.alive_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(service.alive_path)


def test_a_later_process_of_the_batch_waits_for_nobody_already_settled(tmp_path, monkeypatch):
    """A host asks again after the batch's process ended (a loop's next
    item, a host whose evaluation came late): the hosts that asked or
    declined before are not waited for again (the gather, stretched to a
    minute, would outlast the answer's 20 s)."""
    monkeypatch.setattr(_service, 'GATHER_MAX', 60)
    service = Service(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'on-itself']
    service.decline('on-itself')
    service.request('h1', 'a', members, expected=batch)
    service.request('h2', 'b', members, expected=batch)
    assert service.answer('h1', members, timeout=20)['wave'] == ['h1', 'h2']
    deadline = time.monotonic() + 20
    while os.path.exists(service.alive_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(service.alive_path)
    service.request('h1', 'again', members, expected=batch)
    assert service.answer('h1', members, timeout=20)['wave'] == ['h1']


def test_a_request_the_killed_process_never_took_is_served_by_another(tmp_path):
    """The serving process is killed (out of memory, a kill -9) while a
    host's request waits untaken: it leaves its mark that a process
    serves, but none does. The host starts another and gets its answer
    (it spun forever before, its timeout unheeded)."""
    service = Service(str(tmp_path), 'build', 'k5')
    # h2's request file (named by the digest of its name, as every entry is)
    second = _entry_path(service.requests_dir, 'h2')
    started = str(tmp_path / 'wave-started')

    def killed(requests, put):
        # dies with h2's request written and not yet taken (one slot: the
        # process takes no request while this wave runs)
        open(started, 'w').close()
        deadline = time.monotonic() + 30
        while not os.path.exists(second) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

    service.request('h1', 'a', killed, slots=1)
    deadline = time.monotonic() + 30
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not service.request('h2', 'b', killed, slots=1)   # a process serves, it says
    wait = threading.Thread(target=lambda: found.append(service.answer('h2', echo, timeout=10)))
    found = []
    wait.daemon = True
    wait.start()
    wait.join(60)
    assert not wait.is_alive(), 'h2 still waits on a process that is gone'
    assert found == [{'request': 'b', 'answer': 'b'}]
    # the killed process's own host is told, not left waiting
    with pytest.raises(_stream.StreamError):
        service.answer('h1', echo, timeout=10)
