"""`python -m tests.lab try`: a fleet to try the collection on, from a clone.

Brings up a lab (Lab.up) of NixOS hosts named as docs/quickstart.md names
them (web1, web2, ...; with ``mac``, also its nix-darwin host ``mac``) and
writes a folder laid out as the quickstart's fleet folder:

- the fleet's flake (tests/lab/fixtures.py FleetFlake: one busybox-built
  system per host, shaped like the real platform's), a git repository with
  its files committed, since Nix reads a flake in git from the files git
  tracks. Each system's version is in a file of its own, hosts/<host>.nix,
  as the quickstart's modules are: a system's evaluation reads its own file
  and none of the others', so after the one-host edit the docs suggest a
  deploy evaluates that host again and reuses the others' evaluations;
- inventory/fleet.nix.yml, inventory/group_vars/all.yml (and darwin.yml) and
  ansible.cfg: the quickstart's own files (examples/), with the few lines
  the lab needs added to fleet.nix.yml and all.yml;
- ssh/: a config, the lab's deployer key and its hosts' keys (known_hosts),
  which all.yml hands to ssh with ``-F``, so Ansible and ``nix copy`` reach
  the hosts with host key checking on;
- env.sh: PATH with this clone's ansible and ANSIBLE_COLLECTIONS_PATH with
  this clone as the collection (the link ``make demo`` makes), not an
  installed one; README.txt says how to use an installed one instead;
- README.txt: what is there, the commands, how to take it down.

The lab's hosts are network namespaces on this machine (docs/lab.md);
``python -m tests.lab down --name NAME`` stops them. The folder stays.
"""

import os
import shlex
import shutil
import sys
import time

from .lab import Lab, LabError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, 'examples')
# ansible-playbook of the Python running this (the clone's venv under make try)
BIN = os.path.dirname(sys.executable)
# marks a folder this command wrote: only such a folder is replaced by a new try
MARKER = '.nixdeploy-try'
# the flake's files (FleetFlake.write), committed; the rest is the fleet folder
IGNORED = ('ssh/', 'reports/', 'nixdeploy-unreachable.txt')


def host_specs(count, mac=False):
    """web1..webN (NixOS, reached as root), and with ``mac`` the quickstart's
    nix-darwin host ``mac`` (reached as deploy, with become)."""
    if count < 1 or count > 50:
        raise LabError('--hosts: 1 to 50 NixOS hosts, not %d' % count)
    hosts = [{'name': 'web%d' % i, 'persona': 'nixos'} for i in range(1, count + 1)]
    if mac:
        hosts.append({'name': 'mac', 'persona': 'darwin'})
    return hosts


def host_tags(names):
    """Tags as the quickstart's: every web host is vps; web1, web3, ... also
    prod, web2, web4, ... also hk. The mac has none (the plugin puts it in the
    group darwin by its platform)."""
    tags = {}
    for name in names:
        if name.startswith('web'):
            tags[name] = ['vps', 'prod' if int(name[3:]) % 2 else 'hk']
    return tags


def check_folder(directory):
    """Refuse a folder that holds anything but an earlier try's; say why."""
    if os.path.realpath(directory) == os.path.realpath(REPO) or \
            os.path.realpath(REPO).startswith(os.path.realpath(directory) + os.sep):
        raise LabError('--dir %s holds this clone: give a folder of its own' % directory)
    # Nix hands the ssh options to ssh split on whitespace (NIX_SSHOPTS)
    if any(ch.isspace() for ch in directory):
        raise LabError('--dir %r: the path must not contain whitespace (ssh options name '
                       'files in it, and Nix splits them on whitespace)' % directory)
    if os.path.isdir(directory) and os.listdir(directory) and \
            not os.path.exists(os.path.join(directory, MARKER)):
        raise LabError('--dir %s is not empty and was not written by `python -m tests.lab '
                       'try`: give a new or empty folder' % directory)


def link_collection():
    """<clone>/.collections/ansible_collections/nixdeploy/fleet -> the clone,
    as `make demo` makes it (demo/demo.py); returns <clone>/.collections."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from demo.demo import link_collection as demo_link  # pylint: disable=import-outside-toplevel
    demo_link()
    return os.path.join(REPO, '.collections')


def _example(rel):
    with open(os.path.join(EXAMPLES, rel)) as handle:
        return handle.read()


def _write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(path, mode)


def ssh_files(lab, folder):
    """ssh/config, ssh/id_ed25519 and ssh/known_hosts in ``folder`` for the
    lab's hosts; returns the config's path. Each Host entry is the host's
    name and its address (what the flake's inventory gives as targetHost)."""
    ssh = os.path.join(folder, 'ssh')
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    key = os.path.join(ssh, 'id_ed25519')
    shutil.copy(lab.key, key)
    os.chmod(key, 0o600)
    shutil.copy(lab.key + '.pub', key + '.pub')
    known_hosts = os.path.join(ssh, 'known_hosts')
    shutil.copy(lab.known_hosts, known_hosts)
    entries = ['# ssh settings for the lab %s (python -m tests.lab try). Host keys are\n'
               '# checked against known_hosts beside this file: a changed key is refused.\n'
               '# By hand: ssh -F ssh/config web1\n' % lab.name]
    for name, host in sorted(lab.hosts.items()):
        entries.append(
            'Host %s %s\n  HostName %s\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n'
            '  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n'
            % (name, host['address'], host['address'], host['ssh_user'], key, known_hosts))
    config = os.path.join(ssh, 'config')
    _write(config, '\n'.join(entries), mode=0o600)
    return config


# The try fleet's flake: the lab's (FleetFlake), each system built from its
# configuration in fleet.json and its own hosts/<name>.nix. lib.nix is called
# once per system with only that configuration, so evaluating web1 reads
# hosts/web1.nix and no other host's file.
TRY_FLAKE = """\
{
  # A fleet to try nixdeploy.fleet on (python -m tests.lab try): busybox-built
  # systems shaped like each platform's. fleet.json says which hosts exist
  # (the inventory below: address, ssh user, tags); hosts/<host>.nix is each
  # system's own module (its version), read only by that system's evaluation.
  description = "nixdeploy.fleet try fleet";

  outputs = { self }:
    let
      fleet = builtins.fromJSON (builtins.readFile ./fleet.json);
      lab = fleet: import ./lib.nix { inherit fleet; busyboxDir = ./busybox; };
      all = lab fleet;
      # one system, from its configuration and its own module file
      own = name: lab (fleet // {
        configurations.${name} = fleet.configurations.${name}
          // import (./hosts + "/${name}.nix");
      });
      systems = output: builtins.mapAttrs (name: _: (own name).${output}.${name}) all.${output};
    in
    all // {
      nixosConfigurations = systems "nixosConfigurations";
      darwinConfigurations = systems "darwinConfigurations";
    };
}
"""


def own_modules(flake):
    """Move each system's version out of fleet.json into hosts/<name>.nix
    and write the try fleet's flake.nix that reads them (TRY_FLAKE)."""
    for name, config in sorted(flake.data['configurations'].items()):
        version = config.pop('version', '1')
        _write(os.path.join(flake.path, 'hosts', '%s.nix' % name),
               '# the system of %s: a new version is a new generation\n'
               '{ version = "%s"; }\n' % (name, version))
    flake.save()
    _write(os.path.join(flake.path, 'flake.nix'), TRY_FLAKE)


def inventory_files(folder, ssh_config, mac):
    """The quickstart's inventory files, with the lab's lines added."""
    _write(os.path.join(folder, 'inventory', 'fleet.nix.yml'),
           _example('inventory/fleet.nix.yml') +
           '\n# The lab has no network: Nix must not ask cache.nixos.org for anything.\n'
           'nix_options:\n'
           "  substituters: ''\n")
    _write(os.path.join(folder, 'inventory', 'group_vars', 'all.yml'),
           _example('inventory/group_vars/all.yml') +
           '\n# The lab (python -m tests.lab try): ssh, and Nix\'s ssh for its copies, read\n'
           '# this config, which names the lab\'s key and the hosts\' keys (known_hosts);\n'
           '# host keys are checked.\n'
           'ansible_ssh_common_args: -F %s\n'
           '# The lab has no network: Nix on this machine must not ask cache.nixos.org.\n'
           'nix_options:\n'
           "  substituters: ''\n" % ssh_config)
    if mac:
        _write(os.path.join(folder, 'inventory', 'group_vars', 'darwin.yml'),
               _example('inventory/group_vars/darwin.yml'))
    _write(os.path.join(folder, 'ansible.cfg'), _example('ansible.cfg'))


def env_file(folder, collections):
    _write(os.path.join(folder, 'env.sh'),
           '# . ./env.sh in this folder: ansible from the clone\'s venv, and THE CLONE\n'
           '# as the collection nixdeploy.fleet (a link to it under %s),\n'
           '# not a collection installed with ansible-galaxy: while this is set,\n'
           '# Ansible runs the clone\'s code. To try an installed collection instead,\n'
           '# do not source this file (or unset ANSIBLE_COLLECTIONS_PATH): see README.txt.\n'
           'export PATH=%s:"$PATH"\n'
           'export ANSIBLE_COLLECTIONS_PATH=%s\n'
           % (collections, shlex.quote(BIN), shlex.quote(collections)))


README = """\
A fleet to try nixdeploy.fleet on, without machines of your own.

The hosts are the lab {name}: {count} throwaway hosts on this machine, each a
network namespace with its own sshd, host key and /nix (tests/lab in the
repository, docs/lab.md). They run busybox-built systems shaped like the real
ones, which Nix builds here. Written by `python -m tests.lab try` from the
clone {repo}.

  host       address        ssh user  groups
{hosts}

What is here
  flake.nix, lib.nix, *.sh, busybox/, fleet.json, hosts/
      the fleet's flake, a git repository (Nix reads only the files git
      tracks). fleet.json says which hosts exist (the flake's `inventory`:
      address, ssh user, tags); hosts/<host>.nix is each system's own
      module, its version.
  inventory/fleet.nix.yml, inventory/group_vars/, ansible.cfg
      the files of docs/quickstart.md (the collection's examples/), with the
      lab's lines at the end of fleet.nix.yml and group_vars/all.yml: ssh
      reads ssh/config, and Nix asks no binary cache (the lab has no network).
  ssh/
      config, the lab's key (id_ed25519) and the hosts' keys (known_hosts):
      host keys are checked. By hand: ssh -F ssh/config web1
  env.sh
      PATH with the clone's ansible, and ANSIBLE_COLLECTIONS_PATH={collections}:
      the clone, linked as the collection nixdeploy.fleet (as `make demo`
      does), NOT an installed collection: with it, Ansible runs the clone.
  reports/
      appears with the first run: a JSON and an HTML report of each run.

First, in this folder:

  cd {folder}
  . ./env.sh

To try the collection as Galaxy installs it instead, skip env.sh and
install it into a folder of this one (ansible-playbook on your PATH):

  ansible-galaxy collection install -p ./collections nixdeploy.fleet
  export ANSIBLE_COLLECTIONS_PATH=$PWD/collections

(a tarball instead of nixdeploy.fleet works the same; Ansible finds a
collection installed with -p only in a folder ANSIBLE_COLLECTIONS_PATH
names; without -p it goes to ~/.ansible/collections, found as it is).

Then the quickstart's commands, as written (docs/quickstart.md, 4 and 5):

  ansible-inventory --graph
  ansible-playbook nixdeploy.fleet.deploy -l vps --check --diff
  ansible-playbook nixdeploy.fleet.deploy -l vps
{mac_line}
Change a system: in hosts/{web}.nix set version to "2" and commit it (git
tracks it already: no git add needed), then deploy:

  git commit -qam '{web}: version 2'
  ansible-playbook nixdeploy.fleet.deploy -l vps
  ansible-playbook nixdeploy.fleet.rollback -l {web}

The deploy evaluates {web} again and moves it to a new generation; the
other hosts' evaluations are reused, each system reading only its own
hosts/ file (the summary's last lines: "nixdeploy: evaluation: 1
evaluated, 1 reused ..."). Uncommitted, every host is evaluated: the first
run of a changed work tree after a commit's reuses nothing. The rollback
activates the generation before.
What a host runs, read on the host:

  ssh -F ssh/config {web} readlink /run/current-system

Take the lab down (stops every process it started, removes its namespaces;
this folder stays, rm -rf it when done), in the clone:

  cd {repo} && .venv/bin/python -m tests.lab down --name {name}
{make_down}"""


def readme(lab, folder, collections, tags, mac):
    rows = []
    for name, host in sorted(lab.hosts.items()):
        groups = list(tags.get(name, [])) + [host['platform']]
        rows.append('  %-10s %-14s %-9s %s'
                    % (name, host['address'], host['ssh_user'], ', '.join(groups)))
    return README.format(
        name=lab.name, count=len(lab.hosts), repo=REPO, folder=folder, collections=collections,
        hosts='\n'.join(rows), web='web2' if 'web2' in lab.hosts else 'web1',
        mac_line='  ansible-playbook nixdeploy.fleet.deploy -l mac\n' if mac else
        '\n(The quickstart\'s `-l mac` needs the nix-darwin host: `try --mac` adds it.)\n',
        make_down='  (or: make try-down%s)\n' % ('' if lab.name == 'try'
                                                 else ' TRY_NAME=%s' % lab.name))


def commit(folder):
    """The folder a git repository with everything but ssh/ and reports/
    committed (Nix reads only what git tracks)."""
    # imported here: tests.deploy_fleet imports tests.lab
    from tests.deploy_fleet import commit_project, git  # pylint: disable=import-outside-toplevel
    _write(os.path.join(folder, '.gitignore'), ''.join('/%s\n' % p for p in IGNORED))
    git(folder, 'init', '-q', '-b', 'main')
    commit_project(folder, 'a fleet to try nixdeploy.fleet on (python -m tests.lab try)')


def write_folder(lab, folder, mac=False):
    """Write the try folder for ``lab`` (up) into ``folder``."""
    collections = link_collection()
    tags = host_tags(lab.hosts)
    if mac:
        # what a nix-darwin configuration sets for its deploy user, so its
        # copies need no signing key (as the quickstart's test does)
        lab.add_nix_conf('mac', 'trusted-users = root deploy')
    from .fixtures import FleetFlake  # pylint: disable=import-outside-toplevel
    own_modules(FleetFlake.for_lab(folder, lab, tags=tags))
    ssh_config = ssh_files(lab, folder)
    inventory_files(folder, ssh_config, mac)
    env_file(folder, collections)
    _write(os.path.join(folder, 'README.txt'), readme(lab, folder, collections, tags, mac))
    _write(os.path.join(folder, MARKER), 'lab %s\n' % lab.name)
    commit(folder)


def try_fleet(folder, name='try', hosts=2, mac=False):
    """Bring up the lab ``name`` and write ``folder``; a failure takes the lab
    down again. Returns the Lab."""
    if os.geteuid() != 0:
        raise LabError('run as root: the lab makes network namespaces')
    folder = os.path.abspath(folder)
    specs = host_specs(hosts, mac)
    check_folder(folder)
    lab = Lab(name)
    if lab.state:
        print('lab %s is up: taking it down first' % name, flush=True)
    started = time.time()
    lab.up(specs)
    try:
        if os.path.isdir(folder):
            # empty, or an earlier try's (check_folder)
            shutil.rmtree(folder)
        os.makedirs(folder)
        write_folder(lab, folder, mac)
    except BaseException:
        lab.down()
        raise
    print('lab %s up: %d hosts' % (lab.name, len(lab.hosts)))
    print('\n'.join(lab.status()))
    if not os.path.exists(os.path.join(BIN, 'ansible-playbook')):
        print('note: no ansible-playbook beside %s: run this with the clone\'s venv '
              '(make try) or install ansible-core' % sys.executable)
    print('\nfolder %s ready in %.0fs: read %s'
          % (folder, time.time() - started, os.path.join(folder, 'README.txt')))
    print('  cd %s && . ./env.sh && ansible-playbook nixdeploy.fleet.deploy -l vps' % folder)
    return lab
