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
unchanged (no-op). Wall time and controller CPU; the ratio is playbook /
baseline. The goal is at most 1.3x at N = 16.
"""

from benchmarks._fleet import full_deploy, load

GOAL = 1.3


def run(fleet, sizes, log=print):
    """{'rows': [{n, playbook: {deploy, noop}, baseline: {...}}], ...}."""
    rows = []
    for size in sizes:
        fleet.select(size)
        row = {'n': size, 'load_before': load()}
        for deployer in ('playbook', 'baseline'):
            row[deployer] = full_deploy(fleet, deployer, size)
            log('  overhead N=%d %-8s deploy %.1f s, no-op %.1f s'
                % (size, deployer, row[deployer]['deploy']['wall'], row[deployer]['noop']['wall']))
        for phase in ('deploy', 'noop'):
            for measure in ('wall', 'cpu'):
                base = row['baseline'][phase][measure]
                row['%s_%s_ratio' % (phase, measure)] = (
                    row['playbook'][phase][measure] / base if base else None)
        row['load_after'] = load()
        rows.append(row)
    return {'rows': rows, 'goal': GOAL}


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
    largest = data['rows'][-1] if data['rows'] else None
    if largest:
        verdict = 'met' if (largest['deploy_wall_ratio'] or 99) <= data['goal'] else 'NOT met'
        lines.append('goal: at most %.1fx wall at N = 16; at N = %d: %s (%s)'
                     % (data['goal'], largest['n'], _ratio(largest['deploy_wall_ratio']), verdict))
    return '\n'.join(lines)
