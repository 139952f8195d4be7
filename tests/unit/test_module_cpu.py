"""tests/module_cpu.py counts a module's children, detached ones too, for
that module and no other. A tool of the suite's own, run on this machine's
stack: the current stack skips it (here_only)."""

import os
import subprocess
import sys

import pytest

from tests import module_cpu

pytestmark = pytest.mark.here_only

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BURN = '''
import os, subprocess, sys, time

def test_burns_in_a_detached_child(tmp_path):
    # a grandchild whose parent exits at once: nobody waits for it, as for
    # a lab's daemons; it is counted all the same. It says when it is done
    # burning (a busy machine gives it its CPU seconds late): the module
    # ends only then, or its seconds would be charged to none
    done = str(tmp_path / 'burnt')
    code = ('import time\\nend = time.process_time() + %s\\n'
            'while time.process_time() < end: pass\\nopen(%r, "w").close()' % (SECONDS, done))
    subprocess.run([sys.executable, '-c', 'import subprocess, sys; '
                    'subprocess.Popen([sys.executable, "-c", %r], start_new_session=True)'
                    % code], check=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(done):
        assert time.monotonic() < deadline, 'the detached child never finished'
        time.sleep(0.05)
'''


@pytest.mark.skipif(os.geteuid() != 0, reason='root only: it makes cgroups')
def test_each_module_is_charged_its_own_cpu(tmp_path):
    if module_cpu.cgroup_root() is None:
        pytest.skip('no cgroup filesystem to count in')
    (tmp_path / 'test_heavy.py').write_text('SECONDS = 1.5\n' + BURN)
    (tmp_path / 'test_light.py').write_text('SECONDS = 0.1\n' + BURN)
    report = tmp_path / 'cpu.txt'
    env = dict(os.environ, PYTHONPATH=ROOT, **{module_cpu.REPORT_ENV: str(report)})
    env.pop(module_cpu.RUN_ENV, None)
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'tests.module_cpu',
                           '-p', 'no:cacheprovider', '-c', os.devnull, str(tmp_path)],
                          cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    lines = report.read_text().splitlines()
    assert lines[0].startswith('# CPU seconds a test module'), lines
    seconds = dict((line.split()[1], float(line.split()[0])) for line in lines[1:])
    assert sorted(seconds) == ['test_heavy', 'test_light'], lines
    # the detached grandchild's 1.5 s count for its module, not the next
    assert seconds['test_heavy'] >= 1.4, lines
    assert seconds['test_light'] < 1.0, lines
