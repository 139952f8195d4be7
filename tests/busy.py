"""Run a command on a busy machine: N CPU-bound loops beside it, stopped after.

    python3 -m tests.busy [--loops N] [--timeout SECONDS] [--pids FILE] -- COMMAND ...

Starts ``--loops`` processes (default 2, one a core of this 2-core machine)
that each spin on the CPU (``while ...: pass``), runs COMMAND, then stops
exactly those processes by their pids (SIGTERM, then SIGKILL) and exits with
COMMAND's status. The load is bounded three ways:

- every loop also ends by itself after ``--timeout`` seconds (it looks at the
  time as it spins), so none outlives a helper that was killed outright;
- at ``--timeout`` (default 3 hours) the helper stops the loops, then sends
  COMMAND's process group SIGTERM (SIGKILL 30 s later) and exits 124, as
  timeout(1) does;
- SIGINT or SIGTERM to the helper stops the loops and is passed on to
  COMMAND's process group.

The loops run at the priority the helper has (normal), so they compete with
the suite as other work on the machine would. Never by name: only the pids
this helper started are signalled. ``--pids FILE`` writes them, one a line.
Standard library only: the system python3 runs it before ``make deps``.
docs/lab.md, "Checking the suite on a busy machine"; ``make test-busy``.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

# a loop that spins until its own deadline (monotonic): bounded even if the
# helper is killed with SIGKILL and never stops it
LOOP = ('import time\n'
        'end = time.monotonic() + %f\n'
        'while time.monotonic() < end:\n'
        '    pass\n')


def start_loops(count, seconds, python=sys.executable):
    """``count`` CPU-bound processes that end by themselves after ``seconds``."""
    loops = []
    for _number in range(count):
        loops.append(subprocess.Popen([python, '-c', LOOP % seconds], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
    return loops


def stop(procs, grace=5.0):
    """Stop these processes (and only these, by pid): SIGTERM, then SIGKILL
    after ``grace`` seconds; each is waited for (no zombie stays)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def signal_group(proc, signum):
    """``signum`` to the process group COMMAND leads (it was started as a
    session of its own: the group is its pid), while it runs."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python3 -m tests.busy', description=__doc__.split(
        '\n\n', 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--loops', type=int, default=int(os.environ.get('BUSY_LOOPS', 2)),
                        help='CPU-bound loops to run beside COMMAND (default 2, or BUSY_LOOPS)')
    parser.add_argument('--timeout', type=float,
                        default=float(os.environ.get('BUSY_TIMEOUT', 3 * 3600)),
                        help='seconds: then the loops and COMMAND are stopped (default 10800, '
                             'or BUSY_TIMEOUT)')
    parser.add_argument('--pids', help='write the loops\' pids to this file, one a line')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='-- COMMAND ...')
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        parser.error('no COMMAND (python3 -m tests.busy -- COMMAND ...)')
    if args.loops < 0 or args.timeout <= 0:
        parser.error('--loops must be 0 or more and --timeout positive')

    started = time.monotonic()
    loops = start_loops(args.loops, args.timeout)
    pids = [proc.pid for proc in loops]
    if args.pids:
        with open(args.pids, 'w') as handle:
            handle.write(''.join('%d\n' % pid for pid in pids))
    sys.stderr.write('busy: %d CPU-bound loops (pids %s) for at most %ds beside: %s\n'
                     % (len(loops), ' '.join(map(str, pids)) or '-', args.timeout,
                        ' '.join(command)))
    sys.stderr.flush()
    proc = None
    received = []

    def forward(signum, _frame):
        received.append(signum)
        stop(loops)
        if proc is not None:
            signal_group(proc, signum)

    old = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    status = 1
    try:
        # a session of its own: a timeout or a signal reaches all of it
        proc = subprocess.Popen(command, start_new_session=True)
        try:
            status = proc.wait(timeout=max(0.0, args.timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            sys.stderr.write('busy: %ds are over: stopping the loops and the command\n'
                             % args.timeout)
            stop(loops)
            signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
            status = 124
    finally:
        stop(loops)
        for signum, handler in old.items():
            signal.signal(signum, handler)
    if status < 0:  # COMMAND ended by a signal: the shell's way of saying so
        status = 128 - status
    left = [proc_.pid for proc_ in loops if proc_.poll() is None]
    sys.stderr.write('busy: loops stopped (%s); the command ran %.0fs and exited %s\n'
                     % ('none left' if not left else 'left: %s' % left,
                        time.monotonic() - started, status))
    if received and status == 0:
        status = 128 + received[0]
    return status


if __name__ == '__main__':
    sys.exit(main())
