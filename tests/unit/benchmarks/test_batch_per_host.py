# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/batch_per_host.py: each host's batch machinery, driven for
real in a child Python, with hosts that come while their batch's work is
computed (``--hold``) and hosts that come after it."""

import os

import pytest

from benchmarks import batch_per_host

HOLD = 0.3
# the collection at da1c887, from before the batch server (docs/benchmarks.md,
# section 13): measured beside this checkout where this machine has it
BEFORE = '/tmp/before90'


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


def test_each_host_a_process_of_its_own_reports_and_leaves_no_process(tmp_path):
    before = BEFORE if os.path.isdir(BEFORE) else None
    data = batch_per_host.run(sizes=[6], repeat=1, holds=[HOLD], forks=3, folder=str(tmp_path),
                              before=before, processes=True)
    assert sorted(data['versions']) == (['before', 'now'] if before else ['now']), data
    phases = len(batch_per_host.PHASES)
    for name, (row,) in data['versions'].items():
        # every host of every phase was a child that sent its figures and
        # was reaped, and the serving processes it forked ended and were
        # reaped too, none stopped at the end
        counts = row['counts']
        assert counts['forked'] == counts['reaped'] == 6 * phases, (name, row)
        assert counts['started'] >= 1 and counts['left'] == 0, (name, row)
        assert counts['detached'] == counts['started'], (name, row)
        assert row['reported'] == 6, (name, row)
        # each host's own process: its CPU, its bytes, its page faults
        for group in ('computing', 'waiting_median', 'later_median'):
            assert row[group] > 0, (name, group, row)
        assert row['waiting_io'] > 0 and row['later_faults'] > 0, (name, row)
        # a waiting host sleeps at least once a phase, until the held work
        # is done; a later one finds its answer there
        assert row['waiting_wakeups'] >= phases, (name, row)
        assert row['waiting_wakeups'] > row['later_wakeups'], (name, row)
    # nothing the run forked is left: every process of it has the run's
    # TMPDIR (the folder) in its environment
    assert _processes_with('TMPDIR=%s' % tmp_path) == [], 'processes left behind'
    text = batch_per_host.table(data)
    assert 'each host a process of its own' in text, text
    assert text.splitlines()[-1].split()[:3] == ['now', '%gs' % HOLD, '6'], text


def _processes_with(variable):
    """The pids of this user's processes whose environment holds
    ``variable`` (NAME=value)."""
    found = []
    for name in os.listdir('/proc'):
        try:
            with open('/proc/%s/environ' % name, 'rb') as handle:
                if variable.encode() in handle.read().split(b'\0'):
                    found.append(int(name))
        except (OSError, ValueError):
            continue  # not a process, another user's, or ended as this looked
    return found


def test_processes_is_a_way_of_the_hold(capsys):
    with pytest.raises(SystemExit) as raised:
        batch_per_host.main(['--processes', '--hosts', '2'])
    assert raised.value.code == 2
    assert '--processes is a way of --hold' in capsys.readouterr().err


def test_a_hold_below_nothing_is_refused(capsys):
    with pytest.raises(SystemExit) as raised:
        batch_per_host.main(['--hold', '-1', '--hosts', '2'])
    assert raised.value.code == 2
    assert '--hold no less than 0' in capsys.readouterr().err
