"""Attacks on a host's ask over the run's socket
(plugin_utils/task/_run_asks.py, _stem_serving.py, _run_server.py,
_batch_server.py), for real: a forked serving process, its unix socket,
hosts in threads as workers would ask, and peers that send what a host
never sends."""

import json
import os
import random
import socket
import struct
import sys
import tempfile
import threading
import time

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import named_serve
from tests.unit.plugins.plugin_utils.task.test_run_asks import (
    connections, removed, wait_for_connections)

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _waits  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)

# each host's bound here; what the tests prove comes well within it
BOUND = 60


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(path), 'not there after %ss: %s' % (seconds, path)


def until(condition, seconds):
    """Wait until ``condition()`` holds, at most ``seconds`` (a pause a test
    took whole before: never longer than it); whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _logged(context, requests, put):
    """Each wave appends its {host: request} (one JSON line) to
    ``context['log']``; the first wave (when ``context['hold']``) notes
    ``started`` and waits for ``release``; each host's answer is its name,
    its request and the serving pid."""
    folder = context['folder']
    started, release = os.path.join(folder, 'started'), os.path.join(folder, 'release')
    line = (json.dumps(requests, sort_keys=True) + '\n').encode('utf-8')
    handle = os.open(os.path.join(folder, 'waves.log'), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(handle, line)
    finally:
        os.close(handle)
    if context.get('hold') and not os.path.exists(started):
        open(started, 'w').close()
        wait_for(release, BOUND)
    for host, request in requests.items():
        put(host, {'host': host, 'request': request, 'pid': os.getpid()})


# named before any serving process is forked: a fork knows it
LOGGED = named_serve(_logged)


def waves(folder):
    """Every wave's {host: request}, in order."""
    try:
        with open(os.path.join(folder, 'waves.log')) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def served_count(folder):
    """{(host, json(request)): how many waves served it}."""
    counts = {}
    for wave in waves(folder):
        for host, request in wave.items():
            key = (host, json.dumps(request, sort_keys=True))
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.fixture
def base_dir():
    folder = tempfile.mkdtemp(prefix='aa-', dir='/tmp')
    try:
        yield folder
    finally:
        removed(folder)


def asking(server, host, request, found, context, **kwargs):
    def ask():
        try:
            found[host] = server.ask(host, request, LOGGED, timeout=BOUND, context=context,
                                     **kwargs)
        except BatchError as exc:
            found[host] = exc
        except Exception as exc:  # pylint: disable=broad-except
            found[host] = ('unexpected', repr(exc))
    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    return thread


def joined(threads, found, seconds=BOUND + 30):
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.1, deadline - time.monotonic()))
    alive = sum(1 for thread in threads if thread.is_alive())
    assert not alive, '%d hosts still waiting after %ss: %r' % (alive, seconds, found)


def served_beside(server, context, base_dir, connected):
    """h02 (foreseen) and h03 (its own request) wait on the socket until
    ``connected`` connections are open, the first wave is released and h00
    asks: each gets its own answer ({host: (answer, opened)})."""
    found = {}
    threads = [asking(server, 'h02', 'b', found, context),
               asking(server, 'h03', 'c', found, context)]
    wait_for_connections(server.run.socket_path, connected)
    open(os.path.join(base_dir, 'release'), 'w').close()
    threads.append(asking(server, 'h00', 'a', found, context))
    joined(threads, found)
    for host, request in (('h00', 'a'), ('h02', 'b'), ('h03', 'c')):
        assert found[host][0]['request'] == request, found
    return found


def _frame(text):
    data = text.encode('utf-8') if isinstance(text, str) else text
    return struct.pack('>I', len(data)) + data


def _peer(path, seconds=BOUND):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(seconds)
    sock.connect(path)
    return sock


def _reply(sock):
    """The next reply on ``sock`` (data), or None when it was closed."""
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return None
    size = struct.unpack('>I', header)[0]
    return json.loads(sock.recv(size, socket.MSG_WAITALL).decode('utf-8'))


def _ask_text(kind, key, host, request_text, seconds=5):
    """An ask message whose request is the JSON text ``request_text``."""
    return ('{"ask": {"kind": %s, "key": %s, "host": %s, "seconds": %s, "request": %s}}'
            % (json.dumps(kind), json.dumps(key), json.dumps(host), seconds, request_text))


def server_gone(server, seconds):
    """Whether the run's process ended within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.run.token() is None and not server.run.process.running():
            return True
        time.sleep(0.05)
    return False


def held_batch(base_dir, kind='copy', key='k', waves_at_once=2, foreseen=None):
    """h00 registers the work (its first wave held), foreseeing
    ``foreseen`` ({host: request}, with h00's own 'a')."""
    server = BatchServer(base_dir, kind, key)
    context = {'folder': base_dir, 'hold': True}
    seen = dict(foreseen or {})
    seen['h00'] = 'a'
    assert server.request('h00', 'a', LOGGED, waves_at_once=waves_at_once, expected=['h00'],
                          foresee=lambda: seen, context=context)
    wait_for(os.path.join(base_dir, 'started'))
    return server, context


# claims 1 and 6 -------------------------------------------------------------

@pytest.mark.parametrize('waves_at_once', [1, 2])
@pytest.mark.parametrize('mode', ['held', 'at-once-first-claims', 'at-once-h00-foresees'])
def test_fifty_hosts_at_once_each_get_their_own_answer_one_wave_per_request(
        base_dir, waves_at_once, mode):
    """50 hosts: h00 registers, foreseeing h01..h24's requests; h01..h16
    ask the request foreseen for them, h17..h24 another of their own
    (the foreseen one is served but theirs wins), h25..h49 their own.
    held: they all come while h00's first wave runs (over the socket);
    at-once: all 50 at once, nothing registered yet, and either the first
    host to foresee foresees (as _batch_work's claim_slot does) or only h00
    foresees (whenever it gets the lock). Every host gets its
    own answer to its own request, and each request is in one wave."""
    foreseen = dict(('h%02d' % n, 'f%d' % n) for n in range(1, 25))
    own = {}
    for n in range(1, 50):
        host = 'h%02d' % n
        own[host] = foreseen[host] if n <= 16 else {'own': n, 'list': [n, str(n)]}
    own['h00'] = 'a'
    server = BatchServer(base_dir, 'copy', 'k')
    found, threads = {}, []
    claimed = []
    claim_lock = threading.Lock()

    def foresee_of(host):
        if mode == 'at-once-h00-foresees':
            return (lambda: foreseen) if host == 'h00' else None

        def foresee():
            with claim_lock:
                if claimed:
                    return None
                claimed.append(host)
            return foreseen
        return foresee
    if mode == 'held':
        server, context = held_batch(base_dir, waves_at_once=waves_at_once, foreseen=foreseen)
        for n in range(1, 50):
            host = 'h%02d' % n
            threads.append(asking(server, host, own[host], found, context,
                                  waves_at_once=waves_at_once))
        # h01..h49 have all asked before the release: each waits on the
        # socket, or has its answer (its own request, in a wave beside the
        # held one); once they have, not a second later
        until(lambda: connections(server.run.socket_path) + len(found) >= 49, 10)
        open(os.path.join(base_dir, 'release'), 'w').close()
        threads.append(asking(server, 'h00', 'a', found, context, waves_at_once=waves_at_once))
    else:
        context = {'folder': base_dir}
        barrier = threading.Barrier(50)
        for n in range(50):
            host = 'h%02d' % n

            def ask(host=host):
                barrier.wait(BOUND)
                try:
                    found[host] = server.ask(
                        host, own[host], LOGGED, waves_at_once=waves_at_once,
                        expected=sorted(own), timeout=BOUND, context=context,
                        foresee=foresee_of(host))
                except Exception as exc:  # pylint: disable=broad-except
                    found[host] = ('failed', repr(exc))
            thread = threading.Thread(target=ask, daemon=True)
            thread.start()
            threads.append(thread)
    joined(threads, found)
    wrong = {}
    for host, request in own.items():
        got = found.get(host)
        if not (isinstance(got, tuple) and isinstance(got[0], dict)
                and got[0].get('host') == host and got[0].get('request') == request):
            wrong[host] = (request, got)
    assert not wrong, 'hosts without their own answer: %r' % wrong
    counts = served_count(base_dir)
    twice = dict((key, count) for key, count in counts.items() if count != 1)
    assert not twice, 'requests served by more than one wave: %r (waves: %r)' % (
        twice, waves(base_dir))
    for host, request in own.items():
        assert (host, json.dumps(request, sort_keys=True)) in counts, (host, request)
    pids = set(found[host][0]['pid'] for host in own)
    assert os.getpid() not in pids, pids


def test_a_foresight_taken_after_a_hosts_own_request_does_not_drop_it(base_dir):
    """h9 registers the work expecting h50 too (its first wave gathers
    while hosts come). h17 asks its own request 'c' over the socket and
    it is taken ("taken" sent); then h00 asks through the files,
    foreseeing 'f17' for h17. h17's own request, taken first, is served:
    h17 gets its answer to 'c'. h50 then declines: the gather, open
    throughout, ends then rather than GATHER_STALL later."""
    server = BatchServer(base_dir, 'copy', 'k')
    context = {'folder': base_dir}
    assert server.request('h9', 'r9', LOGGED, waves_at_once=2, expected=['h9', 'h50'],
                          context=context)
    found = {}
    threads = [asking(server, 'h17', 'c', found, context)]
    wait_for_connections(server.run.socket_path, 1)
    time.sleep(0.3)
    server.request('h00', 'a', LOGGED, foresee=lambda: {'h17': 'f17'}, context=context)
    # h00's request and its foresight are written: the last host the
    # first wave waits for says it will not ask
    server.decline('h50')
    threads.append(asking(server, 'h00', 'a', found, context))
    joined(threads, found)
    got = found['h17']
    assert isinstance(got, tuple) and got[0]['request'] == 'c', \
        'h17 got %r; waves: %r' % (got, waves(base_dir))


def test_a_host_that_asks_two_requests_at_once_gets_each_its_own(base_dir):
    """One host asks two requests over the socket at once (two loop items
    of it, or two workers of it), while the first wave is held, with the
    work's hosts expected to come (the stem lingers): each request is
    answered with its own answer, promptly after the release."""
    server, context = held_batch(base_dir, waves_at_once=1)
    found = {}

    def ask(request, where):
        try:
            found[where] = server.ask('h05', request, LOGGED, timeout=BOUND, context=context,
                                      waves_at_once=1)
        except Exception as exc:  # pylint: disable=broad-except
            found[where] = ('failed', repr(exc))
    threads = [threading.Thread(target=ask, args=('x', 'x'), daemon=True),
               threading.Thread(target=ask, args=('y', 'y'), daemon=True)]
    for thread in threads:
        thread.start()
    wait_for_connections(server.run.socket_path, 2)
    released = time.monotonic()
    open(os.path.join(base_dir, 'release'), 'w').close()
    joined(threads, found)
    took = time.monotonic() - released
    for request in ('x', 'y'):
        got = found[request]
        assert isinstance(got, tuple) and got[0].get('request') == request, found
    assert took < 10, 'answered %.1fs after the release' % took


# claim 2 ---------------------------------------------------------------------

# the runs of test_hosts_asking_as_their_work_ends_are_all_served, side by side
ENDING_RUNS = 4


def test_hosts_asking_as_their_work_ends_are_all_served(base_dir):
    """Hosts ask one after another with gaps around the time a stem takes
    to end (LOOKS, GATHER_QUIET): some find it served (socket), some
    ending, some ended (files). Each gets its own answer within its bound,
    and each request is served once. The 60 asks and their gaps (one
    sequence, seed 7) go to ENDING_RUNS runs side by side, each its own
    job folder and serving process (ask n to run n % ENDING_RUNS): in each
    run hosts ask one after another as in one run of 60, the three states
    met as often (measured: served 20-23, ending 16-18, ended 19-24 of
    60 either way), in a quarter of the wall time."""
    rnd = random.Random(7)
    gaps = [rnd.choice([0, 0.01, 0.04, 0.05, 0.06, 0.1, 0.15, 0.2, 0.3]) for _n in range(60)]
    folders = [base_dir] + [tempfile.mkdtemp(prefix='aa-', dir='/tmp')
                            for _n in range(ENDING_RUNS - 1)]
    results = {}

    def run(index):
        folder = folders[index]
        server = BatchServer(folder, 'copy', 'k')
        context = {'folder': folder}
        for n in range(index, 60, ENDING_RUNS):
            host = 'h%02d' % (n % 7)
            request = 'r%d' % n
            try:
                answer, _opened = server.ask(host, request, LOGGED, timeout=20,
                                             context=context)
            except Exception as exc:  # pylint: disable=broad-except
                answer = ('failed', repr(exc))
            results[(index, host, request)] = answer
            time.sleep(gaps[n])
    began = time.monotonic()
    try:
        threads = [threading.Thread(target=run, args=(index,), daemon=True)
                   for index in range(ENDING_RUNS)]
        for thread in threads:
            thread.start()
        joined(threads, results, 120)
        assert len(results) == 60, sorted(results)
        wrong = dict((key, got) for key, got in results.items()
                     if not isinstance(got, dict) or got.get('request') != key[2]
                     or got.get('host') != key[1])
        assert not wrong, wrong
        for folder in folders:
            counts = served_count(folder)
            assert all(count == 1 for count in counts.values()), (folder, counts)
        assert time.monotonic() - began < 120
    finally:
        for folder in folders[1:]:
            removed(folder)


def test_a_host_asking_threads_while_stems_end_are_all_served(base_dir):
    """Ten hosts, each in a thread, asking one request after another with
    random gaps: the stem ends and starts again under them."""
    server = BatchServer(base_dir, 'copy', 'k')
    context = {'folder': base_dir}
    results, threads = {}, []

    def host_loop(host, seed):
        rnd = random.Random(seed)
        for n in range(15):
            request = '%s-r%d' % (host, n)
            try:
                answer, _opened = server.ask(host, request, LOGGED, timeout=30,
                                             context=context)
            except Exception as exc:  # pylint: disable=broad-except
                answer = ('failed', repr(exc))
            results[(host, request)] = answer
            time.sleep(rnd.choice([0, 0.02, 0.05, 0.08, 0.12, 0.25]))
    for n in range(10):
        thread = threading.Thread(target=host_loop, args=('h%d' % n, n), daemon=True)
        thread.start()
        threads.append(thread)
    joined(threads, results, 150)
    wrong = dict((key, got) for key, got in results.items()
                 if not isinstance(got, dict) or got.get('request') != key[1]
                 or got.get('host') != key[0])
    assert not wrong, wrong
    assert len(results) == 150
    counts = served_count(base_dir)
    assert all(count == 1 for count in counts.values()), \
        dict((k, c) for k, c in counts.items() if c != 1)


def test_a_host_is_not_kept_past_its_bound(base_dir):
    """A host whose own request waits behind a held wave (one at once)
    gives up at its bound (BatchError naming it), not later: a bound of
    1s, given up within 2s more (the margin a 3s bound had)."""
    server, context = held_batch(base_dir, waves_at_once=1)
    began = time.monotonic()
    with pytest.raises(BatchError) as caught:
        server.ask('h07', 'late', LOGGED, timeout=1, context=context, waves_at_once=1)
    took = time.monotonic() - began
    assert 'h07' in str(caught.value), caught.value
    assert took < 3, 'gave up after %.1fs, bound 1s' % took
    open(os.path.join(base_dir, 'release'), 'w').close()


def test_a_host_whose_bound_is_past_answer_wait_waits_its_whole_bound(base_dir, monkeypatch):
    """A phase's own bound may pass ANSWER_WAIT (the evaluation's
    eval_batch_timeout + 600, a status closure's 3 * timeout): here
    ANSWER_WAIT is 1s (set before the process is forked: it reads the
    same), the host's bound 20s, its answer comes after 2.5s (1.5s past
    ANSWER_WAIT: a host held to it has failed by then). Through the
    files it would wait its bound; over the socket too: it gets its answer,
    not a 'no answer after 20s' at 1s."""
    monkeypatch.setattr(_waits, 'ANSWER_WAIT', 1)
    server, context = held_batch(base_dir, waves_at_once=1, foreseen={'h02': 'b'})
    releaser = threading.Timer(2.5, lambda: open(os.path.join(base_dir, 'release'), 'w').close())
    releaser.start()
    began = time.monotonic()
    try:
        got = server.ask('h02', 'b', LOGGED, timeout=20, context=context, waves_at_once=1)
    except BatchError as exc:
        got = exc
    finally:
        took = time.monotonic() - began
        releaser.join(15)
    assert isinstance(got, tuple) and got[0]['request'] == 'b', \
        'after %.1fs of its 20s bound, h02 got %r' % (took, got)


# claim 4 ---------------------------------------------------------------------

def test_a_host_that_hangs_up_mid_wait_does_not_keep_the_process(base_dir):
    """A host asks over the socket while the wave is held, then hangs up
    (its worker killed): once the work is done the process ends."""
    server, context = held_batch(base_dir, waves_at_once=1)
    peer = _peer(server.run.socket_path)
    peer.sendall(_frame(json.dumps({'ask': {'kind': 'copy', 'key': 'k', 'host': 'h09',
                                            'request': 'gone', 'seconds': 3000}})))
    wait_for_connections(server.run.socket_path, 1)
    peer.close()
    open(os.path.join(base_dir, 'release'), 'w').close()
    assert server.ask('h00', 'a', LOGGED, timeout=BOUND, context=context)[0]['request'] == 'a'
    assert server_gone(server, 20), 'the process still runs 20s after its work was done'


def test_a_peer_that_never_reads_does_not_keep_the_process_or_others(base_dir):
    """A peer asks (a long bound) and never reads nor closes: the other
    hosts are served, and the process ends once its work is done."""
    server, context = held_batch(base_dir, waves_at_once=1, foreseen={'h02': 'b'})
    peer = _peer(server.run.socket_path)
    try:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        peer.sendall(_frame(json.dumps({'ask': {'kind': 'copy', 'key': 'k', 'host': 'h09',
                                                'request': 'mute', 'seconds': 30000}})))
        served_beside(server, context, base_dir, 3)
        assert server_gone(server, 20), 'the process still runs 20s after its work, a peer mute'
    finally:
        peer.close()


# claim 5 ---------------------------------------------------------------------

def _deepest_taken(server):
    """The deepest nested request the process reads in an ask (of a work
    it does not serve: it answers {"served": false}, nothing is kept)."""
    low, high = 100, 3000
    while low < high:
        mid = (low + high + 1) // 2
        peer = _peer(server.run.socket_path, 20)
        try:
            peer.sendall(_frame(_ask_text('copy', 'nosuch', 'probe',
                                          '[' * mid + ']' * mid)))
            reply = _reply(peer)
        finally:
            peer.close()
        if reply == {'served': False}:
            low = mid
        else:
            assert reply and 'refused' in reply.get('error', ''), reply
            high = mid - 1
    return low


def _writable(text):
    """Whether this Python's json writes back what it reads of ``text``
    (the serving process is a fork of this one: the same Python)."""
    try:
        json.dumps(json.loads(text))
    except RecursionError:
        return False
    return True


@pytest.mark.parametrize('host', ['a0', 'zz'])
def test_a_request_nested_deep_is_refused_and_the_batch_is_served_on(base_dir, host):
    """A peer asks, for a work being served, a request nested as deep as
    the process reads: where it is deeper than a file name's digest
    encodes (Python 3.11's json), it is refused with a reason; where it
    is not (3.14's), it is taken as any request. Either way the hosts of
    the work (h00 through the files, h02 foreseen and h03 its own, over
    the socket) get their answers: the process's threads go on."""
    server, context = held_batch(base_dir, waves_at_once=2, foreseen={'h02': 'b'})
    depth = _deepest_taken(server)
    assert depth > 400, depth
    found = {}
    threads = [asking(server, 'h02', 'b', found, context),
               asking(server, 'h03', 'c', found, context)]
    wait_for_connections(server.run.socket_path, 2)
    peer = _peer(server.run.socket_path, 10)
    try:
        peer.sendall(_frame(_ask_text('copy', 'k', host, '[' * depth + ']' * depth, 3)))
        try:
            reply = _reply(peer)
        except socket.timeout:
            reply = 'no reply in 10s'
    finally:
        peer.close()
    # the deep ask refused, or taken and through a wave of its own (the
    # one beside the held wave), before h00 asks: at most the second the
    # test gave it before
    until(lambda: (isinstance(reply, dict) and 'refused' in reply.get('error', ''))
          or any(host in wave for wave in waves(base_dir)), 1.0)
    asked = connections(server.run.socket_path)
    threads.append(asking(server, 'h00', 'a', found, context))
    # h00 waits on the socket before the release: at most half a second
    until(lambda: connections(server.run.socket_path) > asked or 'h00' in found, 0.5)
    open(os.path.join(base_dir, 'release'), 'w').close()
    joined(threads, found)
    problems = []
    writable = _writable('[' * depth + ']' * depth)
    if writable and reply != {'taken': True}:
        problems.append('the deep ask, which can be written back, was not taken: %r' % (reply,))
    if not writable and not (isinstance(reply, dict) and 'refused' in reply.get('error', '')):
        problems.append('the deep ask was not refused: %r' % (reply,))
    for name, request in (('h00', 'a'), ('h02', 'b'), ('h03', 'c')):
        got = found.get(name)
        if not (isinstance(got, tuple) and got[0].get('request') == request):
            problems.append('%s: %r' % (name, got))
    if problems:
        try:
            with open(server.process.log_path) as handle:
                problems.append('process log:\n' + handle.read()[-6000:])
        except OSError:
            pass
    assert not problems, '\n'.join(problems)


def test_a_peer_that_half_closes_after_its_ask_changes_nothing_for_others(base_dir):
    """A peer sends an ask and half-closes (shut its writing side): it is
    not answered as a host would be, and the other hosts are served."""
    server, context = held_batch(base_dir, waves_at_once=1, foreseen={'h02': 'b'})
    peer = _peer(server.run.socket_path, 10)
    found = {}
    try:
        peer.sendall(_frame(json.dumps({'ask': {'kind': 'copy', 'key': 'k', 'host': 'h02',
                                                'request': 'b', 'seconds': 300}})))
        peer.shutdown(socket.SHUT_WR)
        found = served_beside(server, context, base_dir, 2)
        replies = []
        try:
            while True:
                reply = _reply(peer)
                if reply is None:
                    break
                replies.append(reply)
        except socket.timeout:
            replies.append('still open 10s later')
        assert 'still open 10s later' not in replies, replies
    finally:
        peer.close()
    assert server_gone(server, 20), 'the process still runs 20s after its work was done'


@pytest.mark.parametrize('seconds', ['Infinity', '1e308', '-Infinity', 'NaN', '"5"', 'null',
                                     '0', '1e-300'])
def test_an_ask_with_a_hostile_bound_is_refused_or_bounded(base_dir, seconds):
    """Bounds that are no number, not positive or not finite: refused; a
    finite one, however long or short, is the host's own; the work is
    served on."""
    server, context = held_batch(base_dir, waves_at_once=1, foreseen={'h02': 'b'})
    peer = _peer(server.run.socket_path, 10)
    try:
        peer.sendall(_frame(_ask_text('copy', 'k', 'h02', '"b"', seconds)))
        reply = _reply(peer)
    finally:
        peer.close()
    valid = seconds in ('1e308', '1e-300')
    if valid:
        assert reply in ({'taken': True}, {'waited': True}), reply
    else:
        assert isinstance(reply, dict) and 'refused' in reply.get('error', ''), reply
    open(os.path.join(base_dir, 'release'), 'w').close()
    assert server.ask('h02', 'b', LOGGED, timeout=BOUND, context=context)[0]['request'] == 'b'
    assert server.ask('h00', 'a', LOGGED, timeout=BOUND, context=context)[0]['request'] == 'a'


def test_a_huge_host_name_is_refused_or_served_and_changes_nothing(base_dir):
    """A host name of 8 MB, a request of 8 MB: the other hosts are served."""
    server, context = held_batch(base_dir, waves_at_once=2, foreseen={'h02': 'b'})
    peer = _peer(server.run.socket_path, 30)
    try:
        peer.sendall(_frame(_ask_text('copy', 'k', 'H' * (4 << 20),
                                      json.dumps('R' * (4 << 20)), 2)))
        try:
            reply = _reply(peer)
        except socket.timeout:
            reply = None
    finally:
        peer.close()
    open(os.path.join(base_dir, 'release'), 'w').close()
    assert server.ask('h02', 'b', LOGGED, timeout=BOUND, context=context)[0]['request'] == 'b'
    assert server.ask('h00', 'a', LOGGED, timeout=BOUND, context=context)[0]['request'] == 'a'
    assert reply is None or isinstance(reply, dict), reply
