"""Attacks on the run's one serving process (plugin_utils/task/_run_server.py)
in a real ``ansible-playbook`` run: its secrets, and Ansible's temp folder.

Two hosts publish a real store path to an http cache with a login
(``http://user:PASSWORD@...``, a port that holds each connection three
seconds and closes it unanswered: every Nix call to it fails on its own
grounds, while the serving process runs long enough to be watched) and an ``access-tokens`` option templated
from each host's own token. Ansible's temp folder is past AF_UNIX's path
limit, with spaces and non-ASCII letters in it. The run is at -vvv, writes
the collection's report, and is watched while it runs: every file of its
temp folder, the serving process's ``/proc/<pid>/cmdline`` and ``environ``
(found by the lock file it holds), and every process's argv on the
machine. What a user relies on (docs/security.md): no secret in any of
them, in the output or in the report; and the publish reached its serving
process through that temp folder (each host fails with the publish's own
error, not a registration's)."""

import glob
import os
import socket
import stat
import subprocess
import textwrap
import threading
import time

import pytest

from tests.argv_watch import ArgvWatch
from tests.collection import BIN, ansible_env

# every secret holds the needle the argv watcher looks for
NEEDLE = 'rsattack-9f3c'
CACHE_PASSWORD = NEEDLE + '-cachepw'
ACCESS_TOKENS = {'h1': NEEDLE + '-tokenh1', 'h2': NEEDLE + '-tokenh2'}
SECRETS = [CACHE_PASSWORD] + sorted(ACCESS_TOKENS.values())
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes']
# AF_UNIX's limit is 108 bytes with its NUL
SOCKET_LIMIT = 107

PLAYBOOK = textwrap.dedent('''\
    - name: Publish with a cache login and access tokens
      hosts: all
      gather_facts: false
      tasks:
        - name: Publish
          nixdeploy.fleet.nix_publish:
            path: "%(system)s"
            cache: "http://user:%(password)s@127.0.0.1:%(port)d/"
            signing_key: "{{ playbook_dir }}/signing.key"
            nix_options:
              access-tokens: "github.com={{ access_token }}"
              download-attempts: 1
            timeout: 60
          register: published
          ignore_errors: true
        - name: Show what the publish returned
          ansible.builtin.debug:
            var: published
    ''')


class RunWatch(ArgvWatch):
    """Reads, while a run goes, every regular file under its temp folder
    and the serving process's cmdline and environ (the process that holds
    a ``run-server.running`` of that folder open): what each held of
    ``secrets``, and what it saw (started and stopped as ``ArgvWatch``)."""

    def __init__(self, folder, secrets):
        super(RunWatch, self).__init__(NEEDLE)
        self.folder, self.secrets = folder, [s.encode('utf-8') for s in secrets]
        self.in_files, self.in_process = set(), set()
        self.pids, self.sockets, self.files_read = set(), set(), 0
        # what ran before the watch: pids wrap at pid_max (32768 on many
        # machines, and a whole suite gives out several times that), so a
        # new process can have a lower pid than any before it
        self.before = set(_pids())

    def _holding(self, data):
        return [s.decode('utf-8') for s in self.secrets if s in data]

    def _watch(self):
        while not self._stop.is_set():
            running = self._look_at_files()
            if running:
                self._look_at_processes(running)
            time.sleep(0.02)

    def _look_at_files(self):
        """Each regular file's secrets; the ``run-server.running`` files."""
        running = set()
        for root, _dirs, names in os.walk(self.folder):
            for name in names:
                path = os.path.join(root, name)
                if name == 'run-server.running':
                    running.add(os.path.realpath(path))
                if name.endswith('.sock'):
                    self._note_socket(path)
                data = _read_regular(path)
                if data is None:
                    continue
                self.files_read += 1
                for secret in self._holding(data):
                    self.in_files.add((os.path.relpath(path, self.folder), secret))
        return running

    def _note_socket(self, path):
        """The socket's path, with its own and its folder's modes."""
        try:
            modes = (stat.S_IMODE(os.stat(path).st_mode),
                     stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
        except OSError:
            return  # gone as it looked
        self.sockets.add((path,) + modes)

    def _look_at_processes(self, running):
        # the processes started since the watch began (a scan of every
        # process of a busy machine takes longer than the run's process lives)
        for pid in [n for n in _pids() if n not in self.before]:
            if not _links('/proc/%s/fd' % pid) & running:
                continue
            for part in ('cmdline', 'environ'):
                try:
                    with open('/proc/%s/%s' % (pid, part), 'rb') as handle:
                        data = handle.read()
                except OSError:
                    continue
                self.pids.add(pid)
                for secret in self._holding(data):
                    self.in_process.add((pid, part, secret))


def _pids():
    return [name for name in os.listdir('/proc') if name.isdigit()]


def _links(fd_folder):
    """What a process's open files are (``/proc/<pid>/fd``); each looked
    at on its own: a busy process closes some as they are read."""
    try:
        fds = os.listdir(fd_folder)
    except OSError:
        return set()
    links = set()
    for fd in fds:
        try:
            links.add(os.readlink(os.path.join(fd_folder, fd)))
        except OSError:
            pass
    return links


def _read_regular(path):
    """A regular file's bytes; None for anything else or a file gone as
    it looked. The run's folder holds FIFOs too (a waiting host's doorbell):
    opening one to read waits for a writer, so the watcher stood still for
    as long as the serving process lived and took the ring its host waits for."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return handle.read()


def _store_path(folder):
    """A small store path of the controller's store (no dependencies)."""
    path = os.path.join(folder, 'published-file')
    with open(path, 'w') as handle:
        handle.write('published by the run server attack test\n')
    return subprocess.run(['nix-store', '--add', path], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()


def _signing_key(folder):
    secret, public = os.path.join(folder, 'signing.key'), os.path.join(folder, 'signing.pub')
    subprocess.run(['nix-store', '--generate-binary-cache-key', 'attack-1', secret, public],
                   check=True)


def _silent_cache(seconds):
    """A listening TCP socket on the loopback whose every connection is
    held ``seconds`` and closed unanswered (a thread of this process)."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(('127.0.0.1', 0))
    listening.listen(16)

    def hold(connection):
        time.sleep(seconds)
        connection.close()

    def serve():
        while True:
            try:
                connection, _address = listening.accept()
            except OSError:
                return  # closed: the run is over
            threading.Thread(target=hold, args=(connection,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return listening


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """The run's output, report files and what its watchers saw."""
    folder = str(tmp_path_factory.mktemp('run-server-attacks'))
    cache = _silent_cache(3)
    system = _store_path(folder)
    _signing_key(folder)
    with open(os.path.join(folder, 'hosts'), 'w') as handle:
        handle.write(''.join('%s ansible_connection=local access_token=%s\n' % item
                             for item in sorted(ACCESS_TOKENS.items())))
    with open(os.path.join(folder, 'play.yml'), 'w') as handle:
        handle.write(PLAYBOOK % {'system': system, 'password': CACHE_PASSWORD,
                                 'port': cache.getsockname()[1]})
    local_temp = os.path.join(folder, u'Ansible temp \u00e4\u00f6 \u2713 ' + 'deep-' * 8)
    reports = os.path.join(folder, 'reports')
    env = ansible_env({'ANSIBLE_LOCAL_TEMP': local_temp, 'NIXDEPLOY_REPORT_DIR': reports})
    env['ANSIBLE_CALLBACKS_ENABLED'] += ',nixdeploy.fleet.report'
    try:
        with ArgvWatch(NEEDLE) as argv, RunWatch(local_temp, SECRETS) as watch:
            proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-vvv', '-i', 'hosts',
                                   '-f', '2', 'play.yml'], cwd=folder, env=env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, universal_newlines=True,
                                  timeout=600, check=False)
    finally:
        cache.close()
    if proc.returncode != 0:
        pytest.fail('the playbook failed: %s' % proc.stdout[-5000:])
    return {'output': proc.stdout, 'reports': reports, 'watch': watch, 'argv': argv}


def test_the_publish_reached_its_serving_process_through_a_deep_odd_temp_folder(run):
    """The socket's path is past AF_UNIX's limit and holds spaces and
    non-ASCII letters, the socket 0600 in a 0700 folder; both hosts' publishes were served: each fails with
    the publish's own error about the cache, not a registration's."""
    watch, output = run['watch'], run['output']
    assert watch.sockets, 'the watcher saw no socket of the run'
    assert all(len(os.fsencode(path)) > SOCKET_LIMIT for path, _mode, _folder in watch.sockets)
    # another user reaches neither the folder nor the socket
    assert set((mode, folder) for _path, mode, folder in watch.sockets) == {(0o600, 0o700)}
    for host in ACCESS_TOKENS:
        assert '%s: reading paths in http://127.0.0.1:' % host in output, output[-5000:]
    for word in ('registration', 'internal error', 'Traceback'):
        assert word not in output, output[-5000:]


def test_no_secret_in_the_serving_process_or_any_file_of_the_run(run):
    watch = run['watch']
    assert watch.pids and watch.files_read, 'the watcher saw no serving process or file'
    assert watch.in_process == set() and watch.in_files == set()


def test_no_secret_in_any_argv_the_output_or_the_report(run):
    assert run['argv'].looks and run['argv'].found == []
    assert [s for s in SECRETS if s in run['output']] == []
    reports = [p for p in glob.glob(os.path.join(run['reports'], '**'), recursive=True)
               if os.path.isfile(p)]
    assert reports, 'the run wrote no report'
    for path in reports:
        with open(path, 'rb') as handle:
            data = handle.read()
        assert [s for s in SECRETS if s.encode('utf-8') in data] == [], path
