# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 12's spot check: what it costs a small fleet with one heavy
host (issue 89).

    python -m benchmarks.eval_spot_check [--commits 16] [--host-seconds 0.5] [--heavy 20]
                                         [--shared-seconds 0.3] [--workers N] [--output FILE]

Benchmark 12's flake (``eval_reuse.ReuseFlake``) with six hosts, the first
(h001) costing ``--heavy`` times the others. Each step runs ``EvalStage``
in a fresh Python child, as a deploy does: the cache on and the spot check
a deploy makes by default (nix_eval's ``eval_reuse_check``).

  all     every host, cache off: what evaluating all six costs
  record  commit 1, the cache empty: every host evaluated and recorded
  1..N    one-file commits, each to the next light host's file (h002..h006
          in turn): never the heavy host's

Printed per commit: wall and CPU seconds (Nix and strace), hosts
evaluated and reused, the hosts the spot check drew (its
``spot_check_sample``), and the cost against ``all``. Then, from the
second commit on: the median of each ratio (at most 0.5 is the aim), and
for each host the longest run of batches that reused it without a check,
against the bound docs/eval-cache.md states (``due_after``). Figures only:
nothing here asserts on time. No lab, no root.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

# (eval_reuse puts the checkout on sys.path: tests.lab and tests.collection)
from benchmarks import eval_reuse

REPO = eval_reuse.REPO
# six hosts, the first heavy; the one-file commits; a light host's CPU s and
# how many times it the heavy one costs; the part every Nix process shares
HOSTS, COMMITS, HOST_SECONDS, HEAVY, SHARED_SECONDS = 6, 16, 0.5, 20.0, 0.3


class HeavyFlake(eval_reuse.ReuseFlake):
    """Benchmark 12's flake whose first host costs ``heavy`` times the
    others."""

    def __init__(self, path, hosts, work, shared_work, heavy):
        self.heavy_work = int(work * heavy)
        super().__init__(path, hosts, work, shared_work)

    def write_host(self, name, revision):
        light = self.work
        if name == self.names[0]:
            self.work = self.heavy_work
        try:
            super().write_host(name, revision)
        finally:
            self.work = light


# ------------------------------------------------------------------ the child
def child_stage(spec):
    """``eval_reuse.child_stage``, and the hosts the spot check drew."""
    eval_reuse.collection_path()
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import (
        _spot_check)
    drawn = []
    sample = _spot_check.spot_check_sample

    def watched(*args, **kwargs):
        found = sample(*args, **kwargs)
        drawn.extend(found)
        return found
    _spot_check.spot_check_sample = watched
    result = eval_reuse.child_stage(spec)
    # a request key names its host's attribute: nixosConfigurations.<host>...
    result['checked'] = sorted(host for host in spec['hosts']
                               if any('"%s"' % host in key for key in drawn))
    return result


def run_child(spec):
    proc = subprocess.run(
        [sys.executable, '-m', 'benchmarks.eval_spot_check', '--child', json.dumps(spec)],
        cwd=REPO, env=eval_reuse.nix_env(), check=False, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True)
    if proc.returncode != 0:
        raise RuntimeError('the stage child failed: %s' % proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the steps
def run(commits=COMMITS, host_seconds=HOST_SECONDS, heavy=HEAVY, shared_seconds=SHARED_SECONDS,
        workers=None, log=None):
    """Every step on a new flake: {'all', 'rows', 'setup'}."""
    log = log or (lambda text: None)
    from tests.lab import heavy as calibration_of
    tmp = tempfile.mkdtemp(prefix='nixdeploy-spot-')
    try:
        calibration = calibration_of.calibrate(
            eval_reuse.nix_env(), os.path.join(REPO, 'benchmarks', 'results'))
        work = calibration.config(seconds=host_seconds)['eval_work']
        shared_work = calibration.shared(seconds=shared_seconds)['shared_work']
        flake = HeavyFlake(os.path.join(tmp, 'fleet'), HOSTS, work, shared_work, heavy)
        cache = os.path.join(tmp, 'cache')
        check = eval_reuse.default_check()

        def stage(label, cache_folder):
            result = run_child({'ref': flake.ref, 'hosts': flake.names, 'cache': cache_folder,
                                'workers': workers, 'check': check if cache_folder else None})
            log('  %s: %.1f s, %s, checked %s' % (label, result['wall'],
                                                  json.dumps(eval_reuse.counts(result)),
                                                  ','.join(result.get('checked') or ())))
            return result

        eval_reuse.run_child('pin', {'ref': flake.ref})
        every = stage('all six, cache off', None)
        rows = [row_of('record', 'commit 1: records', stage('record', cache), None)]
        # change N is commit N + 1, to the next light host's file
        light = flake.names[1:]
        for number in range(1, commits + 1):
            host = light[(number - 1) % len(light)]
            flake.write_host(host, number + 1)
            flake.commit('commit %d: hosts/%s.nix' % (number + 1, host))
            rows.append(row_of(number, 'hosts/%s.nix' % host, stage(
                'commit %d (%s)' % (number + 1, host), cache), host))
        return {'all': {'wall': every['wall'], 'cpu': every['cpu']}, 'rows': rows,
                'setup': {'hosts': HOSTS, 'heavy_host': flake.names[0], 'heavy': heavy,
                          'host_seconds': host_seconds, 'shared_seconds': shared_seconds,
                          'host_work': work, 'heavy_work': flake.heavy_work,
                          'shared_work': shared_work, 'workers': workers, 'check': check,
                          'calibration': calibration.figures, 'nix': eval_reuse.nix_version()}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def row_of(step, label, result, changed):
    hosts = result['hosts']
    return {'step': step, 'label': label, 'changed': changed, 'wall': result['wall'],
            'cpu': result['cpu'], 'load': result['load'],
            'evaluated': sorted(h for h, v in hosts.items() if v['evaluation'] == 'evaluated'),
            'reused': sorted(h for h, v in hosts.items() if v['evaluation'] == 'reused'),
            'failed': sorted(h for h, v in hosts.items() if v['evaluation'] == 'failed'),
            'checked': result.get('checked') or []}


def unchecked_runs(rows):
    """{host: the longest run of batches that reused it without drawing it}."""
    longest, current = {}, {}
    for row in rows:
        for host in row['reused']:
            current[host] = 0 if host in row['checked'] else current.get(host, 0) + 1
            longest[host] = max(longest.get(host, 0), current[host])
        for host in row['checked']:
            current[host] = 0
    return longest


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# ------------------------------------------------------------------ the table
HEADER = '%-6s %-18s %7s %7s %9s %7s %-12s %7s %7s %5s' % (
    'change', 'file', 'wall s', 'cpu s', 'evaluated', 'reused', 'checked', 'wall vs',
    'cpu vs', 'load')


def table(data):
    setup, every = data['setup'], data['all']
    lines = ['12. The spot check on %d hosts, %s costing %gx the others (%.2f CPU s each, '
             '%.2f s shared); eval_reuse_check %d; %s'
             % (setup['hosts'], setup['heavy_host'], setup['heavy'], setup['host_seconds'],
                setup['shared_seconds'], setup['check'], setup['nix']),
             'all six, cache off: %.2f s wall, %.2f CPU s' % (every['wall'], every['cpu']),
             HEADER, '-' * len(HEADER)]
    for row in data['rows']:
        lines.append('%-6s %-18s %7.2f %7.2f %9d %7d %-12s %6.2fx %6.2fx %5.1f' % (
            row['step'], row['label'][:18], row['wall'], row['cpu'], len(row['evaluated']),
            len(row['reused']), ','.join(row['checked']) or '-', row['wall'] / every['wall'],
            row['cpu'] / every['cpu'], row['load']))
    later = [row for row in data['rows'] if isinstance(row['step'], int) and row['step'] >= 2]
    if later:
        lines.append('')
        lines.append('from the second change on (%d commits): median %.2fx wall, %.2fx CPU of '
                     'all six; heavy host checked in %d of them'
                     % (len(later), median([r['wall'] / every['wall'] for r in later]),
                        median([r['cpu'] / every['cpu'] for r in later]),
                        sum(setup['heavy_host'] in r['checked'] for r in later)))
    commits = [row for row in data['rows'] if isinstance(row['step'], int)]
    longest = unchecked_runs(commits)
    bound = due_bound(setup)
    lines.append('longest run of batches reusing a host unchecked: %s (bound %s)' % (
        ', '.join('%s %d' % (h, n) for h, n in sorted(longest.items())),
        'none stated' if bound is None else bound))
    for row in commits:
        beyond = sorted(set(row['evaluated']) - set([row['changed']]))
        if beyond or row['failed']:
            lines.append('%s: evaluated beyond the changed host: %s%s' % (
                row['step'], ','.join(beyond) or '-',
                '; failed: %s' % ','.join(row['failed']) if row['failed'] else ''))
    return '\n'.join(lines)


def due_bound(setup):
    """The longest a host may go unchecked, as docs/eval-cache.md states it
    (every host of a batch can be drawn: the reused ones and the recorded),
    or None for a stage that states none (before issue 89)."""
    eval_reuse.collection_path()
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.reuse import (
        _spot_check)
    if not hasattr(_spot_check, 'due_after'):
        return None
    return _spot_check.due_after(setup['hosts'], setup['check'])


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.eval_spot_check',
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, kind, default, what in (
            ('commits', int, COMMITS, 'one-file commits after the first'),
            ('host-seconds', float, HOST_SECONDS, "CPU s of a light host's own evaluation"),
            ('heavy', float, HEAVY, 'how many times a light host the heavy one costs'),
            ('shared-seconds', float, SHARED_SECONDS, 'CPU s every Nix process pays once'),
            ('workers', int, None, "evaluators (default: the stage's own)")):
        parser.add_argument('--' + flag, type=kind, default=default, help=what)
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'eval_spot_check.json'))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_stage(json.loads(args.child))))
        return 0
    started = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    load = os.getloadavg()[0]
    data = run(args.commits, args.host_seconds, args.heavy, args.shared_seconds, args.workers,
               log=eval_reuse.log_err)
    eval_reuse.report(data, started, load, table, args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
