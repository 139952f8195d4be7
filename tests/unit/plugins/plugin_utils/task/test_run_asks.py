"""A host that asks the run's serving process for its answer over the
process's socket (plugin_utils/task/_run_asks.py), for real: a forked
process, its unix socket, hosts in threads of the test as workers would
ask. What a user relies on: a host that comes while its batch is served
gets its own answer (the foreseen one, or a wave of its own when its
request differs) without a file of its own; a host the process owed an
answer when it died fails by name, one whose request it had not taken is
served by the process started after it; a host whose batch work ended
asks through the files and is served; an ask that is not one is refused
and changes nothing."""

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named
from tests.unit.plugins.plugin_utils.task.test_run_server import _say, wait_for

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (  # noqa: E402
    entry_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)

# each host's bound in these tests; what they prove comes well within it
BOUND = 60


@pytest.fixture
def base_dir():
    """A short temp folder: its socket's path is bound as it is, so the
    process's connections name it in /proc/net/unix."""
    folder = tempfile.mkdtemp(prefix='asks-', dir='/tmp')
    try:
        yield folder
    finally:
        removed(folder)


def removed(folder, seconds=10):
    """Remove ``folder``: a serving process whose job is gone may still
    make a file in it as it ends (a lock it takes to decide), which one
    pass would leave behind; a few passes, bounded."""
    deadline = time.monotonic() + seconds
    shutil.rmtree(folder, ignore_errors=True)
    while os.path.exists(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)
    assert not os.path.exists(folder), 'still there after %ss: %s' % (seconds, folder)


def connections(socket_path):
    """How many connections the process has accepted at ``socket_path``
    and not closed (its listening socket is not counted)."""
    # the process binds its socket under a name of its own,
    # ``<path>.<pid>.binding``, then renames it to the path
    # (_run_socket.listen): /proc/net/unix shows the name it was bound by
    bound = re.compile(re.escape(socket_path) + r'(\.[0-9]+\.binding)?')
    # every socket of the machine's network namespace is listed, other
    # tests' too, whose paths may hold bytes that are no UTF-8 (the odd
    # temp folders of the attack tests): kept as they are, never matched
    with open('/proc/net/unix', encoding='utf-8', errors='surrogateescape') as handle:
        lines = handle.read().splitlines()[1:]
    # an accepted connection: state 03 (connected), its path the socket's
    return sum(1 for line in lines
               if len(line.split()) > 7 and bound.fullmatch(line.split()[-1])
               and line.split()[5] == '03')


def wait_for_connections(socket_path, count, seconds=30):
    deadline = time.monotonic() + seconds
    while connections(socket_path) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connections(socket_path) >= count, (socket_path, count)


@named
def pid_of_server(requests, put):
    """Each host's answer: its request and the pid of the process that
    served it (named before any process starts: a fork knows it)."""
    for host, request in requests.items():
        put(host, {'request': request, 'pid': os.getpid()})


def held_wave(folder):
    """(a serve name whose wave notes ``folder/started`` and answers each
    host its request and its process's pid once ``folder/release`` is
    there, that path)."""
    started, release = os.path.join(folder, 'started'), os.path.join(folder, 'release')

    @named
    def held(requests, put):
        open(started, 'w').close()
        wait_for(release)
        for host, request in requests.items():
            put(host, {'request': request, 'pid': os.getpid()})
    return held, release


def asking(server, host, request, serve, found, **kwargs):
    """``host`` asks in a thread of its own, as its worker would: its
    (answer, opened) or its BatchError lands in ``found``."""
    def ask():
        try:
            found[host] = server.ask(host, request, serve, timeout=BOUND, **kwargs)
        except BatchError as exc:
            found[host] = exc
    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    return thread


def joined(threads, found):
    for thread in threads:
        thread.join(BOUND + 30)
    assert not any(thread.is_alive() for thread in threads), found


def test_hosts_that_come_while_their_batch_is_served_ask_over_the_socket(base_dir):
    """h1 registers the batch, foreseeing h2's and h3's requests, and its
    wave is held; h2 comes with the request foreseen for it, h3 with
    another. Both wait on the socket while the wave runs, neither writes a
    request or makes a doorbell; h2 gets the first wave's answer, not
    opened for it, and h3 a wave of its own, opened for it."""
    server = BatchServer(base_dir, 'copy', 'k')
    held, release = held_wave(base_dir)
    server.request('h1', 'a', held, expected=['h1'],
                   foresee=lambda: {'h1': 'a', 'h2': 'b', 'h3': 'c'})
    wait_for(os.path.join(base_dir, 'started'))
    found = {}
    threads = [asking(server, 'h2', 'b', held, found),
               asking(server, 'h3', 'c-own', held, found)]
    wait_for_connections(server.run.socket_path, 2)
    # nothing of theirs in the files: no request, no doorbell
    assert not os.path.exists(entry_path(server.requests.folder, 'h2'))
    assert not os.path.exists(entry_path(server.requests.folder, 'h3'))
    assert [name for name in os.listdir(server.answers.folder) if name.endswith('.wake')] == []
    open(release, 'w').close()
    threads.append(asking(server, 'h1', 'a', held, found))
    joined(threads, found)
    (h1, h1_opened), (h2, h2_opened), (h3, h3_opened) = found['h1'], found['h2'], found['h3']
    assert (h1['request'], h1_opened) == ('a', True), found
    assert (h2['request'], h2_opened) == ('b', False), found
    assert (h3['request'], h3_opened) == ('c-own', True), found
    assert h1['pid'] == h2['pid'] == h3['pid'] != os.getpid(), found
    # each answer is also in its file, for a host that comes later
    assert server.answers.read(server.answer_path('h3', 'c-own'))['answer'] == h3


def test_a_host_the_dead_process_owed_fails_by_name_and_one_not_taken_is_served_again(
        base_dir):
    """One wave at once; the first holds h1's and h2's requests (h2's
    foreseen) when the process is killed (kill -9), h3's own request
    waiting untaken behind it, both asked over the socket: h1 and h2 fail
    within seconds, each by name, and h3 is served by the process its
    host starts."""
    server = BatchServer(base_dir, 'publish', 'k')
    killed = os.path.join(base_dir, 'killed')
    started, go = os.path.join(base_dir, 'started'), os.path.join(base_dir, 'go')

    def kills(requests, put):
        if os.path.exists(killed):
            for host, request in requests.items():
                put(host, {'request': request, 'pid': os.getpid()})
            return
        open(started, 'w').close()
        wait_for(go, BOUND)
        open(killed, 'w').close()
        os.kill(os.getpid(), signal.SIGKILL)
    kills = named(kills)
    found = {}
    began = time.monotonic()
    # h1 registers the work (through the files: nothing serves it yet)
    threads = [asking(server, 'h1', 'a', kills, found, waves_at_once=1, expected=['h1'],
                      foresee=lambda: {'h1': 'a', 'h2': 'b'})]
    wait_for(started)
    threads += [asking(server, 'h2', 'b', kills, found, waves_at_once=1),
                asking(server, 'h3', 'c', kills, found, waves_at_once=1)]
    wait_for_connections(server.run.socket_path, 2)
    open(go, 'w').close()
    joined(threads, found)
    assert time.monotonic() - began < BOUND / 3, found
    for name in ('h1', 'h2'):
        assert isinstance(found[name], BatchError), found
        assert str(found[name]).startswith(
            "%s: the batch's work stopped before answering this host" % name), found
    answer, _opened = found['h3']
    assert answer['request'] == 'c' and answer['pid'] != os.getpid(), found


def test_a_host_whose_batch_work_ended_is_served_through_the_files(base_dir):
    """The run's process serves one work still (held), and has ended
    another after answering its batch: a host of the ended one that asks
    over the socket is told so, asks through the files, and the same
    process serves it."""
    held, release = held_wave(base_dir)
    holding = BatchServer(base_dir, 'build', 'k')
    holding.request('h1', 'r', held)
    wait_for(os.path.join(base_dir, 'started'))
    ended = BatchServer(base_dir, 'channel', 'k')
    first, _opened = ended.ask('h1', 'r', pid_of_server, timeout=BOUND)
    deadline = time.monotonic() + BOUND
    while os.path.exists(ended.alive_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(ended.alive_path)
    second, opened = ended.ask('h2', 'r2', pid_of_server, timeout=BOUND)
    assert (second.get('request'), opened) == ('r2', True), second
    assert second['pid'] == first['pid'] != os.getpid()
    open(release, 'w').close()
    assert holding.ask('h1', 'r', held, timeout=BOUND)[0]['pid'] == first['pid']


@pytest.mark.parametrize('change, word', [
    ({'kind': '../../escaped'}, 'kind'), ({'key': 'k/../../../escaped'}, 'key'),
    ({'host': ['h2']}, 'host'), ({'seconds': -1}, 'seconds'), ({'seconds': True}, 'seconds')])
def test_an_ask_that_is_not_one_is_refused_and_changes_nothing(base_dir, change, word):
    """An ask naming a kind or key that is no plain name, no host, or no
    positive bound is refused with its reason, no file appears, and the
    work being served answers its hosts as before."""
    server = BatchServer(base_dir, 'copy', 'k')
    held, release = held_wave(base_dir)
    server.request('h1', 'a', held, expected=['h1'], foresee=lambda: {'h2': 'b'})
    wait_for(os.path.join(base_dir, 'started'))
    before = sorted(os.listdir(server.dir))
    ask = {'kind': 'copy', 'key': 'k', 'host': 'h2', 'request': 'b', 'seconds': 5}
    ask.update(change)
    reply = _say(server.run.socket_path, {'ask': ask})
    assert reply.get('error', '').startswith('refused: ') and word in reply['error'], reply
    assert sorted(os.listdir(server.dir)) == before
    assert not os.path.exists(os.path.join(base_dir, 'escaped'))
    open(release, 'w').close()
    assert server.ask('h2', 'b', held, timeout=BOUND)[0]['request'] == 'b'
