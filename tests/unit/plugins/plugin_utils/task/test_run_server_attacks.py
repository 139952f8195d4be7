"""Attacks on the run's one serving process (plugin_utils/task/_run_server.py
and _run_socket.py), for real: a forked process, its unix socket, peers
that send what a host never sends. What a user relies on: a message that is
not a registration is refused and changes nothing, every host's wait has
its bound whatever another peer does, the run's other works are served on,
and a work is only ever served with its own context. Four of them found
faults, now fixed: a message nested past json's depth ended the process, a
peer that never sent or trickled its bytes held every other registration,
and a context nested too deep failed its host as an internal error."""

import json
import os
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time

from ansible import constants as C
import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.task.batch_serves import ECHO_CONTEXT, named, named_serve

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.publish import (  # noqa: E402
    _publish)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _action, _waits)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (  # noqa: E402
    BatchWork)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run_server import (  # noqa: E402
    registration)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run_socket import (  # noqa: E402
    MAX_MESSAGE, PATH_MAX, connect, listen)
from tests.unit.plugins.plugin_utils.task.test_action import action_of  # noqa: E402

# each host's bound in these tests; what they prove comes well within it
BOUND = 60
# a registration's bound where a test counts it (the process is forked
# from this one: it reads the same value)
SHORT_REGISTER_WAIT = 3


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(path), path


def _held_work(tmp_path, kind='eval', key='k'):
    """(a work of the run whose wave for h1 runs until ``release`` is
    there, that path): h1's answer then names the process that served it,
    so a test sees whether the process it started lived through the
    attack."""
    started, release = str(tmp_path / 'started'), str(tmp_path / 'release')

    @named
    def held(requests, put):
        open(started, 'w').close()
        wait_for(release, BOUND)
        for host in requests:
            put(host, {'pid': os.getpid()})
    server = BatchServer(str(tmp_path), kind, key)
    assert server.request('h1', 'r', held)
    wait_for(started)
    return server, held, release


def _peer(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(BOUND)
    sock.connect(path)
    return sock


def _reply(sock):
    """The process's reply on ``sock`` (a mapping), or None when it closed
    the connection unanswered."""
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return None
    size = struct.unpack('>I', header)[0]
    return json.loads(sock.recv(size, socket.MSG_WAITALL).decode('utf-8'))


def _framed(data):
    return struct.pack('>I', len(data)) + data


def _registration(**change):
    entry = {'kind': 'eval', 'key': 'other', 'serve': ECHO_CONTEXT, 'context': None,
             'waves_at_once': 1, 'waiting': [], 'starter': 'h9'}
    entry.update(change)
    return json.dumps(entry).encode('utf-8')


# (what a peer sends, whether the process answers it): none of them a
# registration the process may take
MALFORMED = {
    'not JSON': (_framed(b'{"kind": "eval", '), True),
    'not UTF-8': (_framed(b'\xff\xfe{}'), True),
    'a list, not a mapping': (_framed(b'["eval", "other"]'), True),
    'a mapping without a kind': (_framed(b'{"key": "other"}'), True),
    'a length past the largest message': (struct.pack('>I', MAX_MESSAGE + 1), True),
    'cut half-way, then closed': (struct.pack('>I', 200) + _registration()[:100], False),
    'JSON nested past the parser\'s depth': (_framed(b'[' * 100000 + b']' * 100000), True),
}


@pytest.mark.parametrize('what', sorted(MALFORMED))
def test_a_message_that_is_no_registration_is_refused_and_the_run_is_served_on(
        tmp_path, what):
    """A peer's message the process cannot take (no JSON, no mapping, too
    long, cut off, nested too deep) is refused with a reason, or the
    connection closed; nothing is registered, the process that runs goes
    on (the same process answers the work it was serving), and a host of
    another work registers and is served by it."""
    server, _held, release = _held_work(tmp_path)
    token = server.run.token()
    data, answered = MALFORMED[what]
    peer = _peer(server.run.socket_path)
    try:
        peer.sendall(data)
        if not answered:
            peer.shutdown(socket.SHUT_WR)
        reply = _reply(peer)
    finally:
        peer.close()
    if answered:
        assert reply is not None and reply.get('ok') is not True, reply
        assert reply['error'].startswith('refused: ') and 'Traceback' not in reply['error']
    assert not os.path.exists(os.path.join(server.dir, 'eval-other.alive'))
    assert server.run.token() == token
    other = BatchServer(str(tmp_path), 'build', 'k')
    assert other.request('h2', 'r', ECHO_CONTEXT, context={'n': 'h2'})
    assert other.answer('h2', 'r', ECHO_CONTEXT, timeout=BOUND)[0]['context'] == {'n': 'h2'}
    open(release, 'w').close()
    got = server.answer('h1', 'r', None, timeout=BOUND)[0]
    assert got['pid'] != os.getpid() and server.run.token() in (token, None), got


def _silent_peers(path, count):
    """``count`` peers connected to the process that never send."""
    return [_peer(path) for _number in range(count)]


def _trickling_peer(path, stop):
    """A peer that sends a message's first bytes, one a second, until
    ``stop`` is set: each read the process makes of it comes well inside
    the bound on one read."""
    sock = _peer(path)
    data = _framed(_registration())

    def trickle():
        for byte in data:
            if stop.wait(1):
                break
            sock.send(bytes([byte]))
        sock.close()
    thread = threading.Thread(target=trickle)
    thread.daemon = True
    thread.start()
    return thread


def _registers_within_its_bound(tmp_path, seconds):
    """Whether a host of another work registers it (and is served) within
    ``seconds``; (True, its wait) or (False, the host's BatchError)."""
    other = BatchServer(str(tmp_path), 'build', 'k')
    start = time.monotonic()
    try:
        other.request('h2', 'r', ECHO_CONTEXT, context={'n': 'h2'})
        other.answer('h2', 'r', ECHO_CONTEXT, timeout=BOUND)
    except BatchError as exc:
        return False, exc
    took = time.monotonic() - start
    return took < seconds, took


@pytest.fixture
def short_register_wait(monkeypatch):
    """A registration's bound of a few seconds, in this process and the
    serving process it forks."""
    monkeypatch.setattr(_waits, 'REGISTER_WAIT', SHORT_REGISTER_WAIT)
    return SHORT_REGISTER_WAIT


def _registers_beside_silent_peers(tmp_path, count, pause, seconds):
    """Whether a host of another work registers within ``seconds`` while
    ``count`` peers that never send hold connections to the process, the
    host coming ``pause`` seconds after them (``_registers_within_its_bound``)."""
    server, _held, release = _held_work(tmp_path)
    peers = _silent_peers(server.run.socket_path, count)
    try:
        time.sleep(pause)
        return _registers_within_its_bound(tmp_path, seconds)
    finally:
        for peer in peers:
            peer.close()
        open(release, 'w').close()


@pytest.mark.parametrize('count, pause', [
    pytest.param(1, 1.5, id='one peer'), pytest.param(2, 0, id='two peers')])
def test_peers_that_never_send_hold_no_host_past_its_bound(
        tmp_path, short_register_wait, count, pause):
    """Peers that connect and never send (workers stopped as they
    registered; one of them ``pause`` seconds before the host): a host of
    another work that registers after them is registered and served within
    its own bound."""
    ok, why = _registers_beside_silent_peers(tmp_path, count, pause, short_register_wait)
    assert ok, why


def test_a_peer_that_trickles_its_message_holds_no_host_past_its_bound(
        tmp_path, short_register_wait):
    """A peer that sends its message a byte a second, each byte inside the
    bound on one read: a host of another work that registers meanwhile is
    registered and served within its own bound."""
    server, _held, release = _held_work(tmp_path)
    stop = threading.Event()
    thread = _trickling_peer(server.run.socket_path, stop)
    try:
        time.sleep(0.5)
        ok, why = _registers_within_its_bound(tmp_path, short_register_wait)
    finally:
        stop.set()
        thread.join(BOUND)
        open(release, 'w').close()
    assert ok, why


def test_a_context_that_is_no_mapping_fails_only_its_hosts_by_a_sentence(tmp_path):
    """A publish work registered with a context that is no mapping (a
    list): its host gets an error sentence, no traceback in it, and a host
    of another work of the run is served on by the same process."""
    bad = BatchServer(str(tmp_path), 'publish', 'bad')
    good = BatchServer(str(tmp_path), 'build', 'good')
    bad.request('h1', {'path': '/nix/store/x'}, _publish.SERVE, context=['not', 'a', 'mapping'])
    got = bad.answer('h1', {'path': '/nix/store/x'}, _publish.SERVE, timeout=BOUND)[0]
    assert set(got) <= {'error', 'traceback'} and got['error'], got
    assert 'Traceback' not in got['error'] and '\n' not in got['error'].strip(), got
    token = good.run.token()
    good.request('h2', 'r', ECHO_CONTEXT, context={'n': 'h2'})
    assert good.answer('h2', 'r', ECHO_CONTEXT, timeout=BOUND)[0]['context'] == {'n': 'h2'}
    assert token is None or good.run.token() in (token, None)


def test_a_context_nested_past_the_encoders_depth_fails_its_host_by_name():
    """A context the host cannot hand over as JSON because it is nested
    too deep fails that host with a sentence that names the host and the
    context, as any other value that cannot be written does."""
    context = []
    for _level in range(2000):
        context = [context]
    with pytest.raises(BatchError) as caught:
        registration('h1', 'eval', 'k', ECHO_CONTEXT, {'deep': context}, 1, [])
    assert str(caught.value).startswith('h1: the eval batch: context'), caught.value


@pytest.mark.parametrize('folder', [
    'with spaces in it', u'n\u00f6n-\u00e4scii \u2713', os.fsdecode(b'not-utf8-\xff\xfe'),
    # past AF_UNIX's limit, with each of the above in it
    'long ' * 12 + u'\u00e9 ' + os.fsdecode(b'\xff') + '-' * 20])
def test_a_temp_folder_of_any_name_is_served(request, folder):
    """Ansible's temp folder may hold spaces, non-ASCII letters or bytes
    that are no UTF-8, and be past the socket path's limit: two works of
    the run are served by one process, each with its own context."""
    # a short folder of its own (pytest's are past the limit already)
    top = tempfile.mkdtemp(prefix='nd-')
    request.addfinalizer(lambda: shutil.rmtree(top, ignore_errors=True))
    base = os.path.join(top, folder)
    os.makedirs(base)
    socket_path = BatchServer(base, 'eval', 'k1').run.socket_path
    assert (len(os.fsencode(socket_path)) > PATH_MAX) == folder.startswith('long ')
    servers = [BatchServer(base, 'eval', 'k1'), BatchServer(base, 'eval', 'k2')]
    for number, server in enumerate(servers):
        server.request('h%d' % number, 'r', ECHO_CONTEXT, context={'n': number, 'f': folder})
    got = [server.answer('h%d' % number, 'r', ECHO_CONTEXT, timeout=BOUND)[0]
           for number, server in enumerate(servers)]
    assert [entry['context'] for entry in got] == [{'n': 0, 'f': folder}, {'n': 1, 'f': folder}]


# the socket paths a test watches, and every mode each showed (the audit
# hook is the process's for good: it looks only while a test fills this)
_SOCKET_MODES = {}


def _note_socket_modes(event, _args):
    """At each file or socket step Python is about to take, the mode each
    watched path shows (Python tells before the system call)."""
    if event not in ('os.chmod', 'os.rename', 'os.remove', 'socket.bind', 'socket.__new__'):
        return
    for path, seen in list(_SOCKET_MODES.items()):
        try:
            seen.add(stat.S_IMODE(os.lstat(path).st_mode))
        except OSError:
            pass


sys.addaudithook(_note_socket_modes)


@pytest.mark.parametrize('fchmod_refused', [False, True], ids=['linux', 'fchmod-refused'])
@pytest.mark.parametrize('name', ['short', 'long-' * 30])
def test_the_socket_path_never_shows_a_mode_but_0600(
        tmp_path, monkeypatch, name, fchmod_refused):
    """bind() makes a socket with the umask's mode: at no step of making
    it, short path or past AF_UNIX's limit, is the socket's path there
    with any mode but 0600, and nothing else is left beside it; where
    fchmod() of a socket is refused (macOS), the same. The socket is bound
    at its path where it can be (what ss and getsockname show)."""
    if fchmod_refused:
        def refuse(_fd, _mode):
            raise OSError(22, 'Invalid argument')
        monkeypatch.setattr(os, 'fchmod', refuse)
    folder = tmp_path / name
    folder.mkdir(mode=0o700)
    path = str(folder / 'run-server.sock')
    assert (len(os.fsencode(path)) > PATH_MAX) == (name != 'short')
    old_umask = os.umask(0o022)
    _SOCKET_MODES[path] = set()
    try:
        listening = listen(path)
    finally:
        seen = _SOCKET_MODES.pop(path)
        os.umask(old_umask)
    try:
        seen.add(stat.S_IMODE(os.lstat(path).st_mode))
        assert seen == {0o600}
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert os.listdir(str(folder)) == ['run-server.sock']
        if not fchmod_refused and name == 'short':
            assert listening.getsockname() == path
        connect(path, 5).close()
    finally:
        listening.close()


def test_works_of_one_kind_keep_their_own_contexts_through_a_kill(tmp_path):
    """Two works of one kind (eval, two keys: two contexts) with a wave
    each in flight and a second host each waiting to be taken; the run's
    process is killed (kill -9). The hosts it had taken fail by name; the
    second hosts register their works again and each is served with its
    own work's context, never the other's, and so is a host that asks
    after that."""
    servers = dict((key, BatchServer(str(tmp_path), 'eval', key)) for key in ('ka', 'kb'))
    contexts = {'ka': {'token': 'context-of-ka'}, 'kb': {'token': 'context-of-kb'}}
    killed = str(tmp_path / 'killed')

    def held(context, requests, put):
        if os.path.exists(killed):
            for host, request in requests.items():
                put(host, {'context': context, 'request': request})
            return
        open(str(tmp_path / ('started-%s' % context['token'])), 'w').close()
        time.sleep(BOUND)
    held = named_serve(held)

    for key, server in servers.items():
        server.request('first-' + key, 'r', held, waves_at_once=1, context=contexts[key])
        wait_for(str(tmp_path / ('started-%s' % contexts[key]['token'])))
    for key, server in servers.items():
        assert not server.request('second-' + key, 'r', held, waves_at_once=1,
                                  context=contexts[key])
    pid = _serving_pid(servers['ka'].run.process.running_path)
    open(killed, 'w').close()
    os.kill(pid, signal.SIGKILL)
    found = {}

    def wait(host, key):
        try:
            found[host] = servers[key].answer(host, 'r', held, waves_at_once=1,
                                              timeout=BOUND, context=contexts[key])[0]
        except BatchError as exc:
            found[host] = exc
    threads = [threading.Thread(target=wait, args=(prefix + key, key))
               for key in servers for prefix in ('first-', 'second-')]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND + 10)
    # noticed within seconds, far inside each host's bound
    assert time.monotonic() - start < BOUND / 3, found
    for key in servers:
        assert isinstance(found['first-' + key], BatchError), found
        assert str(found['first-' + key]).startswith('first-' + key), found
        assert found['second-' + key] == {'context': contexts[key], 'request': 'r'}, found
        servers[key].request('third-' + key, 'r', held, waves_at_once=1, context=contexts[key])
        assert servers[key].answer('third-' + key, 'r', held, timeout=BOUND)[0] == {
            'context': contexts[key], 'request': 'r'}


def _serving_pid(running_path):
    """The pid of the process that holds ``running_path`` open (the run's
    serving process holds its lock file while it runs)."""
    target = os.path.realpath(running_path)
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        folder = os.path.join('/proc', name, 'fd')
        try:
            links = [os.readlink(os.path.join(folder, fd)) for fd in os.listdir(folder)]
        except OSError:
            continue
        if target in links:
            return int(name)
    raise AssertionError('no process holds %s' % running_path)


class CallableContextProbe(_action.NixdeployAction):
    """A phase whose context is a function of its ``value`` argument (as
    the evaluation's and the cascade's are), not part of its key: its
    answer is the context it was served with."""

    _requires_connection = False
    ARGUMENT_SPEC = {'value': {'type': 'str', 'required': True}}
    PHASE = 'probe'

    def host_result(self, args, result):
        got = self.batch_answer(BatchWork('probe', [], 'asked', ECHO_CONTEXT,
                                          context=lambda: {'value': args['value']}))
        return dict(result, served_with=got.entry['context']['value'])


def test_a_retry_is_served_with_its_new_context_while_its_first_is_served(
        tmp_path, monkeypatch):
    """``until`` runs h1's task again with a new context while the work of
    its first attempt is still served (it waits for h2 of the play batch,
    which has not asked): the retry is served with its own new context,
    not the first attempt's."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))

    def run(value):
        return action_of(CallableContextProbe, {'value': value}).run(task_vars={
            'inventory_hostname': 'h1', 'ansible_play_batch': ['h1', 'h2'], 'hostvars': {}})
    first = run('first attempt')
    assert first['served_with'] == 'first attempt', first
    assert any(name.endswith('.alive') and not name.startswith('run-server')
               for name in os.listdir(os.path.join(str(tmp_path), 'nixdeploy-batch')))
    again = run('second attempt')
    assert again['served_with'] == 'second attempt', again
