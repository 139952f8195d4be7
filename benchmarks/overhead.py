# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 1: what Ansible orchestration costs over a plain shell deploy.

For each N, on the first N NixOS hosts of a lab fleet:
  playbook   ansible-playbook nixdeploy.fleet.deploy -l h1,..,hN (forks N,
             the repository's ansible.cfg: ControlPersist, pipelining)
  baseline   benchmarks/baseline_deploy.sh: the same Nix commands with the
             same parallelism (one eval, one build, N parallel `nix copy`,
             N parallel ssh activations, then a new ssh login per host)
each deploying a new version (build, copy, activate), then redeploying it
unchanged (no-op). Wall time and controller CPU (for the playbook with the
ssh masters it leaves detached); the ratio is playbook / baseline. The goal
is at most 1.3x at N = 16 (no-op: 1.2x).

Each deployer's figures are the best of ``repeat`` runs (deploy and no-op
apart). Two more figures per N for the playbook: the time until the first
host's activation was done, and (at the largest N) a deploy in which one
host's activation takes SLOW_SECONDS: when the other hosts were done, against
when they are done in a normal deploy and when the slow host was.

At the ``split`` sizes one more deploy of each deployer runs under strace
(_process_trace): what each process of the run cost (every Ansible worker,
the detached batch processes, each kind of Nix call and ssh), to show where
the playbook's seconds go beside the script's.
"""

import statistics

from benchmarks import _process_trace
from benchmarks._fleet import full_deploy, load

GOAL = 1.3
NOOP_GOAL = 1.2
SLOW_SECONDS = 20


def run(fleet, sizes, log=print, repeat=2, split=()):
    """{'rows': [{n, playbook: {deploy, noop}, baseline: {...}, split?}], ...}."""
    rows = []
    for size in sizes:
        fleet.select(size)
        row = {'n': size, 'load_before': load()}
        for deployer in ('playbook', 'baseline'):
            runs = [full_deploy(fleet, deployer, size) for _run in range(max(1, repeat))]
            row[deployer] = dict((phase, min((r[phase] for r in runs), key=lambda c: c['wall']))
                                 for phase in ('deploy', 'noop'))
            log('  overhead N=%d %-8s deploy %.1f s, no-op %.1f s (best of %d)'
                % (size, deployer, row[deployer]['deploy']['wall'],
                   row[deployer]['noop']['wall'], len(runs)))
        for phase in ('deploy', 'noop'):
            for measure in ('wall', 'cpu'):
                base = row['baseline'][phase][measure]
                row['%s_%s_ratio' % (phase, measure)] = (
                    row['playbook'][phase][measure] / base if base else None)
        if size in split and _process_trace.available():
            row['split'] = {}
            for deployer in ('playbook', 'baseline'):
                fleet.new_version()
                trace = '%s/trace-%s-%d.txt' % (fleet.workdir, deployer, size)
                row['split'][deployer] = _process_trace.run_traced(
                    fleet, deployer, size, trace)['split']
        row['load_after'] = load()
        rows.append(row)
    slow = slow_host(fleet, sizes[-1], log) if sizes else None
    return {'rows': rows, 'goal': GOAL, 'noop_goal': NOOP_GOAL, 'slow': slow, 'repeat': repeat}


def slow_host(fleet, size, log=print):
    """A deploy of ``size`` hosts where the first host's activation takes
    SLOW_SECONDS: when every host's activate task ended."""
    fleet.select(size)
    slow = fleet.selected[0]
    fleet.new_version()
    fleet.flake.set_config(fleet.flake.config_of(slow), behaviour='slow',
                           slow_seconds=SLOW_SECONDS)
    try:
        before = fleet.active()
        run = fleet.playbook(size)
        fleet.deployed(before)
    finally:
        fleet.flake.set_config(fleet.flake.config_of(slow), behaviour='ok')
    done = run['phases'].get('done') or {}
    others = [t for host, t in done.items() if host != slow]
    out = {'n': size, 'slow_seconds': SLOW_SECONDS, 'wall': run['wall'],
           'slow_done': done.get(slow),
           'others_median': statistics.median(others) if others else None,
           'others_max': max(others) if others else None}
    log('  overhead N=%d one host %ds slow: others done by %.1f s (median %.1f s), slow host %.1f s'
        % (size, SLOW_SECONDS, out['others_max'] or 0, out['others_median'] or 0,
           out['slow_done'] or 0))
    return out


def _ratio(value):
    return '%.1fx' % value if value else '-'


def table(data):
    lines = ['1. Orchestration overhead: deploy playbook vs plain shell (same nix commands)',
             '%4s  %-9s %9s %8s %9s %8s   %s' % (
                 'N', 'deployer', 'deploy s', 'cpu s', 'no-op s', 'cpu s', 'load')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        for deployer in ('playbook', 'baseline'):
            cell = row[deployer]
            lines.append('%4d  %-9s %9.1f %8.1f %9.1f %8.1f   %s' % (
                row['n'], deployer, cell['deploy']['wall'], cell['deploy']['cpu'],
                cell['noop']['wall'], cell['noop']['cpu'],
                '%.1f' % row['load_before'] if deployer == 'playbook' else ''))
        lines.append('%4s  %-9s %9s %8s %9s %8s' % (
            '', 'ratio', _ratio(row['deploy_wall_ratio']), _ratio(row['deploy_cpu_ratio']),
            _ratio(row['noop_wall_ratio']), _ratio(row['noop_cpu_ratio'])))
    lines.append('')
    lines.append('time until the first host is activated (playbook, deploy): ' + ', '.join(
        'N=%d %.1f s' % (row['n'], row['playbook']['deploy']['phases']['first_activated'])
        for row in data['rows']
        if row['playbook']['deploy'].get('phases', {}).get('first_activated') is not None))
    slow = data.get('slow')
    if slow:
        normal = [row for row in data['rows'] if row['n'] == slow['n']]
        normal_done = (normal[0]['playbook']['deploy'].get('phases') or {}).get('done') if normal \
            else None
        lines.append(
            'one host of N=%d activating for %d s: the other hosts done after %.1f s (median '
            '%.1f s%s), the slow host after %.1f s'
            % (slow['n'], slow['slow_seconds'], slow['others_max'], slow['others_median'],
               '; %.1f s in a normal deploy' % max(normal_done.values()) if normal_done else '',
               slow['slow_done']))
    columns = ('startup', 'eval', 'build', 'copy', 'activate', 'confirm', 'other')
    if any(row['playbook']['deploy'].get('phases') for row in data['rows']):
        lines += ['', "where the playbook's time goes (s; startup = Python + inventory plugin):",
                  '%4s  %-7s ' % ('N', 'run') + ' '.join('%8s' % c for c in columns)]
        for row in data['rows']:
            for phase in ('deploy', 'noop'):
                cell = row['playbook'][phase].get('phases') or {}
                if cell:
                    lines.append('%4d  %-7s ' % (row['n'], 'no-op' if phase == 'noop' else phase)
                                 + ' '.join('%8.1f' % cell.get(c, 0) for c in columns))
    for row in data['rows']:
        if row.get('split'):
            lines += ['', "N=%d, one deploy of each under strace: what ran, by kind (n: how many; "
                      "union: the wall time during which one ran; sum: their lifetimes)"
                      % row['n']]
            lines += _process_trace.table('N=%d' % row['n'], [
                (d, row['split'][d]) for d in ('playbook', 'baseline') if d in row['split']])
    largest = data['rows'][-1] if data['rows'] else None
    if largest:
        verdict = 'met' if (largest['deploy_wall_ratio'] or 99) <= data['goal'] else 'NOT met'
        lines.append('goal: at most %.1fx wall at N = 16; at N = %d: %s (%s)'
                     % (data['goal'], largest['n'], _ratio(largest['deploy_wall_ratio']), verdict))
        noop = largest.get('noop_wall_ratio') or 99
        lines.append('no-op goal: at most %.1fx; at N = %d: %s (%s)'
                     % (data.get('noop_goal', 1.5), largest['n'],
                        _ratio(largest['noop_wall_ratio']),
                        'met' if noop <= data.get('noop_goal', 1.5) else 'NOT met'))
    return '\n'.join(lines)
