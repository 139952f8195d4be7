"""The progress of a play batch (plugin_utils/task/_progress.py): the counts
and names of a progress line, and the step files an activation in a worker
process leaves for the callback in the main process (what is read is
untrusted: a bad file is no step, never a traceback)."""

import json
import os
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _progress  # noqa: E402


def batch(**phases):
    """A BatchProgress: ``phase=({host: started}, {host: status})``."""
    progress = _progress.BatchProgress()
    for phase, (running, done) in phases.items():
        for host, status in done.items():
            progress.start(host, phase, 0.0)
            progress.end(host, phase, status)
        for host, started in running.items():
            progress.start(host, phase, started)
    return progress


def test_a_line_counts_each_phase_of_the_batch_and_names_who_still_runs_it():
    progress = batch(build=({'web3': 60.0}, {'web1': 'ok', 'web2': 'failed', 'web4': 'ok'}))
    progress.end('web1', 'eval', 'ok')
    progress.start('web5', 'eval', 95.0)
    assert progress.line(100.0, 10) == (
        'nixdeploy: progress: eval: 1 of 5 done, 1 running: web5 (5s); '
        'build: 3 of 5 done (1 failed), 1 running: web3 (40s)')
    # nothing has run 10 s yet: no line
    assert batch(copy=({'web1': 95.0}, {})).line(100.0, 10) is None
    assert _progress.BatchProgress().line(100.0, 10) is None


def test_a_host_is_in_one_phase_at_a_time_and_a_second_task_runs_it_again():
    progress = batch(copy=({'web1': 0.0}, {}))
    # its copy's end never came (a handler, a lost result): the activation starts
    progress.start('web1', 'activate', 50.0)
    assert progress.line(100.0, 10) == \
        'nixdeploy: progress: activate: 0 of 1 done, 1 running: web1 (50s)'
    progress.end('web1', 'activate', 'ok')
    # nix_activate state=confirmed: the same phase again
    progress.start('web1', 'activate', 80.0)
    assert progress.line(100.0, 10) == \
        'nixdeploy: progress: activate: 0 of 1 done, 1 running: web1 (20s)'
    progress.forget('web1')
    assert progress.hosts() == set()


def test_a_phase_names_five_hosts_at_a_step_first_then_the_longest_running():
    running = dict(('web%02d' % n, float(n)) for n in range(1, 10))
    progress = batch(activate=(running, {}))
    steps = {'web08': ('awaiting confirmation', 94.0), 'web09': ('health checks', 97.0)}
    assert progress.line(100.0, 10, steps) == (
        'nixdeploy: progress: activate: 0 of 9 done, 9 running: '
        'web08 (92s, awaiting confirmation 6s), web09 (91s, health checks 3s), '
        'web01 (99s), web02 (98s), web03 (97s) and 4 more')


def test_host_names_are_shown_escaped():
    evil = 'evil\n\x1b[2K\x1b[32mweb2 switched'
    line = batch(copy=({evil: 0.0}, {})).line(100.0, 10)
    assert line == 'nixdeploy: progress: copy: 0 of 1 done, 1 running: ' \
        'evil\\n\\x1b[2K\\x1b[32mweb2 switched (100s)', line


@pytest.fixture
def base(tmp_path):
    return str(tmp_path)


def test_a_step_is_read_while_it_lasts(base):
    assert _progress.read_step(base, 'web1', 0.0) is None
    _progress.set_step(base, 'web1', _progress.AWAITING_CONFIRMATION)
    step, since = _progress.read_step(base, 'web1', 0.0)  # pylint: disable=unpacking-non-sequence
    assert step == 'awaiting confirmation' and since > 0
    # another host has no step
    assert _progress.read_step(base, 'web2', 0.0) is None
    _progress.clear_step(base, 'web1')
    assert _progress.read_step(base, 'web1', 0.0) is None
    # a block that fails leaves no step behind
    with pytest.raises(RuntimeError):
        with _progress.in_step(base, 'web1', _progress.HEALTH_CHECKS):
            assert _progress.read_step(base, 'web1', 0.0)[0] == 'health checks'
            raise RuntimeError('the check broke')
    assert _progress.read_step(base, 'web1', 0.0) is None


def test_a_step_set_before_the_task_started_is_an_earlier_tasks(base):
    _progress.set_step(base, 'web1', _progress.HEALTH_CHECKS)
    _step, since = _progress.read_step(base, 'web1', 0.0)  # pylint: disable=unpacking-non-sequence
    assert _progress.read_step(base, 'web1', since + _progress.STEP_SLACK + 1) is None
    assert _progress.read_step(base, 'web1', since + 1)[0] == 'health checks'


def test_a_host_name_never_reaches_a_path(base):
    for name in ('../../etc/passwd', '/tmp/x', 'a/b', '..', 'web1\x00'):
        _progress.set_step(base, name, _progress.HEALTH_CHECKS)
        assert _progress.read_step(base, name, 0.0)[0] == 'health checks'
    # every file is in the run's steps folder, named by a digest
    folder = os.path.join(base, 'nixdeploy-steps')
    assert sorted(os.listdir(base)) == ['nixdeploy-steps']
    names = os.listdir(folder)
    assert len(names) == 5 and all(len(n) == len('0' * 32 + '.json') for n in names), names


@pytest.mark.parametrize('content', [
    b'not json', b'[1, 2]', b'null', b'\xff\xfe', b'[' * 4000,
    json.dumps({'host': 'web2', 'step': 'health checks', 'since': 1e12}).encode(),
    json.dumps({'host': 'web1', 'step': '\x1b[2Kswitched', 'since': 1e12}).encode(),
    json.dumps({'host': 'web1', 'step': 'health checks', 'since': True}).encode(),
    json.dumps({'host': 'web1', 'step': 'health checks', 'since': 'now'}).encode(),
    b'{"host": "web1", "step": "health checks", "since": NaN}',
    json.dumps({'host': 'web1', 'step': 'health checks', 'since': 1e12,
                'pad': 'x' * 10000}).encode(),
])
def test_a_bad_step_file_is_no_step(base, content):
    _progress.set_step(base, 'web1', _progress.HEALTH_CHECKS)
    path = _progress._step_path(base, 'web1')
    with open(path, 'wb') as handle:
        handle.write(content)
    assert _progress.read_step(base, 'web1', 0.0) is None


def test_a_step_that_cannot_be_written_does_not_fail_the_activation(base):
    blocker = os.path.join(base, 'nixdeploy-steps')
    with open(blocker, 'w') as handle:
        handle.write('a file where the folder goes')
    _progress.set_step(base, 'web1', _progress.HEALTH_CHECKS)
    _progress.clear_step(base, 'web1')
    assert _progress.read_step(base, 'web1', 0.0) is None
