"""One serving process per run (plugin_utils/task/_run_server.py), for real:
every batch work of the run is served by the one detached process the
first host that asks starts, each registered over the process's unix
socket with its own context, which no file of the run holds; a process
that dies is noticed by the next host that waits: a host whose request it
had taken fails by name, a host whose request it had not taken registers
its work again and is served by the process started after it, whichever
batch work each belongs to."""

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.collection import collections_path
from tests.secrets_at_rest import files_holding
from tests.unit.plugins.plugin_utils.task.batch_serves import named, named_serve

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (  # noqa: E402
    entry_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (  # noqa: E402
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run_socket import (  # noqa: E402
    PATH_MAX)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _waits  # noqa: E402

# each host's bound in these tests; what they prove comes well within it
BOUND = 60


@named
def pid_of_server(requests, put):
    """Each host's answer: the pid of the process that served it."""
    for host in requests:
        put(host, {'pid': os.getpid()})


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(path), path


def held_wave(folder):
    """(a serve name whose wave notes ``folder/started`` and answers each
    host its process's pid once ``folder/release`` is there, that path)."""
    started, release = str(folder / 'started'), str(folder / 'release')

    @named
    def held(requests, put):
        open(started, 'w').close()
        wait_for(release)
        for host in requests:
            put(host, {'pid': os.getpid()})
    return held, release


def test_one_process_serves_every_batch_work_of_the_run(tmp_path):
    """Three works of three kinds, asked one after the other while the
    first is served: one process serves them all, and none but the first
    host starts it."""
    servers = [BatchServer(str(tmp_path), kind, 'k') for kind in ('eval', 'build', 'publish')]
    held, release = held_wave(tmp_path)
    assert servers[0].request('h1', 'r', held)
    wait_for(str(tmp_path / 'started'))
    for server in servers[1:]:
        server.request('h1', 'r', pid_of_server)
    # each work marked with the one token of the run's process
    marks = set()
    for path in [server.alive_path for server in servers] + [servers[0].run.alive_path]:
        with open(path) as handle:
            marks.add(handle.read())
    assert len(marks) == 1, marks
    open(release, 'w').close()
    pids = [server.answer('h1', 'r', None, timeout=60)[0]['pid'] for server in servers]
    assert len(set(pids)) == 1 and pids[0] != os.getpid(), pids
    # one process's files in the run: one lock held while it runs, one log
    folder = servers[0].dir
    assert sorted(n for n in os.listdir(folder) if n.endswith(('.running', '.log'))) == [
        'run-server.log', 'run-server.running']


def test_a_dead_process_fails_the_hosts_it_owed_and_a_new_one_serves_the_rest(tmp_path):
    """The run's process is killed (kill -9) while two works' waves run, a
    host of each taken and a second host of each written and not taken
    (one wave at once): within seconds, far inside the bound, the hosts it
    had taken fail, each naming itself, and the others register their works
    again, with their own contexts, with a process started after it (one
    for both, unless the first one's work ended before the second came)."""
    build = BatchServer(str(tmp_path), 'build', 'k1')
    killing = BatchServer(str(tmp_path), 'eval', 'k2')
    build_started = str(tmp_path / 'build-started')
    killed, kill_started = str(tmp_path / 'killed'), str(tmp_path / 'kill-started')
    seconds = [entry_path(build.requests.folder, 'h4'),
               entry_path(killing.requests.folder, 'h3')]

    def answer_after_the_kill(context, requests, put):
        for host, request in requests.items():
            put(host, {'answer': request, 'pid': os.getpid(), 'context': context})

    def holds(context, requests, put):
        if os.path.exists(killed):
            return answer_after_the_kill(context, requests, put)
        open(build_started, 'w').close()
        time.sleep(BOUND)

    def kills(context, requests, put):
        if os.path.exists(killed):
            return answer_after_the_kill(context, requests, put)
        open(kill_started, 'w').close()
        for path in seconds:
            wait_for(path)
        open(killed, 'w').close()
        os.kill(os.getpid(), signal.SIGKILL)
    holds, kills = named_serve(holds), named_serve(kills)

    assert build.request('h1', 'a', holds, waves_at_once=1, context={'n': 'h1'})
    wait_for(build_started)
    assert killing.request('h2', 'b', kills, waves_at_once=1, context={'n': 'h2'})
    wait_for(kill_started)
    # served: each only asks
    assert not build.request('h4', 'd', holds, waves_at_once=1, context={'n': 'h4'})
    assert not killing.request('h3', 'c', kills, waves_at_once=1, context={'n': 'h3'})
    found = {}

    def wait(name, server, request, serve):
        # a host that finds the process dead registers its work again, with
        # its own serve name and context
        try:
            found[name] = server.answer(name, request, serve, waves_at_once=1, timeout=BOUND,
                                        context={'n': name})[0]
        except BatchError as exc:
            found[name] = exc
    started = time.monotonic()
    threads = [threading.Thread(target=wait, args=args) for args in
               (('h1', build, 'a', holds), ('h2', killing, 'b', kills),
                ('h3', killing, 'c', kills), ('h4', build, 'd', holds))]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(BOUND + 30)
    assert not any(thread.is_alive() for thread in threads), found
    assert time.monotonic() - started < BOUND / 3, found
    # the hosts whose requests the dead process had taken: failed, by name
    for name in ('h1', 'h2'):
        assert isinstance(found[name], BatchError), found
        assert str(found[name]).startswith(
            "%s: the batch's work stopped before answering this host" % name), found
    # the ones it had not taken: served by one process started after it,
    # each work with the context of the host that registered it again
    for name, request in (('h3', 'c'), ('h4', 'd')):
        assert isinstance(found[name], dict) and found[name].get('answer') == request, found
        assert found[name]['context'] == {'n': name}, found
    # by a new process, not this one: the same for both when the second host
    # came before the first one's work ended (a process that serves nothing
    # ends, and the next host starts another: a loaded machine can be that slow)
    assert os.getpid() not in (found['h3']['pid'], found['h4']['pid']), found


SECRETS = {'h1': 'AccessTokenOfH1-5c1e', 'h2': 'AccessTokenOfH2-77ab'}


def _token_and_pid(context, requests, put):
    # the token's digest: an answer is a file, which must not hold it
    token = context['options']['access-tokens']
    for host in requests:
        put(host, {'token': hashlib.sha256(token.encode()).hexdigest(), 'pid': os.getpid()})


TOKEN_AND_PID = named_serve(_token_and_pid)


def test_a_second_hosts_own_context_reaches_the_runs_one_process_and_no_file(tmp_path):
    """Two hosts of one publish whose ``nix_options`` differ (each its own
    access token: two keys, two works): the second host's context reaches
    the process the first host's worker started, not one of its own, and
    each work is served with its own host's token; no file of the run holds
    either token, while the works are served or after."""
    contexts = dict((host, {'options': {'access-tokens': 'github.com=%s' % secret}})
                    for host, secret in SECRETS.items())
    servers = dict((host, BatchServer(str(tmp_path), 'publish', 'key-of-' + host))
                   for host in SECRETS)
    started, release = str(tmp_path / 'first-wave'), str(tmp_path / 'release')

    def held(context, requests, put):
        open(started, 'w').close()
        wait_for(release)
        _token_and_pid(context, requests, put)
    held = named_serve(held)

    servers['h1'].request('h1', 'r', held, context=contexts['h1'])
    wait_for(started)
    servers['h2'].request('h2', 'r', TOKEN_AND_PID, context=contexts['h2'])
    held_files = files_holding(tmp_path, SECRETS.values())
    open(release, 'w').close()
    got = dict((host, servers[host].answer(host, 'r', None, timeout=BOUND)[0])
               for host in SECRETS)
    assert got['h1']['pid'] == got['h2']['pid'] != os.getpid(), got
    for host, secret in SECRETS.items():
        token = 'github.com=%s' % secret
        assert got[host]['token'] == hashlib.sha256(token.encode()).hexdigest(), got
    assert held_files == [] and files_holding(tmp_path, SECRETS.values()) == []


def test_a_temp_folder_past_the_socket_path_limit_is_served(tmp_path):
    """Ansible's temp folder may be deep: the socket's path is past
    AF_UNIX's limit, and the process still listens there (bound by its
    name in its folder), the socket 0600 in a 0700 folder, and serves."""
    deep = tmp_path
    while len(str(deep)) <= PATH_MAX + 20:
        deep = deep / 'a-long-folder-name-of-ansibles-temp'
    server = BatchServer(str(deep), 'eval', 'k')
    assert len(os.fsencode(server.run.socket_path)) > 108
    held, release = held_wave(tmp_path)

    cwd = os.getcwd()
    server.request('h1', 'r', held)
    assert os.getcwd() == cwd
    wait_for(str(tmp_path / 'started'))
    # a second work of the run reaches the same process over the long path
    other = BatchServer(str(deep), 'build', 'k')
    other.request('h1', 'r', pid_of_server)
    mode = os.stat(server.run.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    assert stat.S_IMODE(os.stat(server.dir).st_mode) == 0o700
    open(release, 'w').close()
    pids = [s.answer('h1', 'r', None, timeout=BOUND)[0]['pid'] for s in (server, other)]
    assert pids[0] == pids[1] != os.getpid(), pids


def test_a_deep_temp_folder_never_moves_the_working_folder(tmp_path):
    """The working folder is the whole worker's: a login probe's ssh
    started by a thread beside the socket's calls, with a relative
    UserKnownHostsFile (a project's `known_hosts`), found no key when it
    started while a call to a socket past the path limit had moved it to
    the socket's folder (test_semaphore, in a whole suite). Binding and
    reaching such a socket leaves the working folder where it is, as a
    thread beside them sees it the whole time."""
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run_socket
    deep = tmp_path
    while len(str(deep)) <= PATH_MAX + 20:
        deep = deep / 'a-long-folder-name-of-ansibles-temp'
    deep.mkdir(parents=True)
    path = str(deep / 'run-server.sock')
    here, seen, done = os.getcwd(), set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.add(os.getcwd())
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    listening = _run_socket.listen(path)
    try:
        for _number in range(200):
            _run_socket.connect(path, BOUND).close()
            listening.accept()[0].close()
    finally:
        done.set()
        watcher.join(BOUND)
        listening.close()
    assert seen == {here}, seen
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)


def _say(path, entry):
    """Send ``entry`` to the socket at ``path`` as a host would; the reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(BOUND)
    sock.connect(path)
    try:
        data = json.dumps(entry).encode('utf-8')
        sock.sendall(struct.pack('>I', len(data)) + data)
        size = struct.unpack('>I', sock.recv(4, socket.MSG_WAITALL))[0]
        return json.loads(sock.recv(size, socket.MSG_WAITALL).decode('utf-8'))
    finally:
        sock.close()


@pytest.mark.parametrize('change, word', [
    ({'kind': '../../escaped'}, 'kind'), ({'key': 'k/../../../escaped'}, 'key'),
    ({'waves_at_once': 'all'}, 'waves_at_once'), ({'waiting': 'h1'}, 'waiting')])
def test_a_registration_that_names_no_plain_work_is_refused(tmp_path, change, word):
    """A message on the socket is data: one whose kind or key would name a
    file outside the batch folder, or whose numbers are not numbers, is
    refused with a reason and registers nothing; the process goes on
    serving."""
    server = BatchServer(str(tmp_path), 'eval', 'k')
    held, release = held_wave(tmp_path)

    server.request('h1', 'r', held)
    wait_for(str(tmp_path / 'started'))
    entry = {'kind': 'eval', 'key': 'other', 'serve': held, 'context': None,
             'waves_at_once': 1, 'waiting': [], 'starter': 'h9'}
    entry.update(change)
    before = sorted(os.listdir(str(tmp_path)))
    reply = _say(server.run.socket_path, entry)
    assert reply.get('ok') is not True and word in reply['error'], reply
    assert sorted(os.listdir(str(tmp_path))) == before
    assert not os.path.exists(os.path.join(server.dir, 'eval-other.alive'))
    open(release, 'w').close()
    assert server.answer('h1', 'r', None, timeout=BOUND)[0]['pid'] != os.getpid()


def _threads(pid):
    try:
        return len(os.listdir('/proc/%d/task' % pid))
    except OSError:
        return 0


def _gone(pid):
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(') ', 1)[1][0] in 'ZX'
    except OSError:
        return True


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='threads are counted in /proc')
def test_a_runs_phases_one_after_another_share_one_process_until_the_job_ends(tmp_path):
    """A play's batch phases come one after another, each a moment after
    the last one's work has ended: the process that served the first,
    serving nothing then (its main loop and the job's watcher its only
    threads), serves the next ones too; the process is not forked again
    for each phase. The job's end (its temporary folder gone) ends it at
    once, well inside its idle wait."""
    pids = []
    for kind in ('eval', 'build'):
        if pids:
            # halfway through the idle wait: a phase that came at once could
            # still find the last one's process taking connections as it ends
            time.sleep(_waits.IDLE_WAIT / 2.0)
        server = BatchServer(str(tmp_path), kind, 'k')
        assert server.request('h1', 'r', pid_of_server)
        pids.append(server.answer('h1', 'r', None, timeout=BOUND)[0]['pid'])
        # the phase's work ended: nothing of it is served any more
        deadline = time.monotonic() + BOUND
        while _threads(pids[-1]) > 2:
            assert time.monotonic() < deadline, 'the %s work still served after %ss' % (
                kind, BOUND)
            time.sleep(0.05)
    assert len(set(pids)) == 1 and pids[0] != os.getpid(), pids
    assert not _gone(pids[0])
    shutil.rmtree(server.dir)
    ended = time.monotonic()
    # its idle wait began as the build's work ended, a moment ago
    while not _gone(pids[0]):
        assert time.monotonic() - ended < _waits.IDLE_WAIT / 2.0, \
            'the process still runs %ss after the job ended' % (_waits.IDLE_WAIT / 2.0)
        time.sleep(0.05)


def test_a_process_waits_for_the_host_that_started_it_to_register(tmp_path):
    """The host that forks the run's process registers its work after the
    fork returns; a loaded controller may hold its worker for a while in
    between: the process it started is still there to take the work, not
    ended for serving nothing."""
    server = BatchServer(str(tmp_path), 'eval', 'k')

    def files_of(kind, key):
        return BatchServer(str(tmp_path), kind, key)
    token, started = server.run.ensure('h1', files_of)
    assert started
    time.sleep(1)
    server.request('h1', 'r', pid_of_server)
    with open(server.alive_path) as handle:
        assert handle.read() == token
    assert server.answer('h1', 'r', None, timeout=BOUND)[0]['pid'] != os.getpid()


# another user's attempt to register a work, as a separate program
OTHER_USER = r'''
import json, socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(30)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print('refused: %s' % exc.strerror)
    sys.exit(0)
data = json.dumps(json.loads(sys.argv[2])).encode()
try:
    sock.sendall(struct.pack('>I', len(data)) + data)
    got = sock.recv(4)
except (ConnectionResetError, BrokenPipeError):
    got = b''  # closed unread
print('reply: %r' % got)
'''


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to run a program as nobody')
def test_another_user_cannot_register_a_work(tmp_path, request):
    """The socket is the run's user's: another user (nobody) cannot reach
    it in its private folder, and where the folder and socket are opened
    up to everyone the process still checks the peer's user, closing the
    connection unanswered; nothing is registered."""
    # a run folder other users could reach, but for its own modes
    base = tempfile.mkdtemp(prefix='nixdeploy-run-server-')
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    server = BatchServer(base, 'eval', 'k')
    held, release = held_wave(tmp_path)
    server.request('h1', 'r', held)
    wait_for(str(tmp_path / 'started'))
    entry = json.dumps({'kind': 'eval', 'key': 'other', 'serve': held, 'context': None,
                        'waves_at_once': 1, 'waiting': [], 'starter': 'h9'})

    def as_nobody():
        return subprocess.run(['/usr/bin/python3', '-I', '-c', OTHER_USER,
                               server.run.socket_path, entry], user='nobody',
                              stdout=subprocess.PIPE, universal_newlines=True,
                              timeout=BOUND, check=True).stdout.strip()
    assert as_nobody() == 'refused: Permission denied'
    os.chmod(base, 0o755)
    os.chmod(server.dir, 0o755)
    os.chmod(server.run.socket_path, 0o777)
    assert as_nobody() == "reply: b''"
    assert not os.path.exists(os.path.join(server.dir, 'eval-other.alive'))
    open(release, 'w').close()
    assert server.answer('h1', 'r', None, timeout=BOUND)[0]['pid'] != os.getpid()
