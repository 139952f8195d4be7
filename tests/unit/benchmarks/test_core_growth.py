# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/core_growth.py: ansible-core alone, the deploy role's shape
of tasks, run for real by ansible-playbook on a few local hosts."""

import pytest

from benchmarks import core_growth


def test_the_payload_is_many_store_paths_of_about_the_size_asked():
    paths = core_growth.paths(6400)
    assert len(paths) == 100 and len(set(paths)) == 100
    assert all(p.startswith('/nix/store/') and len(p) < 64 for p in paths)
    assert core_growth.paths(0) == []


def test_a_run_measures_the_main_process_and_its_workers_at_each_size():
    data = core_growth.run([2, 4], ['linear'], 1, payload=640, log=lambda text: None)
    assert [row['n'] for row in data['rows']] == [2, 4]
    for row in data['rows']:
        cells = row['linear']
        # every worker is a process of its own: their CPU is never nothing
        assert cells['workers']['cpu'] > 0 and cells['main_user']['cpu'] > 0
        assert cells['all']['cpu'] == pytest.approx(
            cells['main_user']['cpu'] + cells['main_sys']['cpu'] + cells['workers']['cpu'])
    text = core_growth.table(data)
    assert '(640 bytes more each)' in text and 'N=2 -> N=4' in text
    assert [l.split()[0] for l in text.splitlines()[2:6]] == list(core_growth.PARTS)


def test_a_play_that_fails_is_an_error_naming_its_size_not_a_figure():
    with pytest.raises(RuntimeError, match='the play of 2 hosts .no_such_strategy. failed'):
        core_growth.run([2, 3], ['no_such_strategy'], 1, log=lambda text: None)
