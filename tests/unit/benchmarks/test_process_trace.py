# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/_process_trace.py on a real strace of a small process tree
shaped like a playbook run: a main process whose forks are workers, a worker
that starts a detached process (double fork, setsid) that runs programs, and
programs run by name; the split counts each kind and its time."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from benchmarks import _process_trace

# the deployer: two "workers" (forks); the second detaches a "batch process"
# that runs `sleep 1` and is left running when the deployer ends
DEPLOYER = ('import os, subprocess, sys, time\n'
            'def worker(detach):\n'
            '    if os.fork() == 0:\n'
            '        if detach and os.fork() == 0:\n'
            '            os.setsid()\n'
            '            if os.fork() == 0:\n'
            '                subprocess.run(["sleep", "1"]); os._exit(0)\n'
            '            os._exit(0)\n'
            '        subprocess.run(["true"]); time.sleep(0.1); os._exit(0)\n'
            '    os.wait()\n'
            'worker(False); worker(True)\n')


@pytest.fixture
def trace(tmp_path):
    if shutil.which('strace') is None:
        pytest.skip('no strace here')
    path = str(tmp_path / 'trace.txt')
    tracer = _process_trace.Tracer(path)
    stopped = []
    proc = subprocess.Popen(tracer.wrap([sys.executable, '-c', DEPLOYER]))
    tracer.stop_after(proc, lambda: stopped.append(time.monotonic()))
    proc.wait(timeout=30)
    if proc.returncode != 0 or not os.path.getsize(path):
        pytest.skip('strace cannot trace here (rc %s)' % proc.returncode)
    return path, stopped


def test_each_process_gets_its_kind_and_its_time(trace):
    path, stopped = trace
    found = _process_trace.split(path)
    assert found['deployer (main process)']['count'] == 1
    assert found['ansible worker']['count'] == 2
    assert found['detached batch process']['count'] == 1
    assert found['detaching fork']['count'] == 1
    assert found['sleep']['count'] == 1 and found['true']['count'] == 2  # one a worker
    # the sleep outlives the deployer, and is timed as long as it ran
    assert 0.9 < found['sleep']['sum'] < 10
    # the run's wall time is the deployer's own, not the detached process's
    procs, root = _process_trace.read(path)
    sleep = next(p for p in procs.values() if p.kind == 'sleep')
    assert procs[root].end < sleep.end
    assert found['total'] == round(procs[root].end - procs[root].start, 3)
    # the tracer said when the deployer ended, while its detached child ran on
    assert stopped


def test_the_table_names_every_kind(trace):
    path, _stopped = trace
    lines = _process_trace.table('N=1', [('playbook', _process_trace.split(path))])
    text = '\n'.join(lines)
    for kind in ('ansible worker', 'detached batch process', 'sleep', 'wall (traced)'):
        assert kind in text
