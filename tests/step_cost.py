"""What a step of `make test` that is not a pytest run costs: sanity, lint,
the changelog and Galaxy checks, Molecule, the execution environment's image
and the current stack's tree.

    python -m tests.step_cost FILE STEP -- COMMAND [ARG...]

Runs COMMAND, exits with its exit code, and adds a row named STEP to FILE
(the JSON format of tests/module_cpu.py, so that `python -m tests.suite_cost`
prints it beside the pytest runs): its CPU seconds (the processes it started
and waited for: os.times' children fields), its cgroup's CPU seconds where
root can make one (what it started and left running too) and its wall
seconds. Without these rows the table's total would leave out about a
fifth of what `make test` costs. Processes podman starts in containers get
cgroups of their own and are not counted (the image's build steps run
there), as in the pytest runs.

Steps that run at the same time may add to the same FILE: each adds its row
under a lock. Standard library only.
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time

from tests import module_cpu

# a row of a step, not a test module: the table names it so
PREFIX = '(step) '


class StepGroup:
    """A cgroup of the step's own, while root can make one: the step's
    processes and all they start count there."""

    def __init__(self, step):
        root = module_cpu.cgroup_root()
        self.root = root
        self.path = root and os.path.join(root, 'nixdeploy-step-cost',
                                          '%d-%s' % (os.getpid(), step.replace('/', '-')))

    def enter(self):
        if self.path is None:
            return
        try:
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))
        except OSError:
            # not root, or a hierarchy this namespace may not write: the
            # waited-for figure stands alone
            self.path = None

    def seconds(self):
        return None if self.path is None else module_cpu._seconds(self.path)

    def leave(self):
        """Back to the hierarchy's top, and the group removed (it stays
        while something the step left behind still runs in it)."""
        if self.path is None:
            return
        try:
            with open(os.path.join(self.root, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))
            os.rmdir(self.path)
            # the top folder goes with the last step (another's keeps it)
            os.rmdir(os.path.dirname(self.path))
        except OSError:
            pass


def run_step(step, argv):
    """Run argv as the step: (its exit code, its row)."""
    group = StepGroup(step)
    group.enter()
    started = time.monotonic()
    before = os.times()
    try:
        code = subprocess.call(argv)
    except KeyboardInterrupt:
        # Ctrl-C reached the step's command too (subprocess.call stopped
        # it): the step's row is still written, with no traceback
        code = 130
    except OSError as error:
        print('step %s: cannot run %s: %s' % (step, argv[0], error), file=sys.stderr)
        code = 127
    after = os.times()
    row = {'tests': 0, 'wall': time.monotonic() - started, 'cpu': 0.0,
           'children': (after.children_user + after.children_system
                        - before.children_user - before.children_system),
           'cgroup': group.seconds(), 'step': True}
    group.leave()
    return code, row


def add_row(path, step, row):
    """Add the step's row to the report at path (made if missing), under a
    lock other steps writing to it take too."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path + '.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = {'format': module_cpu.FORMAT, 'wall': 0.0, 'python': None,
                  'ansible_core': None, 'modules': {}, 'steps': True}
        if os.path.isfile(path):
            with open(path) as f:
                report = json.load(f)
        report['modules'][PREFIX + step] = row
        # a step run again (make test-here twice) replaces its row
        report['wall'] = sum(r['wall'] for r in report['modules'].values())
        with open(path + '.tmp', 'w') as f:
            json.dump(report, f, indent=1, sort_keys=True)
        os.replace(path + '.tmp', path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('file', metavar='FILE')
    parser.add_argument('step', metavar='STEP')
    parser.add_argument('command', nargs=argparse.REMAINDER, metavar='-- COMMAND')
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('no COMMAND after --')
    code, row = run_step(args.step, command)
    add_row(args.file, args.step, row)
    return code


if __name__ == '__main__':
    sys.exit(main())
