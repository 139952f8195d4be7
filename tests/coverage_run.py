"""Line coverage of plugins/ across every Python process the suite starts.

The collection's code runs mostly outside the pytest process: in
``ansible-playbook`` and ``ansible-inventory`` (the inventory plugin, the
callbacks), in their forked workers (the action plugins) and in the detached
batch processes the actions fork themselves (an evaluation's or a build's
server), which end with ``os._exit``. coverage.py follows all of them with
``[run] patch``: ``subprocess`` passes the configuration to every Python
started from a measured one (coverage's ``.pth`` starts measuring there),
``fork`` starts a data file of its own in a forked child, and ``_exit`` saves
before ``os._exit``, which skips the usual save at exit.

Usage (from any checkout; ``--checkout`` measures another clone with this
script, e.g. an older commit's)::

    python tests/coverage_run.py [--checkout DIR] [--workers N] [--markers EXPR] [-- PYTEST ARGS]
    python tests/coverage_run.py --report-only [--checkout DIR]
    python tests/coverage_run.py --compare OLD.json NEW.json

Output, in ``<checkout>/tests/output/coverage/`` (``--out``): ``coverage.txt``
(the total and a line per file of plugins/), ``coverage.json`` (the same, with
each file's executed lines: what ``--compare`` reads), ``junit.xml`` and
``pytest.log``. The Python that runs this script runs the suite (``--python``
to choose another): it needs coverage.py 7.10 or later beside pytest.

Not measured: the programs the collection runs on targets (POSIX sh) and
Nix's own evaluation; Python started outside the Python that runs the suite
(the lab's helpers under the machine's python3).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

# The suite `make unit` runs on this machine's stack (the test-here-suite
# target): everything but the scale labs and the docs site.
DEFAULT_MARKERS = 'not scale and not docsite'
DEFAULT_LAB_ROOT = '/var/lib/nixdeploy-lab'
# what coverage.json says of the run besides its figures
RUN_KEYS = ('pytest_exit', 'seconds', 'workers', 'markers')

# Subprocesses print nothing of coverage's own: a test that reads a
# program's stderr must see what the program says, not a warning of ours.
RC = '''\
[run]
source = {plugins}
data_file = {data}
parallel = true
patch =
    subprocess
    fork
    _exit
disable_warnings =
    no-data-collected
    module-not-imported
    module-not-measured
    couldnt-parse

[paths]
plugins =
    {plugins}
    */ansible_collections/nixdeploy/fleet/plugins

[report]
precision = 2
skip_empty = true
'''


def write_config(checkout, out):
    """The coverage configuration measuring ``checkout``'s plugins/ into
    ``out``/data: its path."""
    data = os.path.join(out, 'data')
    os.makedirs(data, exist_ok=True)
    path = os.path.join(out, 'coveragerc')
    with open(path, 'w') as handle:
        handle.write(RC.format(plugins=os.path.join(checkout, 'plugins'),
                               data=os.path.join(data, 'cov')))
    return path


def lab_root(checkout):
    """A lab folder per checkout: labs of a measured clone and of another
    checkout's tests, up at once, never share a name in one folder."""
    digest = hashlib.sha256(checkout.encode('utf-8')).hexdigest()[:12]
    return os.path.join(DEFAULT_LAB_ROOT, 'coverage-%s' % digest)


def pytest_argv(python, rc, out, workers, markers, extra):
    """``extra``: pytest's arguments in place of the suite's folders."""
    argv = [python, '-m', 'coverage', 'run', '--rcfile=%s' % rc, '-m', 'pytest', '-q',
            '-p', 'no:cacheprovider', '--junitxml=%s' % os.path.join(out, 'junit.xml')]
    if workers:
        argv += ['-n', str(workers), '--dist', 'loadfile']
    if markers:
        argv += ['-m', markers]
    return argv + (list(extra) or ['tests/unit', 'tests/integration'])


def measured_pids(out):
    """The processes still measured into ``out``: their environment names
    its data file (coverage's configuration, COVERAGE_PROCESS_CONFIG)."""
    mark = os.path.join(out, 'data', 'cov').encode('utf-8')
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open('/proc/%s/environ' % pid, 'rb') as handle:
                if mark in handle.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def wait_for_measured(out, timeout=120):
    """Wait until the detached processes of the last tests (an evaluator
    keeps its records after its job ended) have saved their data; the pids
    still running after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while True:
        left = measured_pids(out)
        if not left or time.time() > deadline:
            return left
        time.sleep(1)


def run_suite(python, checkout, out, workers, markers, extra):
    """The suite under coverage, its output in ``out``/pytest.log: pytest's
    exit code and the seconds it took."""
    rc = write_config(checkout, out)
    env = dict(os.environ)
    env.setdefault('NIXDEPLOY_LAB_ROOT', lab_root(checkout))
    # no COVERAGE_* of an outer run: this run's configuration is the one
    for name in ('COVERAGE_PROCESS_CONFIG', 'COVERAGE_PROCESS_START', 'COVERAGE_RCFILE'):
        env.pop(name, None)
    argv = pytest_argv(python, rc, out, workers, markers, extra)
    started = time.time()
    with open(os.path.join(out, 'pytest.log'), 'w') as log:
        log.write('$ %s\n' % ' '.join(argv))
        log.flush()
        code = subprocess.call(argv, cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT)
    return code, time.time() - started


def combine(python, rc, checkout, out):
    """Every process's data file into one (the files are removed); none
    to combine where an earlier report did."""
    data = os.path.join(out, 'data')
    if any(name.startswith('cov.') for name in os.listdir(data)):
        subprocess.check_call([python, '-m', 'coverage', 'combine', '--quiet',
                               '--rcfile=%s' % rc], cwd=checkout)


def summary(python, rc, checkout, out):
    """coverage.py's JSON report, keyed by the path under the checkout."""
    raw = os.path.join(out, 'coverage-raw.json')
    # names relative to the checkout: plugins/...
    subprocess.check_call([python, '-m', 'coverage', 'json', '--quiet', '--rcfile=%s' % rc,
                           '-o', raw], cwd=checkout)
    with open(raw) as handle:
        report = json.load(handle)
    files = {}
    for name, data in report['files'].items():
        rel = os.path.relpath(os.path.join(checkout, name), checkout)
        files[rel] = {'statements': data['summary']['num_statements'],
                      'covered': data['summary']['covered_lines'],
                      'executed_lines': data['executed_lines'],
                      'missing_lines': data['missing_lines']}
    total = report['totals']
    return {'checkout': checkout, 'commit': commit_of(checkout),
            'total': {'statements': total['num_statements'],
                      'covered': total['covered_lines'],
                      'percent': percent(total['covered_lines'], total['num_statements'])},
            'files': files}


def commit_of(checkout):
    try:
        return subprocess.check_output(['git', '-C', checkout, 'rev-parse', 'HEAD'],
                                       stderr=subprocess.DEVNULL, universal_newlines=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def percent(covered, statements):
    return round(100.0 * covered / statements, 2) if statements else 100.0


def table(found):
    """The text report: a line per file, then the total."""
    width = max([len(name) for name in found['files']] + [len('TOTAL')])
    lines = ['%-*s %6s %6s %7s' % (width, 'file', 'stmts', 'cover', '%'), '-' * (width + 22)]
    for name in sorted(found['files']):
        data = found['files'][name]
        share = percent(data['covered'], data['statements'])
        lines.append('%s %6d %6d %6.2f%%' % (
            name.ljust(width), data['statements'], data['covered'], share))
    total = found['total']
    lines += ['-' * (width + 22), '%s %6d %6d %6.2f%%' % (
        'TOTAL'.ljust(width), total['statements'], total['covered'], total['percent'])]
    return '\n'.join(lines) + '\n'


def report(python, checkout, out, extra=None):
    """Combine, then write coverage.json and coverage.txt: the summary."""
    rc = write_config(checkout, out)
    left = wait_for_measured(out)
    if left:
        sys.stderr.write('still running, not counted: pids %s\n' % left)
    combine(python, rc, checkout, out)
    found = summary(python, rc, checkout, out)
    found.update(extra or earlier_run(out))
    with open(os.path.join(out, 'coverage.json'), 'w') as handle:
        json.dump(found, handle, indent=1, sort_keys=True)
    text = table(found)
    with open(os.path.join(out, 'coverage.txt'), 'w') as handle:
        handle.write(text)
    return found, text


def earlier_run(out):
    """What the last report said of its run (--report-only keeps it)."""
    try:
        with open(os.path.join(out, 'coverage.json')) as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    return dict((key, found[key]) for key in RUN_KEYS if key in found)


def drops(old, new):
    """[(file, old covered, new covered)] for each file of ``old`` whose
    covered lines are fewer in ``new`` (0 where it is gone)."""
    found = []
    for name, data in sorted(old['files'].items()):
        now = new['files'].get(name, {}).get('covered', 0)
        if now < data['covered']:
            found.append((name, data['covered'], now))
    return found


def compare(old_path, new_path):
    """Print the totals and the files whose covered lines dropped; 1 if
    the total percentage is lower."""
    with open(old_path) as handle:
        old = json.load(handle)
    with open(new_path) as handle:
        new = json.load(handle)
    for label, data in (('old', old), ('new', new)):
        total = data['total']
        commit = (data.get('commit') or '')[:7]
        print('%s: %s %.2f%% (%d of %d lines)' % (
            label, commit, total['percent'], total['covered'], total['statements']))
    lower = drops(old, new)
    for name, before, after in lower:
        print('lower: %s %d -> %d covered lines%s' % (
            name, before, after, '' if name in new['files'] else ' (file gone)'))
    if not lower:
        print('no file has fewer covered lines')
    return 1 if new['total']['percent'] < old['total']['percent'] else 0


def parse(argv):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--checkout', default=here,
                        help='the clone to measure (default: this one)')
    parser.add_argument('--out', help='default: <checkout>/tests/output/coverage')
    parser.add_argument('--python', default=sys.executable,
                        help='the Python that runs the suite (with coverage.py)')
    parser.add_argument('--workers', type=int, default=0,
                        help='pytest-xdist workers (0: in one process)')
    parser.add_argument('--markers', default=DEFAULT_MARKERS)
    parser.add_argument('--report-only', action='store_true',
                        help='combine and report the data of an earlier run')
    parser.add_argument('--compare', nargs=2, metavar=('OLD', 'NEW'))
    parser.add_argument('pytest_args', nargs='*',
                        help='after --: pytest arguments, in place of tests/unit tests/integration')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.compare:
        return compare(*args.compare)
    checkout = os.path.realpath(args.checkout)
    out = os.path.abspath(args.out or os.path.join(checkout, 'tests', 'output', 'coverage'))
    code, extra = 0, {}
    if not args.report_only:
        # a new run: no data file of an earlier one is combined into it
        write_config(checkout, out)
        for name in os.listdir(os.path.join(out, 'data')):
            os.remove(os.path.join(out, 'data', name))
        code, seconds = run_suite(args.python, checkout, out, args.workers, args.markers,
                                  args.pytest_args)
        extra = {'pytest_exit': code, 'seconds': round(seconds),
                 'workers': args.workers, 'markers': args.markers}
        print('pytest exit %d after %d s (%s)' % (code, seconds, os.path.join(out, 'pytest.log')))
    _found, text = report(args.python, checkout, out, extra)
    sys.stdout.write(text)
    print('written: %s' % ', '.join(os.path.join(out, n) for n in ('coverage.txt', 'coverage.json')))
    # pytest's 5: nothing collected (a marker that selects nothing)
    return 0 if code in (0, 5) else code


if __name__ == '__main__':
    sys.exit(main())
