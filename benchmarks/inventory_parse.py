# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse time and peak memory of the nixdeploy.fleet.nix inventory plugin.

    python benchmarks/inventory_parse.py [--sizes 100,1000,10000] [--sources inventory,colmena,deploy-rs]

For each size it writes a flake whose outputs are built from a fleet.json
(inventory data, a colmena hive of module functions, deploy-rs nodes whose
profile paths throw, and nixosConfigurations that throw), then parses it in a
fresh Python process through Ansible's InventoryManager, as ansible-inventory
does. Printed per size and source:

  parse s     InventoryManager(...) with this plugin: nix eval + mapping + add_host
  cpu s       CPU time of that parse (Python + nix): the figure that holds on a busy machine
  nix s       the nix eval alone
  py MB       peak RSS of the Python process
  nix MB      peak RSS of the nix process, its own (benchmarks/_nix_rss.py: not the
              Python's that started it)

Run it with a Python that has ansible-core (the project venv).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import _nix_rss  # noqa: E402 pylint: disable=wrong-import-position

FLAKE = r'''
{
  outputs = { self }:
    let
      fleet = builtins.fromJSON (builtins.readFile ./fleet.json);
      inherit (builtins) mapAttrs;
    in {
      inventory = fleet.hosts;
      colmena = { meta.description = "benchmark"; } // mapAttrs (n: h: { name, nodes, pkgs, ... }: {
        deployment = {
          targetHost = h.targetHost; targetUser = h.targetUser; targetPort = h.port;
          inherit (h) tags;
        };
        services.anything = pkgs.never-forced;
      }) fleet.hosts;
      deploy.nodes = mapAttrs (n: h: {
        hostname = h.targetHost; sshUser = h.targetUser; sshOpts = [ "-p" (toString h.port) ];
        profiles.system = { user = "root"; path = throw "never forced"; };
      }) fleet.hosts;
      nixosConfigurations = mapAttrs (n: _: throw "never evaluated") fleet.configurations;
    };
}
'''

CHILD = r'''
import json, os, resource, sys, time
from ansible.parsing.dataloader import DataLoader
from ansible.inventory.manager import InventoryManager
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader(os.environ['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep))
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import _inventory
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix

config, flake, source = sys.argv[1:4]
runner = _nix.NixCommand(_nix.NixOptions(nix_bin=os.environ['NIXDEPLOY_BENCH_NIX'],
                                          options={'substituters': ''}))
start = time.monotonic()
runner.json('eval', _inventory.eval_args(runner.outputs('path:' + flake), source),
            'benchmark eval')
nix_seconds = time.monotonic() - start

def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

start, cpu_start = time.monotonic(), cpu()
inventory = InventoryManager(loader=DataLoader(), sources=[config])
parse_seconds, parse_cpu = time.monotonic() - start, cpu() - cpu_start
print(json.dumps({
    'hosts': len(inventory.hosts), 'groups': len(inventory.groups),
    'parse': parse_seconds, 'cpu': parse_cpu, 'nix': nix_seconds,
    'py_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
}))
'''

TAGS = ['batch-vps', 'prod', 'staging', 'eu', 'us', 'hk', 'db', 'web', 'cache', 'canary']


def write_fleet(path, size):
    """A flake for ``size`` hosts sharing 20 configurations, 2-3 tags each."""
    os.makedirs(path, exist_ok=True)
    hosts = {}
    for idx in range(size):
        hosts['node%05d' % idx] = {
            'targetHost': '10.%d.%d.%d' % (idx // 65536, (idx // 256) % 256, idx % 256),
            'targetUser': 'deploy', 'port': 22,
            'tags': [TAGS[idx % 10], TAGS[(idx // 10) % 10], 'rack-%d' % (idx % 40)],
            'role': ['web', 'db', 'cache'][idx % 3],
            'system': 'x86_64-linux',
            'configuration': 'node%05d' % idx if idx % 2 else 'shared-%d' % (idx % 20),
            'ips': ['10.%d.%d.%d' % (idx // 65536, (idx // 256) % 256, idx % 256)],
        }
    configs = dict((h['configuration'], {}) for h in hosts.values())
    with open(os.path.join(path, 'fleet.json'), 'w') as handle:
        json.dump({'hosts': hosts, 'configurations': configs}, handle)
    with open(os.path.join(path, 'flake.nix'), 'w') as handle:
        handle.write(FLAKE)


def write_config(path, source, nix_bin):
    config = os.path.join(path, '%s.nix.yml' % source)
    with open(config, 'w') as handle:
        json.dump({'plugin': 'nixdeploy.fleet.nix', 'flake': '.', 'source': source,
                   'nix_bin': nix_bin, 'nix_options': {'substituters': ''}}, handle)
    return config


def measure(config, flake, source, nix_bin):
    """The child's figures, with nix's own peak RSS (every nix it ran)."""
    from tests.collection import collections_path
    rss = os.path.join(os.path.dirname(nix_bin), 'rss-%s' % source)
    if os.path.exists(rss):
        os.unlink(rss)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(),
               ANSIBLE_INVENTORY_UNPARSED_FAILED='True',
               ANSIBLE_INVENTORY_ENABLED='nixdeploy.fleet.nix',
               NIXDEPLOY_BENCH_NIX=nix_bin, NIXDEPLOY_BENCH_RSS=rss)
    proc = subprocess.run([sys.executable, '-c', CHILD, config, flake, source], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        raise SystemExit('parse failed:\n%s' % proc.stderr[-4000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result['nix_mb'] = _nix_rss.peak_mb(rss)
    return result


def parse_once(flake, source, nix_bin):
    """One source's figures on the fleet at ``flake``; ``nix_bin``:
    _nix_rss.nix_wrapper's, for Nix's own peak memory."""
    return measure(write_config(flake, source, nix_bin), flake, source, nix_bin)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='100,1000,10000')
    parser.add_argument('--sources', default='inventory,colmena,deploy-rs')
    args = parser.parse_args()
    try:
        import ansible  # noqa: F401 pylint: disable=unused-import
    except ImportError:
        raise SystemExit('run this with a Python that has ansible-core (the project venv)')
    sizes = [int(s) for s in args.sizes.split(',')]
    sources = args.sources.split(',')
    print('%-7s %-10s %6s %7s %8s %8s %7s %7s %7s'
          % ('nodes', 'source', 'hosts', 'groups', 'parse s', 'cpu s', 'nix s', 'py MB', 'nix MB'))
    with tempfile.TemporaryDirectory(prefix='nixdeploy-bench-') as tmp:
        nix_bin = _nix_rss.nix_wrapper(tmp)
        for size in sizes:
            flake = os.path.join(tmp, 'fleet-%d' % size)
            write_fleet(flake, size)
            for source in sources:
                started = time.monotonic()
                result = parse_once(flake, source, nix_bin)
                print('%-7d %-10s %6d %7d %8.2f %8.2f %7.2f %7.0f %7.0f   (%.1f s wall incl. startup)'
                      % (size, source, result['hosts'], result['groups'], result['parse'],
                         result['cpu'], result['nix'], result['py_mb'], result['nix_mb'],
                         time.monotonic() - started))
                sys.stdout.flush()


if __name__ == '__main__':
    main()
