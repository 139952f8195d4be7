"""Lab fixtures for the nix_activate tests: one lab (``act``) with every
persona, systems built once with plain ``nix build --json`` and copied to
their hosts with plain ``nix copy`` (the other modules are tested elsewhere).
"""

import json
import os
import subprocess

import pytest

from tests.collection import run_playbook
from tests.lab import Lab
from tests.lab.fixtures import FleetFlake

LAB_NAME = 'act'
HOSTS = [
    {'name': 'n1', 'persona': 'nixos'},         # switch, rollback, idempotence, ssh kill, hang
    {'name': 'n2', 'persona': 'nixos'},         # break-network, stale lock, boot goal
    {'name': 'n3', 'persona': 'nixos'},         # failing activations, concurrency, held lock
    {'name': 'd1', 'persona': 'darwin'},        # become from deploy
    {'name': 'a1', 'persona': 'nix-on-droid'},  # app, no sudo
    {'name': 'm1', 'persona': 'home-manager'},  # app, no sudo
]
PLATFORM = {'n1': 'nixos', 'n2': 'nixos', 'n3': 'nixos', 'd1': 'darwin',
            'a1': 'nix-on-droid', 'm1': 'home-manager'}
# n1's 'slow' system: its activation (after it recorded the system active)
# holds until the file RELEASE exists on the host, however long the test
# needs to get there; HOLD_LIMIT seconds bound it (under the module's
# activation_timeout of 240 s) so that a test that never lets it go does not
# hang.
RELEASE = '/nix/var/lab/act-release'
HOLD_LIMIT = 180
HOLD = ('n=0; while [ ! -e %s ] && [ $n -lt %d ]; do sleep 0.2; n=$((n+1)); done'
        % (RELEASE, HOLD_LIMIT * 5))
# Every system the tests deploy: (host, variant) -> knobs.
VARIANTS = {
    'n1': {'v1': {}, 'v2': {}, 'v3': {}, 'slow': {'on_activate': HOLD},
           'hang': {'behaviour': 'hang'}},
    'n2': {'v1': {}, 'bn': {'behaviour': 'break-network'}, 'c2': {}, 'v3': {}},
    'n3': {'v1': {}, 'fail': {'behaviour': 'fail'}, 'fu': {'behaviour': 'fail-units'},
           'c2': {}, 'c3': {}},
    'd1': {'v1': {}, 'v2': {}, 'bn': {'behaviour': 'break-network'}},
    'a1': {'v1': {}, 'v2': {}, 'fail': {'behaviour': 'fail'}},
    'm1': {'v1': {}, 'v2': {}, 'fail': {'behaviour': 'fail'}},
}
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes', '--option', 'substituters', '']
# A python that does not exist: nix_activate must never need one on a target.
NO_PYTHON = '/nonexistent/bin/python3'

ATTR = {
    'nixos': 'nixosConfigurations.%s.config.system.build.toplevel',
    'darwin': 'darwinConfigurations.%s.system',
    'nix-on-droid': 'nixOnDroidConfigurations.%s.activationPackage',
    'home-manager': 'homeConfigurations.%s.activationPackage',
}


class ActLab:
    """The running lab, its built systems and helpers to run playbooks."""

    def __init__(self, lab, systems, workdir):
        self.lab, self.systems, self.workdir = lab, systems, workdir
        self.runs = 0

    def system(self, host, variant):
        return self.systems[(host, variant)]

    def inventory(self, hosts=None, extra=None):
        inv = self.lab.ansible_inventory()
        for group in inv['all']['children'].values():
            for name in list(group['hosts']):
                if hosts is not None and name not in hosts:
                    del group['hosts'][name]
                    continue
                group['hosts'][name]['ansible_python_interpreter'] = NO_PYTHON
                group['hosts'][name].update((extra or {}).get(name, {}))
        return inv

    def play(self, tasks, hosts, extra=None, args=(), check=False):
        """Run one play of ``tasks`` on ``hosts``; returns the PlaybookRun."""
        self.runs += 1
        workdir = os.path.join(self.workdir, 'run%02d' % self.runs)
        playbook = [{'name': 'act', 'hosts': 'all', 'gather_facts': False, 'tasks': tasks}]
        argv = list(args) + (['--check'] if check else [])
        return run_playbook(playbook, self.inventory(hosts, extra), workdir, args=argv, timeout=300)

    def history(self, host):
        text = self.lab.read(host, '/nix/var/lab/history-%s' % self.lab.state_key(host))
        return [line for line in (text or '').splitlines() if line.strip()]

    def profile(self, host):
        """(generation number, store path) of the host's profile, from the host."""
        link = {'nixos': '/nix/var/nix/profiles/system', 'darwin': '/nix/var/nix/profiles/system',
                'nix-on-droid': '/nix/var/nix/profiles/nix-on-droid',
                'home-manager': '/home/app/.local/state/nix/profiles/home-manager'}[PLATFORM[host]]
        gen = self.lab.run_in(host, ['readlink', link], check=False).stdout.strip()
        path = self.lab.run_in(host, ['readlink', '-f', link], check=False).stdout.strip()
        number = gen.rsplit('-', 2)[-2] if gen else None
        return (int(number) if number and number.isdigit() else None), (path or None)

    def generations(self, host):
        link = {'nixos': '/nix/var/nix/profiles/system', 'darwin': '/nix/var/nix/profiles/system',
                'nix-on-droid': '/nix/var/nix/profiles/nix-on-droid',
                'home-manager': '/home/app/.local/state/nix/profiles/home-manager'}[PLATFORM[host]]
        folder, name = os.path.split(link)
        out = self.lab.run_in(host, ['ls', folder], check=False).stdout.split()
        return sorted(int(f[len(name) + 1:-5]) for f in out
                      if f.startswith(name + '-') and f.endswith('-link'))


def activate_task(name, path, **params):
    args = {'path': path}
    args.update(params)
    return {'name': name, 'nixdeploy.fleet.nix_activate': args, 'ignore_errors': True}


def confirm_tasks(name='confirm', **params):
    """The documented pattern: a new connection, then state=confirmed."""
    args = {'state': 'confirmed'}
    args.update(params)
    return [{'name': 'new connection', 'meta': 'reset_connection'},
            {'name': name, 'nixdeploy.fleet.nix_activate': args, 'ignore_errors': True}]


def build_all(flake):
    attrs = []
    for host, variants in VARIANTS.items():
        for variant in variants:
            attrs.append('%s#%s' % (flake.ref, ATTR[PLATFORM[host]] % ('%s-%s' % (host, variant))))
    proc = subprocess.run(NIX + ['build', '--json', '--no-link'] + attrs, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [entry['outputs']['out'] for entry in json.loads(proc.stdout)]
    systems = {}
    for host, variants in VARIANTS.items():
        for variant in variants:
            # the fixture names a system <platform>-system-<configuration>-<version>
            suffix = '-system-%s-%s-%s' % (host, variant, variant)
            systems[(host, variant)] = [out for out in outs if out.endswith(suffix)][0]
    return systems


def copy_to(lab, host, paths):
    info = lab.host(host)
    uri = 'ssh-ng://%s@%s' % (info['ssh_user'], info['address'])
    if not info['nix_on_path']:
        uri += '?remote-program=%s/nix-daemon' % info['nix_dir']
    env = dict(os.environ, NIX_SSHOPTS=' '.join(lab.ssh_args()))
    proc = subprocess.run(NIX + ['copy', '--no-check-sigs', '--to', uri] + list(paths), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    assert proc.returncode == 0, '%s: %s' % (host, proc.stderr[-3000:])


@pytest.fixture(scope='module')
def act(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('activate'))
    lab = Lab(LAB_NAME).up(HOSTS)
    try:
        configurations = {}
        for host, variants in VARIANTS.items():
            for variant, knobs in variants.items():
                cfg = {'platform': PLATFORM[host], 'version': variant}
                cfg.update(knobs)
                configurations['%s-%s' % (host, variant)] = cfg
        flake = FleetFlake.for_lab(os.path.join(workdir, 'flake'), lab,
                                   configurations=configurations)
        systems = build_all(flake)
        for host in VARIANTS:
            if lab.host(host)['ssh_user'] != 'root':
                # unsigned copies from the deployer, as colmena and deploy-rs do
                lab.add_nix_conf(host, 'trusted-users = root deploy app')
            copy_to(lab, host, [path for (name, _v), path in systems.items() if name == host])
        yield ActLab(lab, systems, workdir)
    finally:
        lab.down()
