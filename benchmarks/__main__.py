# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the benchmarks, print their tables and write benchmarks/results/latest.json.

    python -m benchmarks                      all ten, full sizes (~25-30 min, root)
    python -m benchmarks --quick              smaller sizes (~5 min)
    python -m benchmarks --only eval,inventory --eval-sizes 1,16

Tables: 1 overhead, 2 eval, 3 copy, 4 inventory, 5 scaling, 6 cascade,
7 real (real-sized systems), 8 shapes (real-shaped flakes, no lab), 9 ee-store
(an AWX job in the execution environment after a one-host change, by where
its Nix store lives), 12 reuse (each host's evaluation reused across commits,
benchmarks/eval_reuse.py; no lab, no root) and spot (its spot check on six hosts, one
heavy, benchmarks/eval_spot_check.py; no lab, no root), 13 batch (what each host's worker
pays for its batch, at 250 and 1,000 hosts, benchmarks/batch_per_host.py; no
lab, no root). Table 10, scale (the deploy at
250 and 1,000 hosts on a scale lab of light hosts, benchmarks/scale.py, 45-60
minutes), runs only when asked: --only scale [--scale-sizes 100]. Tables 1, 3
and 5 deploy to a lab fleet (tests/lab, root needed) named by --lab, tables
6, 7 and 9 each to one of their own (6: every host one shared system; 7 and
9: ~2,000 paths and 210 MB per host), always downed at the end. Table 9 runs
the EE image (`make ee`) with podman; without the image a run of every table
leaves it out and says so. Run it
with a Python that has ansible-core (the project venv).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

from benchmarks import (_nix_rss, batch_per_host, cascade, copy_modes, ee_store, eval_batching,
                        eval_reuse, eval_spot_check, flake_shapes, inventory_parse, overhead,
                        real_size, scale, scaling)
from benchmarks._fleet import REPO, BenchFleet, load

TABLES = ('overhead', 'eval', 'copy', 'inventory', 'scaling', 'cascade', 'real', 'shapes',
          'ee-store', 'reuse', 'spot', 'batch')
# run only when named in --only: not part of a run of every table
ASKED_ONLY = ('scale',)
# the order tables print in: by their number
NUMBERED = ('overhead', 'eval', 'copy', 'inventory', 'scaling', 'cascade', 'real', 'shapes',
            'ee-store', 'scale', 'reuse', 'spot', 'batch')
FULL = {'overhead_sizes': '1,4,12,16', 'overhead_split': '1,12', 'eval_sizes': '1,4,8,16',
        'inventory_sizes': '100,1000,10000', 'scaling_sizes': '4,8,16,32',
        'copy_hosts': 8, 'copy_bytes': 4000000, 'cascade_sizes': '8,16',
        'cascade_bytes': 8000000, 'real_hosts': 8, 'real_rows': 'push,script,cache,cascade',
        'shapes_sizes': '300', 'ee_store_hosts': 6, 'reuse_hosts': eval_reuse.HOSTS,
        'batch_sizes': ','.join(str(n) for n in batch_per_host.SIZES)}
QUICK = {'overhead_sizes': '1,4', 'overhead_split': '1,4', 'eval_sizes': '1,4',
         'inventory_sizes': '100,1000',
         'scaling_sizes': '4,8', 'copy_hosts': 4, 'copy_bytes': 1000000, 'cascade_sizes': '4',
         'cascade_bytes': 2000000, 'real_hosts': 4, 'real_rows': 'push,script', 'shapes_sizes': '100',
         'ee_store_hosts': 4, 'reuse_hosts': 40, 'batch_sizes': '100,400'}


def sizes(text):
    return [int(s) for s in text.split(',') if s.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', default=','.join(TABLES),
                        help='comma list of tables to run: %s' % ','.join(TABLES + ASKED_ONLY))
    parser.add_argument('--quick', action='store_true', help='small sizes, a few minutes')
    parser.add_argument('--overhead-sizes')
    parser.add_argument('--overhead-split',
                        help='sizes of table 1 that also run once under strace (by process)')
    parser.add_argument('--overhead-repeat', type=int, default=2,
                        help='runs of each deployer at each size of table 1 (the best is kept)')
    parser.add_argument('--eval-sizes')
    parser.add_argument('--eval-heavy', type=int, default=300000,
                        help='shared library size of the eval benchmark (as nixpkgs)')
    parser.add_argument('--inventory-sizes')
    parser.add_argument('--inventory-sources', default='inventory,colmena,deploy-rs')
    parser.add_argument('--scaling-sizes')
    parser.add_argument('--copy-hosts', type=int)
    parser.add_argument('--copy-bytes', type=int, help='new closure bytes per host and mode')
    parser.add_argument('--cascade-sizes')
    parser.add_argument('--cascade-bytes', type=int, help='new closure bytes per host (cascade)')
    parser.add_argument('--real-hosts', type=int, help='hosts of table 7 (real-sized systems)')
    parser.add_argument('--real-rows', help='deployers of table 7: push,cache,cascade,script')
    parser.add_argument('--real-rate', help='tbf rate of every link in table 7 (default unshaped)')
    parser.add_argument('--shapes-sizes', help='inventory hosts of table 8 (real-shaped flakes)')
    parser.add_argument('--ee-store-hosts', type=int, help='hosts of table 9 (EE store)')
    parser.add_argument('--ee-store-setups', default=','.join(ee_store.SETUPS),
                        help='setups of table 9: %s' % ','.join(ee_store.SETUPS))
    parser.add_argument('--reuse-hosts', type=int, help='hosts of table 12 (reuse)')
    parser.add_argument('--reuse-host-seconds', type=float, default=eval_reuse.HOST_SECONDS,
                        help="CPU seconds of each host's own evaluation in table 12")
    parser.add_argument('--reuse-shared-seconds', type=float, default=eval_reuse.SHARED_SECONDS,
                        help='CPU seconds of the part every Nix process shares in table 12')
    parser.add_argument('--spot-commits', type=int, default=eval_spot_check.COMMITS,
                        help='one-file commits of table 12\'s spot check (spot)')
    parser.add_argument('--batch-sizes', help='batch sizes of table 13 (batch per host)')
    parser.add_argument('--batch-before',
                        help='an ansible_collections tree table 13 also measures (say, the '
                             'collection before a change)')
    parser.add_argument('--rate', default='100mbit', help='tbf rate of each host link')
    parser.add_argument('--delay', default='20ms', help='netem delay each way')
    parser.add_argument('--scale-sizes', default=','.join(str(n) for n in scale.SIZES),
                        help='fleet sizes of table 10 (scale; at most 1000)')
    parser.add_argument('--scale-forks', type=int, default=scale.FORKS,
                        help='forks (and script parallelism) of table 10')
    parser.add_argument('--lab', default='bnc', help='name of the lab to bring up (and down)')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'latest.json'))
    args = parser.parse_args(argv)
    asked = args.only != ','.join(TABLES)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.only = [t.strip() for t in args.only.split(',') if t.strip()]
    unknown = set(args.only) - set(TABLES + ASKED_ONLY)
    if unknown:
        parser.error('unknown tables: %s' % ', '.join(sorted(unknown)))
    bad_rows = set(r.strip() for r in args.real_rows.split(',') if r.strip()) - set(
        real_size.ROWS)
    if bad_rows:
        parser.error('unknown --real-rows: %s (of %s)' % (', '.join(sorted(bad_rows)),
                                                          ', '.join(real_size.ROWS)))
    bad_setups = set(s.strip() for s in args.ee_store_setups.split(',') if s.strip()) - set(
        ee_store.SETUPS)
    if bad_setups:
        parser.error('unknown --ee-store-setups: %s' % ', '.join(sorted(bad_setups)))
    if os.geteuid() != 0 and set(args.only) & {'overhead', 'copy', 'scaling', 'cascade', 'real',
                                               'ee-store', 'scale'}:
        parser.error('overhead, copy, scaling, cascade, real and ee-store deploy to a lab fleet, '
                     'which needs root; without root run --only eval,inventory,shapes,reuse,'
                     'spot,batch')
    problem = ee_store.check_image() if 'ee-store' in args.only else None
    if problem and asked:
        parser.error('ee-store: %s' % problem)
    if problem:
        log('9. ee-store left out: %s' % problem)
        args.only.remove('ee-store')
    return args


def log(text):
    print(text, file=sys.stderr)
    sys.stderr.flush()


# ------------------------------------------------------------------ 2 and 4
def run_eval(args, tmp):
    rows = []
    for size in sizes(args.eval_sizes):
        flake_dir = os.path.join(tmp, 'eval-%d' % size)
        eval_batching.write_flake(flake_dir, size, args.eval_heavy)
        eval_batching.run_child('batched', flake_dir, size)  # warm up: lock, copy source
        row = {'n': size}
        for mode in ('per-host', 'batched'):
            row[mode] = eval_batching.run_child(mode, flake_dir, size)
        log('  eval N=%d per-host %.1f s, batched %.1f s'
            % (size, row['per-host']['wall'], row['batched']['wall']))
        rows.append(row)
    return {'heavy': args.eval_heavy, 'rows': rows}


def eval_table(data):
    lines = ['2. Evaluation batching (heavy=%d shared library, as nixpkgs): one nix eval per host'
             ' vs nix_eval' % data['heavy'],
             '%4s  %-9s %6s %8s %8s %8s  %s' % (
                 'N', 'mode', 'procs', 'wall s', 'cpu s', 'peak MB', 'cpu ratio')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        for mode in ('per-host', 'batched'):
            cell = row[mode]
            ratio = ''
            if mode == 'batched' and cell['cpu'] > 0:
                ratio = '%.1fx less' % (row['per-host']['cpu'] / cell['cpu'])
            lines.append('%4d  %-9s %6d %8.2f %8.2f %8.0f  %s' % (
                row['n'], mode, cell['processes'], cell['wall'], cell['cpu'], cell['peak_mb'],
                ratio))
    return '\n'.join(lines)


def run_inventory(args, tmp):
    rows = []
    nix_bin = _nix_rss.nix_wrapper(tmp)
    for size in sizes(args.inventory_sizes):
        flake = os.path.join(tmp, 'inventory-%d' % size)
        inventory_parse.write_fleet(flake, size)
        for source in args.inventory_sources.split(','):
            started = time.monotonic()
            result = inventory_parse.parse_once(flake, source, nix_bin)
            result.update(nodes=size, source=source, wall=time.monotonic() - started)
            log('  inventory %d %s: %.1f s' % (size, source, result['parse']))
            rows.append(result)
    return {'rows': rows}


def inventory_table(data):
    lines = ['4. Inventory plugin: parse time and peak memory',
             '%-7s %-10s %6s %7s %8s %8s %7s %7s %7s' % (
                 'nodes', 'source', 'hosts', 'groups', 'parse s', 'cpu s', 'nix s', 'py MB',
                 'nix MB')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        lines.append('%-7d %-10s %6d %7d %8.2f %8.2f %7.2f %7.0f %7.0f' % (
            row['nodes'], row['source'], row['hosts'], row['groups'], row['parse'], row['cpu'],
            row['nix'], row['py_mb'], row['nix_mb']))
    return '\n'.join(lines)


# ------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    results = {'started': datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'),
               'machine': {'cores': os.cpu_count(), 'python': platform.python_version(),
                           'load_at_start': load()},
               'args': dict((k, v) for k, v in vars(args).items() if k != 'output'),
               'tables': {}}
    tables = results['tables']
    printers = {'overhead': overhead.table, 'eval': eval_table, 'copy': copy_modes.table,
                'inventory': inventory_table, 'scaling': scaling.table, 'cascade': cascade.table,
                'real': real_size.table, 'shapes': flake_shapes.table,
                'ee-store': ee_store.table, 'scale': scale.table, 'reuse': eval_reuse.table,
                'spot': eval_spot_check.table, 'batch': batch_per_host.table}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='nixdeploy-bench-') as tmp:
        if 'eval' in args.only:
            log('2. evaluation batching ...')
            tables['eval'] = run_eval(args, tmp)
        if 'inventory' in args.only:
            log('4. inventory plugin ...')
            tables['inventory'] = run_inventory(args, tmp)
        if 'shapes' in args.only:
            log('8. real-shaped flakes ...')
            tables['shapes'] = flake_shapes.run(sizes(args.shapes_sizes), ['git', 'git-subdir'],
                                                ['shared', 'own'], log=log)
        if 'reuse' in args.only:
            log('12. evaluation reused across commits ...')
            tables['reuse'] = eval_reuse.run(args.reuse_hosts, args.reuse_host_seconds,
                                             args.reuse_shared_seconds, log=log)
        if 'spot' in args.only:
            log('12. the spot check on six hosts, one heavy ...')
            tables['spot'] = eval_spot_check.run(args.spot_commits, log=log)
        if 'batch' in args.only:
            log('13. batch per host ...')
            tables['batch'] = batch_per_host.run(sizes(args.batch_sizes),
                                                 before=args.batch_before, log=log)
        lab_tables = [t for t in ('overhead', 'scaling', 'copy') if t in args.only]
        if lab_tables:
            needed = max([max(sizes(args.overhead_sizes)) if 'overhead' in args.only else 0,
                          max(sizes(args.scaling_sizes)) if 'scaling' in args.only else 0,
                          args.copy_hosts if 'copy' in args.only else 0])
            log('lab %s: %d NixOS hosts ...' % (args.lab, needed))
            # kept after the run (logs of every deploy), replaced by the next one
            fleet = BenchFleet(args.lab, needed, os.path.join(os.path.dirname(args.output),
                                                              'work'))
            try:
                if 'overhead' in args.only:
                    log('1. orchestration overhead ...')
                    tables['overhead'] = overhead.run(
                        fleet, sizes(args.overhead_sizes), log=log,
                        repeat=args.overhead_repeat, split=sizes(args.overhead_split))
                if 'scaling' in args.only:
                    log('5. scaling ...')
                    tables['scaling'] = scaling.run(fleet, sizes(args.scaling_sizes),
                                                    tables.get('overhead'), log=log)
                if 'copy' in args.only:
                    log('3. copy modes ...')
                    tables['copy'] = copy_modes.run(
                        fleet, hosts=args.copy_hosts, rate=args.rate, delay=args.delay,
                        extra_bytes=args.copy_bytes, log=log)
            finally:
                fleet.down()
        if 'cascade' in args.only:
            log('6. closure cascade ...')
            cascade_sizes = sizes(args.cascade_sizes)
            fleet = cascade.CascadeFleet(args.lab + 'c', max(cascade_sizes),
                                         os.path.join(tmp, 'cascade'), args.rate)
            try:
                tables['cascade'] = cascade.run(fleet, cascade_sizes, args.rate,
                                                args.cascade_bytes, log=log)
            finally:
                fleet.down()
        if 'real' in args.only:
            log('7. real-sized systems ...')
            fleet = real_size.RealFleet(args.lab + 'r', args.real_hosts,
                                        os.path.join(tmp, 'real'))
            try:
                tables['real'] = real_size.run(
                    fleet, [r for r in args.real_rows.split(',') if r.strip()],
                    args.real_rate, log=log)
            finally:
                fleet.down()
        if 'ee-store' in args.only:
            log('9. EE store ...')
            fleet = ee_store.StoreFleet(args.lab + 's', args.ee_store_hosts,
                                        os.path.join(tmp, 'ee-store'))
            try:
                tables['ee-store'] = ee_store.run(
                    fleet, [s for s in args.ee_store_setups.split(',') if s.strip()], log=log)
            finally:
                fleet.down()
        if 'scale' in args.only:
            log('10. scale ...')
            scale_sizes = sizes(args.scale_sizes)
            fleet = scale.ScaleFleet(args.lab + 'k', max(scale_sizes),
                                     os.path.join(tmp, 'scale'), forks=args.scale_forks, log=log)
            try:
                tables['scale'] = scale.run(fleet, scale_sizes, log=log)
            finally:
                fleet.down()
            tables['scale']['lab']['down_seconds'] = fleet.down_seconds
    results['seconds'] = round(time.monotonic() - started, 1)
    results['machine']['load_at_end'] = load()
    print('nixdeploy.fleet benchmarks, %s; %d cores; load %.1f at start, %.1f at end; %.0f s'
          % (results['started'], os.cpu_count(), results['machine']['load_at_start'],
             results['machine']['load_at_end'], results['seconds']))
    for name in NUMBERED:
        if name in tables:
            print()
            print(printers[name](tables[name]))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output + '.tmp', 'w') as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    os.rename(args.output + '.tmp', args.output)
    print('\nwritten: %s' % os.path.relpath(args.output, os.getcwd()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
