"""Fixture flakes shaped like real ones (issue 22).

The lab's ``FleetFlake`` has only the outputs the collection reads. A real
fleet flake also has ``packages.<system>``, ``legacyPackages.<system>``,
``devShells``, ``checks``, ``formatter``, ``apps``, ``overlays`` and
``nixosModules``, takes nixpkgs as an input pinned by ``flake.lock``, often
lives in a subfolder of a repository or in a work tree with uncommitted
changes, and lists a few hundred hosts. ``ShapedFlake`` writes such a flake
on top of ``FleetFlake``: the same fleet.json-driven systems (the fixture's
``lib.nix``, imported as it is), and around them:

- ``nixpkgs``: an input standing in for nixpkgs (``StandIn``): a flake in a
  git repository of its own (``git+file://``, committed, so the lock pins a
  rev and narHash) or a plain folder (``path:``, pinned by narHash). It
  holds the busybox every system is built from (``lib.busyboxDir``, a path
  into the input's source, so any change of the input changes every
  system), a small ``lib`` (``genAttrs``, ``mapAttrs``, ``runCommand``) and
  a big ``legacyPackages.<system>`` (3000 packages and a nested set);
- the real-flake outputs for the controller's system (``nix_system()``):
  ``packages`` (``default`` and two more), ``legacyPackages`` (the input's
  set plus the fleet's own packages), ``devShells.default``, ``checks``,
  ``formatter``, ``apps.default``, ``overlays.default``,
  ``nixosModules.default``; each builds with busybox;
- ``inventory``: the lab hosts (as ``FleetFlake`` writes them) plus
  ``data_hosts`` hosts that only exist as data (``data_host(i)``), made
  with the input's ``lib.mapAttrs``; they deploy the shared configurations
  ``edge``, ``db`` and ``cache`` (real systems that evaluate, never
  deployed), or with ``own_configs`` one configuration each.

Shapes (``SHAPES``):

  git         a git checkout holding the flake at its top, everything
              committed; users point at the folder (``git+file://``)
  git-subdir  the flake in ``nix/fleet`` of a git repository:
              ``git+file:///repo?dir=nix/fleet``
  git-dirty   a git checkout with an uncommitted change (Nix warns "Git tree
              ... is dirty" / "has uncommitted changes"); later changes to
              fleet.json stay uncommitted too, so what deploys is the work
              tree, not HEAD
  path        a plain folder (``path:``) whose nixpkgs is a ``path:`` input

``set_config``/``set_all`` work as on ``FleetFlake``; in the ``git`` and
``git-subdir`` shapes each change is committed, as users commit before they
publish. ``update_input()`` commits a change to the input and relocks.
"""

import json
import os
import shutil
import subprocess

from tests.lab.fixtures import BUSYBOX, FleetFlake, nix_system

SHAPES = ('git', 'git-subdir', 'git-dirty', 'path')
SUBDIR = 'nix/fleet'
# configurations the data hosts deploy (evaluated by benchmarks, never deployed)
DATA_CONFIGS = ('edge', 'db', 'cache')
SITES = ('eu', 'us', 'ap')
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']

STAND_IN = r'''{
  # A stand-in for nixpkgs (nixdeploy.fleet lab, tests/lab/shapes.py): what
  # the fleet's systems are built from and a small lib, pinned by the
  # fleet's flake.lock.
  description = "nixpkgs stand-in";

  outputs = { self }:
    let
      system = "@SYSTEM@";
      release = builtins.readFile ./release;
      # a path into this input's source: any change of the input is a new
      # busybox, so a new system for every host
      busyboxDir = "${self}/busybox";
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      # stdenv's runCommand in busybox: the script runs with every applet on PATH
      runCommand = name: env: script: derivation ({
        inherit name system;
        builder = "${busyboxDir}/busybox";
        args = [ "sh" "-ec" ''
          b=${busyboxDir}/busybox
          $b mkdir -p "$TMPDIR/.bin"
          for a in $($b --list); do $b ln -sf $b "$TMPDIR/.bin/$a"; done
          export PATH="$TMPDIR/.bin"
          ${script}
        '' ];
      } // env);
      names = prefix: n: builtins.genList (i: "${prefix}${toString i}") n;
      package = name: runCommand "${name}-${release}" { } ''
        mkdir -p $out/bin
        printf '#!/bin/sh\necho ${name} ${release}\n' >$out/bin/${name}
        chmod +x $out/bin/${name}
      '';
    in
    {
      lib = {
        inherit release busyboxDir genAttrs runCommand;
        mapAttrs = builtins.mapAttrs;
        version = "lab-${release}";
      };
      # as big as a slice of nixpkgs' top level: evaluated lazily, never built
      legacyPackages.${system} = genAttrs (names "pkg" 3000) package // {
        hello = package "hello";
        busybox = runCommand "busybox-${release}" { } ''
          mkdir -p $out/bin; cp ${busyboxDir}/busybox $out/bin/
        '';
        python3Packages = genAttrs (names "py" 300) package;
      };
    };
}
'''

FLAKE = r'''{
  # A fleet flake shaped like a real one (nixdeploy.fleet lab,
  # tests/lab/shapes.py): the lab's systems (lib.nix, driven by fleet.json)
  # built from a pinned nixpkgs, beside the outputs every real flake has.
  description = "nixdeploy.fleet lab fleet, real-shaped";

  inputs.nixpkgs.url = "@NIXPKGS@";

  outputs = { self, nixpkgs }:
    let
      system = "@SYSTEM@";
      inherit (nixpkgs) lib;
      pkgs = nixpkgs.legacyPackages.${system};
      fleet = builtins.fromJSON (builtins.readFile ./fleet.json);
      # the lab's systems, built from the input's busybox
      lab = import ./lib.nix { inherit fleet; busyboxDir = lib.busyboxDir; };
      inventory = lib.mapAttrs (name: host: { inherit system; } // host)
        (builtins.fromJSON (builtins.readFile ./inventory.json) // lab.inventory);
      fleetTools = lib.runCommand "fleet-tools-${lib.release}" { } ''
        mkdir -p $out/bin
        printf '#!/bin/sh\necho ${toString (builtins.length (builtins.attrNames inventory))} hosts\n' >$out/bin/fleet-tools
        chmod +x $out/bin/fleet-tools
      '';
      inventoryJson = lib.runCommand "fleet-inventory.json"
        { inventory = builtins.toJSON inventory; } ''printf '%s' "$inventory" >$out'';
      formatter = lib.runCommand "nixfmt-stand-in" { } ''
        mkdir -p $out/bin
        printf '#!/bin/sh\nexit 0\n' >$out/bin/nixfmt
        chmod +x $out/bin/nixfmt
      '';
    in
    lab // {
      inherit inventory;

      packages.${system} = {
        default = fleetTools;
        fleet-tools = fleetTools;
        inventory-json = inventoryJson;
      };
      legacyPackages.${system} = pkgs // { fleet-tools = fleetTools; };
      devShells.${system}.default = lib.runCommand "fleet-shell" { } "mkdir -p $out";
      checks.${system} = {
        inventory = lib.runCommand "check-inventory" { } ''
          test ${toString (builtins.length (builtins.attrNames inventory))} -gt 0
          touch $out
        '';
        tools = fleetTools;
      };
      formatter.${system} = formatter;
      apps.${system}.default = { type = "app"; program = "${fleetTools}/bin/fleet-tools"; };
      overlays.default = final: prev: { fleet-tools = fleetTools; };
      nixosModules.default = { config, ... }: {
        environment.etc."fleet-release".text = lib.release;
      };
    };
}
'''


def git(cwd, *args):
    return subprocess.run(['git', '-c', 'user.name=lab', '-c', 'user.email=lab@localhost',
                           '-c', 'init.defaultBranch=main'] + list(args),
                          cwd=cwd, check=True, universal_newlines=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.strip()


def nix(*args, cwd=None):
    """Run the controller's nix; (stdout, stderr). Raises with Nix's message."""
    proc = subprocess.run(NIX + list(args), cwd=cwd, universal_newlines=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError('nix %s failed:\n%s' % (' '.join(args), proc.stderr[-3000:]))
    return proc.stdout, proc.stderr


def data_host(index, own=False):
    """(name, inventory entry) of data host ``index`` (0-based); ``own``: it
    deploys a configuration of its own name instead of a shared one."""
    name = 'node%03d' % (index + 1)
    entry = {
        'targetHost': '198.18.%d.%d' % (index // 200, index % 200 + 10),
        'targetUser': 'deploy',
        'port': 22 if index % 5 else 2222,
        'tags': (['site-%s' % SITES[index % 3], 'batch-%d' % (index % 4)]
                 + (['canary'] if index % 50 == 0 else [])),
        'role': DATA_CONFIGS[index % 3],
        'platform': 'nixos',
        'configuration': name if own else DATA_CONFIGS[index % 3],
        'rack': index % 12,
    }
    return name, entry


class StandIn:
    """The input standing in for nixpkgs: a git repository or a plain folder."""

    def __init__(self, path, kind):
        self.path, self.kind = os.path.abspath(path), kind

    @classmethod
    def write(cls, path, kind='git', release='1'):
        if kind not in ('git', 'path'):
            raise ValueError('kind is git or path: %r' % kind)
        os.makedirs(os.path.join(path, 'busybox'), exist_ok=True)
        shutil.copy(BUSYBOX, os.path.join(path, 'busybox', 'busybox'))
        with open(os.path.join(path, 'flake.nix'), 'w') as handle:
            handle.write(STAND_IN.replace('@SYSTEM@', nix_system()))
        stand_in = cls(path, kind)
        if kind == 'git':
            git(path, 'init', '-q')
        stand_in.set_release(release)
        return stand_in

    @property
    def url(self):
        """What the fleet's flake.nix writes as the input's url."""
        return ('git+file://%s' if self.kind == 'git' else 'path:%s') % self.path

    @property
    def rev(self):
        return git(self.path, 'rev-parse', 'HEAD') if self.kind == 'git' else None

    def set_release(self, release):
        """Change the input (committed in a git stand-in)."""
        with open(os.path.join(self.path, 'release'), 'w') as handle:
            handle.write(str(release))
        if self.kind == 'git':
            git(self.path, 'add', '-A')
            git(self.path, 'commit', '-q', '--allow-empty', '-m', 'release %s' % release)


class ShapedFlake(FleetFlake):
    """A ``FleetFlake`` whose flake is shaped like a real one (module docstring).

    ``ref``: the flake reference (``git+file://...``, ``...?dir=nix/fleet``,
    ``path:...``); ``config_flake``: what a user writes as the inventory's
    ``flake`` (the flake's folder, for every shape); ``repo``: the git
    checkout (None for ``path``).
    """

    shape = None
    repo = None
    stand_in = None
    _ready = False

    @classmethod
    def make(cls, root, shape, hosts, configurations=None, stand_in=None, data_hosts=297,
             own_configs=False):
        """Write the ``shape`` flake under ``root`` for ``hosts`` (as
        ``FleetFlake.write``); ``stand_in``: a ``StandIn`` (default: a new
        one under ``root``, git for the git shapes and path for ``path``);
        ``own_configs``: each data host gets a configuration of its own (as
        fleets with ``nixosConfigurations.<host>`` have) instead of sharing
        ``edge``, ``db`` and ``cache``."""
        if shape not in SHAPES:
            raise ValueError('unknown shape %r (one of %s)' % (shape, ', '.join(SHAPES)))
        root = os.path.abspath(root)
        if stand_in is None:
            stand_in = StandIn.write(os.path.join(root, 'nixpkgs'),
                                     'path' if shape == 'path' else 'git')
        repo = os.path.join(root, 'repo') if shape.startswith('git') else None
        if shape == 'git-subdir':
            path = os.path.join(repo, SUBDIR)
        else:
            path = repo or os.path.join(root, 'fleet')
        data = dict(data_host(i, own_configs) for i in range(data_hosts))
        configs = dict((entry['configuration'], {'platform': 'nixos'}) for entry in data.values())
        configs.update((name, {'platform': 'nixos'}) for name in DATA_CONFIGS)
        configs.update(configurations or {})
        flake = cls.write(path, hosts, configs)
        flake.shape, flake.repo, flake.stand_in = shape, repo, stand_in
        # the systems are built from the input's busybox, not a copy in the flake
        shutil.rmtree(os.path.join(path, 'busybox'))
        os.remove(os.path.join(path, 'flake.nix'))
        with open(os.path.join(path, 'flake.nix'), 'w') as handle:
            handle.write(FLAKE.replace('@NIXPKGS@', stand_in.url).replace('@SYSTEM@', nix_system()))
        with open(os.path.join(path, 'inventory.json'), 'w') as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        if repo:
            with open(os.path.join(repo, 'README.md'), 'w') as handle:
                handle.write('# fleet\n\nThe fleet flake is in %s.\n'
                             % (SUBDIR if shape == 'git-subdir' else 'this folder'))
            git(repo, 'init', '-q')
            git(repo, 'add', '-A')
        flake.lock()
        if repo:
            git(repo, 'add', '-A')
            git(repo, 'commit', '-q', '-m', 'fleet')
        if shape == 'git-dirty':
            # an uncommitted change: Nix warns about it on every call
            with open(os.path.join(repo, 'README.md'), 'a') as handle:
                handle.write('\nUncommitted notes.\n')
        flake._ready = True
        return flake

    @classmethod
    def for_lab_shape(cls, root, shape, lab, tags=None, configurations=None, stand_in=None,
                      data_hosts=297):
        """``make`` for every host of ``lab``, with its address and ssh user."""
        hosts = {}
        for name, host in lab.hosts.items():
            hosts[name] = {'address': host['address'], 'platform': host['platform'],
                           'user': host['ssh_user'], 'tags': list((tags or {}).get(name, []))}
        return cls.make(root, shape, hosts, configurations, stand_in=stand_in,
                        data_hosts=data_hosts)

    @property
    def ref(self):
        if self.shape == 'git-subdir':
            return 'git+file://%s?dir=%s' % (self.repo, SUBDIR)
        if self.repo:
            return 'git+file://%s' % self.repo
        return 'path:%s' % self.path

    @property
    def config_flake(self):
        # the folder, as users write it: inside a git checkout (also below its
        # top) the collection reads it as Nix does, i.e. as ``ref``
        return self.path

    @property
    def commits(self):
        """Whether changes are committed (the ``git`` and ``git-subdir`` shapes)."""
        return self.shape in ('git', 'git-subdir')

    def save(self):
        super().save()
        if self._ready and self.commits:
            self.commit('fleet.json')

    def commit(self, message):
        git(self.repo, 'add', '-A')
        if git(self.repo, 'status', '--porcelain'):
            git(self.repo, 'commit', '-q', '-m', message)
        return self.revision

    @property
    def revision(self):
        return git(self.repo, 'rev-parse', 'HEAD') if self.repo else None

    def lock(self, update=False):
        """``nix flake lock`` (``update``: move the input to what it holds now)."""
        args = ['--update-input', 'nixpkgs'] if update else []
        nix('flake', 'lock', *(args + [self.ref]))

    def locked_input(self):
        """The input's ``locked`` node of flake.lock."""
        with open(os.path.join(self.path, 'flake.lock')) as handle:
            return json.load(handle)['nodes']['nixpkgs']['locked']

    def update_input(self, release):
        """A new release of the input, relocked (and committed in the
        committing shapes): every system changes."""
        self.stand_in.set_release(release)
        self.lock(update=True)
        if self.commits:
            self.commit('nixpkgs %s' % release)

    def out_path(self, host):
        """The out path of ``host``'s system, by nix itself (not the collection)."""
        return self.out_paths([host])[host]

    def out_paths(self, hosts):
        """{host: out path of its system}, by nix itself (not the collection), in
        one ``nix eval`` of ``builtins.getFlake`` (impure: the ref may be unlocked)."""
        hosts = sorted(hosts)
        quoted = ['.'.join('"%s"' % part for part in self.attr(host).split('.'))
                  for host in hosts]
        items = ' '.join('f.%s.outPath' % attr for attr in quoted)
        out, _err = nix('eval', '--json', '--impure', '--expr',
                        'let f = builtins.getFlake %s; in [ %s ]' % (json.dumps(self.ref), items))
        return dict(zip(hosts, json.loads(out)))

    def data_hosts(self):
        with open(os.path.join(self.path, 'inventory.json')) as handle:
            return json.load(handle)
