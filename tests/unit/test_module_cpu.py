"""tests/module_cpu.py counts a module's children, those it waits for and
detached ones, for that module and no other; tests/suite_cost.py prints them.
A tool of the suite's own, run on this machine's stack: the current stack
skips it (here_only)."""

import json
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


WAITED = '''
import subprocess, sys

def test_burns_in_a_waited_child():
    # a child the test waits for, as for ansible-playbook or nix
    subprocess.run([sys.executable, '-c', 'import time\\nend = time.process_time() + %s\\n'
                    'while time.process_time() < end: pass' % SECONDS], check=True)
'''


def run_suite(tmp_path, *args):
    """pytest with the plugin on tmp_path's modules; its JSON figures."""
    report = tmp_path / 'cost-x.json'
    env = dict(os.environ, PYTHONPATH=ROOT, **{module_cpu.REPORT_ENV: str(report)})
    env.pop(module_cpu.RUN_ENV, None)
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'tests.module_cpu',
                           '-p', 'no:cacheprovider', '-c', os.devnull] + list(args)
                          + [str(tmp_path)],
                          cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    return report, json.loads(report.read_text())


@pytest.mark.parametrize('workers', [[], ['-n', '2', '--dist', 'loadfile']],
                         ids=['one-process', 'xdist'])
def test_each_module_is_charged_the_children_it_waited_for(tmp_path, workers):
    (tmp_path / 'test_heavy.py').write_text('SECONDS = 1.5\n' + WAITED)
    (tmp_path / 'test_light.py').write_text('SECONDS = 0.1\n' + WAITED)
    report, figures = run_suite(tmp_path, *workers)
    modules = figures['modules']
    assert sorted(modules) == [module_cpu.OUTSIDE, 'test_heavy', 'test_light'], modules
    assert modules['test_heavy']['children'] >= 1.4, modules
    assert modules['test_light']['children'] < 1.0, modules
    assert modules['test_heavy']['tests'] == 1 and modules['test_light']['tests'] == 1
    # counted once: not again as xdist's controller's children (its workers)
    assert modules[module_cpu.OUTSIDE]['children'] < 1.0, modules
    # the table names both modules, the heavy one first, and the run's total
    out = subprocess.run([sys.executable, '-m', 'tests.suite_cost', str(report),
                          str(tmp_path / 'cost-missing.json')], cwd=ROOT,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    lines = out.splitlines()
    assert '(no figures: %s)' % (tmp_path / 'cost-missing.json') in out, out
    rows = [line.split()[0] for line in lines if line.startswith('test_')]
    assert rows == ['test_heavy', 'test_light'], out
    assert any(line.startswith('x ') and ' 2 tests in   2 modules' in line
               for line in lines), out


@pytest.mark.skipif(os.geteuid() != 0, reason='root only: it makes cgroups')
def test_each_module_is_charged_its_own_cpu(tmp_path):
    if module_cpu.cgroup_root() is None:
        pytest.skip('no cgroup filesystem to count in')
    (tmp_path / 'test_heavy.py').write_text('SECONDS = 1.5\n' + BURN)
    (tmp_path / 'test_light.py').write_text('SECONDS = 0.1\n' + BURN)
    figures = run_suite(tmp_path)[1]
    seconds = dict((m, r.get('cgroup')) for m, r in figures['modules'].items()
                   if m != module_cpu.OUTSIDE)
    assert sorted(seconds) == ['test_heavy', 'test_light'], figures
    # the detached grandchild's 1.5 s count for its module, not the next
    assert seconds['test_heavy'] >= 1.4, figures
    assert seconds['test_light'] < 1.0, figures


PLAYS = '''
import os, subprocess, sys

PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

def test_starts_ansible_playbook_twice():
    # as run_playbook does: straight, and under a wrapper (CONTAINED)
    subprocess.run([PLAYBOOK, '--version'], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['sh', '-c', '"$@" >/dev/null', 'sh', PLAYBOOK, '--version'], check=True)

def test_starts_another_program():
    subprocess.run(['sh', '-c', 'echo ansible-playbook >/dev/null'], check=True)
'''


def test_each_module_counts_the_playbook_runs_it_started(tmp_path):
    (tmp_path / 'test_plays.py').write_text(PLAYS)
    (tmp_path / 'test_light.py').write_text('SECONDS = 0.1\n' + WAITED)
    report, figures = run_suite(tmp_path)
    modules = figures['modules']
    assert modules['test_plays']['playbooks'] == 2, modules
    assert modules['test_light']['playbooks'] == 0, modules
    out = subprocess.run([sys.executable, '-m', 'tests.suite_cost', str(report)], cwd=ROOT,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    row = [line.split() for line in out.splitlines() if line.startswith('test_plays ')]
    assert row and row[0][-1] == '2', out
    assert any(line.startswith('x ') and ' 2 ansible-playbook runs' in line
               for line in out.splitlines()), out
