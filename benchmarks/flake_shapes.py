# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evaluation time and peak memory on real-shaped flakes (issue 22).

    python -m benchmarks.flake_shapes [--sizes 300] [--shapes git,git-subdir,git-dirty,path]
                                      [--configs shared,own]

Writes the lab's real-shaped flakes (tests/lab/shapes.py: packages,
legacyPackages (3000+ attributes), devShells, checks, formatter, apps,
overlays, nixosModules, a nixpkgs stand-in pinned by flake.lock) with N hosts
in their ``inventory``: three fixture hosts and N - 3 data hosts that share
three configurations (``shared``) or have one each (``own``, as fleets with
``nixosConfigurations.<host>`` do). Then, each in a fresh Python child, after
one warm-up evaluation (the flake and its input copied, the lock read):

  inventory   the nixdeploy.fleet.nix plugin through Ansible's InventoryManager
              (as ansible-inventory and every playbook run do)
  nix_eval    plugin_utils/evaluation/_eval.Evaluator on every host's system (drvPath and
              outPath), as the deploy role's first task does for a whole batch

Printed: hosts read, the distinct systems evaluated, Nix processes, wall and
CPU seconds (the Python child and its Nix children), the peak memory of the
largest Nix child and of the Python child. No lab, no root needed. Run it
with a Python that has ansible-core (the project venv).

Nix's peak memory is the ru_maxrss of the nix child as its parent's wait4
sees it, but that parent is a bare Python (``nix_bin`` is a wrapper that
forks, execs nix and writes the figure): Linux carries the high-water RSS
of the process that forked into the exec'ed program's ru_maxrss, so
RUSAGE_CHILDREN of a Python that has loaded Ansible would read at least that
Python's size (~50 MB) whatever Nix used. The wrapper's own floor is ~10 MB.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import _nix_rss  # noqa: E402 pylint: disable=wrong-import-position

CHILD = r'''
import json, os, resource, sys, time
step, flake_dir, shape, config = sys.argv[1:5]
sys.path.insert(0, os.environ['NIXDEPLOY_REPO'])
sys.path.insert(0, os.environ['ANSIBLE_COLLECTIONS_PATH'])

NIX = os.environ['NIXDEPLOY_BENCH_NIX']
RSS = os.environ.get('NIXDEPLOY_BENCH_RSS')

def usage():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, kids.ru_maxrss

def nix_peak_kb(children_kb):
    """Largest maxrss /usr/bin/time wrote (one line per nix run), in KB."""
    if not RSS:
        return children_kb
    with open(RSS) as handle:
        # "<maxrss KB> <CPU seconds>" a line (benchmarks/_nix_rss.py)
        return max(int(line.split()[0]) for line in handle if line.strip())

if step == 'inventory':
    from ansible.parsing.dataloader import DataLoader
    from ansible.inventory.manager import InventoryManager
    from ansible.plugins.loader import init_plugin_loader
    init_plugin_loader(os.environ['ANSIBLE_COLLECTIONS_PATH'].split(os.pathsep))
    start, (cpu0, _rss) = time.monotonic(), usage()
    inventory = InventoryManager(loader=DataLoader(), sources=[config])
    wall, (cpu1, rss) = time.monotonic() - start, usage()
    hosts = len(inventory.hosts)
    result = {'hosts': hosts, 'systems': None, 'processes': None, 'groups': len(inventory.groups)}
    if hosts < 2:
        raise SystemExit('the inventory plugin read %d hosts' % hosts)
else:
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import Evaluator, host_request
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions
    from tests.lab.shapes import ShapedFlake
    with open(os.path.join(flake_dir, 'fleet.json')) as handle:
        flake = ShapedFlake(flake_dir, json.load(handle))
    with open(os.path.join(flake_dir, 'inventory.json')) as handle:
        data = json.load(handle)
    ref = sys.argv[5]
    attrs = dict((h, flake.attr(h)) for h in flake.data['hosts'])
    attrs.update((h, 'nixosConfigurations.%s.config.system.build.toplevel' % e['configuration'])
                 for h, e in data.items())
    requests = dict((h, host_request(h, {'flake': ref, 'attr': a}, {}, lambda r: r))
                    for h, a in attrs.items())
    evaluator = Evaluator(NixOptions(nix_bin=NIX, options={'substituters': ''}))
    start, (cpu0, _rss) = time.monotonic(), usage()
    answers = evaluator.evaluate(requests)
    wall, (cpu1, rss) = time.monotonic() - start, usage()
    failed = sorted(h for h, a in answers.items() if 'error' in a)
    if failed:
        raise SystemExit('%d hosts failed, %s: %s' % (len(failed), failed[0], answers[failed[0]]['error']))
    result = {'hosts': len(answers), 'systems': len(set(a['out_path'] for a in answers.values())),
              'processes': evaluator.processes}
result.update(wall=wall, cpu=cpu1 - cpu0, nix_mb=nix_peak_kb(rss) / 1024.0, exact=bool(RSS),
              py_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
print(json.dumps(result))
'''

STEPS = ('inventory', 'nix_eval')


def nix_wrapper(tmp):
    """(nix_bin, exact): a wrapper reporting nix's own peak RSS (_nix_rss)."""
    return _nix_rss.nix_wrapper(tmp), True


def write(tmp, shape, size, own, nix_bin='nix'):
    from tests.lab.shapes import ShapedFlake
    hosts = {'h1': {'address': '192.0.2.1'}, 'h2': {'address': '192.0.2.2'},
             'h3': {'address': '192.0.2.3', 'platform': 'home-manager'}}
    root = os.path.join(tmp, '%s-%d-%s' % (shape, size, 'own' if own else 'shared'))
    flake = ShapedFlake.make(root, shape, hosts, data_hosts=size - len(hosts),
                             own_configs=own)
    config = os.path.join(root, 'fleet.nix.yml')
    with open(config, 'w') as handle:   # JSON is YAML
        json.dump({'plugin': 'nixdeploy.fleet.nix', 'flake': flake.config_flake,
                   'nix_bin': nix_bin, 'nix_options': {'substituters': ''}}, handle)
    return flake, config


def child(step, flake, config, nix_bin='nix', exact=False):
    from tests.collection import ansible_env
    extra = {'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True',
             'ANSIBLE_INVENTORY_ENABLED': 'nixdeploy.fleet.nix',
             'NIXDEPLOY_REPO': REPO, 'NIXDEPLOY_BENCH_NIX': nix_bin}
    if exact:
        handle, extra['NIXDEPLOY_BENCH_RSS'] = tempfile.mkstemp(prefix='rss-', dir=os.path.dirname(
            nix_bin))
        os.close(handle)
    env = ansible_env(extra)
    proc = subprocess.run([sys.executable, '-c', CHILD, step, flake.path, flake.shape, config,
                           flake.ref], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    if proc.returncode != 0:
        return {'error': (proc.stderr.strip().splitlines() or ['exit %d' % proc.returncode])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes, shapes, configs, log=None):
    """Rows of figures: {shape, size, configs, step, hosts, systems, processes,
    wall, cpu, nix_mb, py_mb} (or error)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix='nixdeploy-bench-shapes-') as tmp:
        nix_bin, exact = nix_wrapper(tmp)
        for size in sizes:
            for configs_kind in configs:
                for shape in shapes:
                    flake, config = write(tmp, shape, size, configs_kind == 'own', nix_bin)
                    # warm up: the flake and its input copied, the lock read, .drv files
                    child('nix_eval', flake, config, nix_bin)
                    for step in STEPS:
                        row = {'shape': shape, 'size': size, 'configs': configs_kind,
                               'step': step}
                        row.update(child(step, flake, config, nix_bin, exact))
                        rows.append(row)
                        if log:
                            log(format_row(row))
    return {'rows': rows}


HEADER = '%-10s %5s %-7s %-9s %6s %7s %5s %7s %7s %8s %6s' % (
    'shape', 'hosts', 'configs', 'step', 'read', 'systems', 'procs', 'wall s', 'cpu s',
    'nix MB', 'py MB')


def format_row(row):
    if 'error' in row:
        return '%-10s %5d %-7s %-9s FAILED: %s' % (row['shape'], row['size'], row['configs'],
                                                   row['step'], row['error'][:200])
    return '%-10s %5d %-7s %-9s %6d %7s %5s %7.2f %7.2f %8s %6.0f' % (
        row['shape'], row['size'], row['configs'], row['step'], row['hosts'],
        row['systems'] or '-', row['processes'] or '-', row['wall'], row['cpu'],
        ('%.0f' if row['exact'] else '<=%.0f') % row['nix_mb'], row['py_mb'])


def table(data):
    lines = ['Real-shaped flakes: the inventory plugin and nix_eval on N hosts '
             '(packages, legacyPackages, ... and a pinned input)', HEADER, '-' * len(HEADER)]
    lines += [format_row(row) for row in data['rows']]
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.flake_shapes',
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', default='300', help='hosts per flake (comma list)')
    parser.add_argument('--shapes', default='git,git-subdir,git-dirty,path')
    parser.add_argument('--configs', default='shared,own',
                        help='shared: data hosts share 3 configurations; own: one each')
    args = parser.parse_args(argv)
    try:
        import ansible  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        raise SystemExit('run this with a Python that has ansible-core (the project venv)')
    started = time.monotonic()
    data = run([int(s) for s in args.sizes.split(',') if s.strip()],
               [s.strip() for s in args.shapes.split(',') if s.strip()],
               [c.strip() for c in args.configs.split(',') if c.strip()],
               log=lambda text: print(text, file=sys.stderr, flush=True))
    nix = subprocess.run(['nix', '--version'], stdout=subprocess.PIPE, universal_newlines=True,
                         check=False).stdout.strip()
    print('%s; %d cores; %.0f s' % (nix, os.cpu_count(), time.monotonic() - started))
    print(table(data))
    return 1 if any('error' in row for row in data['rows']) else 0


if __name__ == '__main__':
    sys.exit(main())
