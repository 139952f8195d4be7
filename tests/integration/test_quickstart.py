"""The docs a Galaxy user reads, run as written (issue 61).

The collection's tarball is built (``ansible-galaxy collection build``) and
the blocks of README.md (its part before "Developing this collection") and of
docs/quickstart.md run in order, literally, in a fresh folder, against three
lab hosts named as the docs name them (``web1``, ``web2``: NixOS; ``mac``: a
nix-darwin host reached as ``deploy`` with become):

- a fenced block whose first line is a comment naming a file (``# ansible.cfg``,
  ``# inventory/fleet.nix.yml``) is written to that file; it must be the same
  text as ``examples/<file>`` of the checkout and of the installed collection;
- every line of a ``sh`` block is a command, run with ``sh -c`` in the
  fleet's folder; each must exit 0 (the outcome on every host is then read on
  the host itself).

What the test substitutes, and nothing else:

- ``ansible-galaxy collection install nixdeploy.fleet`` (Galaxy's server) is
  run as ``ansible-galaxy collection install <the built tarball>``: the same
  command, installing into ``~/.ansible/collections`` as from Galaxy.
- ``~`` is a temporary home: HOME, and its ``.ssh`` bound over the user's own
  ``~/.ssh`` in a private mount namespace (ssh finds ``~`` in the password
  database, not in HOME). It holds what a user has before the quickstart: ``~/.ssh/config``
  mapping web1, web2 and mac to the lab's addresses, the lab's deployer key as
  ``~/.ssh/id_ed25519``, the lab's host keys as ``~/.ssh/known_hosts``, and
  ``~/.config/nix/nix.conf`` with flakes enabled, no substituters and an empty
  global flake registry (nothing may be fetched: no network).
- The flake's inputs ``nixpkgs`` and ``nix-darwin`` are locked (a flake.lock
  in the fleet's git repository before the quickstart's ``nix flake lock``,
  which then has nothing to do) to a local stand-in whose
  ``lib.nixosSystem`` / ``lib.darwinSystem`` build the lab's busybox systems
  (tests/lab/fixtures.py) named after the module file (``hosts/web1.nix``);
  ``hosts/<host>.nix`` are the user's modules, here ``{ version = "1"; }``,
  and the test's edit before the quickstart's "Change a system" step sets
  web2's to ``"2"``. The stand-in builds for this machine's own system (the
  flake's ``system = "aarch64-darwin"`` is not read), so the Mac deploys
  from this Linux controller as a lab host.
- The lab's mac host trusts ``deploy`` as a Nix user (``trusted-users``, what a
  nix-darwin configuration sets), so its copies need no signing key.

Last, a flake with a syntax error must fail the run (the quickstart's
``[inventory]`` block): rc != 0, Nix's message shown, nothing deployed.
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

from tests.collection import BIN, REPO
from tests.galaxy import pack
from tests.lab.fixtures import FleetFlake, nix_system

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOSTS = [{'name': 'web1', 'persona': 'nixos'},
         {'name': 'web2', 'persona': 'nixos'},
         {'name': 'mac', 'persona': 'darwin'}]
INSTALL = 'ansible-galaxy collection install nixdeploy.fleet'
FENCE = re.compile(r'^```(\w*)\s*$')
FILE_LINE = re.compile(r'^# ([\w.-]+(?:/[\w.-]+)*\.(?:nix|yml|yaml|cfg))$')

# nixpkgs and nix-darwin for the test: the lab's systems, named after the
# module (hosts/<name>.nix), the module's attributes its knobs (version)
STAND_IN = '''{
  # nixpkgs and nix-darwin as tests/integration/test_quickstart.py stands them in
  outputs = { self }:
    let
      nameOf = modules: builtins.replaceStrings [ ".nix" ] [ "" ]
        (baseNameOf (toString (builtins.head modules)));
      knobs = modules: builtins.foldl' (acc: m: acc // import m) { } modules;
      lab = platform: modules: import ./lib.nix {
        fleet = {
          system = "%s"; heavy = 0; hosts = { };
          configurations.${nameOf modules} = { inherit platform; behaviour = "ok"; }
            // knobs modules;
        };
        busyboxDir = ./busybox;
      };
    in {
      lib.nixosSystem = { modules, ... }: (lab "nixos" modules).nixosConfigurations.${nameOf modules};
      lib.darwinSystem = { modules, ... }: (lab "darwin" modules).darwinConfigurations.${nameOf modules};
    };
}
'''


def blocks(path, stop=None):
    """[(language, text)] of the fenced blocks of ``path`` (before the
    heading ``stop``)."""
    found, lang, lines = [], None, []
    with open(path, encoding='utf-8') as handle:
        for line in handle.read().splitlines():
            if lang is None and stop and line.strip() == stop:
                break
            match = FENCE.match(line)
            if match and lang is None:
                lang, lines = match.group(1), []
            elif line.strip() == '```' and lang is not None:
                found.append((lang, '\n'.join(lines) + '\n'))
                lang = None
            elif lang is not None:
                lines.append(line)
    return found


def file_of(block):
    first = block.split('\n', 1)[0]
    match = FILE_LINE.match(first)
    return match.group(1) if match else None


def commands(block):
    """The commands of a sh block: one a line, continuation lines joined,
    comment lines left out."""
    found, pending = [], ''
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith('#')):
            continue
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        found.append(pending + line)
        pending = ''
    return found


class User:
    """A user at a controller: a home of their own, a fleet folder."""

    def __init__(self, base, lab, tarball):
        self.home = os.path.join(base, 'home')
        self.fleet = os.path.join(base, 'fleet')
        self.tarball = tarball
        self.lab = lab
        # ssh's ~/.ssh (the password database's home, not HOME)
        self.ssh_dir = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, '.ssh')
        # the home's .ssh is bound over it: a mount needs its mount point, and
        # a fresh machine's root may have no ~/.ssh yet
        os.makedirs(self.ssh_dir, mode=0o700, exist_ok=True)
        self.log = []
        os.makedirs(self.fleet)
        ssh = os.path.join(self.home, '.ssh')
        os.makedirs(ssh, mode=0o700)
        with open(os.path.join(ssh, 'config'), 'w') as handle:
            for name, host in sorted(lab.hosts.items()):
                handle.write('Host %s\n  HostName %s\n' % (name, host['address']))
        shutil.copy(lab.key, os.path.join(ssh, 'id_ed25519'))
        os.chmod(os.path.join(ssh, 'id_ed25519'), 0o600)
        shutil.copy(lab.known_hosts, os.path.join(ssh, 'known_hosts'))
        nix_conf = os.path.join(self.home, '.config', 'nix')
        os.makedirs(nix_conf)
        registry = os.path.join(self.home, 'empty-registry.json')
        with open(registry, 'w') as handle:
            handle.write('{"flakes": [], "version": 2}\n')
        with open(os.path.join(nix_conf, 'nix.conf'), 'w') as handle:
            handle.write('experimental-features = nix-command flakes\nsubstituters =\n'
                         'flake-registry = %s\n' % registry)
        env = dict((k, v) for k, v in os.environ.items()
                   if not k.startswith(('ANSIBLE_', 'NIXDEPLOY_', 'NIX_CONFIG', 'VIRTUAL_ENV')))
        env.update({'HOME': self.home, 'PATH': BIN + os.pathsep + os.environ.get('PATH', '')})
        self.env = env

    def run(self, line, check=True):
        """``line`` with sh in the fleet folder, the home's .ssh bound over
        the user's own."""
        argv = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                'mount --bind "$1" "$2" && cd "$3" && exec sh -c "$4"', 'sh',
                os.path.join(self.home, '.ssh'), self.ssh_dir, self.fleet, line]
        proc = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=600, check=False)
        self.log.append((line, proc.returncode, proc.stdout))
        if check:
            assert proc.returncode == 0, '%s: rc=%s\n%s' % (
                line, proc.returncode, proc.stdout[-6000:])
        return proc

    def command(self, line):
        if line.strip() == INSTALL:
            line = 'ansible-galaxy collection install %s' % self.tarball
        return self.run(line)

    def write(self, rel, text):
        path = os.path.join(self.fleet, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)

    @property
    def installed(self):
        return os.path.join(self.home, '.ansible', 'collections', 'ansible_collections',
                            'nixdeploy', 'fleet')


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('dist'))
    # what git tracks, as a release packs it (tests/galaxy/pack.py)
    path = pack.build(out)
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        version = yaml.safe_load(handle)['version']
    assert os.path.basename(path) == 'nixdeploy-fleet-%s.tar.gz' % version, path
    return path


def stand_in(path):
    """The stand-in flake at ``path`` and the fleet's flake.lock text."""
    FleetFlake.write(path, {}, {})
    with open(os.path.join(path, 'flake.nix'), 'w') as handle:
        handle.write(STAND_IN % nix_system())
    nar = subprocess.run(['nix', '--extra-experimental-features', 'nix-command', 'hash', 'path',
                          path], check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout.strip()
    originals = {'nixpkgs': {'type': 'github', 'owner': 'NixOS', 'repo': 'nixpkgs',
                             'ref': 'nixos-24.11'},
                 'nix-darwin': {'type': 'github', 'owner': 'nix-darwin', 'repo': 'nix-darwin',
                                'ref': 'nix-darwin-24.11'}}
    nodes = dict((name, {'locked': {'type': 'path', 'path': path, 'narHash': nar},
                         'original': original}) for name, original in originals.items())
    nodes['root'] = {'inputs': dict((name, name) for name in originals)}
    return json.dumps({'nodes': nodes, 'root': 'root', 'version': 7}, indent=2) + '\n'


def test_quickstart_as_written(make_lab, request, tarball):
    lab = make_lab('qst', HOSTS)
    # what a nix-darwin configuration sets for its deploy user
    lab.add_nix_conf('mac', 'trusted-users = root deploy')
    # a short base: ansible's ssh ControlPath (~/.ansible/cp/<hash>.<random>)
    # must fit a unix socket's 108 bytes, and pytest-xdist's tmp_path is longer
    base = tempfile.mkdtemp(prefix='qst-')
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    user = User(base, lab, tarball)
    lock = stand_in(os.path.join(base, 'stand-in'))

    readme = blocks(os.path.join(REPO, 'README.md'), stop='## Developing this collection')
    quickstart = blocks(os.path.join(REPO, 'docs', 'quickstart.md'))
    for lang, text in readme + quickstart:
        # every block is run or written: none is left untested
        assert lang == 'sh' or file_of(text), 'a block neither sh nor a file:\n%s' % text

    # what the user has before the quickstart: a git repository with the
    # inputs pinned, their host modules
    user.run('git init -q')
    user.write('flake.lock', lock)
    user.run('git add flake.lock')
    for name in ('web1', 'web2', 'mac'):
        user.write('hosts/%s.nix' % name, '{ version = "1"; }\n')

    # README: the install
    install = [text for lang, text in readme if INSTALL in text]
    assert install, 'the README has no install block'
    for line in commands(install[0]):
        user.command(line)
    assert os.path.isfile(os.path.join(user.installed, 'MANIFEST.json'))

    def active(host):
        return os.path.basename(lab.active(host) or '')

    edited = False
    for lang, text in quickstart:
        rel = file_of(text)
        if rel:
            for source in (REPO, user.installed):
                with open(os.path.join(source, 'examples', rel)) as handle:
                    assert handle.read() == text, 'examples/%s (%s) is not the quickstart\'s' % (
                        rel, source)
            user.write(rel, text)
            continue
        if 'nixdeploy.fleet.rollback' in text and not edited:
            # the user's change the quickstart asks for
            user.write('hosts/web2.nix', '{ version = "2"; }\n')
            edited = True
        for line in commands(text):
            proc = user.command(line)
            if line == 'ansible-inventory --graph':
                for name in ('web1', 'web2', 'mac', '@vps', '@prod', '@hk', '@nixos', '@darwin'):
                    assert name in proc.stdout, proc.stdout
            if '--check' in line:
                assert not active('web1') and not active('web2'), 'check mode deployed'
            if line == 'ansible-playbook nixdeploy.fleet.deploy -l vps':
                assert active('web1').endswith('nixos-system-web1-1'), active('web1')
                assert active('web2').endswith('nixos-system-web2-1'), active('web2')
                assert not active('mac'), 'the mac deployed with -l vps'
            if line == 'ansible-playbook nixdeploy.fleet.deploy -l mac':
                assert active('mac').endswith('darwin-system-mac-1'), active('mac')
            if line == 'ansible-playbook nixdeploy.fleet.deploy -l web2':
                assert active('web2').endswith('nixos-system-web2-2'), active('web2')
            if line == 'ansible-playbook nixdeploy.fleet.rollback -l web2':
                assert active('web2').endswith('nixos-system-web2-1'), active('web2')
    assert edited, 'the quickstart has no rollback step'
    assert active('web1').endswith('nixos-system-web1-1')
    assert os.path.isfile(os.path.join(user.fleet, 'reports', 'nixdeploy-report.json'))
    # what the runs wrote is not among what git would add (git add -A)
    status = user.run('git status --porcelain --untracked-files=all').stdout
    assert 'reports/' not in status and 'nixdeploy-' not in status, status

    # README: the commands of "Use it on your fleet", on the same fleet: web2
    # moves to version 2 again and back
    lines = [line for lang, text in readme if INSTALL not in text for line in commands(text)]
    assert any('nixdeploy.fleet.rollback' in line for line in lines), lines
    for line in lines:
        user.command(line)
        if line.startswith('ansible-playbook nixdeploy.fleet.deploy -l vps') and '--check' not in line:
            assert active('web2').endswith('nixos-system-web2-2'), active('web2')
    assert active('web2').endswith('nixos-system-web2-1'), active('web2')
    assert active('web1').endswith('nixos-system-web1-1')
    assert active('mac').endswith('darwin-system-mac-1')

    # the [inventory] block: a flake that does not evaluate fails the run
    with open(os.path.join(user.fleet, 'flake.nix')) as handle:
        good = handle.read()
    user.write('flake.nix', good.replace('inventory = {', 'inventory = {{', 1))
    proc = user.run('ansible-playbook nixdeploy.fleet.deploy -l vps', check=False)
    assert proc.returncode != 0, proc.stdout[-4000:]
    # Nix's own message, and no traceback
    assert 'syntax error' in proc.stdout, proc.stdout[-4000:]
    assert 'Traceback' not in proc.stdout, proc.stdout[-4000:]
    assert active('web2').endswith('nixos-system-web2-1')
