"""Fixtures and helpers of the nix_copy_closure lab tests.

Closures are built on the controller with plain ``nix build --json`` from the
fixture flake (no dependency on nix_build); playbooks run for real through
tests/collection.py against lab ``cpy``.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.collection import collections_path, run_playbook
from tests.lab.fixtures import FleetFlake

sys.path.insert(0, collections_path())
# path-info --json is a list before Nix 2.19 and a map after: read by the collection's reader
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output  # noqa: E402

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
PERSONAS = ['nixos', 'darwin', 'nix-on-droid', 'home-manager']
MODULE = 'nixdeploy.fleet.nix_copy_closure'


@pytest.fixture(scope='module')
def cpy_lab(make_lab):
    """8 hosts: h1/h5 nixos (root), h2/h6 darwin (deploy + become, nix off
    PATH), h3/h7 nix-on-droid (app, single-user store, nix off PATH), h4/h8
    home-manager (app, not trusted)."""
    # "cpy" plus this run's pid: two runs of the suite at once (a developer's and
    # `make test`) must not take each other's lab down; make_lab downs it after.
    return make_lab('cpy%d' % (os.getpid() % 100000), 8, personas=PERSONAS)


@pytest.fixture(scope='module')
def cpy_keys(tmp_path_factory):
    """A controller signing key pair: {'secret', 'public' (file), 'public_key'}."""
    folder = tmp_path_factory.mktemp('cpy-keys')
    keys = {}
    for name in ('sign', 'cache'):
        secret, public = str(folder / ('%s.sec' % name)), str(folder / ('%s.pub' % name))
        subprocess.run(['nix-store', '--generate-binary-cache-key', 'cpy-%s-1' % name,
                        secret, public], check=True)
        with open(public) as handle:
            keys[name] = {'secret': secret, 'public': public, 'public_key': handle.read().strip()}
    return keys


@pytest.fixture(scope='module')
def cpy_flake(cpy_lab, tmp_path_factory):
    return Closures(cpy_lab, str(tmp_path_factory.mktemp('cpy-flake')))


class Closures:
    """Builds fixture systems on the controller and tells their closures."""

    def __init__(self, lab, folder):
        self.lab = lab
        self.flake = FleetFlake.for_lab(os.path.join(folder, 'flake'), lab)

    def build(self, host, **knobs):
        """Set ``host``'s configuration knobs, build it; return its out path."""
        self.flake.set_config(self.flake.config_of(host), **knobs)
        out = subprocess.run(NIX + ['build', '--no-link', '--json',
                                    '%s#%s' % (self.flake.ref, self.flake.attr(host))],
                             check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        return json.loads(out)[0]['outputs']['out']

    @staticmethod
    def closure(path):
        """{path: narSize} of a path's closure in the controller's store."""
        out = subprocess.run(NIX + ['path-info', '-r', '--json', path], check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        return {p: i['narSize'] for p, i in _nix_output.path_infos(json.loads(out)).items() if i}

    def missing_on(self, host, path):
        """Closure paths the host's store lacks (ground truth, no ssh)."""
        return sorted(p for p in self.closure(path) if not self.lab.store_has(host, p))

    def verify_on(self, host, paths):
        """Paths that fail `nix-store --verify-path` on the host (as its store owner)."""
        user = 'app' if self.lab.hosts[host]['persona'] == 'nix-on-droid' else None
        bad = []
        for path in paths:
            proc = self.lab.run_in(host, ['nix-store', '--verify-path', path], check=False,
                                   user=user)
            if proc.returncode != 0:
                bad.append((path, proc.stderr.strip()))
        return bad


def inventory(lab, hosts=None, **per_host):
    """The lab's static inventory limited to ``hosts``; ``per_host`` maps a
    host to extra/overriding vars."""
    inv = lab.ansible_inventory()
    for group in inv['all']['children'].values():
        for name in list(group['hosts']):
            if hosts is not None and name not in hosts:
                del group['hosts'][name]
            else:
                group['hosts'][name].update(per_host.get(name, {}))
    return inv


def copy_play(args, hosts='all', pre_tasks=(), name='copy'):
    """One play: optional tasks, then the copy task named ``name``."""
    task = {'name': name, MODULE: args}
    return [{'hosts': hosts, 'gather_facts': False, 'tasks': list(pre_tasks) + [task]}]


def run(lab, workdir, play, inv=None, args=(), **kwargs):
    return run_playbook(play, inv or inventory(lab), str(workdir), args=list(args), **kwargs)


def traffic(lab, hosts):
    """{host: bytes sent + received} on each host's link right now."""
    return {h: sum(lab.link_bytes(h)) for h in hosts}


def traffic_since(lab, before):
    return {h: sum(lab.link_bytes(h)) - n for h, n in before.items()}


# ---------------------------------------------------------------- link shaping
def limit_rate(lab, host, rate):
    """Rate-limit traffic towards ``host`` with tbf (lab.shape needs netem,
    which this kernel lacks)."""
    veth = lab.hosts[host]['veth']
    subprocess.run(['tc', 'qdisc', 'del', 'dev', veth, 'root'], check=False,
                   stderr=subprocess.DEVNULL)
    if rate:
        subprocess.run(['tc', 'qdisc', 'add', 'dev', veth, 'root', 'tbf', 'rate', rate,
                        'burst', '32kbit', 'latency', '400ms'], check=True)


# ---------------------------------------------------------------- binary cache
class HttpCache:
    """A binary cache (``nix copy --to file://``) served by python's
    http.server on the lab bridge; started and stopped by pid."""

    def __init__(self, lab, folder, secret_key):
        self.lab = lab
        self.dir = os.path.join(folder, 'cache')
        self.secret_key = secret_key
        self.log = os.path.join(folder, 'http.log')
        self.proc = None
        self.port = None

    def add(self, path):
        subprocess.run(NIX + ['copy', '--to', 'file://%s?secret-key=%s' % (self.dir, self.secret_key),
                              path], check=True, stderr=subprocess.PIPE)

    def start(self):
        with socket.socket() as probe:
            probe.bind((self.lab.bridge_address, 0))
            self.port = probe.getsockname()[1]
        logf = open(self.log, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'http.server', '--bind', self.lab.bridge_address,
             '--directory', self.dir, str(self.port)],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        # bounds the wait only (it ends once the server answers): generous,
        # for a busy machine, where a Python start takes seconds
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection((self.lab.bridge_address, self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError('http cache did not start: %s' % open(self.log).read())

    @property
    def url(self):
        return 'http://%s:%d' % (self.lab.bridge_address, self.port)

    def served_bytes(self):
        """Bytes of the files the server answered with 200 (from its log)."""
        total = 0
        with open(self.log) as handle:
            for line in handle:
                match = re.search(r'"GET (\S+) HTTP/[\d.]+" 200', line)
                if match:
                    name = os.path.join(self.dir, match.group(1).lstrip('/').split('?')[0])
                    if os.path.isfile(name):
                        total += os.path.getsize(name)
        return total

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # by its pid: the Popen we started
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
