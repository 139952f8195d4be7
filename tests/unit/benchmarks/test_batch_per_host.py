# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/batch_per_host.py: each host's batch machinery, driven for
real in a child Python, with hosts that come while their batch's work is
computed (``--hold``) and hosts that come after it."""

import pytest

from benchmarks import batch_per_host

HOLD = 0.3


def test_hosts_that_come_while_the_work_is_computed_wait_for_it(tmp_path):
    data = batch_per_host.run(sizes=[6], repeat=1, holds=[HOLD], forks=3, folder=str(tmp_path))
    assert list(data['versions']) == ['now'] and data['forks'] == 3
    (row,) = data['versions']['now']
    assert (row['n'], row['hold']) == (6, HOLD), row
    for group in ('computing', 'waiting_median', 'later_median'):
        assert row[group] > 0, (group, row)
    # a waiting host sleeps until its phase's work is done (once a phase at
    # least, seven phases); a later one finds its answer there, mostly
    # without a wake-up: the two groups are told apart as they happened
    assert row['waiting_wakeups'] >= 7, row
    assert row['waiting_wakeups'] > row['later_wakeups'], row
    # a waiting host asks the run's process, where a later one reads files
    assert row['waiting_io'] < row['later_io'], row
    text = batch_per_host.table(data)
    assert 'the first 3 hosts arrive while each phase\'s work is computed' in text, text
    assert text.splitlines()[-1].split()[:3] == ['now', '%gs' % HOLD, '6'], text


def test_a_hold_below_nothing_is_refused(capsys):
    with pytest.raises(SystemExit) as raised:
        batch_per_host.main(['--hold', '-1', '--hosts', '2'])
    assert raised.value.code == 2
    assert '--hold no less than 0' in capsys.readouterr().err
