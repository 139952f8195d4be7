# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 14: `nixdeploy.fleet.status` at fleet size after a one-host
commit, against the plain script a fleet owner writes for the same question.

On benchmark 10's scale lab (light NixOS hosts), for each N, the first N hosts:
  warm-up    the plain deploy script gives every host a new system (and its
             /run/current-system, which a scale host's activation leaves
             alone), then the deploy playbook runs on them once (its first
             pass: its records on each host, the evaluation cache filled)
  yardstick  the deploy's no-op pass: the playbook again, then
             benchmarks/baseline_deploy.sh again (benchmark 10's no-op)
  commit     one host's system changes in the flake
  status     ansible-playbook nixdeploy.fleet.status (forks F, the summary
             and report callbacks on, as users run it), then
             benchmarks/baseline_status.sh: one `nix eval` of every host's
             out path and one `ssh host readlink /run/current-system` per
             host, F at a time
Every playbook run has its own ssh control path folder (as each AWX job) and
the one evaluation cache folder of the benchmark (the user's, reused across
runs as on a controller). CPU is counted by control group as in benchmark 10:
the controller's (detached ssh masters included) and the hosts' apart.

    python -m benchmarks.status_scale                 N = 250, forks 50
    python -m benchmarks.status_scale --hosts 250,1000

Root; the lab takes slot 0 or 1 of the scale labs (benchmarks/scale.py).
"""

import argparse
import datetime
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from benchmarks._fleet import RunError, load  # noqa: E402
from benchmarks.scale import FORKS, ScaleFleet, log, versions, write  # noqa: E402
from tests.lab.scale.lab import parallel  # noqa: E402

SIZES = (250,)
STATUS = 'nixdeploy.fleet.status'
STATUS_BASELINE = os.path.join(REPO, 'benchmarks', 'baseline_status.sh')


def _figures(run):
    """What the table shows of one run."""
    return dict((key, run.get(key)) for key in ('wall', 'cpu', 'targets_cpu', 'rc'))


def _classes(fleet):
    """{class: hosts} from the totals line in the log of the fleet's last
    run (BenchFleet._log names it)."""
    path = os.path.join(fleet.workdir, 'run%02d-playbook.log' % fleet.runs)
    with open(path) as handle:
        lines = [ln for ln in handle if 'nixdeploy status: ' in ln]
    if not lines:
        return {}
    counted = {}
    for part in lines[-1].split('nixdeploy status: ', 1)[1].split(', '):
        count, name = part.strip().split(' ', 1)
        counted[name] = int(count)
    return counted


def link_running(fleet):
    """/run/current-system of each selected host to the system it runs: a
    scale host has no power supervisor, so its activation leaves that link
    alone, which a NixOS switch sets (and the status reads)."""
    script = 'ln -sfn "$(cat /nix/var/lab/system/active)" /run/current-system'
    parallel(lambda name: fleet.lab.run_in(name, ['sh', '-c', script]), fleet.selected)


def size_row(fleet, size, log):
    """One size: warm-up, the deploy's no-op and its script's, a one-host
    commit, the status playbook and the status script."""
    fleet.select(size)
    env = {'NIXDEPLOY_EVAL_CACHE': os.path.join(fleet.workdir, 'eval-cache')}
    row = {'n': size, 'load_before': load()}
    fleet.new_version()
    fleet.baseline(fleet.forks)
    link_running(fleet)
    fleet.playbook(fleet.forks, env=env)
    row['deploy_noop'] = _figures(fleet.playbook(fleet.forks, env=env))
    row['script_noop'] = _figures(fleet.baseline(fleet.forks))
    log('  status N=%d: deploy no-op %.1f s (cpu %.1f), script no-op %.1f s (cpu %.1f)' % (
        size, row['deploy_noop']['wall'], row['deploy_noop']['cpu'],
        row['script_noop']['wall'], row['script_noop']['cpu']))
    changed = fleet.selected[0]
    fleet.flake.set_config(fleet.flake.config_of(changed), version='status-%d' % time.time())
    row['status'] = _figures(fleet.playbook(fleet.forks, env=env, playbook=STATUS))
    row['classes'] = _classes(fleet)
    row['script_status'] = _figures(fleet.baseline(fleet.forks, script=STATUS_BASELINE))
    if row['classes'].get('pending') != 1 or row['classes'].get('in_sync') != size - 1:
        raise RunError('the status run found %r, not 1 pending and %d in_sync'
                       % (row['classes'], size - 1))
    for pair, (top, base) in (('noop', ('deploy_noop', 'script_noop')),
                              ('status', ('status', 'script_status'))):
        for measure in ('wall', 'cpu', 'targets_cpu'):
            if row[top].get(measure) and row[base].get(measure):
                row['%s_%s_ratio' % (pair, measure)] = round(
                    row[top][measure] / row[base][measure], 2)
    row['load_after'] = load()
    log('  status N=%d: status %.1f s (cpu %.1f), script %.1f s (cpu %.1f); %r' % (
        size, row['status']['wall'], row['status']['cpu'], row['script_status']['wall'],
        row['script_status']['cpu'], row['classes']))
    return row


def _cell(row, key, measure):
    value = row[key].get(measure)
    return '-' if value is None else '%.1f' % value


def table(rows):
    out = ['   N  run          playbook s  script s  ratio   cpu s (playbook / script)  ratio'
           '   hosts cpu s (playbook / script)']
    for row in rows:
        for name, top, base, pair in (('deploy no-op', 'deploy_noop', 'script_noop', 'noop'),
                                      ('status', 'status', 'script_status', 'status')):
            out.append('%4d  %-12s %10s %9s %6s   %10s / %-12s %6s   %s / %s' % (
                row['n'], name, _cell(row, top, 'wall'), _cell(row, base, 'wall'),
                row.get('%s_wall_ratio' % pair, '-'), _cell(row, top, 'cpu'),
                _cell(row, base, 'cpu'), row.get('%s_cpu_ratio' % pair, '-'),
                _cell(row, top, 'targets_cpu'), _cell(row, base, 'targets_cpu')))
    return '\n'.join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.status_scale', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', default=','.join(str(s) for s in SIZES),
                        help='comma list of fleet sizes (default %(default)s; at most 1000)')
    parser.add_argument('--forks', type=int, default=FORKS,
                        help='forks of the playbook and parallel jobs of the scripts')
    parser.add_argument('--lab', default='scale', help='name of the scale lab (up, then down)')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'status.json'))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the scale lab needs root')
    sizes = sorted(set(int(s) for s in args.hosts.split(',') if s.strip()))
    results = {'started': datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'),
               'machine': {'cores': os.cpu_count(), 'load_at_start': load()},
               'versions': versions(), 'forks': args.forks, 'rows': []}
    workdir = os.path.join(os.path.dirname(args.output), 'work-status')
    fleet = ScaleFleet(args.lab, max(sizes), workdir, forks=args.forks, log=log)
    try:
        for size in sizes:
            results['rows'].append(size_row(fleet, size, log))
            write(args.output + '.partial', results)
    finally:
        fleet.down()
    results['machine']['load_at_end'] = load()
    print(table(results['rows']))
    write(args.output, results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
