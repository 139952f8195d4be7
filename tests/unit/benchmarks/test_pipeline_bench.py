# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/_pipeline_figures.py and the host costs of benchmarks/pipeline.py
(benchmark 11, the pipeline in time): pure, no lab."""

import json
import os
import shutil

from benchmarks import pipeline
from benchmarks._pipeline_figures import (ACTIVATE, EVAL, MARKER, NixSampler, batch_figures,
                                          cached_hosts, margins, overlap, phase_wall,
                                          read_records, spread)


def test_spread_covers_the_range_once_each_in_a_mixed_order():
    values = [spread(i, 48, 1.0, 3.0, 7) for i in range(48)]
    assert min(values) == 1.0 and max(values) == 3.0
    assert len(set(values)) == 48
    # neighbours are not sorted: cheap and costly hosts are mixed
    assert values != sorted(values)
    assert spread(0, 1, 5, 9, 7) == 5.0


def test_host_costs_are_deterministic_and_within_bounds():
    costs = [pipeline.host_cost(i) for i in range(pipeline.HOSTS)]
    assert costs == [pipeline.host_cost(i) for i in range(pipeline.HOSTS)]
    assert all(1.0 <= s <= 3.0 and 300 <= mb <= 600 for s, mb in costs)
    # CPU and memory follow different orders
    assert [s for s, _mb in costs].index(3.0) != [mb for _s, mb in costs].index(600)
    mean = sum(s for s, _mb in costs) / len(costs)
    assert abs(mean - 2.0) < 0.01


def _rec(host, task, started, ended, **result):
    return {'host': host, 'task': task, 'started': started, 'ended': ended, 'result': result}


RECORDS = [
    _rec('h1', EVAL, 100.0, 110.0),
    _rec('h2', EVAL, 100.5, 130.0, evaluated_here=True, nix_processes=3,
         evaluation={'workers': 2, 'peak_mb': 900, 'from_cache': 0, 'evaluated': 2}),
    _rec('h1', ACTIVATE, 115.0, 120.0),
    _rec('h2', ACTIVATE, 135.0, 140.0),
    {'host': None, 'task': None, 'status': 'stats', 'result': {}},
]


def test_the_batch_figures_come_from_the_host_that_evaluated_the_batch():
    figures = batch_figures(RECORDS)
    assert figures == {'workers': 2, 'peak_mb': 900, 'from_cache': 0, 'evaluated': 2,
                       'nix_processes': 3}
    assert batch_figures(RECORDS[:1]) == {}
    assert cached_hosts(RECORDS) == 0
    assert cached_hosts([_rec('h1', EVAL, 0, 1, from_cache=True)]) == 1


def test_phase_wall_overlap_and_margins():
    assert phase_wall(RECORDS, EVAL) == 30.0
    assert phase_wall(RECORDS, 'nothing') is None
    assert overlap(RECORDS, 100.0) == {'first_active': 20.0, 'last_evaluated': 30.0,
                                       'last_active': 40.0, 'active_before_last_eval': 1}
    assert overlap([], 0) == {}
    assert margins(RECORDS, 150.0, 'h2') == {'fast': {'h1': 30.0}, 'slow': 10.0}


def test_read_records_skips_nothing_and_misses_quietly(tmp_path):
    path = tmp_path / 'record.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in RECORDS))
    assert read_records(str(path)) == RECORDS
    assert read_records(str(tmp_path / 'none')) == []


def _proc(root, pid, comm, argv, environ, utime, stime, rss_pages, start=7):
    folder = os.path.join(str(root), str(pid))
    os.makedirs(folder)
    fields = (['S', '1'] + ['0'] * 9 + [str(utime), str(stime)] + ['0'] * 6
              + [str(start), '0', str(rss_pages)])
    with open(os.path.join(folder, 'stat'), 'w') as handle:
        handle.write('%d (%s) %s\n' % (pid, comm, ' '.join(fields)))
    for name, text in (('comm', comm + '\n'), ('cmdline', '\0'.join(argv) + '\0'),
                       ('environ', '\0'.join(environ) + '\0')):
        with open(os.path.join(folder, name), 'w') as handle:
            handle.write(text)


def test_the_sampler_counts_only_the_runs_nix_eval_processes(tmp_path):
    tick = os.sysconf('SC_CLK_TCK')
    pages = 2 ** 20 // os.sysconf('SC_PAGE_SIZE')   # 1 MB
    ours = '%s=abc' % MARKER
    _proc(tmp_path, 10, 'nix', ['nix', 'eval', '--json'], [ours], tick, tick, 100 * pages)
    _proc(tmp_path, 11, 'nix', ['nix', 'eval'], [ours], 2 * tick, 0, 50 * pages)
    _proc(tmp_path, 12, 'nix', ['nix', 'eval'], ['%s=other' % MARKER], tick, 0, 999 * pages)
    _proc(tmp_path, 13, 'nix', ['nix', 'build'], [ours], tick, 0, 999 * pages)
    _proc(tmp_path, 14, 'python', ['python', 'eval'], [ours], tick, 0, 999 * pages)
    # a wrapper script named nix (and its subshell): comm nix, run by a shell
    _proc(tmp_path, 15, 'nix', ['/bin/sh', '/tmp/w/nix', 'eval'], [ours], tick, 0, 999 * pages)
    _proc(tmp_path, 16, 'nix', ['/usr/bin/nix', 'eval'], [ours], tick, 0, 10 * pages)
    sampler = NixSampler('abc', proc=str(tmp_path))
    sampler.sample()
    assert sampler.stop() == {'sampled_peak_rss_mb': 160, 'sampled_most_at_once': 3,
                              'sampled_processes': 3, 'sampled_cpu': 5.0}


def test_the_sampler_never_reads_the_processes_there_before_the_run(tmp_path):
    tick = os.sysconf('SC_CLK_TCK')
    pages = 2 ** 20 // os.sysconf('SC_PAGE_SIZE')
    ours = '%s=abc' % MARKER
    # there before start: a run's token cannot be in it (here it is, to
    # show the sampler does not read it)
    _proc(tmp_path, 10, 'nix', ['nix', 'eval'], [ours], 5 * tick, 0, 500 * pages)
    sampler = NixSampler('abc', proc=str(tmp_path), every=3600).start()
    try:
        _proc(tmp_path, 11, 'nix', ['nix', 'eval'], [ours], tick, tick, 10 * pages)
        sampler.sample()
    finally:
        figures = sampler.stop()
    assert figures == {'sampled_peak_rss_mb': 10, 'sampled_most_at_once': 1,
                       'sampled_processes': 1, 'sampled_cpu': 2.0}


def test_a_pid_given_back_and_taken_again_by_an_evaluator_is_counted(tmp_path):
    """pid_max is often 32768: a pid of a process there before the run can
    come again, for one of the run's evaluators."""
    tick = os.sysconf('SC_CLK_TCK')
    pages = 2 ** 20 // os.sysconf('SC_PAGE_SIZE')
    _proc(tmp_path, 10, 'sshd', ['sshd'], [], tick, 0, pages)
    sampler = NixSampler('abc', proc=str(tmp_path), every=3600).start()
    try:
        shutil.rmtree(str(tmp_path / '10'))
        sampler.sample()
        _proc(tmp_path, 10, 'nix', ['nix', 'eval'], ['%s=abc' % MARKER], tick, 0, 10 * pages)
        sampler.sample()
    finally:
        figures = sampler.stop()
    assert figures['sampled_processes'] == 1 and figures['sampled_cpu'] == 1.0


def test_an_eval_only_table_states_the_cores_bound():
    """--eval-only: run 1's rows and verdict, and the ratio the cores allow."""
    cell = {'wall': 10.0, 'eval_wall': 9.0, 'evaluation': {'workers': 1, 'processes': 2},
            'sampled_peak_rss_mb': 100, 'sampled_cpu': 8.0, 'load_before': 0.1,
            'load_after': 0.2}
    data = {'hosts': 4, 'shared_seconds': 1.0, 'host_seconds': (1.0, 3.0), 'host_mb': (300, 600),
            'side_by_side': {'copies': 2, 'alone_s': 6.0, 'together_s': 9.6,
                             'throughput': 1.25, 'best_ratio': 0.8},
            'eval': {'single': cell, 'parallel': dict(cell, eval_wall=6.3), 'ratio': 0.7}}
    text = pipeline.table(data)
    assert '1 eval, one evaluator' in text and '1 eval, default' in text
    assert '0.70x (goal <= 0.6x: NOT met)' in text
    assert '1.25 cores\' worth of evaluation, so no pool goes below 0.80x here' in text
    assert '2 deploy' not in text


def test_several_eval_pairs_are_judged_by_their_median():
    def cell(wall, cpu):
        return {'wall': wall + 1, 'eval_wall': wall, 'evaluation': {'workers': 1},
                'sampled_peak_rss_mb': 100, 'sampled_cpu': cpu, 'load_before': 0.1,
                'load_after': 0.2}
    pairs = [{'single': cell(100.0, 98.0), 'parallel': cell(p, 110.0),
              'ratio': pipeline.ratio(p, 100.0)} for p in (63.0, 58.0, 59.0)]
    data = {'hosts': 4, 'shared_seconds': 1.0, 'host_seconds': (1.0, 3.0),
            'host_mb': (300, 600), 'eval_pairs': pairs,
            'eval': dict(pairs[0], ratio=pipeline.median_ratio(pairs))}
    text = pipeline.table(data)
    assert '0.59x, the median of 3 pairs (goal <= 0.6x: met)' in text
    assert '100.0 / 63.0 s = 0.63x (98.0 / 110.0)' in text
    assert pipeline.median_ratio([dict(pairs[0], ratio=None)]) is None
