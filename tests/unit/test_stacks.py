"""tests/stacks.py: the modules the current stack does not rerun are marked
so, and a test of theirs that starts a program fails. A tool of the
suite's own, run on this machine's stack: the current stack skips it
(here_only)."""

import os
import shutil
import subprocess
import sys

import pytest

from tests import stacks

pytestmark = pytest.mark.here_only

ROOT = stacks.REPO


def collected(*args):
    """The test ids pytest selects with args."""
    proc = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q',
                           '-p', 'no:cacheprovider'] + list(args), cwd=ROOT,
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode in (0, 5), proc.stdout
    return [line for line in proc.stdout.splitlines() if '::' in line]


def test_every_listed_module_exists():
    missing = [path for path in stacks.ONE_STACK
               if not os.path.isfile(os.path.join(ROOT, path))]
    assert not missing, 'tests/stacks.py names modules that are gone: %s' % missing


def test_the_current_stack_skips_a_listed_module_and_runs_the_others():
    # test_layers is listed; test_nix (it runs nix) is not
    listed = 'tests/unit/test_layers.py'
    other = 'tests/unit/plugins/plugin_utils/nix/test_nix.py'
    assert listed in stacks.ONE_STACK and other not in stacks.ONE_STACK
    current = collected('-m', 'not here_only', listed, other)
    assert current and all(test.startswith(other + '::') for test in current), current
    here = collected(listed, other)
    assert any(test.startswith(listed + '::') for test in here), here
    assert len(here) > len(current)


def test_a_listed_module_that_starts_a_program_is_told_to_leave_the_table():
    guard = stacks.ProgramGuard()
    guard.watch('tests/unit/test_x.py::test_y')
    subprocess.run(['true'], check=True)
    with pytest.raises(pytest.fail.Exception) as failed:
        guard.check()
    assert 'tests/unit/test_x.py::test_y' in str(failed.value)
    assert 'started true' in str(failed.value)
    # once checked it watches nothing: what starts later is no one's
    subprocess.run(['true'], check=True)
    guard.check()


def test_a_watched_test_that_starts_nothing_passes():
    guard = stacks.ProgramGuard()
    guard.watch('tests/unit/test_x.py::test_z')
    assert os.listdir(ROOT)
    guard.check()


def test_the_suite_fails_a_listed_test_that_starts_a_program():
    # a module listed for this run only (its folder's conftest adds it),
    # run by pytest with the suite's own conftest: one test starts a
    # program, the other does not
    folder = os.path.join(ROOT, 'tests', 'output', 'stacks-%d' % os.getpid())
    listed = os.path.join(folder, 'test_listed.py')
    os.makedirs(folder)
    try:
        with open(os.path.join(folder, 'conftest.py'), 'w') as f:
            f.write('from tests import stacks\n'
                    'stacks.ONE_STACK[%r] = "logic"\n' % os.path.relpath(listed, ROOT))
        with open(listed, 'w') as f:
            f.write('import subprocess\n\n\ndef test_starts():\n'
                    '    subprocess.run(["true"], check=True)\n\n\n'
                    'def test_computes():\n    assert sum(range(4)) == 6\n')
        proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                               '-rE', folder], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        current = collected('-m', 'not here_only', folder)
    finally:
        shutil.rmtree(folder)
    assert proc.returncode == 1, proc.stdout
    name = os.path.relpath(listed, ROOT)
    assert 'ERROR %s::test_starts' % name in proc.stdout, proc.stdout
    assert 'started true' in proc.stdout, proc.stdout
    assert ' 1 error' in proc.stdout and 'test_computes' not in proc.stdout, proc.stdout
    # and the current stack would not have run it
    assert current == [], current
