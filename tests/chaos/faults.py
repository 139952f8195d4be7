"""The faults of a round, each applied by a thread of its own at its moment
of the deploy run, and removed when the round's runs are over.

A moment is a delay from the run's start, or an event seen by watching the
lab: the first copy under way (a host's link carried more than COPYING bytes
since the run started) or a host activating (it holds an activation lock).
A fault whose moment never comes (the run ended first) is not applied; the
log says so.
"""

import os
import signal
import threading
import time

from tests.chaos.invariants import controller_processes
from tests.faults.fleet import locks

COPYING = 96 * 1024   # bytes on one host's link: more than its logins and probes
LOOK = 0.2            # seconds between looks at the lab


def kill_whole(run):
    """SIGKILL every process of ``run``, as a controller (an AWX job's
    container) that dies whole: found by the marker in their environment,
    since ansible-playbook's workers run in sessions of their own and its
    ssh masters are detached. Each is stopped first, until a look finds none
    new, so none forks a child the kill would miss."""
    alive = run.proc.poll() is None
    stopped = set()
    while True:
        new = set(controller_processes(run)) - stopped
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped |= new
    # killed: it was still running, or something of it was
    run.killed = run.killed or alive or bool(stopped)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    run.proc.wait()


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


class Injector(threading.Thread):
    """Waits for the fault's moment, applies it, and undoes it on ``remove``."""

    def __init__(self, fault, round_run, log):
        super().__init__(daemon=True)
        self.fault, self.rr, self.log = fault, round_run, log
        self.lab = round_run.fleet.lab
        self.stop = threading.Event()
        self.applied_at = None
        self.error = None
        self.undo = []

    # ------------------------------------------------------------ moments
    def _reached(self):
        moment = self.fault.moment
        if moment[0] == 'delay':
            return time.monotonic() - self.rr.started >= moment[1]
        if moment[0] == 'copying':
            return any(self.lab.link_bytes(h)[0] - before > COPYING
                       for h, before in self.rr.link_start.items())
        return bool(locks(self.lab, moment[1]))

    def run(self):
        try:
            while not self.stop.is_set():
                if not self.rr.running():
                    self.log('  fault %s: not applied (the run ended first)' % self.fault.describe())
                    return
                if self._reached():
                    break
                time.sleep(LOOK)
            if self.stop.is_set():
                return
            self.applied_at = time.monotonic() - self.rr.started
            self.log('  fault %s: applied at +%.1fs' % (self.fault.describe(), self.applied_at))
            getattr(self, '_' + self.fault.kind.replace('-', '_'))()
        except Exception as exc:  # pylint: disable=broad-except
            # a fault the lab could not apply (a host rebooting when its sshd
            # was to restart): the round goes on without it
            self.error = '%s: %s' % (type(exc).__name__, exc)
            self.log('  fault %s: could not be applied: %s' % (self.fault.describe(), self.error))

    def _sleep(self, seconds):
        self.stop.wait(seconds)

    # ------------------------------------------------------------ faults
    def _kill_controller(self):
        for run in self.rr.runs:
            if run.proc.poll() is None:
                kill_whole(run)

    def _cancel(self):
        # as AWX cancels a job: SIGTERM to ansible-playbook, then, after a
        # grace, whatever is left of the job SIGKILLed
        run = self.rr.main
        run.cancelled = True
        try:
            os.kill(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + self.fault.params['grace']
        while time.monotonic() < deadline and run.proc.poll() is None:
            time.sleep(0.1)
        kill_whole(run)

    def _for_a_while(self, do, undo):
        """do(), then undo() after the fault's seconds (or when it is removed)."""
        self.undo.append(undo)
        do()
        self._sleep(self.fault.params['seconds'])
        undo()

    def _link_lost(self):
        host = self.fault.host
        self._for_a_while(lambda: self.lab.cut(host), lambda: self.lab.restore(host))

    def _link_slow(self):
        host = self.fault.host
        self.undo.append(lambda: self.lab.shape(host))
        self.lab.shape(host, rate=self.fault.params['rate'])

    def _sshd_restart(self):
        self.lab.restart_sshd(self.fault.host)

    def _daemon_stopped(self):
        host = self.fault.host
        self._for_a_while(lambda: self.lab.stop_daemon(host), lambda: self.lab.start_daemon(host))

    def _gc(self):
        deleted = self.lab.gc(self.fault.host)
        self.log('  fault gc on %s: %d paths deleted' % (self.fault.host, len(deleted)))

    def _store_full(self):
        host = self.fault.host
        self.undo.append(lambda: self.lab.unfill_store(host))
        self.lab.fill_store(host, self.fault.params['leave_kb'] * 1024)

    def _reboot(self):
        host = self.fault.host
        self.undo.append(lambda: self.lab.wait_up(host, timeout=120))
        self.lab.reboot(host, wait=False)

    def _second_deploy(self):
        self.rr.add_run(self.rr.fleet.start('second', '-l', self.fault.params['limit']))

    # ------------------------------------------------------------ removal
    def remove(self):
        """Stop waiting and undo what the fault left (links, daemon, filler,
        a rebooting host); returns the errors met."""
        self.stop.set()
        self.join(timeout=120)
        errors = []
        for step in reversed(self.undo):
            try:
                step()
            except Exception as exc:  # pylint: disable=broad-except
                errors.append('removing %s: %s' % (self.fault.describe(), exc))
        return errors
