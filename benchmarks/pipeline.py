# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 11: the pipeline in time, on systems that cost what real ones cost (issue 45).

A lab of 48 NixOS hosts (tests/lab) whose systems are heavy (tests/lab/heavy.py):
a shared part of SHARED_SECONDS of CPU that every Nix process evaluates once
(as a nixpkgs), and per host 1-3 CPU seconds and 300-600 MB of its own,
spread deterministically (_pipeline_figures.spread). One run each:

  1 eval      ansible-playbook nixdeploy.fleet.deploy --tags eval on the 48
              hosts: one evaluator (-e nix_eval_workers=1) against the
              default (as many as cores and memory allow): the eval phase's
              wall, the batch's figures (the result with evaluated_here),
              the Nix evaluators' summed RSS and CPU (sampled from /proc)
  2 overlap   a full deploy of the 48 (a new version): when the first host's
              activate task ended against when the last host's eval task did
  4 no-op     the same flake deployed again with the same NIXDEPLOY_EVAL_CACHE
              folder as 2 (answers from the cache), then with -e
              nix_eval_cache=false
  3 slow build  8 hosts, the first's build taking SLOW_BUILD seconds, the
              others cheap: how long before the deploy's end each fast host
              was active

    python -m benchmarks.pipeline          (root; ~15-25 minutes on 2 cores)
    python -m benchmarks.pipeline --eval-only       (run 1 alone)
    python -m benchmarks.pipeline --eval-pairs 3    (run 1 three times; median)

Before the lab is up, it measures what the cores give side by side
(benchmarks/_side_by_side.py): the evaluation ratio no pool can go below.

Root; the lab is named by --lab (default ``ppl``) and always taken down.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from benchmarks._fleet import BenchFleet, RunError, load  # noqa: E402
from benchmarks._pipeline_figures import (EVAL, MARKER, NixSampler, batch_figures,  # noqa: E402
                                          cached_hosts, margins, overlap, phase_wall, ratio,
                                          read_records, spread)
from benchmarks._side_by_side import side_by_side  # noqa: E402
from benchmarks.scale import versions  # noqa: E402
from tests.lab import heavy  # noqa: E402

HOSTS = 48
SHARED_SECONDS = 1.0
HOST_SECONDS = (1.0, 3.0)
HOST_MB = (300, 600)
SLOW_BUILD = 60
FAST_HOSTS = 7
# issue 45's goals
EVAL_GOAL = 0.6          # parallel / single evaluator, wall of the eval phase
MARGIN_GOAL = 30.0       # fast hosts active this long before the deploy's end
NOOP_GOAL = 0.5          # cached no-op / uncached no-op


def log(text):
    print(text, file=sys.stderr)
    sys.stderr.flush()


def host_cost(index, count=HOSTS):
    """(CPU seconds, MB) of host ``index`` (0-based): spread over HOST_SECONDS
    and HOST_MB in two different orders."""
    return (round(spread(index, count, HOST_SECONDS[0], HOST_SECONDS[1], 7), 2),
            int(round(spread(index, count, HOST_MB[0], HOST_MB[1], 11))))


def make_heavy(fleet, calibration):
    """Give every host of the fleet its heavy system (and the flake its
    shared part); returns {host: (seconds, mb)}."""
    fleet.flake.data.update(heavy.heavy_shared(seconds=SHARED_SECONDS, calibration=calibration))
    costs = {}
    for index, name in enumerate(fleet.names):
        seconds, mb = host_cost(index, len(fleet.names))
        costs[name] = (seconds, mb)
        fleet.flake.data['configurations'][fleet.flake.config_of(name)].update(
            heavy.heavy_config(seconds=seconds, mb=mb, calibration=calibration))
    fleet.flake.save()
    return costs


class Runs:
    """The playbook runs of the benchmark, each recorded and sampled."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.count = 0

    def run(self, what, args=(), cache=None):
        """One playbook run on the selected hosts (forks = hosts); ``cache``:
        its NIXDEPLOY_EVAL_CACHE folder (None: a fresh one)."""
        self.count += 1
        fleet = self.fleet
        record = os.path.join(fleet.workdir, 'record-%02d-%s.jsonl' % (self.count, what))
        token = uuid.uuid4().hex
        folder = cache or os.path.join(fleet.workdir, 'cache-%02d' % self.count)
        env = {MARKER: token, 'NIXDEPLOY_EVAL_CACHE': folder}
        load_before = load()
        sampler = NixSampler(token).start()
        try:
            result = fleet.playbook(len(fleet.selected), args=list(args), env=env, record=record)
        finally:
            sampled = sampler.stop()
        records = read_records(record)
        out = {'what': what, 'args': list(args), 'wall': round(result['wall'], 1),
               'cpu': round(result['cpu'], 1), 'epoch': result['epoch'],
               'end': result['epoch'] + result['wall'], 'load_before': load_before,
               'load_after': load(), 'eval_wall': phase_wall(records, EVAL),
               'evaluation': batch_figures(records), 'from_cache_hosts': cached_hosts(records),
               'phases': dict((k, v) for k, v in result.get('phases', {}).items()
                              if k != 'done'),
               'record': record}
        out.update(sampled)
        if out['eval_wall'] is not None:
            out['eval_wall'] = round(out['eval_wall'], 1)
        log('  %-12s wall %6.1f s, eval phase %s s, evaluation %s, sampled %s, load %.1f -> %.1f'
            % (what, out['wall'], out['eval_wall'], json.dumps(out['evaluation']),
               json.dumps(sampled), load_before, out['load_after']))
        return out, records


def measure(fleet, calibration, data, slow_build=SLOW_BUILD, eval_only=False, pairs=1):
    """Fills ``data`` (kept as far as it got when a run fails);
    ``eval_only``: run 1 alone; ``pairs``: run 1's two runs this many times,
    one after the other (a VM's neighbours move a single ratio by a few
    hundredths: the verdict takes the median)."""
    data.update({'hosts': len(fleet.names), 'shared_seconds': SHARED_SECONDS,
                 'host_seconds': HOST_SECONDS, 'host_mb': HOST_MB,
                 'slow_build_seconds': slow_build})
    costs = make_heavy(fleet, calibration)
    data['asked_cpu'] = round(sum(s for s, _mb in costs.values()), 1)
    data['asked_mb'] = sum(mb for _s, mb in costs.values())
    runs = Runs(fleet)
    fleet.select(len(fleet.names))

    # 1. evaluation only: one evaluator, then the default
    data['eval_pairs'] = []
    for _pair in range(max(1, pairs)):
        single, _records = runs.run('eval-single', ['--tags', 'eval', '-e', 'nix_eval_workers=1'])
        parallel, _records = runs.run('eval-default', ['--tags', 'eval'])
        data['eval_pairs'].append({'single': single, 'parallel': parallel,
                                   'ratio': ratio(parallel['eval_wall'], single['eval_wall'])})
    data['eval'] = dict(data['eval_pairs'][0])
    data['eval']['ratio'] = median_ratio(data['eval_pairs'])
    if eval_only:
        return data

    # 2. a full deploy of a new version; its cache folder is 4's
    cache = os.path.join(fleet.workdir, 'cache-shared')
    fleet.new_version()
    before = fleet.active()
    deploy, records = runs.run('deploy', cache=cache)
    fleet.deployed(before)
    deploy['overlap'] = overlap(records, deploy['epoch'])
    data['deploy'] = deploy

    # 4. the unchanged no-op, from the cache, then without it
    after = fleet.active()
    cached, _records = runs.run('noop-cached', cache=cache)
    uncached, _records = runs.run('noop-uncached', ['-e', 'nix_eval_cache=false'], cache=cache)
    if fleet.active() != after:
        raise RunError('a no-op redeploy changed what is active')
    data['noop'] = {'cached': cached, 'uncached': uncached,
                    'ratio': ratio(cached['wall'], uncached['wall'])}

    # 3. one slow build among fast hosts
    fleet.select(FAST_HOSTS + 1)
    slow = fleet.selected[0]
    for name in fleet.selected:
        knobs = heavy.heavy_config(build_seconds=slow_build if name == slow else 0,
                                   calibration=calibration)
        fleet.flake.data['configurations'][fleet.flake.config_of(name)].update(knobs)
    fleet.new_version()
    # a version no earlier run built: the slow build really runs
    token = uuid.uuid4().hex[:8]
    for name in fleet.selected:
        fleet.flake.data['configurations'][fleet.flake.config_of(name)]['version'] += '-' + token
    fleet.flake.save()
    before = fleet.active()
    run, records = runs.run('slow-build')
    fleet.deployed(before)
    run['slow_host'] = slow
    run['margins'] = margins(records, run['end'], slow)
    data['slow_build'] = run
    return data


def median_ratio(pairs):
    """The median of the pairs' ratios (None when one has none)."""
    found = [p['ratio'] for p in pairs]
    if not found or None in found:
        return None
    return round(statistics.median(found), 2)


def _f(value, fmt='%.1f'):
    return fmt % value if value is not None else '-'


def table(data):
    ev = data['eval']
    dep, noop, slow = data.get('deploy'), data.get('noop'), data.get('slow_build')
    lines = ['11. The pipeline in time: %d heavy hosts (shared %.0f s once per Nix process; '
             'each host %.0f-%.0f s and %d-%d MB of its own)'
             % (data['hosts'], data['shared_seconds'], data['host_seconds'][0],
                data['host_seconds'][1], data['host_mb'][0], data['host_mb'][1]), '']
    head = ('%-28s %8s %8s %7s %6s %8s %9s %9s %9s %8s %8s'
            % ('run', 'wall s', 'eval s', 'workers', 'procs', 'peak MB', 'total MB',
               'budget MB', 'sampled MB', 'nix cpu', 'load'))
    lines += [head, '-' * len(head)]
    rows = [('1 eval, one evaluator', ev['single']), ('1 eval, default', ev['parallel'])]
    if dep:
        rows += [('2 deploy (new version)', dep), ('4 no-op, cache', noop['cached']),
                 ('4 no-op, nix_eval_cache=false', noop['uncached']),
                 ('3 deploy, 1 slow build + %d' % (len(slow['margins']['fast'])), slow)]
    for label, cell in rows:
        e = cell['evaluation']
        lines.append('%-28s %8.1f %8s %7s %6s %8s %9s %9s %9s %8s %8s' % (
            label, cell['wall'], _f(cell['eval_wall']), e.get('workers', '-'),
            e.get('processes', '-'), e.get('peak_mb', '-'), e.get('peak_total_mb', '-'),
            e.get('budget_mb', '-'), cell['sampled_peak_rss_mb'], _f(cell['sampled_cpu']),
            '%.1f/%.1f' % (cell['load_before'], cell['load_after'])))
    lines.append('')

    def verdict(ok):
        return 'met' if ok else 'NOT met'

    pairs = data.get('eval_pairs') or []
    lines.append('1: eval phase, default / one evaluator: %sx%s (goal <= %.1fx: %s)'
                 % (_f(ev['ratio'], '%.2f'),
                    ', the median of %d pairs' % len(pairs) if len(pairs) > 1 else '',
                    EVAL_GOAL, verdict(ev['ratio'] is not None and ev['ratio'] <= EVAL_GOAL)))
    if len(pairs) > 1:
        lines.append('   the pairs (one evaluator / default, eval s; nix CPU s): ' + '; '.join(
            '%s / %s s = %sx (%s / %s)' % (
                _f(p['single']['eval_wall']), _f(p['parallel']['eval_wall']),
                _f(p['ratio'], '%.2f'), _f(p['single']['sampled_cpu']),
                _f(p['parallel']['sampled_cpu'])) for p in pairs))
    side = data.get('side_by_side')
    if side:
        lines.append('   the cores: %d evaluations side by side took %.1f s, one alone %.1f s: '
                     '%.2f cores\' worth of evaluation, so no pool goes below %.2fx here'
                     % (side['copies'], side['together_s'], side['alone_s'],
                        side['throughput'], side['best_ratio']))
    if not dep:
        return '\n'.join(lines)
    over = dep.get('overlap') or {}
    lines.append('2: first host active at %s s, last host evaluated at %s s, last active at %s s; '
                 '%s hosts active before the last was evaluated (goal: first active before the '
                 'last evaluated: %s)'
                 % (_f(over.get('first_active')), _f(over.get('last_evaluated')),
                    _f(over.get('last_active')), over.get('active_before_last_eval', '-'),
                    verdict(over and over['first_active'] < over['last_evaluated'])))
    fast = slow['margins']['fast']
    lines.append('3: the fast hosts active %s-%s s (median %s s) before the deploy ended, the '
                 'slow-build host %s s before (goal: >= %.0f s: %s)'
                 % (_f(min(fast.values()) if fast else None),
                    _f(max(fast.values()) if fast else None),
                    _f(statistics.median(fast.values()) if fast else None),
                    _f(slow['margins']['slow']), MARGIN_GOAL,
                    verdict(fast and min(fast.values()) >= MARGIN_GOAL)))
    ce = noop['cached']['evaluation']
    lines.append('4: cached no-op %.1f s (evaluated %s, from_cache %s, processes %s), uncached '
                 '%.1f s: %sx (goal < %.1fx: %s)'
                 % (noop['cached']['wall'], ce.get('evaluated'), ce.get('from_cache'),
                    ce.get('processes'), noop['uncached']['wall'], _f(noop['ratio'], '%.2f'),
                    NOOP_GOAL, verdict(noop['ratio'] is not None and noop['ratio'] < NOOP_GOAL)))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.pipeline', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lab', default='ppl', help='name of the lab (up, then down)')
    parser.add_argument('--hosts', type=int, default=HOSTS)
    parser.add_argument('--slow-build', type=int, default=SLOW_BUILD,
                        help='seconds of the slow build of run 3')
    parser.add_argument('--eval-only', action='store_true', help='run 1 (the evaluation) alone')
    parser.add_argument('--eval-pairs', type=int, default=1,
                        help='run 1 this many times; its verdict takes the median ratio')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'pipeline.json'))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    results = {'started': datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'),
               'machine': {'cores': os.cpu_count(), 'load_at_start': load(),
                           'memory_gb': round(os.sysconf('SC_PAGE_SIZE')
                                              * os.sysconf('SC_PHYS_PAGES') / 2 ** 30, 1)},
               'versions': versions()}
    folder = os.path.dirname(args.output)
    os.makedirs(folder, exist_ok=True)
    calibration = heavy.calibrate(folder=folder)
    results['calibration'] = calibration.figures
    log('calibration: %s' % json.dumps(calibration.figures))
    # what the cores give side by side, measured before the lab is up
    side = side_by_side(calibration)
    log('side by side: %s' % json.dumps(side))
    started = time.monotonic()
    log('lab %s: %d NixOS hosts ...' % (args.lab, args.hosts))
    fleet = BenchFleet(args.lab, args.hosts, os.path.join(folder, 'work-pipeline'))
    results['lab_up_seconds'] = round(time.monotonic() - started, 1)
    results['table'] = {'side_by_side': side}
    try:
        measure(fleet, calibration, results['table'], slow_build=args.slow_build,
                eval_only=args.eval_only, pairs=args.eval_pairs)
    finally:
        fleet.down()
        results['machine']['load_at_end'] = load()
        results['seconds'] = round(time.monotonic() - started, 1)
        with open(args.output, 'w') as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    print(table(results['table']))
    print('\nload %.1f at the start, %.1f at the end; %d s in all; figures in %s'
          % (results['machine']['load_at_start'], results['machine']['load_at_end'],
             results['seconds'], args.output))


if __name__ == '__main__':
    main()
