"""Fixture flakes: real busybox-built systems shaped like each platform's.

``FleetFlake.write(path, hosts, configurations)`` writes a flake directory
(flake.nix, lib.nix, the builder scripts, a copy of Debian's static busybox
and fleet.json). Change a system with ``set_config`` and ``save``; the flake
then evaluates to a new generation for the hosts that deploy it.

Configuration knobs (all optional):
  platform      nixos | darwin | nix-on-droid | home-manager
  version       any string; a new one is a new system (generation)
  behaviour     ok | fail | fail-units | fail-units-once (only its first activation)
                | break-network | hang | slow (6 s, then ok)
  extra_paths   number of padding paths in the closure
  extra_bytes   bytes spread over those paths (incompressible)
  extra_seed    padding with the same seed is shared across versions
  broken_eval   evaluation fails with a missing-attribute error
  broken_build  the builder exits 1
  eval_cost     per-configuration evaluation work (list length)
  eval_work     CPU iterations this system's evaluation spends (64 KiB hashed each)
  eval_mb       units of ~1 MB its evaluation allocates and holds for the rest
                of the Nix process, as a module system's config is held
  build_seconds its builder sleeps that long first (0: the same derivation
                as without the knob); tests/lab/heavy.py turns seconds and MB
                into these knobs for this machine
  activate_user nix-darwin: ``legacy`` (an activate-user that must run as the
                user before activate, as before 2025) or ``deprecated``
                (nix-darwin 2025's stub, which must not run)
  home_file     home-manager: a file name the system links into $HOME; a
                file already there aborts unless HOME_MANAGER_BACKUP_EXT
NixOS only (every NixOS system has kernel, initrd, kernel-modules and
systemd links, a switch-inhibitors file and an ``activate`` run at boot):
  kernel_version  the kernel package its boot links point into (default 6.6.1)
  systemd_version its systemd package (default 255)
  inhibitors    {name: value} switch inhibitors; a switch or test into a
                system whose values differ from the running one's is refused
                with NixOS's messages and exit 1 (unless NIXOS_NO_CHECK=1)
  failed_units  units that fail: the lab's ``systemctl is-active`` reports them on plain
                hosts; on systemd hosts they are real failed units
  http_status   busybox httpd answers GET /cgi-bin/health with this status
                (none: no httpd); ``http_port`` (default 80)
Flake-wide: ``heavy``, the size of a shared library every configuration
evaluates (once per Nix process), as nixpkgs is; ``cost``: {shared_work,
shared_mb}, the same in CPU iterations and held ~1 MB units (heavy_shared).
"""

import copy
import json
import os
import platform as _platform
import shutil
import subprocess

FLAKE_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'flake')
BUSYBOX = os.environ.get('NIXDEPLOY_LAB_BUSYBOX', '/bin/busybox')

# fleet.json's top-level cost knobs (lib.nix's sharedCost)
COST_KNOBS = {'shared_work', 'shared_mb'}

DEFAULT_USER = {'nixos': 'root', 'darwin': 'deploy', 'nix-on-droid': 'app',
                'home-manager': 'app'}


def nix_system():
    machine = {'amd64': 'x86_64', 'arm64': 'aarch64'}.get(_platform.machine().lower(),
                                                          _platform.machine().lower())
    return '%s-linux' % machine


# evaluate_systems' expression: the flake reference and attribute paths
# arrive as JSON through the environment (data, never Nix code)
SYSTEMS_EXPR = (
    'let asked = builtins.fromJSON (builtins.getEnv "NIXDEPLOY_SYSTEMS");'
    ' f = builtins.getFlake asked.ref;'
    ' system = path: builtins.foldl\' (set: name: set.${name}) f path;'
    ' in builtins.mapAttrs (name: path: let s = system path;'
    ' in { drv = s.drvPath; out = s.outPath; }) asked.attrs')


def evaluate_systems(ref, attrs):
    """{name: {'drvPath', 'outPath'}} of each flake attribute in ``attrs``
    ({name: 'a.b.c'}) of the flake ``ref``, as plain Nix evaluates them:
    all in ONE nix eval (--impure: the reference may be unlocked, a dirty
    work tree included), where a test wants the reference answer, not the
    processes."""
    asked = {'ref': ref, 'attrs': dict((name, attr.split('.')) for name, attr in attrs.items())}
    proc = subprocess.run(
        ['nix', '--extra-experimental-features', 'nix-command flakes', '--option',
         'substituters', '', 'eval', '--json', '--impure', '--expr', SYSTEMS_EXPR],
        env=dict(os.environ, NIXDEPLOY_SYSTEMS=json.dumps(asked)), check=True,
        stdout=subprocess.PIPE, universal_newlines=True)
    return dict((name, {'drvPath': paths['drv'], 'outPath': paths['out']})
                for name, paths in json.loads(proc.stdout).items())


class FleetFlake:
    """A fixture flake on disk and the fleet.json that drives it."""

    def __init__(self, path, data):
        self.path = os.path.abspath(path)
        self.data = data

    @property
    def ref(self):
        """The flake reference to pass to nix and to the collection."""
        return 'path:%s' % self.path

    @classmethod
    def write(cls, path, hosts, configurations=None, heavy=0, cost=None):
        """hosts: {name: {address, platform, user, port, tags, role,
        configuration, extra}}; each host without a configuration deploys
        one of its own name, created with defaults. ``cost``: the flake-wide
        cost knobs (tests.lab.heavy.heavy_shared)."""
        unknown = set(cost or {}) - COST_KNOBS
        if unknown:
            # a misspelt knob would silently make a cheap fleet
            raise ValueError('unknown cost knobs: %s' % ', '.join(sorted(unknown)))
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(FLAKE_SRC):
            shutil.copy(os.path.join(FLAKE_SRC, name), os.path.join(path, name))
        # a folder of its own: the builder's file name must be "busybox"
        os.makedirs(os.path.join(path, 'busybox'), exist_ok=True)
        shutil.copy(BUSYBOX, os.path.join(path, 'busybox', 'busybox'))
        configs = copy.deepcopy(configurations or {})
        fleet_hosts = {}
        for name, spec in hosts.items():
            host = dict(spec)
            host.setdefault('platform', 'nixos')
            host.setdefault('user', DEFAULT_USER[host['platform']])
            host.setdefault('port', 22)
            host.setdefault('tags', [])
            host.setdefault('configuration', name)
            configs.setdefault(host['configuration'], {'platform': host['platform']})
            fleet_hosts[name] = host
        for cfg in configs.values():
            cfg.setdefault('platform', 'nixos')
            cfg.setdefault('version', '1')
            cfg.setdefault('behaviour', 'ok')
        data = {'system': nix_system(), 'heavy': heavy, 'hosts': fleet_hosts,
                'configurations': configs}
        data.update(cost or {})
        flake = cls(path, data)
        flake.save()
        return flake

    @classmethod
    def for_lab(cls, path, lab, tags=None, roles=None, configurations=None, heavy=0,
                shared=None, cost=None):
        """A flake for every host of ``lab``, with its address and ssh user.

        ``tags``/``roles``: {host: [tags]} / {host: role}. ``shared``: {host:
        configuration name} for hosts that deploy one shared configuration.
        ``cost``: flake-wide cost knobs, as for ``write``.
        """
        hosts = {}
        for name, host in lab.hosts.items():
            spec = {'address': host['address'], 'platform': host['platform'],
                    'user': host['ssh_user'], 'tags': list((tags or {}).get(name, []))}
            if roles and name in roles:
                spec['role'] = roles[name]
            if shared and name in shared:
                spec['configuration'] = shared[name]
            hosts[name] = spec
        return cls.write(path, hosts, configurations, heavy=heavy, cost=cost)

    def save(self):
        with open(os.path.join(self.path, 'fleet.json'), 'w') as handle:
            json.dump(self.data, handle, indent=2, sort_keys=True)

    def set_config(self, name, **changes):
        """Change one configuration's knobs (and save)."""
        self.data['configurations'][name].update(changes)
        self.save()

    def set_all(self, **changes):
        for name in self.data['configurations']:
            self.data['configurations'][name].update(changes)
        self.save()

    def config_of(self, host):
        return self.data['hosts'][host]['configuration']

    def attr(self, host):
        """The flake attribute of a host's system (as the inventory gives it)."""
        cfg = self.config_of(host)
        platform = self.data['hosts'][host]['platform']
        return {
            'nixos': 'nixosConfigurations.%s.config.system.build.toplevel',
            'darwin': 'darwinConfigurations.%s.system',
            'nix-on-droid': 'nixOnDroidConfigurations.%s.activationPackage',
            'home-manager': 'homeConfigurations.%s.activationPackage',
        }[platform] % cfg
