"""Apply each deliberate fault of faults.yml, run the tests that must catch it,
say caught or MISSED, and revert it.

    python -m tests.mutations.run [--only ID ...] [--python PY] [--keep] [--markdown FILE]

The faults go into a throw-away copy of this checkout (checkout.py), never
into the checkout itself. First every fault is checked to apply (its text
occurs exactly once), then a baseline: the tests of all the faults together
pass without any fault (else "caught" would mean nothing). Then one fault at
a time: applied, its tests run (pytest -x: the first failure is enough), the
fault reverted. A fault is caught when its tests fail (pytest exit 1); a
run that passes is MISSED; one that cannot collect its tests, errs
otherwise or outlives its timeout is neither, and counts as not caught. The
end is a table (id, fault, tests, result, seconds); the exit status is 1
when a fault was not caught, did not apply, or the baseline failed.

One fault after another, never side by side: the runs share the machine
with whatever else runs on it. The lab tests among them need root (make
mutations); the labs go under a folder of their own (NIXDEPLOY_LAB_ROOT/
mutations), as a pytest-xdist worker's do, so that they never meet labs of
the same name that a suite beside them brings up.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

from tests.mutations import checkout
from tests.mutations.faults import FaultError, load

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the baseline runs the tests of every fault: more time than one fault's
BASELINE_TIMEOUT = 3600
FAULT_TIMEOUT = 900
# after SIGINT, time for pytest's teardown (labs come down) before SIGKILL
GRACE = 120
# pytest, started with SIGINT as Python takes it by default (KeyboardInterrupt):
# a program started from a shell's background job (make test's current-stack
# side) inherits SIGINT ignored, and an ignored SIGINT stays ignored across
# exec, so the timeout's SIGINT would never reach the run
_PYTEST = ('import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); '
           'import pytest; sys.exit(pytest.main(sys.argv[1:]))')
CAUGHT, MISSED = 'caught', 'MISSED'


class Run(object):
    """One pytest run: its exit status, how long it took, its log."""

    def __init__(self, rc, seconds, log, timed_out=False):
        self.rc = rc
        self.seconds = seconds
        self.log = log
        self.timed_out = timed_out

    def failures(self):
        """The FAILED and ERROR lines of pytest's summary (-ra)."""
        with open(self.log, encoding='utf-8', errors='replace') as handle:
            return [line.strip() for line in handle if line.startswith(('FAILED ', 'ERROR '))]

    def tail(self, lines=15):
        """The end of the log: why a run that neither passed nor failed ended."""
        with open(self.log, encoding='utf-8', errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])


class Runner(object):
    """Runs pytest in the copy with the given Python, a log a run."""

    def __init__(self, copy, python):
        self.copy = copy
        self.python = python
        self.logs = os.path.join(os.path.dirname(copy), 'logs')
        os.makedirs(self.logs, exist_ok=True)
        self.env = dict(os.environ)
        lab_root = os.environ.get('NIXDEPLOY_LAB_ROOT', '/var/lib/nixdeploy-lab')
        self.env['NIXDEPLOY_LAB_ROOT'] = os.path.join(lab_root, 'mutations')
        # a reverted file is never run from a bytecode cache of its fault
        self.env['PYTHONDONTWRITEBYTECODE'] = '1'
        for name in ('PYTEST_ADDOPTS', 'NIXDEPLOY_MODULE_CPU', 'PYTEST_XDIST_WORKER'):
            self.env.pop(name, None)

    def pytest(self, name, args, timeout):
        log = os.path.join(self.logs, name + '.log')
        argv = [self.python, '-c', _PYTEST, '-q', '-p', 'no:cacheprovider'] + list(args)
        start = time.monotonic()
        with open(log, 'w', encoding='utf-8') as out:
            proc = subprocess.Popen(argv, cwd=self.copy, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._stop(proc)
                return Run(None, time.monotonic() - start, log, timed_out=True)
        return Run(rc, time.monotonic() - start, log)

    @staticmethod
    def _stop(proc):
        # its own process group, started above: SIGINT lets pytest take its
        # labs down, SIGKILL ends what still runs after that
        for sig, wait in ((signal.SIGINT, GRACE), (signal.SIGKILL, 30)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def collect(self, fault):
        """The node ids ``fault``'s selection picks (none: an error)."""
        out = subprocess.run([self.python, '-m', 'pytest', '-q', '--collect-only',
                              '-p', 'no:cacheprovider'] + fault.pytest_args(),
                             cwd=self.copy, env=self.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        text = out.stdout.decode('utf-8', 'replace')
        # -q: one node id a line (a parameter may hold a space), then the count
        ids = [line.strip() for line in text.splitlines()
               if '::' in line and line.split('::', 1)[0].endswith('.py')]
        if out.returncode != 0 or not ids:
            raise FaultError('%s: its tests select nothing or do not collect (pytest exit %d):\n%s'
                             % (fault.id, out.returncode, text[-2000:]))
        return ids


class Result(object):
    """What became of one fault: caught, MISSED, an error, a timeout or
    not applied; ``detail``: the first failed test, or why."""

    def __init__(self, fault, result, seconds=0.0, detail=''):
        self.fault = fault
        self.result = result
        self.seconds = seconds
        self.detail = detail


def check_all(faults, copy):
    """{id: why} of the faults whose text does not occur exactly once."""
    refused = {}
    for fault in faults:
        try:
            fault.text(copy)
        except FaultError as err:
            refused[fault.id] = str(err)
    return refused


def baseline(runner, faults):
    """The tests of every fault together, without a fault: they must pass.
    Returns (Run or None, errors of faults whose tests do not collect)."""
    ids, errors = [], {}
    for fault in faults:
        try:
            ids.extend(node for node in runner.collect(fault) if node not in ids)
        except FaultError as err:
            errors[fault.id] = str(err)
    if not ids:
        return None, errors
    print('== baseline: %d tests, no fault' % len(ids), flush=True)
    return runner.pytest('baseline', ids, BASELINE_TIMEOUT), errors


def try_fault(runner, fault):
    original = fault.apply(runner.copy)
    try:
        run = runner.pytest(fault.id, ['-x'] + fault.pytest_args(),
                            fault.timeout or FAULT_TIMEOUT)
    finally:
        fault.revert(runner.copy, original)
    if run.timed_out:
        return Result(fault, 'timeout', run.seconds, '\n' + run.tail())
    if run.rc == 1:
        return Result(fault, CAUGHT, run.seconds, (run.failures() or [''])[0])
    if run.rc == 0:
        return Result(fault, MISSED, run.seconds, 'its tests passed')
    return Result(fault, 'error (pytest exit %d)' % run.rc, run.seconds, '\n' + run.tail())


def tests_text(fault):
    return ' '.join(fault.tests) + (' -k %r' % fault.k if fault.k else '')


def print_table(results):
    """id, result, seconds and what a user would suffer; the tests below."""
    width = max([len(r.fault.id) for r in results] + [2])
    print('%s  %-12s %7s  %s' % ('id'.ljust(width), 'result', 'seconds', 'fault'))
    for r in results:
        print('%s  %-12s %7.0f  %s' % (r.fault.id.ljust(width), r.result, r.seconds, r.fault.what))
        print('%s  %s' % (' ' * width, tests_text(r.fault)))


def markdown(results):
    lines = ['| id | where | what a user would suffer | tests | result | s |',
             '|---|---|---|---|---|---|']
    for r in results:
        tests = '<br>'.join('`%s`' % name for name in r.fault.tests)
        if r.fault.k:
            tests += ' `-k %s`' % r.fault.k
        row = (r.fault.id, r.fault.file, r.fault.what, tests, r.result, r.seconds)
        lines.append('| %s | `%s` | %s | %s | %s | %.0f |' % row)
    return '\n'.join(lines) + '\n'


def parse(argv):
    parser = argparse.ArgumentParser(prog='python -m tests.mutations.run', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', action='append', metavar='ID',
                        help='this fault only (again for more)')
    parser.add_argument('--python', default=sys.executable,
                        help='the Python whose pytest runs the tests (default: this one)')
    parser.add_argument('--keep', action='store_true',
                        help='leave the copy and its logs (printed) instead of removing them')
    parser.add_argument('--markdown', metavar='FILE', help='also write the table as Markdown')
    return parser.parse_args(argv)


def select(faults, only):
    if not only:
        return faults
    unknown = sorted(set(only) - {fault.id for fault in faults})
    if unknown:
        raise FaultError('no such fault: %s' % ', '.join(unknown))
    return [fault for fault in faults if fault.id in only]


def run_faults(runner, faults):
    results = []
    for number, fault in enumerate(faults, 1):
        print('== [%d/%d] %s: %s' % (number, len(faults), fault.id, fault.what), flush=True)
        result = try_fault(runner, fault)
        print('   %s in %.0f s%s' % (result.result, result.seconds,
                                     ': ' + result.detail if result.detail else ''), flush=True)
        results.append(result)
    return results


def main(argv=None):
    args = parse(argv)
    try:
        faults = select(load(), args.only)
    except FaultError as err:
        print('faults.yml: %s' % err, file=sys.stderr)
        return 2
    copy = checkout.make(REPO)
    print('== the checkout copied to %s' % copy, flush=True)
    try:
        return _campaign(Runner(copy, args.python), faults, args)
    finally:
        if args.keep:
            print('== kept: %s (logs in %s)' % (copy, os.path.join(os.path.dirname(copy), 'logs')))
        else:
            checkout.remove(copy)


def _campaign(runner, faults, args):
    refused = check_all(faults, runner.copy)
    base, errors = baseline(runner, [f for f in faults if f.id not in refused])
    refused.update(errors)
    for why in sorted(refused.values()):
        print('== not applied: %s' % why, flush=True)
    if base is not None and (base.timed_out or base.rc != 0):
        print('== the baseline failed (pytest exit %s): nothing can be caught\n%s'
              % (base.rc, '\n'.join(base.failures()) or base.tail()), flush=True)
        return 1
    if base is not None:
        print('== baseline passed in %.0f s' % base.seconds, flush=True)
    results = run_faults(runner, [f for f in faults if f.id not in refused])
    results += [Result(f, 'not applied', detail=refused[f.id]) for f in faults if f.id in refused]
    print()
    print_table(results)
    if args.markdown:
        with open(args.markdown, 'w', encoding='utf-8') as handle:
            handle.write(markdown(results))
    missed = [r.fault.id for r in results if r.result != CAUGHT]
    said = '; not caught: ' + ', '.join(missed) if missed else ''
    print('\n%d of %d faults caught%s' % (len(results) - len(missed), len(results), said))
    return 1 if missed else 0


if __name__ == '__main__':
    sys.exit(main())
