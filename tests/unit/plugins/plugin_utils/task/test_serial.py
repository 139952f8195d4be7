"""plugin_utils/task/_serial.py: nix_max_fail_percentage, judged when the next
serial batch starts (the builtin free strategy ignores the play keyword)."""

import sys

import pytest
from ansible import constants as C

from tests.collection import collections_path

sys.path.insert(0, collections_path())

# pylint: disable=wrong-import-position
from ansible_collections.nixdeploy.fleet.plugins.action import nix_eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (  # noqa: E402
    _serial, _work_keys)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (  # noqa: E402
    BatchError)
from tests.unit.plugins.plugin_utils.task.test_wait_bounds import Hung, ended  # noqa: E402

BATCH1 = ['web1', 'web2', 'web3', 'web4']
BATCH2 = ['web5', 'web6', 'web7', 'web8']


@pytest.fixture
def record(tmp_path):
    return str(tmp_path / 'serial-play.json')


def test_the_first_batch_never_stops(record):
    answer = _serial.gate(record, BATCH1, [], 0)
    assert answer == {'batch': 1, 'stop': None, 'failed': []}


def test_the_previous_batch_failed_the_hosts_ansible_no_longer_holds_active(record):
    _serial.gate(record, BATCH1, BATCH1, 100)
    # ansible_play_hosts leaves out web2 (failed) and web4 (unreachable)
    answer = _serial.gate(record, BATCH2, ['web1', 'web3'] + BATCH2, 100)
    assert answer == {'batch': 2, 'stop': None, 'failed': ['web2', 'web4']}


@pytest.mark.parametrize('failed,limit,stops', [
    (1, 25, False),   # 25% is not more than 25%
    (2, 25, True),
    (0, 0, False),
    (1, 0, True),     # a canary batch
    (4, 100, False),  # the default lets every batch start
])
def test_strictly_more_than_the_percentage_stops(record, failed, limit, stops):
    _serial.gate(record, BATCH1, BATCH1, limit)
    active = BATCH1[failed:] + BATCH2
    answer = _serial.gate(record, BATCH2, active, limit)
    assert bool(answer['stop']) is stops
    assert _serial.over_limit(failed, 4, limit) is stops


def test_no_percentage_means_no_gate(record):
    _serial.gate(record, BATCH1, BATCH1, None)
    answer = _serial.gate(record, BATCH2, BATCH2, None)
    assert answer['stop'] is None and answer['failed'] == BATCH1
    assert not _serial.over_limit(1, 0, 0)   # an empty batch never stops anything


def test_the_reason_names_the_batch_and_its_failed_hosts(record):
    _serial.gate(record, ['web2', 'web1'], ['web1', 'web2'], 40)
    answer = _serial.gate(record, ['web3'], ['web2', 'web3'], 40)
    # as docs/concepts.md quotes it (the action prefixes 'nixdeploy: ')
    assert answer['stop'] == ('1 of 2 hosts of batch 1 failed (web1), more than '
                              'max_fail_percentage 40%: no further batch starts')


def test_a_batch_recorded_twice_keeps_its_number(record):
    _serial.gate(record, BATCH1, BATCH1, 0)
    first = _serial.gate(record, BATCH2, ['web1'] + BATCH2, 0)
    # a host of batch 2 evaluated on its own asks again: the same answer, still batch 2
    again = _serial.gate(record, list(reversed(BATCH2)), ['web1'] + BATCH2, 0)
    assert again == first and again['batch'] == 2 and again['failed'] == BATCH1[1:]
    assert _serial.gate(record, ['web9'], ['web1'] + BATCH2 + ['web9'], 0)['batch'] == 3


def test_each_play_keeps_its_own_record(tmp_path):
    _serial.gate(str(tmp_path / 'one.json'), BATCH1, [], 0)
    assert _serial.gate(str(tmp_path / 'two.json'), BATCH2, [], 0)['batch'] == 1


class _Node(object):
    """A task or play as the batch functions read them (uuid, parent, play)."""

    def __init__(self, uuid, parent=None, play=None):
        self._uuid, self._parent, self._play = uuid, parent, play
        self.args = {}


def _gate_of(tmp_path, host, task_vars):
    """nix_eval's ``_serial_gate`` for ``host`` of the play batch h1, h2, as
    its worker runs it (a new run of the action for that host)."""
    task = _Node('task-eval', parent=_Node('block', play=_Node('play-1')))
    task_vars = dict(task_vars, inventory_hostname=host)
    _work_keys.new_run(host, task_vars)
    action = nix_eval.ActionModule.__new__(nix_eval.ActionModule)
    action.__dict__.update(host=host, task_vars=task_vars, _task=task)
    return action._serial_gate  # pylint: disable=protected-access


TASK_VARS = {'ansible_play_batch': ['h1', 'h2'], 'ansible_play_hosts': ['h1', 'h2']}


def test_the_serial_gate_judges_the_batch_once_and_puts_the_verdict_to_each_host(
        tmp_path, monkeypatch):
    """The first host's server judges the batch (one record of it) and
    every host reads the verdict: the second host's gate judges nothing."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    log = str(tmp_path / 'judged')
    judge = _serial.gate

    def logged(*args):
        with open(log, 'a') as handle:
            handle.write('judged\n')
        return judge(*args)
    # the server is a fork of this process: its judge calls this function
    monkeypatch.setattr(_serial, 'gate', logged)
    verdicts = [_gate_of(tmp_path, host, TASK_VARS)(None) for host in ('h1', 'h2')]
    assert verdicts == [{'batch': 1, 'stop': None, 'failed': []}] * 2
    with open(log) as handle:
        assert handle.read() == 'judged\n'


def test_the_serial_gate_waits_for_its_verdict_at_most_its_bound(tmp_path, monkeypatch):
    """The server judging the batch hangs (a hung disk): the host waits
    SERIAL_ANSWER_WAIT, then fails naming itself. The hung server is
    stopped by its pid afterwards."""
    monkeypatch.setattr(C, 'DEFAULT_LOCAL_TMP', str(tmp_path))
    monkeypatch.setattr(nix_eval, 'SERIAL_ANSWER_WAIT', 0.5)
    hangs = Hung(tmp_path)
    monkeypatch.setattr(_serial, 'gate', hangs)
    gate = _gate_of(tmp_path, 'h1', TASK_VARS)
    try:
        error, _value, took = ended(lambda: gate(None))
    finally:
        hangs.stop()
    assert isinstance(error, BatchError), error
    assert took < 10 and str(error).startswith(
        "no answer for h1 from the serial batch's process after 0.5s"), error
