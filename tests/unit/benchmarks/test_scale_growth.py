# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 10's growth over repeated rounds (benchmarks/_scale_growth.py):
the alternated order, the medians, each round's own growth and issue 64's
verdict, as ``scale.py --repeat`` prints them."""

import pytest

from benchmarks import _scale_growth, scale


def test_rounds_alternate_the_sizes_and_the_deployers():
    deployers = ['playbook', 'script']
    assert _scale_growth.round_order([1000, 250], deployers, 0) == [
        (250, ['playbook', 'script']), (1000, ['playbook', 'script'])]
    assert _scale_growth.round_order([1000, 250], deployers, 1) == [
        (1000, ['script', 'playbook']), (250, ['script', 'playbook'])]
    assert _scale_growth.round_order([250, 1000], deployers, 2) == \
        _scale_growth.round_order([250, 1000], deployers, 0)


def _row(n, number, playbook, script):
    """A row whose deployers spent ``playbook`` / ``script`` (deploy, no-op)
    CPU seconds a host."""
    def cell(per_host):
        return dict((phase, {'cpu': per_host[i] * n}) for i, phase in enumerate(('deploy', 'noop')))
    return {'n': n, 'round': number, 'playbook': cell(playbook), 'script': cell(script)}


def test_the_growth_is_taken_between_the_medians_not_one_round():
    rows = [
        _row(250, 0, (0.40, 0.20), (0.24, 0.22)), _row(1000, 0, (0.44, 0.21), (0.25, 0.22)),
        # a round disturbed at the small size: alone it would say +33%
        _row(1000, 1, (0.42, 0.22), (0.24, 0.22)), _row(250, 1, (0.30, 0.20), (0.24, 0.22)),
        _row(250, 2, (0.41, 0.21), (0.24, 0.22)), _row(1000, 2, (0.42, 0.21), (0.25, 0.22)),
    ]
    found = _scale_growth.growth(rows, ['playbook', 'script'])
    deploy = found['playbook']['deploy']
    assert deploy['medians'] == {250: pytest.approx(0.40), 1000: pytest.approx(0.42)}
    assert deploy['growth'] == pytest.approx(0.05)
    assert [round(g, 3) for g in deploy['rounds']] == [0.1, 0.4, 0.024]
    assert found['script']['deploy']['growth'] == pytest.approx(0.25 / 0.24 - 1)
    # the deploy grew +5.0% against the script's +4.2%; the no-op +5.0% against 0%
    assert _scale_growth.verdict(found) == {'deploy': False, 'noop': False}
    rows[1]['playbook']['deploy']['cpu'] = 0.40 * 1000
    rows[2]['playbook']['deploy']['cpu'] = 0.40 * 1000
    assert _scale_growth.verdict(_scale_growth.growth(rows, ['playbook', 'script']))['deploy']


def test_one_size_has_no_growth_and_an_unmeasured_cell_no_verdict():
    assert _scale_growth.growth([_row(250, 0, (0.4, 0.2), (0.2, 0.2))], ['playbook']) is None
    rows = [_row(250, 0, (0.4, 0.2), (0.2, 0.2)), _row(1000, 0, (0.4, 0.2), (0.2, 0.2))]
    del rows[1]['script']['noop']['cpu']
    found = _scale_growth.growth(rows, ['playbook', 'script'])
    assert found['script']['noop']['growth'] is None
    assert _scale_growth.verdict(found) == {'deploy': True, 'noop': None}


def _cell(cpu):
    return {'wall': 10.0, 'cpu': cpu, 'targets_cpu': 1.0, 'idle': 1.0, 'processes': 100,
            'memory': {'pss_mb': 100.0, 'rss_mb': 200.0}}


def test_table_10_prints_the_growth_and_the_verdict():
    rows = []
    for number, (low, high) in enumerate(((0.40, 0.42), (0.38, 0.42), (0.40, 0.41))):
        for n, playbook in ((250, low), (1000, high)):
            row = {'n': n, 'round': number,
                   'playbook': {'deploy': _cell(playbook * n), 'noop': _cell(0.2 * n)},
                   'script': {'deploy': _cell(0.24 * n), 'noop': _cell(0.22 * n)}}
            rows.append(scale.ratios(row))
    data = {'forks': 50, 'rows': rows, 'warmup': 1.0, 'repeat': 3,
            'growth': _scale_growth.growth(rows, ['playbook', 'script']),
            'lab': {'hosts': 1000, 'up_seconds': 1.0, 'up_steps': {}}}
    text = scale.table(data)
    assert 'N=250 -> N=1000 (median of 3 rounds' in text
    playbook = [l for l in text.splitlines() if l.split()[:2] == ['playbook', 'deploy']][0]
    assert 'deploy 0.400 -> 0.420 s +5.0% [+5.0%, +10.5%, +2.5%]' in playbook
    assert 'no-op 0.200 -> 0.200 s +0.0%' in playbook
    assert "the playbook's growth no more than the script's: deploy NOT met, no-op met" in text
