"""task/_batch_server.BatchServer for real: a forked serving process, real
files."""

import os
import signal
import sys
import threading
import time

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _stem_serving  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (  # noqa: E402
    entry_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stem_serving import (  # noqa: E402
    GATHER_QUIET, GATHER_STALL)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)


# the requests of the hosts, where a test asks for each the same way
REQUESTS = {'h1': 'a', 'h2': 'b', 'h3': 'c'}


def reply(server, host, request, serve, **kwargs):
    """``host``'s answer to ``request`` (the entry alone)."""
    return server.answer(host, request, serve, **kwargs)[0]


@named
def echo(requests, put):
    """A wave that answers each host with its request."""
    for host, request in requests.items():
        put(host, {'request': request, 'answer': request})


def test_a_hosts_next_request_gets_its_own_answer_not_the_last_one(tmp_path):
    """The same task asks again for a host (a loop's next item, a host
    whose own request follows the batch's): the answer its previous
    request left must not be taken for this one's, while another host's
    answer stays."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    server.request('h1', 'first', echo)
    server.request('h2', 'other', echo)
    assert reply(server, 'h1', 'first', echo, timeout=60)['answer'] == 'first'
    assert reply(server, 'h2', 'other', echo, timeout=60)['answer'] == 'other'
    again = BatchServer(str(tmp_path), 'eval', 'k')
    again.request('h1', 'second', echo)
    assert reply(again, 'h1', 'second', echo, timeout=60)['answer'] == 'second'
    assert reply(again, 'h2', 'other', echo, timeout=60)['answer'] == 'other'


@named
def members(requests, put):
    """A wave that answers each host with the hosts of its wave."""
    for host in requests:
        put(host, {'wave': sorted(requests)})


def test_the_hosts_of_a_batch_share_one_wave_however_far_apart_they_ask(tmp_path):
    """A loaded controller forks a task's workers more than GATHER_QUIET
    apart: the hosts expected still share one wave (one nix build)."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'h3']
    server.request('h1', 'a', members, expected=batch)
    time.sleep(GATHER_QUIET * 3)
    server.request('h2', 'b', members, expected=batch)
    time.sleep(GATHER_QUIET * 3)
    server.request('h3', 'c', members, expected=batch)
    for host in batch:
        assert reply(server, host, REQUESTS[host], members, timeout=60)['wave'] == batch


def test_a_batch_that_trickles_in_for_seconds_shares_one_wave(tmp_path):
    """Eval streams its answers and a loaded controller forks workers
    slowly: the hosts ask over more than a second, under GATHER_STALL
    between two. They still share one wave (it failed in CI at load 10,
    when the first wave waited half a second in all)."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'h3', 'h4', 'h5']
    for host in batch:
        server.request(host, host, members, expected=batch)
        time.sleep(GATHER_STALL * 0.4)
    for host in batch:
        assert reply(server, host, host, members, timeout=60)['wave'] == batch


def test_only_the_host_that_starts_the_process_lists_the_hosts_expected(tmp_path):
    """``expected`` as a function: the names of a batch of 1,000 are made by
    the one worker that starts the serving process, not by every worker."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    batch, listed = ['h1', 'h2'], []

    def expected():
        listed.append(1)
        return batch
    server.request('h1', 'a', members, expected=expected)
    server.request('h2', 'b', members, expected=expected)
    for host in batch:
        assert reply(server, host, REQUESTS[host], members, timeout=60)['wave'] == batch
    assert listed == [1]


def asked_beside_one_that_declines(tmp_path):
    """(a build server, its batch): h1 and h2 asked, ``on-itself`` declined."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2', 'on-itself']
    server.decline('on-itself')
    server.request('h1', 'a', members, expected=batch)
    server.request('h2', 'b', members, expected=batch)
    return server, batch


def test_a_host_that_will_not_ask_holds_no_wave(tmp_path, monkeypatch):
    """A host built on itself says so: the wave of the others starts
    without it (were it waited for, the gather, stretched to a minute
    here, would outlast the answer's 20 s)."""
    monkeypatch.setattr(_stem_serving, 'GATHER_MAX', 60)
    server, _batch = asked_beside_one_that_declines(tmp_path)
    for host in ('h1', 'h2'):
        assert reply(server, host, REQUESTS[host], members, timeout=20)['wave'] == ['h1', 'h2']


def test_a_host_that_never_asks_holds_the_first_wave_only_so_long(tmp_path):
    """An expected host that fails before it can ask or decline holds the
    first wave at most GATHER_MAX; a request that comes later is served by
    a wave of its own."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    server.request('h1', 'a', members, expected=['h1', 'gone'])
    assert reply(server, 'h1', 'a', members, timeout=60)['wave'] == ['h1']
    server.request('late', 'b', members)
    assert reply(server, 'late', 'b', members, timeout=60)['wave'] == ['late']


def test_a_host_of_the_batch_that_comes_after_a_wave_finds_the_process_serving(tmp_path):
    """On host_pinned the hosts reach the build one by one: a host of the
    batch that asks after the last wave ended is served by the same
    process, not by a new one (two forks of a worker, whose cost grows
    with ansible-playbook's heap)."""
    server = BatchServer(str(tmp_path), 'build', 'k')
    batch = ['h1', 'h2']
    assert server.request('h1', 'a', members, expected=batch)
    assert reply(server, 'h1', 'a', members, timeout=60)['wave'] == ['h1']
    # a process that ends after its last wave (the old rule) takes one look
    # (LOOKS[1], 0.05 s) to end: after 2 s it would be gone even on a
    # loaded machine, and this one must still be serving
    time.sleep(2)
    assert os.path.exists(server.alive_path) and server.process.running()
    assert not server.request('h2', 'b', members, expected=batch)
    assert reply(server, 'h2', 'b', members, timeout=60)['wave'] == ['h2']


def test_a_process_waits_for_a_host_that_never_asks_only_so_long(tmp_path, monkeypatch):
    """An expected host that never asks (it failed before its build) keeps
    the process no longer than LINGER after its last wave."""
    monkeypatch.setattr(_stem_serving, 'LINGER', 0.5)
    server = BatchServer(str(tmp_path), 'build', 'k')
    server.request('h1', 'a', members, expected=['h1', 'gone'])
    assert reply(server, 'h1', 'a', members, timeout=60)['wave'] == ['h1']
    deadline = time.monotonic() + 20
    while os.path.exists(server.alive_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(server.alive_path)


def test_a_later_process_of_the_batch_waits_for_nobody_already_settled(tmp_path, monkeypatch):
    """A host asks again after the batch's process ended (a loop's next
    item, a host whose evaluation came late): the hosts that asked or
    declined before are not waited for again (the gather, stretched to a
    minute, would outlast the answer's 20 s)."""
    monkeypatch.setattr(_stem_serving, 'GATHER_MAX', 60)
    server, batch = asked_beside_one_that_declines(tmp_path)
    assert reply(server, 'h1', 'a', members, timeout=20)['wave'] == ['h1', 'h2']
    deadline = time.monotonic() + 20
    while os.path.exists(server.alive_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(server.alive_path)
    server.request('h1', 'again', members, expected=batch)
    assert reply(server, 'h1', 'again', members, timeout=20)['wave'] == ['h1']


def test_a_request_the_killed_process_never_took_is_served_by_another(tmp_path):
    """The serving process is killed (out of memory, a kill -9) while a
    host's request waits untaken: it leaves its mark that a process
    serves, but none does. The host starts another and gets its answer
    (it spun forever before, its timeout unheeded)."""
    server = BatchServer(str(tmp_path), 'build', 'k5')
    # h2's request file (named by the digest of its name, as every entry is)
    second = entry_path(server.requests.folder, 'h2')
    started = str(tmp_path / 'wave-started')

    @named
    def killed(requests, put):
        if os.path.exists(started):
            # the process started after: the server's one serve, which
            # answers this time
            for host, request in requests.items():
                put(host, {'request': request, 'answer': request})
            return
        # dies with h2's request written and not yet taken (one slot: the
        # process takes no request while this wave runs)
        open(started, 'w').close()
        deadline = time.monotonic() + 30
        while not os.path.exists(second) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

    server.request('h1', 'a', killed, waves_at_once=1)
    deadline = time.monotonic() + 30
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.request('h2', 'b', killed, waves_at_once=1)   # a process serves, it says
    wait = threading.Thread(target=lambda: found.append(reply(server, 'h2', 'b', killed,
                                                              timeout=10)))
    found = []
    wait.daemon = True
    wait.start()
    wait.join(60)
    assert not wait.is_alive(), 'h2 still waits on a process that is gone'
    assert found == [{'request': 'b', 'answer': 'b'}]
    # the killed process's own host is told, not left waiting
    with pytest.raises(BatchError):
        reply(server, 'h1', 'a', killed, timeout=10)


def logged(log):
    """A wave that answers each host with its request and the hosts of its
    wave, and writes the wave's hosts to the file ``log`` (the serving
    process is another process: a file is what a test can read)."""
    @named
    def serve(requests, put):
        with open(log, 'a') as handle:
            handle.write(' '.join(sorted(requests)) + '\n')
        for host, request in requests.items():
            put(host, {'answer': request, 'wave': sorted(requests)})
    return serve


def waves(log):
    with open(log) as handle:
        return [line.split() for line in handle.read().splitlines()]


def test_the_first_host_foresees_the_batch_and_the_others_read_their_answers(tmp_path):
    """With foresight the first wave serves the whole batch, the asking
    host's wave (it reports the figures); a host whose own request is the
    one foreseen reads that answer: no second wave, no second process."""
    log = str(tmp_path / 'waves')
    serve = logged(log)
    server = BatchServer(str(tmp_path), 'publish', 'k')
    assert server.request('h1', 'a', serve, expected=['h1'],
                          foresee=lambda: {'h1': 'a', 'h2': 'b', 'h3': 'c'})
    assert server.answer('h1', 'a', serve, timeout=60) == (
        {'answer': 'a', 'wave': ['h1', 'h2', 'h3']}, True)
    for host in ('h2', 'h3'):
        # its answer is there: it starts no process
        assert not server.request(host, REQUESTS[host], serve)
        assert server.answer(host, REQUESTS[host], serve, timeout=60) == (
            {'answer': REQUESTS[host], 'wave': ['h1', 'h2', 'h3']}, False)
    assert waves(log) == [['h1', 'h2', 'h3']]


def test_a_host_whose_request_differs_from_the_foreseen_one_is_served_its_own(tmp_path):
    """h2's arguments are templated otherwise than the first host foresaw:
    it is answered its own request, in a wave opened for it, never the
    foreseen answer; h3 still reads the batch's."""
    log = str(tmp_path / 'waves')
    serve = logged(log)
    server = BatchServer(str(tmp_path), 'publish', 'k')
    server.request('h1', 'a', serve, expected=['h1'],
                   foresee=lambda: {'h1': 'a', 'h2': 'b', 'h3': 'c'})
    assert server.answer('h1', 'a', serve, timeout=60)[0]['answer'] == 'a'
    server.request('h2', 'mine', serve)
    assert server.answer('h2', 'mine', serve, timeout=60) == (
        {'answer': 'mine', 'wave': ['h2']}, True)
    server.request('h3', 'c', serve)
    assert server.answer('h3', 'c', serve, timeout=60)[1] is False
    assert waves(log) == [['h1', 'h2', 'h3'], ['h2']]


def test_a_host_foreseen_while_the_first_wave_runs_waits_for_that_wave(tmp_path):
    """h2 asks while the batch's first wave (which holds its foreseen
    request) still runs: it waits for that answer, it is not asked again."""
    log = str(tmp_path / 'waves')
    started = str(tmp_path / 'started')

    @named
    def slow(requests, put):
        # each wave is logged as it starts: a second wave for h2 would be
        # there by the time h2 reads its answer
        with open(log, 'a') as handle:
            handle.write(' '.join(sorted(requests)) + '\n')
        open(started, 'w').close()
        time.sleep(1)
        for host, request in requests.items():
            put(host, {'answer': request, 'wave': sorted(requests)})
    server = BatchServer(str(tmp_path), 'closure', 'k')
    server.request('h1', 'a', slow, expected=['h1'], foresee=lambda: {'h2': 'b'})
    deadline = time.monotonic() + 30
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.request('h2', 'b', slow)
    assert reply(server, 'h2', 'b', slow, timeout=60)['wave'] == ['h1', 'h2']
    assert reply(server, 'h1', 'a', slow, timeout=60)['wave'] == ['h1', 'h2']
    assert waves(log) == [['h1', 'h2']]


def test_a_wave_that_raises_fails_each_of_its_hosts_and_none_waits(tmp_path):
    """The work raises (a Nix that cannot start): every host of the wave
    gets the error as its answer, at once."""
    @named
    def broken(requests, put):
        raise OSError('no such file: nix-store')
    server = BatchServer(str(tmp_path), 'publish', 'k')
    server.request('h1', 'a', broken, expected=['h1'], foresee=lambda: {'h2': 'b'})
    assert reply(server, 'h1', 'a', broken, timeout=60) == {'error': 'no such file: nix-store'}
    assert reply(server, 'h2', 'b', broken, timeout=60) == {'error': 'no such file: nix-store'}


def test_a_dead_server_fails_its_waiting_host_by_name(tmp_path):
    """The serving process dies with the host's request taken: the host
    learns it within seconds, its message naming it."""
    @named
    def dies(requests, put):
        os.kill(os.getpid(), signal.SIGKILL)
    server = BatchServer(str(tmp_path), 'serial', 'k')
    server.request('h1', None, dies, expected=['h1'], foresee=lambda: {'h2': None})
    start = time.monotonic()
    for host in ('h1', 'h2'):
        with pytest.raises(BatchError, match='^%s: ' % host):
            server.answer(host, None, dies, timeout=600)
    assert time.monotonic() - start < 30


def test_a_hosts_name_never_places_a_file_outside_the_batch_folder(tmp_path):
    """Inventory names come from a flake: ``../escape`` and ``a/b`` ask and
    are answered, their files named by digests inside the server's folders."""
    server = BatchServer(str(tmp_path), 'publish', 'k')
    names = ['../escape', 'a/b']
    server.request(names[0], 'x', echo, expected=names, foresee=lambda: {'a/b': 'y'})
    assert reply(server, '../escape', 'x', echo, timeout=60) == {'request': 'x', 'answer': 'x'}
    assert reply(server, 'a/b', 'y', echo, timeout=60) == {'request': 'y', 'answer': 'y'}
    stored = [f for f in os.listdir(server.answers.folder) if f.endswith('.json')]
    assert len(stored) == 2 and all(len(f) == 37 for f in stored), stored
    assert not os.path.exists(str(tmp_path / 'escape'))


def test_a_hosts_own_request_taken_with_its_foreseen_one_wins(tmp_path):
    """h2 asks its own request before the server took the one foreseen for
    it (both wait in one take, in whichever order the folder lists them):
    h2 is served its own."""
    log = str(tmp_path / 'waves')
    serve = logged(log)
    server = BatchServer(str(tmp_path), 'publish', 'k')
    # the requests h1 foresaw, then h2's own: the server it starts finds
    # both in its first take
    server.requests.foresee('h1', {'h2': 'b', 'h3': 'c'})
    server.request('h2', 'own-h2', serve, expected=['h2'])
    assert reply(server, 'h2', 'own-h2', serve, timeout=60)['answer'] == 'own-h2'
    assert reply(server, 'h3', 'c', serve, timeout=60)['answer'] == 'c'
