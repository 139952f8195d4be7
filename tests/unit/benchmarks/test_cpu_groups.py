# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""benchmarks/_cpu_groups.py on this machine's real cgroups: a child that
joins a group before exec is counted there, with its detached grandchild,
and nowhere else; the groups go away at close."""

import os
import subprocess
import sys
import time

import pytest

from benchmarks._cpu_groups import CpuGroups, machine_busy

# a child that burns CPU itself, then leaves a detached grandchild that burns more
BURN = ('import os, time\n'
        'def burn(s):\n'
        '    end = time.process_time() + s\n'
        '    while time.process_time() < end: pass\n'
        'burn(0.3)\n'
        'if os.fork() == 0:\n'
        '    os.setsid(); burn(0.3); os._exit(0)\n')


@pytest.fixture
def groups():
    if os.geteuid() != 0:
        pytest.skip('cgroups need root')
    made = CpuGroups.open('nixdeploy-test-%d' % os.getpid())
    assert made is not None, 'no cgroup hierarchy to count CPU by on this machine'
    yield made
    made.close()
    assert not os.path.exists(made.base)


def test_a_joined_run_and_its_detached_children_count_in_their_group(groups):
    before = groups.seconds()
    busy, _idle = machine_busy()
    proc = subprocess.Popen([sys.executable, '-c', BURN], preexec_fn=groups.joiner('controller'))
    assert proc.wait() == 0
    # the grandchild outlives its parent: wait4 never sees it, the group does
    # (its 0.3 s of CPU may take far longer on a busy machine)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(os.path.join(groups.path('controller'), 'cgroup.procs')) as handle:
            if not handle.read().split():
                break
        time.sleep(0.05)
    after = groups.seconds()
    assert after['controller'] - before['controller'] >= 0.55
    assert after['targets'] - before['targets'] < 0.05
    assert machine_busy()[0] - busy >= 0.55


def test_join_moves_a_running_process(groups):
    proc = subprocess.Popen(['sleep', '30'])
    try:
        groups.join('targets', proc.pid)
        with open(os.path.join(groups.path('targets'), 'cgroup.procs')) as handle:
            assert str(proc.pid) in handle.read().split()
    finally:
        proc.kill()
        proc.wait()
