"""The deliberate faults' script (tests/mutations): a fault whose text is not
in its file, or is there twice, is refused and nothing is written; one that
applies is reverted to the very text; the copy the faults go into holds the
checkout as it is; a fault's run says caught when its tests fail and MISSED
when they pass. And every fault of faults.yml still applies to this checkout
and names tests that exist. No lab: pytest runs on a tiny project here."""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.collection import REPO
from tests.mutations import checkout, faults, run

CODE = 'def limit(failed, size):\n    return failed * 100 > size * 25\n'


def a_fault(**changes):
    entry = {'id': 'gate', 'what': 'the gate never stops', 'file': 'gate.py',
             'find': 'return failed * 100 > size * 25', 'replace': 'return False',
             'tests': ['test_gate.py']}
    entry.update(changes)
    return faults.Fault(**entry)


@pytest.fixture
def project(tmp_path):
    """A checkout of one module and its test (the runner's logs go beside it)."""
    folder = tmp_path / 'checkout'
    folder.mkdir()
    (folder / 'gate.py').write_text(CODE)
    (folder / 'test_gate.py').write_text(textwrap.dedent('''\
        from gate import limit


        def test_one_of_two_is_over_a_quarter():
            assert limit(1, 2)
        '''))
    (folder / 'pytest.ini').write_text('[pytest]\n')
    return folder


@pytest.mark.parametrize('find,said', [('return nothing', 'not found'),
                                       ('failed', 'found 2 times')])
def test_a_text_not_found_or_found_twice_is_refused_and_nothing_written(project, find, said):
    fault = a_fault(find=find)
    with pytest.raises(faults.FaultError) as refused:
        fault.apply(str(project))
    assert str(refused.value).startswith('gate: its text is %s in gate.py' % said), refused.value
    assert (project / 'gate.py').read_text() == CODE


def test_an_applied_fault_is_reverted_to_the_very_text(project):
    fault = a_fault()
    original = fault.apply(str(project))
    assert (project / 'gate.py').read_text() == 'def limit(failed, size):\n    return False\n'
    fault.revert(str(project), original)
    assert (project / 'gate.py').read_text() == CODE


@pytest.mark.parametrize('entry,said', [
    ("- {id: a, what: w, file: f, find: x, replace: x, tests: [t]}", 'replacement is the text'),
    ("- {id: a, what: w, file: f, find: x, tests: [t]}", "missing ['replace']"),
    ("- {id: a, what: w, file: f, find: x, replace: y, tests: t}", 'must be a list'),
    ("- {id: a, what: w, file: f, find: x, replace: y, tests: [t]}\n"
     "- {id: a, what: v, file: f, find: z, replace: y, tests: [t]}", 'two faults share'),
])
def test_a_malformed_faults_file_is_refused(tmp_path, entry, said):
    path = tmp_path / 'faults.yml'
    path.write_text(entry + '\n')
    with pytest.raises(faults.FaultError) as refused:
        faults.load(str(path))
    assert said in str(refused.value)


def git(folder, *args):
    return subprocess.run(['git'] + list(checkout.GIT_IDENTITY) + list(args), cwd=str(folder),
                          check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout


def test_the_copy_holds_the_checkout_as_it_is_and_never_touches_it(project):
    git(project, 'init', '-q')
    (project / '.gitignore').write_text('*.log\n')
    git(project, 'add', '-A')
    git(project, 'commit', '-q', '-m', 'one')
    (project / 'gate.py').write_text(CODE + '# changed, not committed\n')
    (project / 'new.py').write_text('')
    (project / 'run.log').write_text('ignored')
    copy = checkout.make(str(project))
    try:
        assert (open(os.path.join(copy, 'gate.py')).read()
                == CODE + '# changed, not committed\n')
        assert os.path.exists(os.path.join(copy, 'new.py'))
        assert not os.path.exists(os.path.join(copy, 'run.log'))
        # a repository of its own, its files committed
        assert git(copy, 'status', '--porcelain') == ''
        assert os.path.realpath(git(copy, 'rev-parse', '--show-toplevel').strip()) == \
            os.path.realpath(copy)
    finally:
        checkout.remove(copy)
    assert not os.path.exists(os.path.dirname(copy))
    assert git(project, 'status', '--porcelain').split('\n')[0] == ' M gate.py'


def test_the_link_a_copys_tests_make_goes_with_the_copy(project):
    """The copy's tests link it as the collection (tests/collection.py, run
    from the copy): removing the copy removes that link too."""
    (project / 'tests').mkdir()
    (project / 'tests' / '__init__.py').write_text('')
    shutil.copy(os.path.join(REPO, 'tests', 'collection.py'), str(project / 'tests'))
    made = subprocess.run([sys.executable, '-c', 'from tests.collection import collections_path; '
                           'print(collections_path())'], cwd=str(project), check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    assert made == checkout.collections_tree(str(project)) and os.path.isdir(made)
    checkout.remove(str(project))
    assert not os.path.exists(made) and not project.exists()


def test_a_fault_its_tests_fail_is_caught_and_one_they_pass_is_missed(project):
    runner = run.Runner(str(project), sys.executable)
    caught = run.try_fault(runner, a_fault())
    assert caught.result == run.CAUGHT, open(os.path.join(runner.logs, 'gate.log')).read()
    assert caught.detail.startswith('FAILED test_gate.py::test_one_of_two_is_over_a_quarter')
    missed = run.try_fault(runner, a_fault(id='unseen', replace='return failed * 100 > size'))
    assert missed.result == run.MISSED
    assert (project / 'gate.py').read_text() == CODE


def test_a_run_that_hangs_or_cannot_run_its_tests_is_not_caught(project):
    """A fault whose tests outlive its timeout is stopped (its process
    group, SIGINT first) and counted a timeout; one whose tests do not run
    (pytest exit 4: no such test) an error. Neither is caught."""
    (project / 'test_slow.py').write_text('import time\n\n\ndef test_slow():\n    time.sleep(60)\n')
    runner = run.Runner(str(project), sys.executable)
    started = time.monotonic()
    # run as from a shell's background job (make test's current-stack side):
    # SIGINT ignored, which every program started inherits, and the run must
    # hear the timeout's SIGINT all the same. The timeout lets its pytest start.
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        hung = run.try_fault(runner, a_fault(tests=['test_slow.py'], timeout=10))
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert hung.result == 'timeout' and time.monotonic() - started < 30, hung.detail
    broken = run.try_fault(runner, a_fault(tests=['test_gate.py::test_none']))
    assert broken.result == 'error (pytest exit 4)', broken.detail
    assert (project / 'gate.py').read_text() == CODE


def test_every_fault_applies_here_and_names_tests_that_exist():
    """A fault whose code or test moved is found here, not in a later run."""
    problems = []
    for fault in faults.load():
        try:
            fault.text(REPO)
        except faults.FaultError as err:
            problems.append(str(err))
        for test in fault.tests:
            path, _sep, name = test.partition('::')
            if not os.path.isfile(os.path.join(REPO, path)):
                problems.append('%s: no test file %s' % (fault.id, path))
            elif name and not re.search(r'^def %s\(' % re.escape(name.split('[')[0]),
                                        open(os.path.join(REPO, path)).read(), re.M):
                problems.append('%s: no test %s in %s' % (fault.id, name, path))
    assert not problems, '\n'.join(problems)
    assert len(faults.load()) >= 20
