"""A deploy the way Semaphore UI's task runner runs one, with its own commands.

Semaphore (db_lib/AnsibleApp.go, AnsiblePlaybook.go, services/tasks/LocalJob.go)
clones the repository into its ``tmp_path`` (``repository_<repo>_<template>``;
the next task pulls), starts an ssh agent holding the inventory's SSH key (its
socket in ``tmp_path``, SSH_AUTH_SOCK), installs ``collections/requirements.yml``
(and ``requirements.yml``) of the playbook's folder with ``ansible-galaxy
collection install -r FILE --force`` in the checkout, with HOME set to
``tmp_path`` and no ``-p`` (so into ``$HOME/.ansible/collections``; skipped while
the file's md5 is the one it wrote last), then runs ``ansible-playbook -i
inventory/fleet.nix.yml --extra-vars JSON --extra-vars SECRET=VALUE deploy.yml`` in
the checkout, on a pty, with only PATH, HOME, PWD, PYTHONUNBUFFERED,
ANSIBLE_FORCE_COLOR and the variable group's environment.

The project (tests/deploy_fleet.py write_project) names this checkout's
collection as the tarball `ansible-galaxy collection build` makes, so the
deploy runs the INSTALLED collection: nothing points at this checkout (no
ANSIBLE_COLLECTIONS_PATH, no ansible.cfg of this repository, HOME elsewhere).
Three lab hosts (`sem` lab: NixOS, nix-darwin, home-manager) are deployed,
then a new version pushed to the repository, then the same again: nothing
changes.

The same commands then run in a container as Semaphore's image runs them: as
UID 1001 (group root), with the image's PATH (ansible-core 2.19+ in a venv
before the image's own older ansible), a single-user Nix store at /nix that
UID owns, and Semaphore's /etc/ansible/ansible.cfg (host_key_checking =
False). The image is ee/semaphore/Containerfile built by ee/semaphore/build.sh
on a stand-in for semaphoreui/semaphore made from the EE's Debian base (no
registry here: the real image, its Alpine and its entrypoint are not tried;
docs/semaphore.md). The build is cached by a hash of its inputs (seconds when
unchanged, 45-70 s from nothing on 2 busy cores).
"""

import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import shutil
from contextlib import contextmanager

import pytest
import yaml

from tests.collection import BIN, REPO, ssh_agent
from tests.galaxy import pack
from tests.deploy_fleet import commit_project, git, write_project
from tests.integration.host_key_vars import check_host_keys

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

HOSTS = [{'name': 'sem1', 'persona': 'nixos'}, {'name': 'sem2', 'persona': 'darwin'},
         {'name': 'sem3', 'persona': 'home-manager'}]
NAMES = [h['name'] for h in HOSTS]
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
# what Semaphore gives every command (AnsiblePlaybook.makeCmd), besides PATH and HOME
BASE_ENV = {'PYTHONUNBUFFERED': '1', 'ANSIBLE_FORCE_COLOR': 'True'}
# Semaphore's image with what the collection needs (ee/semaphore/build.sh makes it)
IMAGE = os.environ.get('NIXDEPLOY_SEMAPHORE_IMAGE', 'localhost/nixdeploy-semaphore:test')
BUILD = os.path.join(REPO, 'ee', 'semaphore', 'build.sh')
CONTAINERS_CONF = os.path.join(REPO, 'ee', 'containers.conf')
# the user of semaphoreui/semaphore (deployment/docker/server/Dockerfile: adduser -u 1001)
SEMAPHORE_UID = 1001


def podman(*argv, timeout=120):
    return subprocess.run(['podman'] + list(argv), check=False, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout,
                          env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF))


def on_pty(argv, cwd, env, timeout=600):
    """Run ``argv`` on a pty, as Semaphore runs ansible-playbook; (rc, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _w, _x = select.select([master], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:   # EIO: every holder of the pty's other side is gone
                break
            if not data:
                break
            chunks.append(data)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        os.close(master)
    rc = proc.wait(timeout=30)
    return rc, ANSI.sub('', b''.join(chunks).decode('utf-8', 'replace')).replace('\r\n', '\n')


class Semaphore:
    """The parts of Semaphore's task runner a task of template 1 (repository 1,
    inventory of type File, a variable group) goes through."""

    def __init__(self, tmp_path, repository_url, ssh_key, container=None):
        self.tmp_path, self.url, self.ssh_key = tmp_path, repository_url, ssh_key
        self.checkout = os.path.join(tmp_path, 'repository_1_1')
        # None: the commands run here; else the name of the container they run in
        # (podman exec as Semaphore's user, every path the same inside)
        self.container = container
        self.log = []

    def tool(self, name):
        """ansible-playbook, ansible-galaxy: this stack's, or the image's on its PATH."""
        return name if self.container else os.path.join(BIN, name)

    def command_env(self, extra=None):
        # PATH as the service's (nix and this stack's ansible on it; in the container
        # the image's, which podman exec keeps), nothing else of ours
        env = dict(BASE_ENV, HOME=self.tmp_path, PWD=self.checkout)
        if not self.container:
            env['PATH'] = BIN + os.pathsep + '/usr/local/bin:/usr/bin:/bin'
        env.update(extra or {})
        return env

    def argv(self, argv, cwd, env, tty=False):
        """``argv`` as run: itself, or podman exec of it in the container."""
        if not self.container:
            return argv
        wrapped = ['podman', 'exec'] + (['-t'] if tty else []) + [
            '--user', str(SEMAPHORE_UID), '--workdir', cwd]
        for name, value in sorted(env.items()):
            wrapped += ['-e', '%s=%s' % (name, value)]
        return wrapped + [self.container] + list(argv)

    def run(self, argv, cwd, env=None):
        self.log.append(argv)
        env = env or self.command_env()
        proc = subprocess.run(self.argv(argv, cwd, env), cwd=cwd,
                              env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)
                              if self.container else env, check=False,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
        assert proc.returncode == 0, (argv, proc.stdout[-3000:])
        return proc.stdout

    @contextmanager
    def agent(self, socket):
        """Semaphore's ssh agent holding the task's key: yields its socket."""
        if not self.container:
            with ssh_agent(socket, [self.ssh_key], self.command_env()) as agent_socket:
                yield agent_socket
            return
        out = self.run(['ssh-agent', '-s', '-a', socket], self.tmp_path)
        pid = re.search(r'SSH_AGENT_PID=(\d+)', out).group(1)
        try:
            self.run(['ssh-add', self.ssh_key], self.tmp_path,
                     self.command_env({'SSH_AUTH_SOCK': socket}))
            yield socket
        finally:
            self.run(['sh', '-c', 'kill "$0"', pid], self.tmp_path)

    def update_repository(self):
        """CmdGitClient: clone, or fetch and pull when it can be pulled."""
        if os.path.isdir(os.path.join(self.checkout, '.git')):
            self.run(['git', 'fetch'], self.checkout)
            self.run(['git', 'pull', '--recurse-submodules', 'origin', 'main'], self.checkout)
        else:
            self.run(['git', 'clone', '--recursive', '--branch', 'main', self.url,
                      'repository_1_1'], self.tmp_path)

    def install_requirements(self):
        """AnsibleApp.InstallRequirements: collections then roles, each file
        installed only when its md5 differs from the one written last."""
        installed = []
        for kind, relative in (('collection', 'collections/requirements.yml'),
                               ('collection', 'requirements.yml'),
                               ('role', 'roles/requirements.yml'), ('role', 'requirements.yml')):
            path = os.path.join(self.checkout, relative)
            if not os.path.exists(path):
                continue
            with open(path, 'rb') as handle:
                digest = hashlib.md5(handle.read()).hexdigest()
            stamp = path + '.md5'
            if os.path.exists(stamp) and open(stamp).read() == digest:
                continue
            self.run([self.tool('ansible-galaxy'), kind, 'install', '-r', path, '--force'],
                     self.checkout)
            with open(stamp, 'w') as handle:
                handle.write(digest)
            installed.append(relative)
        return installed

    def task(self, task_id, extra_vars, secrets, environment):
        """One task: (rc, output, requirement files installed)."""
        self.update_repository()
        # Semaphore's ssh agent for the task's key (no --private-key since 2023)
        socket = os.path.join(self.tmp_path, 'ssh-agent-1-%d.sock' % task_id)
        with self.agent(socket) as agent_socket:
            self.log.append(['ssh-add', self.ssh_key])
            installed = self.install_requirements()
            # LocalJob.getPlaybookArgs: the variable group's extra vars with the task's
            # details as one JSON, each secret as NAME=VALUE, then the playbook
            variables = dict(extra_vars, semaphore_vars={'task_details': {
                'id': task_id, 'username': 'admin',
                'url': 'https://semaphore.invalid/project/1/history?t=%d' % task_id}})
            argv = [self.tool('ansible-playbook'), '-i', 'inventory/fleet.nix.yml',
                    '--extra-vars', json.dumps(variables)]
            for name, value in secrets.items():
                argv += ['--extra-vars', '%s=%s' % (name, value)]
            argv.append('deploy.yml')
            self.log.append(argv)
            env = self.command_env(dict(environment, SSH_AUTH_SOCK=agent_socket))
            rc, output = on_pty(self.argv(argv, self.checkout, env, tty=True), self.checkout,
                                dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)
                                if self.container else env)
        return rc, output, installed


@pytest.fixture(scope='module')
def semaphore(make_lab, tmp_path_factory):
    lab = make_lab('sem', HOSTS)
    base = str(tmp_path_factory.mktemp('semaphore'))
    dist = os.path.join(base, 'dist')
    # built from this checkout as a release is; the tarball stays outside the project
    # (what git tracks: tests/galaxy/pack.py)
    tarball = os.path.basename(pack.build(dist))
    upstream = os.path.join(base, 'infra')
    flake, secret = write_project(upstream, lab, requirements={'collections': [
        {'name': os.path.join(dist, tarball), 'type': 'file'}]}, key_dir=os.path.join(base, 'keys'))
    # as its users do: checked whatever the runner's environment says (the
    # collection refuses a host whose key ssh does not check)
    check_host_keys(os.path.join(upstream, 'inventory', 'group_vars', 'all.yml'))
    commit_project(upstream, 'host keys checked')
    tmp_path = os.path.join(base, 'semaphore-tmp')
    os.makedirs(tmp_path)
    return lab, flake, secret, upstream, Semaphore(tmp_path, upstream, lab.key), base


def report_of(reports, task_id):
    with open(os.path.join(reports, 'nixdeploy-report-semaphore-%d.json' % task_id)) as handle:
        return json.load(handle)


def test_semaphore_tasks_deploy_with_the_installed_collection(semaphore):
    lab, flake, secret, upstream, sem, base = semaphore
    reports = os.path.join(base, 'reports')
    extra_vars = {'nix_goal': 'switch', 'nix_confirm_timeout': 30}
    secrets = {'nix_signing_key': secret}
    environment = {'NIXDEPLOY_REPORT_DIR': reports, 'NIXDEPLOY_REPORT_UNIQUE_NAMES': 'true'}

    rc, output, installed = sem.task(1, extra_vars, secrets, environment)
    assert rc == 0, output[-6000:]
    # every host key was checked: none refused, none deployed unchecked
    assert 'refused: ssh would not check' not in output and 'host key unchecked' not in output
    assert installed == ['collections/requirements.yml']
    # the collection is the one galaxy installed under Semaphore's HOME, and no other
    collections = os.path.join(sem.tmp_path, '.ansible', 'collections')
    installed_dir = os.path.join(collections, 'ansible_collections', 'nixdeploy', 'fleet')
    assert os.path.exists(os.path.join(installed_dir, 'MANIFEST.json'))
    listing = sem.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'list',
                       'nixdeploy.fleet', '--format', 'json'], sem.checkout)
    found = json.loads(listing[listing.index('{'):])
    assert list(found) == [os.path.join(collections, 'ansible_collections')], found
    assert 'NIXDEPLOY SUMMARY' in output, output[-4000:]
    first = report_of(reports, 1)
    assert first['runs'][0]['semaphore']['id'] == 1
    for name in NAMES:
        rec = first['hosts'][name]
        assert rec['status'] == 'changed', rec
        assert rec['generation']['after']['path'] == lab.active(name) == rec['store_path'], name

    # a new version pushed to the repository: the next task pulls it
    flake.set_all(version='2')
    commit_project(upstream, 'version 2')
    rc, output, installed = sem.task(2, extra_vars, secrets, environment)
    assert rc == 0, output[-6000:]
    assert installed == []   # the requirements did not change: galaxy is not run
    second = report_of(reports, 2)
    for name in NAMES:
        rec = second['hosts'][name]
        assert rec['status'] == 'changed', rec
        assert rec['generation']['after']['path'] == lab.active(name) != \
            first['hosts'][name]['store_path'], name

    # the same task again changes nothing
    rc, output, installed = sem.task(3, extra_vars, secrets, environment)
    assert rc == 0, output[-6000:]
    third = report_of(reports, 3)
    assert {n: third['hosts'][n]['status'] for n in NAMES} == dict.fromkeys(NAMES, 'unchanged')
    assert third['totals']['changed'] == 0, third['totals']
    for name in NAMES:
        assert lab.active(name) == second['hosts'][name]['store_path'], name
    assert re.search(r'sem1\s+:\s+ok=\d+\s+changed=0\s', output), output[-3000:]
    # the key reached ssh through Semaphore's agent only, and this checkout stayed out of it
    assert not any('--private-key' in arg for argv in sem.log for arg in argv)


# --- in Semaphore's image -----------------------------------------------------------------

@pytest.fixture(scope='module')
def semaphore_image():
    """ee/semaphore/Containerfile on the stand-in of Semaphore's image (ee/semaphore/build.sh;
    seconds when its inputs are unchanged)."""
    if shutil.which('podman') is None:
        pytest.skip('podman is not installed (make ee installs it and builds the EE base)')
    proc = subprocess.run([BUILD, IMAGE], check=False, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=900,
                          env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF))
    assert proc.returncode == 0, proc.stdout[-4000:]
    return IMAGE


def hand_to_semaphore(path, uid=SEMAPHORE_UID):
    for root, dirs, files in os.walk(path):
        os.lchown(root, uid, 0)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, 0)


def push(upstream, remote):
    """A change pushed to the remote Semaphore reads. It belongs to Semaphore's user, and
    git's local transport runs git-receive-pack without the pusher's config (no
    safe.directory): root pushes while it owns it."""
    hand_to_semaphore(remote, 0)
    try:
        git(upstream, 'push', '-q', remote, 'main')
    finally:
        hand_to_semaphore(remote)


@pytest.fixture(scope='module')
def in_container(semaphore, semaphore_image):
    """Semaphore's task runner in its image, as UID 1001: its tmp_path, the repository
    (a remote it may read), the deploy key and the signing key each where Semaphore keeps
    them, mounted at the same paths as here."""
    lab, flake, secret, upstream, _sem, base = semaphore
    root = os.path.join(base, 'container')
    os.chmod(base, 0o755)   # pytest's 0700: UID 1001 reaches its folders and the tarball
    for folder in ('tmp', 'keys', 'reports'):
        os.makedirs(os.path.join(root, folder))
    remote = os.path.join(root, 'infra.git')
    git(base, 'clone', '-q', '--bare', upstream, remote)
    key = os.path.join(root, 'keys', 'deploy_key')
    signing = os.path.join(root, 'keys', 'nix-signing-key')
    shutil.copy(lab.key, key)
    shutil.copy(secret, signing)
    for path in (key, signing):
        os.chmod(path, 0o600)
    hand_to_semaphore(root)
    name = 'nixdeploy-sem-%d' % os.getpid()
    # the base's folder holds the collection tarball the requirements name: read-only
    proc = podman('run', '-d', '--rm', '--name', name, '--net=host', '--user', str(SEMAPHORE_UID),
                  '-v', '%s:%s:ro' % (base, base), '-v', '%s:%s' % (root, root),
                  semaphore_image, 'sleep', '3600')
    assert proc.returncode == 0, proc.stdout
    try:
        yield (lab, flake, upstream, remote, signing, os.path.join(root, 'reports'),
               Semaphore(os.path.join(root, 'tmp'), remote, key, container=name))
    finally:
        podman('rm', '-f', '-t', '0', name)


def test_semaphore_image_has_what_a_task_needs(in_container):
    sem = in_container[-1]
    out = sem.run(['sh', '-c', 'id -u; command -v ansible-playbook; ansible --version | sed -n 1p; '
                   'stat -c %u /nix/store /nix/var/nix/db; nix --version; ssh -V 2>&1; '
                   'ls /opt/semaphore/apps/ansible/*/venv/bin/ansible-playbook'], sem.tmp_path)
    lines = out.splitlines()
    with open(os.path.join(REPO, 'execution-environment.yml')) as handle:
        pin = yaml.safe_load(handle)['dependencies']['ansible_core']['package_pip'].split('==')[1]
    assert lines[0] == str(SEMAPHORE_UID), out
    # the venv's ansible-core comes first on the image's PATH; the image's own stays
    assert lines[1] == '/opt/nixdeploy/venv/bin/ansible-playbook', out
    assert lines[2] == 'ansible [core %s]' % pin, out
    assert lines[3:5] == [str(SEMAPHORE_UID)] * 2, out     # the single-user store is its own
    assert lines[5].startswith('nix (Nix) 2.') and 'OpenSSH_' in lines[6], out
    assert lines[7].startswith('/opt/semaphore/apps/ansible/'), out


def test_semaphore_tasks_in_its_image_as_uid_1001(in_container):
    lab, flake, upstream, remote, signing, reports, sem = in_container
    extra_vars = {'nix_goal': 'switch', 'nix_confirm_timeout': 30}
    secrets = {'nix_signing_key': signing}
    environment = {'NIXDEPLOY_REPORT_DIR': reports, 'NIXDEPLOY_REPORT_UNIQUE_NAMES': 'true'}
    flake.set_all(version='container-1')
    commit_project(upstream, 'container 1')
    push(upstream, remote)

    rc, output, installed = sem.task(1, extra_vars, secrets, environment)
    assert rc == 0, output[-6000:]
    # Semaphore's /etc/ansible/ansible.cfg turns checking off; the project keeps it on
    assert 'refused: ssh would not check' not in output and 'host key unchecked' not in output
    assert installed == ['collections/requirements.yml']
    assert os.path.exists(os.path.join(sem.tmp_path, '.ansible', 'collections',
                                       'ansible_collections', 'nixdeploy', 'fleet', 'MANIFEST.json'))
    first = report_of(reports, 1)
    for name in NAMES:
        rec = first['hosts'][name]
        assert rec['status'] == 'changed', rec
        assert rec['generation']['after']['path'] == lab.active(name) == rec['store_path'], name
    # built in the single-user store UID 1001 owns, kept there (a path of it, as that UID)
    out = sem.run(['nix', 'path-info', first['hosts']['sem1']['store_path']], sem.tmp_path)
    assert out.strip() == first['hosts']['sem1']['store_path'], out

    rc, output, installed = sem.task(2, extra_vars, secrets, environment)
    assert rc == 0, output[-6000:]
    assert installed == []
    second = report_of(reports, 2)
    assert {n: second['hosts'][n]['status'] for n in NAMES} == dict.fromkeys(NAMES, 'unchanged')
    assert second['totals']['changed'] == 0, second['totals']
    assert not any('--private-key' in arg for argv in sem.log for arg in argv)
