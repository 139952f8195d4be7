"""A deployable lab fleet: a lab's fixture flake plus a signing key it trusts.

Shared by the deploy role tests, the ansible-runner test, Molecule's create
playbook and the demo. The lab hosts trust only root; darwin (``deploy`` +
sudo) and home-manager (``app``) hosts are deployed by users Nix does not
trust, so the controller signs each closure with a key every host trusts, as
one would on a real fleet (``trusted-public-keys``).

CLI (Molecule's create playbook):
  python -m tests.deploy_fleet --lab mol --flake DIR [--tag h1=vps,hk ...]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from tests.collection import BIN, REPO, collections_path, run_playbook
from tests.lab import Lab
from tests.lab.fixtures import FleetFlake

KEY_NAME = 'nixdeploy-lab-1'


def signing_key(directory, name=KEY_NAME):
    """(secret key file, public key) in ``directory``; made once."""
    secret = os.path.join(directory, 'signing-key')
    public = secret + '.pub'
    if not (os.path.exists(secret) and os.path.exists(public)):
        os.makedirs(directory, exist_ok=True)
        subprocess.run(['nix-store', '--generate-binary-cache-key', name, secret, public],
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.chmod(secret, 0o600)
    with open(public) as handle:
        return secret, handle.read().strip()


def trust_key(lab, public_key):
    """Make every lab host's Nix accept paths signed by ``public_key``."""
    for name in lab.hosts:
        lab.add_nix_conf(name, 'trusted-public-keys = %s' % public_key)


def prepare(lab, flake_dir, key_dir=None, tags=None, configurations=None, **flake_args):
    """Write the fleet flake for ``lab`` and trust a signing key on its hosts.

    Returns (FleetFlake, secret key path).
    """
    secret, public = signing_key(key_dir or lab.dir)
    trust_key(lab, public)
    flake = FleetFlake.for_lab(flake_dir, lab, tags=tags, configurations=configurations,
                               **flake_args)
    return flake, secret


def lab_group_vars(lab, secret_key):
    """Inventory vars for a lab: its key and known_hosts, no caches, the signing key."""
    return {
        'ansible_ssh_private_key_file': lab.key,
        'ansible_ssh_common_args': '-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'
                                   ' -o IdentitiesOnly=yes' % lab.known_hosts,
        # what keeps checking on under ansible-runner (ANSIBLE_HOST_KEY_CHECKING=False)
        'ansible_host_key_checking': True,
        'nix_options': {'substituters': ''},
        'nix_signing_key': secret_key,
    }


def write_inventory(directory, lab, flake, secret_key, name='fleet'):
    """An inventory directory as users keep one: a nixdeploy.fleet.nix config
    for ``flake`` and group_vars with the lab's connection and trust settings.
    Returns the directory."""
    group_vars = os.path.join(directory, 'group_vars')
    os.makedirs(group_vars, exist_ok=True)
    # The folder, as users write it, when it is a git checkout of its own
    # (publish needs the git flake); else its path: reference: a plain folder
    # inside a git checkout (benchmarks/results/ of this one) would be read as
    # that repository, as Nix reads it, where an ignored folder does not exist.
    own_repo = os.path.exists(os.path.join(flake.path, '.git'))
    config = {'plugin': 'nixdeploy.fleet.nix', 'flake': flake.path if own_repo else flake.ref,
              'nix_options': {'substituters': ''}}
    # JSON is YAML: no quoting surprises in paths.
    with open(os.path.join(directory, '%s.nix.yml' % name), 'w') as handle:
        json.dump(config, handle, indent=2)
    with open(os.path.join(group_vars, 'all.yml'), 'w') as handle:
        json.dump(lab_group_vars(lab, secret_key), handle, indent=2)
    # nix-darwin activation needs root: its deploy user uses sudo
    with open(os.path.join(group_vars, 'darwin.yml'), 'w') as handle:
        json.dump({'ansible_become': True}, handle)
    return directory


def write_host_vars(inventory, name, hostvars):
    """host_vars/<name>.yml of an inventory directory (JSON is YAML)."""
    folder = os.path.join(inventory, 'host_vars')
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, '%s.yml' % name), 'w') as handle:
        json.dump(hostvars, handle)


class DeployFleet:
    """A lab, its flake and inventory, deployed with `nixdeploy.fleet.deploy`,
    each run in a fresh working directory under ``workdir``."""

    PLAYBOOK = 'nixdeploy.fleet.deploy'

    def __init__(self, lab, flake, inventory, workdir):
        self.lab, self.flake, self.inventory, self.workdir = lab, flake, inventory, workdir
        self.runs = 0

    def rundir(self):
        self.runs += 1
        path = os.path.join(self.workdir, 'run%d' % self.runs)
        os.makedirs(path)
        return path

    def deploy(self, *args, **kwargs):
        return run_playbook(self.PLAYBOOK, self.inventory, self.rundir(), args=list(args),
                            **kwargs)


def deployed_once(fleet_fixture):
    """(first_deploy, deployed): the fixtures of a test module whose tests
    share the fleet of its module fixture named ``fleet_fixture`` and start
    from a deployed fleet. ``first_deploy`` is the fleet's first deploy (the
    run), made once for the module by whichever test asks first, so each
    test also runs alone; ``deployed`` is the fleet, once that deploy passed.
    A module takes them as ``first_deploy, deployed = deployed_once('fleet')``."""
    # the CLI runs without pytest: imported only where a test module asks
    import pytest  # pylint: disable=import-outside-toplevel

    @pytest.fixture(scope='module')
    def first_deploy(request):
        return request.getfixturevalue(fleet_fixture).deploy()

    @pytest.fixture
    def deployed(request, first_deploy):  # pylint: disable=redefined-outer-name
        assert first_deploy.rc == 0, first_deploy
        return request.getfixturevalue(fleet_fixture)

    return first_deploy, deployed


def runner_private_dir(private, inventory=None, envvars=None):
    """An ansible-runner private data dir as AWX prepares one: the
    repository's deploy.yml as the project, ``inventory`` (a file copied into
    inventory/, or None when the caller writes it), env with ``envvars``
    added to what the collection needs."""
    for folder in ('project', 'inventory', 'env'):
        os.makedirs(os.path.join(private, folder), exist_ok=True)
    shutil.copy(os.path.join(REPO, 'deploy.yml'), os.path.join(private, 'project', 'deploy.yml'))
    if inventory:
        shutil.copy(inventory, os.path.join(private, 'inventory', os.path.basename(inventory)))
    # no ANSIBLE_HOST_KEY_CHECKING: ansible-runner sets it False, as for AWX's
    # jobs; the inventory's ansible_host_key_checking keeps checking on
    env = {
        'ANSIBLE_COLLECTIONS_PATH': collections_path(),
        'ANSIBLE_GATHERING': 'explicit',
        'PATH': BIN + os.pathsep + os.environ.get('PATH', ''),
    }
    env.update(envvars or {})
    with open(os.path.join(private, 'env', 'envvars'), 'w') as handle:
        json.dump(env, handle)
    with open(os.path.join(private, 'env', 'settings'), 'w') as handle:
        json.dump({'job_timeout': 600, 'suppress_ansible_output': True}, handle)
    return private


# A project as AWX, ansible-navigator and Semaphore users keep one: a git
# checkout that holds the flake at its top, deploy.yml, ansible.cfg, the
# inventory file for nixdeploy.fleet.nix with group_vars, and the fleet's
# known_hosts. These jobs run ansible-playbook in the project folder, so
# ansible.cfg and a relative known_hosts are found there.
PROJECT_ANSIBLE_CFG = """\
# Read by AWX, ansible-navigator and Semaphore: they run ansible-playbook here.
[defaults]
callbacks_enabled = nixdeploy.fleet.summary, nixdeploy.fleet.report
forks = 25
gathering = explicit
inject_facts_as_vars = False
interpreter_python = auto_silent
internal_poll_interval = 0.05
host_key_checking = True
retry_files_enabled = False
display_skipped_hosts = False
timeout = 30

[inventory]
unparsed_is_failed = True

[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15
pipelining = True
"""
PROJECT_GROUP_VARS = {
    # relative: ssh opens it in the folder ansible-playbook runs in, the project
    'ansible_ssh_common_args': '-o UserKnownHostsFile=known_hosts -o StrictHostKeyChecking=yes',
    # beats ANSIBLE_HOST_KEY_CHECKING=False, which ansible-runner (AWX,
    # ansible-navigator) puts into every job's environment
    'ansible_host_key_checking': True,
    'nix_options': {'substituters': ''},
}
GIT_IDENTITY = ['-c', 'user.name=nixdeploy tests', '-c', 'user.email=tests@nixdeploy.invalid',
                # the project may belong to the job's user (AWX's UID), not to root
                '-c', 'safe.directory=*']


def git(directory, *args, env=None):
    """git in ``directory`` as the tests' own identity (``env``: variables
    added to this process's); returns its stdout."""
    proc = subprocess.run(['git'] + GIT_IDENTITY + ['-C', directory] + list(args), check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, **env) if env else None)
    if proc.returncode != 0:
        raise RuntimeError('git %s in %s: %s' % (' '.join(args), directory, proc.stderr))
    return proc.stdout


def write_project(path, lab, requirements=None, tags=None, configurations=None, key_dir=None,
                  **flake_args):
    """A git repository at ``path`` laid out as a project AWX, ansible-navigator
    and Semaphore run: the lab's fleet flake at its top, deploy.yml (importing
    nixdeploy.fleet.deploy), ansible.cfg, inventory/fleet.nix.yml (flake: ..)
    with group_vars, the lab's known_hosts and, with ``requirements`` (a dict),
    collections/requirements.yml. Everything is committed on branch main.

    The signing key is not in the project (it is a secret: the job gets it as
    a credential). Returns (FleetFlake, secret key path)."""
    flake, secret = prepare(lab, path, key_dir=key_dir, tags=tags, configurations=configurations,
                            **flake_args)
    shutil.copy(os.path.join(REPO, 'deploy.yml'), os.path.join(path, 'deploy.yml'))
    shutil.copy(lab.known_hosts, os.path.join(path, 'known_hosts'))
    with open(os.path.join(path, 'ansible.cfg'), 'w') as handle:
        handle.write(PROJECT_ANSIBLE_CFG)
    group_vars = os.path.join(path, 'inventory', 'group_vars')
    os.makedirs(group_vars, exist_ok=True)
    with open(os.path.join(path, 'inventory', 'fleet.nix.yml'), 'w') as handle:
        handle.write('plugin: nixdeploy.fleet.nix\n'
                     '# the flake at the top of this repository\n'
                     'flake: ..\n'
                     "nix_options: {substituters: ''}\n")
    with open(os.path.join(group_vars, 'all.yml'), 'w') as handle:
        json.dump(PROJECT_GROUP_VARS, handle, indent=2)
    with open(os.path.join(group_vars, 'darwin.yml'), 'w') as handle:
        json.dump({'ansible_become': True}, handle)
    if requirements is not None:
        os.makedirs(os.path.join(path, 'collections'), exist_ok=True)
        with open(os.path.join(path, 'collections', 'requirements.yml'), 'w') as handle:
            json.dump(requirements, handle, indent=2)
    git(path, 'init', '-q', '-b', 'main')
    commit_project(path, 'the fleet')
    return flake, secret


def commit_project(path, message='a new version', date=None):
    """Commit every change in the project (as its users push one), dated
    ``date`` (seconds since the epoch; default now); returns its revision."""
    env = {'GIT_AUTHOR_DATE': '@%d' % date, 'GIT_COMMITTER_DATE': '@%d' % date} if date else None
    git(path, 'add', '-A')
    git(path, 'commit', '-q', '--allow-empty', '-m', message, env=env)
    return git(path, 'rev-parse', 'HEAD').strip()


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.deploy_fleet', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lab', required=True, help='name of a lab that is up')
    parser.add_argument('--flake', required=True, help='directory to write the flake to')
    parser.add_argument('--tag', action='append', default=[], metavar='HOST=TAG,TAG',
                        help='tags of a host (repeatable)')
    parser.add_argument('--version', default='1', help='version of every configuration')
    args = parser.parse_args(argv)
    lab = Lab(args.lab)
    if not lab.state:
        print('lab %s is not up' % args.lab, file=sys.stderr)
        return 2
    tags = {}
    for item in args.tag:
        host, _sep, names = item.partition('=')
        tags[host] = [t for t in names.split(',') if t]
    flake, secret = prepare(lab, args.flake, tags=tags)
    flake.set_all(version=args.version)
    print('flake %s for lab %s; signing key %s' % (flake.ref, lab.name, secret))
    return 0


if __name__ == '__main__':
    sys.exit(main())
