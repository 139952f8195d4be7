"""Jobs as AWX 24.6.1 runs them, on the execution environment (EE) image.

One lab (`awx`: two NixOS hosts, a nix-darwin, a nix-on-droid and a
home-manager persona) serves every test of this folder. Its project is a git
repository laid out as AWX users keep one (tests/deploy_fleet.py
write_project: the flake, deploy.yml, ansible.cfg, inventory/fleet.nix.yml with
group_vars, known_hosts). As AWX does:

- a **project update** keeps a checkout of the repository (a full clone under
  the projects root, updated to the branch's newest commit: the job's
  ``scm_revision``);
- each job or inventory update gets a **private data dir** on the control
  node (awx_job.py): ``project/`` that checkout copied WITHOUT ``.git``, the
  inventory script, env/extravars with AWX's variables, the credentials;
- it goes out with ``ansible-runner transmit`` and comes back through
  ``ansible-runner process`` (receptor.py); in between the worker runs
  - on a **container group** (the operator's default): the EE image as a pod,
    ``ansible-runner worker --private-data-dir=/runner`` as UID 1000650000 in
    group 0 (OpenShift's arbitrary UID), here ``podman run -i --rm --user
    1000650000:0 --net=host IMAGE ansible-runner worker ...``: the worker and
    the playbook run inside the container, which unpacks the private data
    dir itself, so every file of it is that UID's;
  - on a **VM execution node** (node.py): ``ansible-runner worker`` on the node
    as its non-root user, starting the EE with rootless podman;
- an **inventory update** runs ``ansible-inventory --list --export -i
  /runner/project/inventory/fleet.nix.yml`` the same way; AWX stores what it
  printed, and each job's ``inventory/hosts`` prints that back, verbatim.

The image comes from ``make ee`` (its podman settings: ee/containers.conf).
"""

import json
import os
import subprocess
import uuid

from tests.collection import REPO
from tests.deploy_fleet import commit_project, git
from tests.integration.ee import awx_job, node, receptor

IMAGE = os.environ.get('NIXDEPLOY_EE_IMAGE', 'localhost/nixdeploy-fleet-ee:latest')
CONTAINERS_CONF = os.path.join(REPO, 'ee', 'containers.conf')
# what OpenShift gives a pod, and AWX's container groups: any UID, group 0
JOB_UID = 1000650000
LAB = 'awx'
HOSTS = [{'name': 'a1', 'persona': 'nixos'}, {'name': 'a2', 'persona': 'nixos'},
         {'name': 'a3', 'persona': 'darwin'}, {'name': 'a4', 'persona': 'nix-on-droid'},
         {'name': 'a5', 'persona': 'home-manager'}]
NAMES = [h['name'] for h in HOSTS]
SOURCE_PATH = 'inventory/fleet.nix.yml'
# the job template "nix deploy" (its extra variables stay templatable) and the inventory
TEMPLATE = {'id': 7, 'name': 'nix deploy', 'playbook': 'deploy.yml',
            'extra_vars': {'nix_confirm_timeout': 10}}
# the job template "nix status" of docs/awx-semaphore.md: job type Check,
# Enable Fact Storage on; its playbook is the project's status.yml
STATUS_TEMPLATE = {'id': 9, 'name': 'nix status', 'playbook': 'status.yml', 'extra_vars': {},
                   'job_type': 'check', 'use_fact_cache': True}
STATUS_PLAYBOOK = '---\n- name: Status\n  ansible.builtin.import_playbook: nixdeploy.fleet.status\n'
INVENTORY = {'id': 3, 'name': 'fleet', 'source_id': 4,
             'host_ids': dict((name, 11 + i) for i, name in enumerate(NAMES))}


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


def pod_worker(name, image=IMAGE, uid=JOB_UID):
    """A container group's pod (awx/main/utils/execution_environments.py
    get_default_pod_spec: the EE image, args ``ansible-runner worker
    --private-data-dir=/runner``) as a container; --net=host: the lab's
    hosts are on this machine's network, as a cluster's pods reach a fleet."""
    return ['podman', 'run', '-i', '--rm', '--name', name, '--user', '%d:0' % uid, '--net=host',
            image, 'ansible-runner', 'worker', '--private-data-dir=/runner']


class AwxFleet:
    """The lab, its repository, AWX's checkout of it and the jobs run on it."""

    def __init__(self, lab, flake, secret, upstream, base):
        self.lab, self.flake, self.secret, self.upstream = lab, flake, secret, upstream
        self.base = base
        self.checkout = os.path.join(base, 'projects', '_8__infra')   # PROJECTS_ROOT/_<id>__<name>
        self.isolation = os.path.join(base, 'isolation')              # AWX_ISOLATION_BASE_PATH
        self.inventory = None
        self.revision = None
        self.jobs = 0
        self.job_id = None
        with open(lab.key) as handle:      # the machine credential's key
            self.ssh_key = handle.read()
        with open(secret) as handle:       # the custom credential's signing key
            self.signing_key = handle.read()

    def commit(self, message, date=None):
        """A change pushed to the repository; the next job's project has it."""
        return commit_project(self.upstream, message, date=date)

    def project_update(self):
        """AWX's project sync (project_update.yml's git task): the checkout
        at the branch's newest commit; returns that revision."""
        if not os.path.isdir(self.checkout):
            git(self.base, 'clone', '-q', '--branch', 'main', self.upstream, self.checkout)
        else:
            git(self.checkout, 'fetch', '-q', 'origin')
            git(self.checkout, 'reset', '-q', '--hard', 'origin/main')
        self.revision = git(self.checkout, 'rev-parse', 'HEAD').strip()
        return self.revision

    def ensure_deployed(self):
        """Every host on a system of its own, so that a test has one to roll
        back to when it runs alone (after the others it already has)."""
        if all(self.lab.active(h) for h in NAMES):
            return
        self.flake.set_all(version='base', behaviour='ok')
        self.commit('a system on every host')
        job = self.job()
        assert job.status == 'successful', job.tail()

    def _next_id(self):
        self.jobs += 1
        return 100 + self.jobs

    def _run(self, params, on_node=False, cancel=None, pod=None):
        if on_node:
            params.update(node.ee_params(IMAGE))
            worker = node.worker(node.job_dir(os.path.basename(params['private_data_dir'])),
                                 CONTAINERS_CONF)
            return receptor.run(params, worker, cancel=cancel)
        return receptor.run(params, pod_worker(pod or self.pod_name(params['ident'])),
                            worker_env=dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF),
                            cancel=cancel)

    @staticmethod
    def pod_name(ident):
        return 'automation-job-%s-%s' % (ident, uuid.uuid4().hex[:5])   # AWXReceptorJob.pod_name

    def inventory_update(self, on_node=False):
        """The inventory source's update: ansible-inventory in the EE, from the
        project; keeps what it printed, as AWX stores it."""
        update_id = self._next_id()
        self.project_update()
        private = awx_job.new_private_dir(self.isolation, update_id, self.checkout)
        params = awx_job.inventory_update_params(private, update_id, INVENTORY['source_id'],
                                                 SOURCE_PATH)
        job = self._run(params, on_node=on_node)
        assert job.status == 'successful', job.tail()
        with open(os.path.join(job.artifacts, 'output.json')) as handle:
            self.inventory = json.load(handle)
        return self.inventory

    def job(self, extravars=None, cancel=None, pod=None, on_node=False, limit=None,
            template=None):
        """One job of ``template`` (None: "nix deploy", TEMPLATE); returns
        its StreamedJob (status, events, artifacts: the folder ``process``
        filled)."""
        template = TEMPLATE if template is None else template
        job_id = self.job_id = self._next_id()
        revision = self.project_update()
        private = awx_job.new_private_dir(self.isolation, job_id, self.checkout)
        # the custom credential type of docs/awx-semaphore.md: a file and its path
        credential = awx_job.inject_file_credential(
            private, {'signing_key': self.signing_key}, {'nix_signing_key': 'signing_key'})
        template = dict(template, extra_vars=dict(template['extra_vars'], **(extravars or {})))
        params = awx_job.job_params(
            private, job_id, template, INVENTORY, revision, self.inventory, self.ssh_key,
            credential_args=credential, limit=limit,
            execution_node='nixdeploy-node' if on_node else None)
        return self._run(params, on_node=on_node, cancel=cancel, pod=pod)
