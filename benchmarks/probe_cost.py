# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 10c: what the login probe (issue 78) costs a deploy at fleet size.

On the scale lab of benchmark 10 (benchmarks/scale.py: N light NixOS hosts,
forks 50, the repository's ansible.cfg, the summary and report callbacks
on), after a warm-up by the plain script, R rounds of two playbook runs
each: the deploy as users run it (the probe on: ``nix_probe_timeout`` 10)
and the same with ``-e nix_probe_timeout=0`` (no probe). Each run is a full
deploy (every host a new system) and then a no-op redeploy, checked as
benchmark 10 checks them. The two take turns going first from round to
round, so that neither always runs on a warmer machine. Printed: each run's
wall time and controller CPU (every process the run started, its ssh
masters included), the medians, and the probe's cost as a share of the
run without it.

    python -m benchmarks.probe_cost                 N = 250, 3 rounds
    python -m benchmarks.probe_cost --hosts 50 --rounds 2

Root (the lab); about 3 minutes a round at 250 hosts.
"""

import argparse
import datetime
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from benchmarks._fleet import load  # noqa: E402
from benchmarks.scale import FORKS, ScaleFleet, _deploy, log, versions, write  # noqa: E402

# the two variants: the extra vars of each playbook run
VARIANTS = (('probe', ''), ('no probe', 'nix_probe_timeout=0'))
MEASURES = ('wall', 'cpu')


def measure(fleet, rounds, log=print):
    """{variant: [{'deploy': run, 'noop': run}, ...]} over ``rounds`` rounds."""
    runs = dict((name, []) for name, _extra in VARIANTS)
    for number in range(rounds):
        order = VARIANTS if number % 2 == 0 else tuple(reversed(VARIANTS))
        for name, extra in order:
            fleet.extra_vars = extra
            pair = _deploy(fleet, 'playbook')
            runs[name].append(pair)
            log('  round %d %-8s deploy %.1f s (cpu %.1f), no-op %.1f s (cpu %.1f), load %.1f'
                % (number + 1, name, pair['deploy']['wall'], pair['deploy']['cpu'],
                   pair['noop']['wall'], pair['noop']['cpu'], load()))
    return runs


def medians(runs):
    """{variant: {phase: {measure: median}}}."""
    out = {}
    for name, pairs in runs.items():
        out[name] = dict((phase, dict((m, statistics.median(p[phase][m] for p in pairs))
                                      for m in MEASURES)) for phase in ('deploy', 'noop'))
    return out


def table(runs, hosts):
    middle = medians(runs)
    lines = ['10c. The login probe at %d hosts: each round, then the medians' % hosts, '',
             '%-10s %-6s %10s %10s %10s %10s' % ('run', 'round', 'deploy s', 'cpu s',
                                                 'no-op s', 'cpu s')]
    for name, pairs in runs.items():
        for number, pair in enumerate(pairs):
            lines.append('%-10s %-6d %10.1f %10.1f %10.1f %10.1f' % (
                name, number + 1, pair['deploy']['wall'], pair['deploy']['cpu'],
                pair['noop']['wall'], pair['noop']['cpu']))
    for name in runs:
        cell = middle[name]
        lines.append('%-10s %-6s %10.1f %10.1f %10.1f %10.1f' % (
            name, 'median', cell['deploy']['wall'], cell['deploy']['cpu'],
            cell['noop']['wall'], cell['noop']['cpu']))
    with_probe, without = middle[VARIANTS[0][0]], middle[VARIANTS[1][0]]
    cost = ['%s %s %+.1f%%' % ('no-op' if phase == 'noop' else phase, m,
                               100.0 * (with_probe[phase][m] / without[phase][m] - 1))
            for phase in ('deploy', 'noop') for m in MEASURES]
    lines += ['', "the probe's cost (medians, against the run without it): " + ', '.join(cost)]
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.probe_cost', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', type=int, default=250, help='fleet size (default 250)')
    parser.add_argument('--rounds', type=int, default=3, help='rounds (default 3)')
    parser.add_argument('--forks', type=int, default=FORKS)
    parser.add_argument('--lab', default='scale', help='name of the scale lab (up, then down)')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'probe_cost.json'))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the scale lab needs root')
    if args.rounds < 1:
        parser.error('--rounds: at least 1')
    results = {'started': datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'),
               'machine': {'cores': os.cpu_count(), 'load_at_start': load()},
               'versions': versions(), 'hosts': args.hosts, 'forks': args.forks}
    started = time.monotonic()
    workdir = os.path.join(os.path.dirname(args.output), 'work-probe-cost')
    fleet = ScaleFleet(args.lab, args.hosts, workdir, forks=args.forks, log=log)
    try:
        fleet.select(args.hosts)
        fleet.new_version()
        fleet.baseline(fleet.forks)
        runs = measure(fleet, args.rounds, log=log)
    finally:
        fleet.down()
    results.update(seconds=round(time.monotonic() - started, 1), runs=dict(
        (name, [dict((phase, dict((m, pair[phase][m]) for m in MEASURES))
                     for phase in ('deploy', 'noop')) for pair in pairs])
        for name, pairs in runs.items()), medians=medians(runs))
    results['machine']['load_at_end'] = load()
    print(table(runs, args.hosts))
    write(args.output, results)
    print('\nwritten: %s' % os.path.relpath(args.output, os.getcwd()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
