"""Run the collection for real in tests: importable as nixdeploy.fleet.

``ansible_env()`` returns an environment in which ansible-playbook finds this
checkout as the collection ``nixdeploy.fleet`` (a symlinked
ansible_collections tree) with host key checking on. ``run_playbook`` runs a
playbook and returns its exit code, output and the per-task results the
test-only ``record`` callback wrote.
"""

import atexit
import glob
import hashlib
import json
import os
import contextlib
import shutil
import socket as unix_socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# one tree per checkout: two checkouts tested at once (a clone beside the
# work tree) must not re-point each other's link mid-run
COLLECTIONS = os.path.join(tempfile.gettempdir(), 'nixdeploy-test-collections-%s'
                           % hashlib.sha256(REPO.encode('utf-8')).hexdigest()[:12])
BIN = os.path.dirname(sys.executable)


def collections_path():
    """A tree <tmp>/ansible_collections/nixdeploy/fleet -> this checkout."""
    link = os.path.join(COLLECTIONS, 'ansible_collections', 'nixdeploy', 'fleet')
    if os.path.realpath(link) != REPO:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        tmp = link + '.%d' % os.getpid()
        os.symlink(REPO, tmp)
        os.replace(tmp, link)
    return COLLECTIONS


# The suite's ansible.cfg for a playbook run in a folder with none of its own
# (ansible_env's ``cwd``): the poll interval this repository's ansible.cfg
# sets and docs/concepts.md asks users to set. ansible-core reads it from a
# config file only; at its default (1 ms) each run's main process spins
# while its hosts wait on an evaluation, a build or a copy.
SUITE_CONFIG = os.path.join(REPO, 'tests', 'suite-ansible.cfg')


# The evaluation caches of this process's runs (``ansible_env``), one
# folder each inside one folder for the process, removed when it ends: a
# whole suite makes thousands.
_EVAL_CACHES = []


def eval_cache_folder():
    """A new empty evaluation cache folder for one run, removed with this
    process's others when it ends."""
    if not _EVAL_CACHES or not os.path.isdir(_EVAL_CACHES[0]):
        del _EVAL_CACHES[:]
        _EVAL_CACHES.append(tempfile.mkdtemp(prefix='nixdeploy-eval-caches-'))
        atexit.register(_remove_eval_caches, _EVAL_CACHES[0], os.getpid())
    return tempfile.mkdtemp(prefix='run-', dir=_EVAL_CACHES[0])


def _remove_eval_caches(folder, pid):
    # a child forked by a test (a detached batch process run in this
    # process) inherits the hook: only the process that made them removes
    if os.getpid() == pid:
        shutil.rmtree(folder, True)


def ansible_env(extra=None, cwd=None):
    """The environment of an ansible-playbook run of the tests (``extra``
    on top). ``cwd``: the folder it runs in; where that folder has no
    ansible.cfg and ``extra`` names none, the run reads the suite's
    (``SUITE_CONFIG``), as a user's run reads their project's."""
    env = dict(os.environ)
    if cwd is not None and not os.path.exists(os.path.join(cwd, 'ansible.cfg')):
        env['ANSIBLE_CONFIG'] = SUITE_CONFIG
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': collections_path(),
        'ANSIBLE_HOST_KEY_CHECKING': 'True',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_CALLBACK_PLUGINS': os.path.join(REPO, 'tests', 'callback_plugins'),
        # the summary and progress lines a deploy prints, as users enable them
        'ANSIBLE_CALLBACKS_ENABLED': 'record,nixdeploy.fleet.summary',
        'ANSIBLE_GATHERING': 'explicit',
        'ANSIBLE_PYTHON_INTERPRETER': 'auto_silent',
        'ANSIBLE_LOCAL_TEMP': os.path.join(tempfile.gettempdir(), 'nixdeploy-ansible-tmp'),
        'PATH': BIN + os.pathsep + env.get('PATH', ''),
        # each run its own evaluation cache: a test counts what one run
        # evaluates; the cache's tests name a folder they share on purpose
        'NIXDEPLOY_EVAL_CACHE': eval_cache_folder(),
    })
    env.update(extra or {})
    return env


def unsafe_free(value):
    """ansible-inventory --list marks untrusted strings {"__ansible_unsafe": s}."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return dict((k, unsafe_free(v)) for k, v in value.items())
    if isinstance(value, list):
        return [unsafe_free(v) for v in value]
    return value


class PlaybookRun:
    def __init__(self, rc, stdout, stderr, records):
        self.rc, self.stdout, self.stderr, self.records = rc, stdout, stderr, records

    def summary(self):
        """{host: record} of the deploy summary (the role's custom stat
        ``nixdeploy``, as AWX and ansible-runner see it)."""
        found = {}
        for rec in self.records:
            if rec['status'] == 'stats':
                found.update((rec['result'].get('_run') or {}).get('nixdeploy') or {})
        return found

    def stats(self):
        """Every custom stat of the run (what AWX keeps as artifacts)."""
        found = {}
        for rec in self.records:
            if rec['status'] == 'stats':
                found.update(rec['result'].get('_run') or {})
        return found

    def outcomes(self):
        return {host: rec['outcome'] for host, rec in self.summary().items()}

    def results(self, task=None, host=None):
        return [r for r in self.records if r['status'] != 'stats'
                and (task is None or r['task'] == task) and (host is None or r['host'] == host)]

    def result(self, task, host):
        found = self.results(task, host)
        if not found:
            raise AssertionError('no result for task %r on %s\n%s\n%s'
                                 % (task, host, self.stdout[-3000:], self.stderr[-2000:]))
        return found[-1]

    def __repr__(self):
        return 'PlaybookRun(rc=%s)\n%s\n%s' % (self.rc, self.stdout[-4000:], self.stderr[-2000:])


def run_playbook(playbook, inventory, workdir, args=(), env=None, timeout=900, wrapper=()):
    """Run ansible-playbook. ``playbook``: a path, or YAML/list to write.
    ``inventory``: a path, or a dict written as JSON. ``wrapper``: a command
    that runs ansible-playbook's (``CONTAINED``)."""
    os.makedirs(workdir, exist_ok=True)
    if not isinstance(playbook, str) or '\n' in playbook:
        path = os.path.join(workdir, 'playbook.yml')
        with open(path, 'w') as handle:
            handle.write(playbook if isinstance(playbook, str) else json.dumps(playbook))
        playbook = path
    if isinstance(inventory, dict):
        path = os.path.join(workdir, 'inventory.json')
        with open(path, 'w') as handle:
            json.dump(inventory, handle)
        inventory = path
    record = os.path.join(workdir, 'record-%d.jsonl' % len(os.listdir(workdir)))
    argv = list(wrapper) + [os.path.join(BIN, 'ansible-playbook'), '-i', inventory, playbook] + list(args)
    # stdin: ssh may have left the inherited one non-blocking, which
    # ansible-core 2.21 refuses to start with
    run_env = ansible_env(dict(env or {}, NIXDEPLOY_TEST_RECORD=record), cwd=workdir)
    proc = subprocess.run(argv, cwd=workdir, env=run_env,
                          stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    records = []
    if os.path.exists(record):
        with open(record) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, records)


# A wrapper for run_playbook: ansible-playbook in a PID namespace of its own,
# under a shell that ends when it does. As in a container (an execution
# environment's job), every process the job left behind is killed then.
CONTAINED = ('unshare', '--pid', '--fork', 'sh', '-c', '"$@"; code=$?; exit $code', 'sh')


def set_stats_of(artifacts):
    """What AWX keeps as a job's artifacts: the artifact_data of the
    playbook_on_stats event in an ansible-runner artifacts folder."""
    for path in glob.glob(os.path.join(artifacts, 'job_events', '*.json')):
        with open(path) as handle:
            event = json.load(handle)
        if event.get('event') == 'playbook_on_stats':
            return event['event_data'].get('artifact_data') or {}
    raise AssertionError('no playbook_on_stats event in %s' % artifacts)


def _answers(path):
    """Whether a program listens on the unix socket at ``path``: its file
    appears at bind(), a moment before listen(), and a client that comes in
    between is refused (ssh-add then exits 2)."""
    with unix_socket.socket(unix_socket.AF_UNIX, unix_socket.SOCK_STREAM) as client:
        try:
            client.connect(path)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def ssh_agent(path, keys=(), env=None):
    """An ssh-agent of its own at ``path`` holding ``keys`` (as AWX's runner,
    Semaphore and ansible-navigator users hand a deploy key to ssh): yields the
    socket's path; the agent is stopped (by its pid) and the socket removed
    after."""
    agent = subprocess.Popen(['ssh-agent', '-D', '-a', path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # bounds the wait only (it ends once the agent listens): generous,
        # for a busy machine
        deadline = time.monotonic() + 120
        while not _answers(path):
            if agent.poll() is not None:
                raise AssertionError('ssh-agent at %s ended (exit %s) before it listened'
                                     % (path, agent.returncode))
            if time.monotonic() > deadline:
                raise AssertionError('ssh-agent at %s did not listen within 120 s' % path)
            time.sleep(0.05)
        for key in keys:
            subprocess.run(['ssh-add', key], env=dict(env or os.environ, SSH_AUTH_SOCK=path),
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        yield path
    finally:
        agent.terminate()
        agent.wait()
        if os.path.exists(path):
            os.unlink(path)
