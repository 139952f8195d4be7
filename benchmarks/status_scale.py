# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 14: `nixdeploy.fleet.status` at fleet size after a one-host
commit, against the plain script a fleet owner writes for the same question.

On benchmark 10's scale lab (light NixOS hosts), with the fleet flake of a
fleet owner: each host's system in a file of its own beside fleet.json's
inventory (benchmarks/_own_files_flake.py), so a one-host commit changes one
file that one system reads. For each N, the first N hosts:
  warm-up    the plain deploy script gives every host a new system (and its
             /run/current-system, which a scale host's activation leaves
             alone), then the deploy playbook runs on them once (its first
             pass: its records on each host, the evaluation cache filled)
  yardstick  the deploy's no-op pass: the playbook again, then
             benchmarks/baseline_deploy.sh again (benchmark 10's no-op)
  commit     one host's system changes in the flake (the first host: the
             first commit since the deploy recorded its evaluations)
  status     ansible-playbook nixdeploy.fleet.status (forks F, the summary
             and report callbacks on, as users run it), then
             benchmarks/baseline_status.sh: one `nix eval` of every host's
             out path and one `ssh host readlink /run/current-system` per
             host, F at a time; then benchmarks/handwritten/status.yml, the
             same question by hand in Ansible alone (ansible.builtin, the
             same evaluation once, one raw `readlink` a host, forks F): the
             floor of what one Ansible task a host costs beside the script
  next       another one-host commit, to a host the first status run sent
             back (evaluated alone: its record is its own, the steady state
             of docs/eval-cache.md "Exact records"), and the status and its
             script again
The table gives, for each playbook run, the hosts it evaluated and the hosts
it reused from an earlier commit (the summary's evaluation line).
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
import json
import os
import re
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from benchmarks import _handwritten  # noqa: E402
from benchmarks._fleet import RunError, load  # noqa: E402
from benchmarks._own_files_flake import OwnFilesFlake  # noqa: E402
from benchmarks.scale import FORKS, ScaleFleet, log, versions, write  # noqa: E402
from tests.lab.scale.lab import parallel  # noqa: E402

SIZES = (250,)
STATUS = 'nixdeploy.fleet.status'
STATUS_BASELINE = os.path.join(REPO, 'benchmarks', 'baseline_status.sh')
# the evaluation cache folder of the benchmark's runs, in its work folder
EVAL_CACHE = 'eval-cache'


def _figures(run):
    """What the table shows of one run."""
    return dict((key, run.get(key)) for key in ('wall', 'cpu', 'targets_cpu', 'rc'))


def _last_line(fleet, marker):
    """The last line with ``marker`` in the log of the fleet's last run
    (BenchFleet._log names it), from the marker on; None without one."""
    path = os.path.join(fleet.workdir, 'run%02d-playbook.log' % fleet.runs)
    with open(path) as handle:
        lines = [ln for ln in handle if marker in ln]
    return lines[-1].split(marker, 1)[1].strip() if lines else None


def _evaluation(fleet):
    """{evaluated, reused, cached}: how the last run's hosts got their
    systems, from the summary's closing line ("nixdeploy: evaluation: 1
    evaluated, 249 reused (from ...), 0 cached")."""
    line = _last_line(fleet, 'nixdeploy: evaluation: ')
    found = dict((kind, int(count)) for count, kind in
                 re.findall(r'(\d+) (evaluated|reused|cached)', line or ''))
    return dict((kind, found.get(kind, 0)) for kind in ('evaluated', 'reused', 'cached'))


def _classes(fleet):
    """{class: hosts} from the status totals line of the fleet's last run."""
    line = _last_line(fleet, 'nixdeploy status: ')
    if not line:
        return {}
    counted = {}
    for part in line.split(', '):
        count, name = part.strip().split(' ', 1)
        counted[name] = int(count)
    return counted


def link_running(fleet):
    """/run/current-system of each selected host to the system it runs: a
    scale host has no power supervisor, so its activation leaves that link
    alone, which a NixOS switch sets (and the status reads)."""
    script = 'ln -sfn "$(cat /nix/var/lab/system/active)" /run/current-system'
    parallel(lambda name: fleet.lab.run_in(name, ['sh', '-c', script]), fleet.selected)


def _sent_back(fleet, changed):
    """A host the last run evaluated beside ``changed`` (a neighbour it sent
    back, evaluated alone: its record is now its own), from the run's JSON
    report; None when it evaluated no other."""
    path = os.path.join(fleet.workdir, 'report-%d' % fleet.runs, 'nixdeploy-report.json')
    with open(path) as handle:
        hosts = json.load(handle).get('hosts') or {}
    others = [name for name in fleet.selected if name != changed
              and ((hosts.get(name) or {}).get('eval') or {}).get('answered') == 'evaluated']
    return others[0] if others else None


def _recap_changed(fleet):
    """The hosts the last run's recap counts changed (a hand-written
    status run's pending hosts)."""
    path = os.path.join(fleet.workdir, 'run%02d-handwritten.log' % fleet.runs)
    with open(path) as handle:
        return sum(int(found) for found in re.findall(r' changed=(\d+) ', handle.read()))


def _commit_and_status(fleet, changed, env, pending):
    """Commit a new system of ``changed``, then the status playbook, its
    script and the status by hand: (the playbook's figures, the script's,
    the hand-written playbook's); each must find ``pending`` hosts pending
    and every other in sync."""
    fleet.flake.set_config(fleet.flake.config_of(changed), version='status-%s-%d' % (
        changed, time.time()))
    status = _figures(fleet.playbook(fleet.forks, env=env, playbook=STATUS))
    status['classes'] = _classes(fleet)
    status['evaluation'] = _evaluation(fleet)
    status['changed'] = changed
    status['sent_back'] = _sent_back(fleet, changed)
    script = _figures(fleet.baseline(fleet.forks, script=STATUS_BASELINE))
    by_hand = _figures(fleet.handwritten(fleet.forks, playbook=_handwritten.STATUS_PLAYBOOK))
    by_hand['pending'] = _recap_changed(fleet)
    size = len(fleet.selected)
    if status['classes'].get('pending') != pending or \
            status['classes'].get('in_sync') != size - pending:
        raise RunError('the status run found %r, not %d pending and %d in_sync'
                       % (status['classes'], pending, size - pending))
    if by_hand['pending'] != pending:
        raise RunError('the status by hand found %d pending, not %d' % (by_hand['pending'], pending))
    return status, script, by_hand


# the rows of the table: (name, the playbook's run, the script's run)
PAIRS = (('deploy no-op', 'deploy_noop', 'script_noop'),
         ('status', 'status', 'script_status'),
         ('by hand', 'hand_status', 'script_status'),
         ('status, next', 'status_next', 'script_status_next'),
         ('by hand, next', 'hand_status_next', 'script_status_next'))


def size_row(fleet, size, log):
    """One size: warm-up, the deploy's no-op and its script's, then two
    one-host commits, each followed by the status playbook and the status
    script: the first commit since the deploy recorded its evaluations
    (the changed host's evaluator neighbours after it are sent back once,
    docs/eval-cache.md "Exact records"), then a commit to one of the hosts
    it sent back (the steady state: that host's record is its own)."""
    fleet.select(size)
    env = {'NIXDEPLOY_EVAL_CACHE': os.path.join(fleet.workdir, EVAL_CACHE)}
    row = {'n': size, 'load_before': load()}
    fleet.new_version()
    fleet.baseline(fleet.forks)
    link_running(fleet)
    fleet.playbook(fleet.forks, env=env)
    row['deploy_noop'] = _figures(fleet.playbook(fleet.forks, env=env))
    row['deploy_noop']['evaluation'] = _evaluation(fleet)
    row['script_noop'] = _figures(fleet.baseline(fleet.forks))
    log('  status N=%d: deploy no-op %.1f s (cpu %.1f), script no-op %.1f s (cpu %.1f)' % (
        size, row['deploy_noop']['wall'], row['deploy_noop']['cpu'],
        row['script_noop']['wall'], row['script_noop']['cpu']))
    first = fleet.selected[0]
    row['status'], row['script_status'], row['hand_status'] = _commit_and_status(
        fleet, first, env, 1)
    # the default when the first commit sent none back: the second host
    second = row['status']['sent_back'] or fleet.selected[1]
    row['status_next'], row['script_status_next'], row['hand_status_next'] = \
        _commit_and_status(fleet, second, env, 2)
    for _name, top, base in PAIRS:
        for measure in ('wall', 'cpu', 'targets_cpu'):
            if row[top].get(measure) and row[base].get(measure):
                row['%s_%s_ratio' % (top, measure)] = round(
                    row[top][measure] / row[base][measure], 2)
    row['load_after'] = load()
    for top, base, hand in (('status', 'script_status', 'hand_status'),
                            ('status_next', 'script_status_next', 'hand_status_next')):
        log('  status N=%d, %s changed: status %.1f s (cpu %.1f), script %.1f s (cpu %.1f),'
            ' by hand %.1f s (cpu %.1f); %r; %r' % (
                size, row[top]['changed'], row[top]['wall'], row[top]['cpu'],
                row[base]['wall'], row[base]['cpu'], row[hand]['wall'], row[hand]['cpu'],
                row[top]['classes'], row[top]['evaluation']))
    return row


def _cell(row, key, measure):
    value = row[key].get(measure)
    return '-' if value is None else '%.1f' % value


def _answers(run):
    """The playbook's "evaluated / reused" hosts."""
    found = run.get('evaluation') or {}
    return '%s / %s' % (found.get('evaluated', '-'), found.get('reused', '-'))


def table(rows):
    out = ['   N  run          playbook s  script s  ratio   cpu s (playbook / script)  ratio'
           '   hosts cpu s (playbook / script)   evaluated / reused']
    for row in rows:
        for name, top, base in PAIRS:
            out.append('%4d  %-12s %10s %9s %6s   %10s / %-12s %6s   %11s / %-11s   %s' % (
                row['n'], name, _cell(row, top, 'wall'), _cell(row, base, 'wall'),
                row.get('%s_wall_ratio' % top, '-'), _cell(row, top, 'cpu'),
                _cell(row, base, 'cpu'), row.get('%s_cpu_ratio' % top, '-'),
                _cell(row, top, 'targets_cpu'), _cell(row, base, 'targets_cpu'),
                _answers(row[top])))
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
    # the records an earlier run of the benchmark left would make this one's
    # first commit a later one (fewer hosts sent back, the deploy's no-op
    # reusing instead of finding its own answers cached)
    shutil.rmtree(os.path.join(workdir, EVAL_CACHE), ignore_errors=True)
    fleet = ScaleFleet(args.lab, max(sizes), workdir, forks=args.forks, log=log)
    try:
        # each host's system in a file of its own, as a fleet owner's flake
        fleet.flake = OwnFilesFlake.adopt(fleet.flake)
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
