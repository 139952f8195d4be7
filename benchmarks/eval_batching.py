# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Nix process per host versus nix_eval's batched evaluation.

    python benchmarks/eval_batching.py [--sizes 1,4,8,16] [--heavy 300000] [--repeat 1]

Writes a fixture flake (tests/lab/fixtures.py) of N hosts of mixed platforms
whose evaluation is dominated by a large library every configuration shares
(``heavy``, as nixpkgs is), then evaluates every host's drvPath and outPath:

  per-host   one ``nix eval`` per host (what a per-host task or a shell loop does)
  batched    plugin_utils/evaluation/_eval.Evaluator: one ``nix eval --apply`` per chunk

Each measurement runs in a fresh Python child so its numbers are its own:
wall time, CPU time (user + system of the Nix children, from getrusage) and
peak memory (the largest of one Nix child's own, benchmarks/_nix_rss.py). No
network, no lab needed.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import _nix_rss  # noqa: E402 pylint: disable=wrong-import-position

PLATFORMS = ['nixos', 'darwin', 'nix-on-droid', 'home-manager']
OPTIONS = {'substituters': ''}


def collection_path():
    """Make the checkout importable as ansible_collections.nixdeploy.fleet."""
    from tests.collection import collections_path
    path = collections_path()
    if path not in sys.path:
        sys.path.insert(0, path)


def write_flake(path, hosts, heavy):
    from tests.lab.fixtures import FleetFlake
    spec = dict(('h%d' % i, {'address': '192.0.2.%d' % i, 'platform': PLATFORMS[i % 4]})
                for i in range(1, hosts + 1))
    return FleetFlake.write(path, spec, heavy=heavy)


def measure(mode, flake_dir, hosts):
    """Runs in the child: evaluate, print one JSON line of figures."""
    collection_path()
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
        Evaluator, host_request)
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions
    from tests.lab.fixtures import FleetFlake
    with open(os.path.join(flake_dir, 'fleet.json')) as handle:
        flake = FleetFlake(flake_dir, json.load(handle))
    requests = dict((h, host_request(h, {'flake': flake.ref, 'attr': flake.attr(h)}, {},
                                     lambda ref: ref)) for h in flake.data['hosts'])
    opts = NixOptions(nix_bin=os.environ.get('NIXDEPLOY_BENCH_NIX', 'nix'), options=OPTIONS)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    processes, failed = 0, 0
    if mode == 'batched':
        evaluator = Evaluator(opts, chunk_size=max(1, hosts))
        answers = evaluator.evaluate(requests)
        processes = evaluator.processes
    else:
        answers = {}
        for host, request in sorted(requests.items()):
            evaluator = Evaluator(opts, chunk_size=1)
            answers.update(evaluator.evaluate({host: request}))
            processes += evaluator.processes
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    failed = sum(1 for a in answers.values() if 'error' in a)
    print(json.dumps({
        'wall': wall,
        'cpu': (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        'processes': processes, 'failed': failed,
    }))


def run_child(mode, flake_dir, hosts):
    """The child's figures; ``peak_mb`` the largest of its Nix processes'
    own (benchmarks/_nix_rss.py: not the child Python's size)."""
    folder = os.path.dirname(os.path.abspath(flake_dir))
    rss = os.path.join(folder, 'rss-%s-%d' % (mode, hosts))
    if os.path.exists(rss):
        os.unlink(rss)
    env = dict(os.environ, NIXDEPLOY_BENCH_NIX=_nix_rss.nix_wrapper(folder),
               NIXDEPLOY_BENCH_RSS=rss)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', mode,
                           flake_dir, str(hosts)], stdout=subprocess.PIPE, env=env,
                          universal_newlines=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result['peak_mb'] = _nix_rss.peak_mb(rss)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--sizes', default='1,4,8,16')
    parser.add_argument('--heavy', type=int, default=300000,
                        help='size of the shared library (default 300000)')
    parser.add_argument('--repeat', type=int, default=1, help='runs per cell, best wall kept')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.child[0], args.child[1], int(args.child[2]))
        return
    sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    print('heavy=%d; per-host = one nix eval per host (sequential), batched = nix_eval'
          % args.heavy)
    columns = ('N', 'mode', 'procs', 'wall s', 'cpu s', 'peak MB', 'cpu ratio')
    header = '%4s  %-9s %6s %8s %8s %8s  %s' % columns
    print(header)
    print('-' * len(header))
    with tempfile.TemporaryDirectory(prefix='nixdeploy-bench-') as tmp:
        for size in sizes:
            flake_dir = os.path.join(tmp, 'fleet-%d' % size)
            write_flake(flake_dir, size, args.heavy)
            # warm up: lock the flake, copy its source to the store once
            run_child('batched', flake_dir, size)
            rows = {}
            for mode in ('per-host', 'batched'):
                runs = [run_child(mode, flake_dir, size) for _run in range(max(1, args.repeat))]
                rows[mode] = min(runs, key=lambda r: r['wall'])
                if rows[mode]['failed']:
                    raise SystemExit('%s evaluation failed for %d hosts' % (mode, rows[mode]['failed']))
            for mode in ('per-host', 'batched'):
                row = rows[mode]
                ratio = ''
                if mode == 'batched' and row['cpu'] > 0:
                    ratio = '%.1fx less' % (rows['per-host']['cpu'] / row['cpu'])
                print('%4d  %-9s %6d %8.2f %8.2f %8.0f  %s' % (
                    size, mode, row['processes'], row['wall'], row['cpu'], row['peak_mb'], ratio))
            sys.stdout.flush()


if __name__ == '__main__':
    main()
