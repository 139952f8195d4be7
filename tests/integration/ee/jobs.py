"""Jobs as AWX runs them: ansible-runner starts the execution environment (EE)
image with podman as an arbitrary UID in group 0, the lab reached over the
host's network.

One lab (`awx`: two NixOS hosts, a nix-darwin, a nix-on-droid and a
home-manager persona) serves every test of this folder. Its project is a git
repository laid out as AWX checks one out (tests/deploy_fleet.py
write_project: the flake, deploy.yml, ansible.cfg, inventory/fleet.nix.yml with
group_vars, known_hosts). As in AWX:

- an **inventory update** runs ``ansible-inventory -i
  /runner/project/inventory/fleet.nix.yml --list --export`` in the EE (the
  inventory plugin and Nix run there); its hosts and variables are what AWX
  keeps, and every job gets them as ``inventory/hosts``, a script printing them;
- each **job** has a private data dir of its own: ``project/`` a clone of the
  repository, ``inventory/hosts``, ``env/ssh_key`` (the machine credential),
  ``env/nix_signing_key`` (the file a custom credential type injects) and
  ``env/extravars`` (AWX's job variables, the template's extra variables and the
  credential's ``nix_signing_key: /runner/env/nix_signing_key``), owned by the
  job's UID (AWX's files belong to the user its EE runs as);
- ``ansible_runner.run(..., process_isolation=True,
  process_isolation_executable='podman', container_image=IMAGE,
  container_options=['--user=1000650000:0', '--net=host'])``, the same as
  ``ansible-runner run DIR -p deploy.yml --process-isolation ...``. ``run()`` is
  ``init_runner()`` then ``Runner.run()``; between the two the files the
  runner made on the host (its callback copy, the ssh key fifo) are handed
  to the job's UID, as they are when AWX's runner makes them inside the EE.

The image comes from ``make ee`` (its podman settings: ee/containers.conf).
"""

import json
import os
import shutil
import subprocess

from ansible_runner.interface import init_command_config, init_runner

from tests.collection import REPO, unsafe_free
from tests.deploy_fleet import commit_project, git

IMAGE = os.environ.get('NIXDEPLOY_EE_IMAGE', 'localhost/nixdeploy-fleet-ee:latest')
CONTAINERS_CONF = os.path.join(REPO, 'ee', 'containers.conf')
# what OpenShift gives a pod, and AWX's container groups: any UID, group 0
JOB_UID = 1000650000
CONTAINER_OPTIONS = ['--user=%d:0' % JOB_UID, '--net=host']
LAB = 'awx'
HOSTS = [{'name': 'a1', 'persona': 'nixos'}, {'name': 'a2', 'persona': 'nixos'},
         {'name': 'a3', 'persona': 'darwin'}, {'name': 'a4', 'persona': 'nix-on-droid'},
         {'name': 'a5', 'persona': 'home-manager'}]
NAMES = [h['name'] for h in HOSTS]
# AWX's extra variables of every job (a subset), and the template's
TEMPLATE_VARS = {'awx_job_template_name': 'nix deploy', 'awx_job_template_id': 7,
                 'awx_inventory_name': 'fleet', 'awx_project_revision': '',
                 'nix_confirm_timeout': 10}


def podman(*args, check=True):
    proc = subprocess.run(['podman'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF), timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError('podman %s: %s' % (' '.join(args), proc.stderr))
    return proc


def containers_named(name):
    """Containers (running or not) whose name is ``name``."""
    out = podman('ps', '-a', '--filter', 'name=^%s$' % name, '--format', '{{.Names}}').stdout
    return out.split()


def hand_over(path, uid=JOB_UID):
    """Everything under ``path`` to the job's UID and group 0, as AWX's files
    belong to the user its EE runs as (the modes stay: secrets 0600)."""
    for root, dirs, files in os.walk(path):
        os.lchown(root, uid, 0)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, 0)


class AwxFleet:
    """The lab, its repository and the jobs run on it."""

    def __init__(self, lab, flake, secret, upstream, base):
        self.lab, self.flake, self.secret, self.upstream = lab, flake, secret, upstream
        self.base = base
        self.inventory = None
        self.jobs = 0
        self.job_id = None

    def commit(self, message):
        """A change pushed to the repository; the next job's project has it."""
        return commit_project(self.upstream, message)

    def ensure_deployed(self):
        """Every host on a system of its own, so that a test has one to roll
        back to when it runs alone (after the others it already has)."""
        if all(self.lab.active(h) for h in NAMES):
            return
        self.flake.set_all(version='base', behaviour='ok')
        self.commit('a system on every host')
        runner, _artifacts = self.job()
        assert runner.status == 'successful', runner.stdout.read()[-6000:]

    def options(self, ident, **kwargs):
        kwargs.update(ident=ident, quiet=True, process_isolation=True,
                      process_isolation_executable='podman', container_image=IMAGE,
                      container_options=list(CONTAINER_OPTIONS))
        return kwargs

    def new_private_dir(self, ident):
        """A job's private data dir: project/ a clone of the repository."""
        private = os.path.join(self.base, 'jobs', ident)
        os.makedirs(os.path.join(private, 'env'))
        git(self.base, 'clone', '-q', '--branch', 'main', self.upstream, os.path.join(private, 'project'))
        return private

    def inventory_update(self):
        """AWX's inventory update: ansible-inventory in the EE, from the project."""
        self.jobs += 1
        ident = 'nixdeploy-inv-%d-%d' % (os.getpid(), self.jobs)
        private = self.new_private_dir(ident)
        runner = init_command_config(
            'ansible-inventory', cmdline_args=[
                '-i', '/runner/project/inventory/fleet.nix.yml', '--list', '--export',
                '--output', '/runner/artifacts/%s/inventory.json' % ident],
            **self.options(ident, private_data_dir=private))
        self.start(private, ident, runner)
        out = runner.stdout.read()
        assert runner.rc == 0, out[-4000:]
        with open(os.path.join(private, 'artifacts', ident, 'inventory.json')) as handle:
            # what AWX keeps of it: plain values
            self.inventory = unsafe_free(json.load(handle))
        return self.inventory

    @staticmethod
    def start(private, ident, runner):
        artifacts = os.path.join(private, 'artifacts', ident)
        os.makedirs(os.path.join(artifacts, 'job_events'), exist_ok=True)
        hand_over(private)
        runner.run()
        return runner

    def job(self, extravars=None, cancel_callback=None, cmdline=None):
        """One job of the template "nix deploy"; returns (runner, artifact dir)."""
        self.jobs += 1
        job_id = self.job_id = 100 + self.jobs
        ident = 'nixdeploy-awx-%d-%d' % (os.getpid(), job_id)
        private = self.new_private_dir(ident)
        inventory = os.path.join(private, 'inventory')
        os.makedirs(inventory)
        # AWX's inventory script: the hosts and variables it keeps
        with open(os.path.join(inventory, 'hosts'), 'w') as handle:
            handle.write('#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n'
                         % json.dumps(self.inventory))
        os.chmod(os.path.join(inventory, 'hosts'), 0o700)
        env = os.path.join(private, 'env')
        with open(self.lab.key) as handle:      # the machine credential
            ssh_key = handle.read()
        with open(os.path.join(env, 'ssh_key'), 'w') as handle:
            handle.write(ssh_key)
        # the custom credential type's file injector and its extra variable
        shutil.copy(self.secret, os.path.join(env, 'nix_signing_key'))
        variables = dict(TEMPLATE_VARS, awx_job_id=job_id, tower_job_id=job_id,
                         nix_signing_key='/runner/env/nix_signing_key')
        variables.update(extravars or {})
        with open(os.path.join(env, 'extravars'), 'w') as handle:
            json.dump(variables, handle)
        for name in ('ssh_key', 'nix_signing_key', 'extravars'):
            os.chmod(os.path.join(env, name), 0o600)
        options = self.options(ident, private_data_dir=private, playbook='deploy.yml',
                               cmdline=cmdline, cancel_callback=cancel_callback,
                               settings={'pexpect_timeout': 1, 'job_timeout': 900})
        runner = init_runner(**options)
        self.start(private, ident, runner)
        return runner, os.path.join(private, 'artifacts', ident)
