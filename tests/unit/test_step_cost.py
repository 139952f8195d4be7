"""tests/step_cost.py counts a step of `make test` that is not a pytest run
(sanity, lint, Molecule, the image, the tree): the programs it waited for,
and as root what it left running; tests/suite_cost.py prints its row and adds
it to the total. A tool of the suite's own, run on this machine's stack: the
current stack skips it (here_only)."""

import json
import os
import subprocess
import sys

import pytest

from tests import module_cpu, step_cost

pytestmark = pytest.mark.here_only

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# burns SECONDS of CPU; with DETACH (a file), in a grandchild nobody waits
# for (as a lab's daemons), which makes the file when it is done: the step
# ends only then, as make test's steps stop what they started
BURN = """
import os, subprocess, sys, time
burn = 'import time\\nend = time.process_time() + %r\\nwhile time.process_time() < end: pass\\n' % SECONDS
if DETACH:
    subprocess.Popen([sys.executable, '-c', burn + 'open(%r, "w").close()' % DETACH],
                     start_new_session=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(DETACH) and time.monotonic() < deadline:
        time.sleep(0.05)
else:
    exec(burn)
sys.exit(CODE)
"""


def step(report, name, seconds, detach=None, code=0):
    """python -m tests.step_cost REPORT NAME -- python -c BURN: its exit code."""
    program = 'SECONDS = %r\nDETACH = %r\nCODE = %d\n' % (seconds, detach, code) + BURN
    return subprocess.run([sys.executable, '-m', 'tests.step_cost', str(report), name, '--',
                           sys.executable, '-c', program], cwd=ROOT, check=False).returncode


def test_a_step_is_charged_what_it_waited_for_and_keeps_its_exit_code(tmp_path):
    report = tmp_path / 'cost-x-steps.json'
    assert step(report, 'heavy', 1.5) == 0
    assert step(report, 'light', 0.1, code=3) == 3
    figures = json.loads(report.read_text())
    rows = figures['modules']
    heavy, light = step_cost.PREFIX + 'heavy', step_cost.PREFIX + 'light'
    assert sorted(rows) == [heavy, light], rows
    assert rows[heavy]['children'] >= 1.4, rows
    assert rows[light]['children'] < 1.0, rows
    assert figures['steps'] is True
    assert figures['wall'] == pytest.approx(sum(r['wall'] for r in rows.values()))
    # the table prints the steps' rows and counts them in the total
    pytest_run = tmp_path / 'cost-x.json'
    pytest_run.write_text(json.dumps({'format': module_cpu.FORMAT, 'wall': 1.0,
                                      'python': '3.11', 'ansible_core': '2.19',
                                      'modules': {'tests.test_a': {'tests': 2, 'wall': 1.0,
                                                                   'cpu': 0.5,
                                                                   'children': 0.5}}}))
    out = subprocess.run([sys.executable, '-m', 'tests.suite_cost', str(pytest_run), str(report)],
                         cwd=ROOT, stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    lines = out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith('(step)')] == ['heavy', 'light']
    assert any(line.startswith('x-steps ') and '2 steps' in line for line in lines), out
    total = [line for line in lines if line.startswith('all ')]
    seconds = 1.0 + sum(r['children'] for r in rows.values())
    assert total and ('%.0f CPU s' % seconds) in total[0], out


@pytest.mark.skipif(os.geteuid() != 0, reason='root only: it makes cgroups')
def test_a_step_is_charged_what_it_left_running(tmp_path):
    if module_cpu.cgroup_root() is None:
        pytest.skip('no cgroup filesystem to count in')
    report = tmp_path / 'cost-x-steps.json'
    done = str(tmp_path / 'burnt')
    assert step(report, 'detached', 1.5, detach=done) == 0
    assert os.path.exists(done), 'the detached burner never finished'
    row = json.loads(report.read_text())['modules'][step_cost.PREFIX + 'detached']
    # nobody waited for the burner: only the cgroup saw its seconds
    assert row['children'] < 1.0, row
    assert row['cgroup'] >= 1.4, row
