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

import pytest

from tests.collection import BIN, REPO, ssh_agent
from tests.deploy_fleet import commit_project, write_project
from tests.integration.host_key_vars import check_host_keys

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'sem1', 'persona': 'nixos'}, {'name': 'sem2', 'persona': 'darwin'},
         {'name': 'sem3', 'persona': 'home-manager'}]
NAMES = [h['name'] for h in HOSTS]
ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
# what Semaphore gives every command (AnsiblePlaybook.makeCmd), besides PATH and HOME
BASE_ENV = {'PYTHONUNBUFFERED': '1', 'ANSIBLE_FORCE_COLOR': 'True'}


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

    def __init__(self, tmp_path, repository_url, ssh_key):
        self.tmp_path, self.url, self.ssh_key = tmp_path, repository_url, ssh_key
        self.checkout = os.path.join(tmp_path, 'repository_1_1')
        self.log = []

    def command_env(self, extra=None):
        # PATH as the service's (nix and this stack's ansible on it), nothing else of ours
        env = dict(BASE_ENV, PATH=BIN + os.pathsep + '/usr/local/bin:/usr/bin:/bin',
                   HOME=self.tmp_path, PWD=self.checkout)
        env.update(extra or {})
        return env

    def run(self, argv, cwd, env=None):
        self.log.append(argv)
        proc = subprocess.run(argv, cwd=cwd, env=env or self.command_env(), check=False,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
        assert proc.returncode == 0, (argv, proc.stdout[-3000:])
        return proc.stdout

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
            self.run([os.path.join(BIN, 'ansible-galaxy'), kind, 'install', '-r', path, '--force'],
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
        with ssh_agent(socket, [self.ssh_key], self.command_env()) as agent_socket:
            self.log.append(['ssh-add', self.ssh_key])
            installed = self.install_requirements()
            # LocalJob.getPlaybookArgs: the variable group's extra vars with the task's
            # details as one JSON, each secret as NAME=VALUE, then the playbook
            variables = dict(extra_vars, semaphore_vars={'task_details': {
                'id': task_id, 'username': 'admin',
                'url': 'https://semaphore.invalid/project/1/history?t=%d' % task_id}})
            argv = [os.path.join(BIN, 'ansible-playbook'), '-i', 'inventory/fleet.nix.yml',
                    '--extra-vars', json.dumps(variables)]
            for name, value in secrets.items():
                argv += ['--extra-vars', '%s=%s' % (name, value)]
            argv.append('deploy.yml')
            self.log.append(argv)
            env = self.command_env(dict(environment, SSH_AUTH_SOCK=agent_socket))
            rc, output = on_pty(argv, self.checkout, env)
        return rc, output, installed


@pytest.fixture(scope='module')
def semaphore(make_lab, tmp_path_factory):
    lab = make_lab('sem', HOSTS)
    base = str(tmp_path_factory.mktemp('semaphore'))
    dist = os.path.join(base, 'dist')
    # built from this checkout as a release is; the tarball stays outside the project
    proc = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build',
                           '--output-path', dist, REPO], cwd=base, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    (tarball,) = os.listdir(dist)
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
