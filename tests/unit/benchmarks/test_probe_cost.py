"""Benchmark 10c's arithmetic (benchmarks/probe_cost.py): the medians of the
rounds and the probe's cost against the run without it."""

from benchmarks import probe_cost


def pair(deploy, noop):
    return {'deploy': {'wall': deploy, 'cpu': deploy * 2}, 'noop': {'wall': noop, 'cpu': noop * 2}}


def test_the_cost_is_taken_between_the_medians():
    runs = {'probe': [pair(102, 51), pair(100, 50), pair(130, 70)],
            'no probe': [pair(100, 50), pair(99, 49), pair(101, 51)]}
    middle = probe_cost.medians(runs)
    assert middle['probe']['deploy'] == {'wall': 102, 'cpu': 204}
    assert middle['no probe']['noop'] == {'wall': 50, 'cpu': 100}
    text = probe_cost.table(runs, 250)
    # one slow round does not move the verdict: 102 against 100 is +2.0%
    assert 'deploy wall +2.0%, deploy cpu +2.0%, no-op wall +2.0%' in text, text
    assert len([ln for ln in text.splitlines() if ' median ' in ln]) == 2
