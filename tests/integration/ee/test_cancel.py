"""An AWX job canceled while its hosts activate.

On a container group AWX cancels a job by canceling its receptor work unit
(AWXReceptorJob: ``receptor work cancel``), which deletes the job's pod:
Kubernetes sends the pod's first process, ``ansible-runner worker``, SIGTERM
(here: ``podman stop`` of the pod's container, 30 s grace as a pod's
terminationGracePeriodSeconds). The worker's runner takes that as a cancel:
it kills ansible-playbook's process group, reports 'canceled' on its stream
and the container ends, with every process left in it (Ansible's workers,
in sessions of their own, and their ssh die then, at once). The
activations already started on the hosts run on there, detached; no
controller is left to confirm them, so each host's watchdog rolls it back to
the system it ran once ``nix_confirm_timeout`` (5 s in the canceled job)
has passed, and lets go of its lock. A host whose confirmation came before the
cancel keeps its new system. Never in between: the profile, the active system
and (system profiles) the boot default agree. A new job then converges.
"""

import threading
import time

import pytest

from tests.collection import set_stats_of
from tests.faults.fleet import assert_consistent, locks, wait_until
from tests.integration.ee.jobs import NAMES, containers_named, podman
from tests.integration.ee.receptor import Cancel

pytestmark = pytest.mark.lab

EVAL = 'Evaluate the system of each host'
# seconds each slowed activation takes before its hold (below), which keeps
# it running until the canceled job has ended however long a1 took: the
# seconds are paid again after the cancel and in the converging job
SLOW = 1
# nix_confirm_timeout of the canceled job (jobs.py TEMPLATE has 10): a1's
# confirmation comes within a second of its awaiting (a new login from the
# job's container), the others' windows are waited out after the cancel
CONFIRM = 5
FAST = 'a1'   # the host whose activation is not slowed
# A slowed activation also holds (after its SLOW seconds) until the test lets
# it go, once the canceled job has ended: the cancel comes while it runs
# however long the job took to get there (a busy machine), and no controller
# is left to confirm it. HOLD_LIMIT bounds the hold (under the role's
# nix_activation_timeout, 240 s), so a test that never lets go leaves none.
RELEASE = '/nix/var/lab/cancel-release'
HOLD_LIMIT = 180
HOLD = ('n=0; while [ ! -e %s ] && [ $n -lt %d ]; do sleep 0.2; n=$((n+1)); done'
        % (RELEASE, HOLD_LIMIT * 5))
# how long the test waits for an event (it ends at the event): generous for a
# busy machine
WAIT = 300
# how long a host may take to settle once the job has ended: the rest of its
# slowed activation, its confirmation window, then the rollback and the ssh
# logins, which take longer on a loaded machine
SETTLE = SLOW + CONFIRM + 30


def activations(lab, host):
    """How many activations the host has started (its lab history's lines)."""
    text = lab.read(host, '/nix/var/lab/history-%s' % lab.state_key(host)) or ''
    return len(text.splitlines())


class WhenActivating:
    """A cancel callback: False until every host has started its activation
    (the lab's activation history grew on each) and each of ``confirmed`` runs
    a system other than the one it ran (``confirmed``: {host: that system})
    with no lock left (its confirmation came), then True."""

    def __init__(self, lab, hosts, confirmed=()):
        self.lab, self.hosts, self.confirmed = lab, hosts, dict(confirmed)
        self.seen = dict((h, activations(lab, h)) for h in hosts)
        self.started = threading.Event()
        self.done = threading.Event()
        self.canceled_at = None
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self):
        while not self.done.is_set():
            if all(activations(self.lab, h) > self.seen[h] for h in self.hosts) and all(
                    self.lab.active(h) not in (None, old) and not locks(self.lab, h)
                    for h, old in self.confirmed.items()):
                self.started.set()
                return
            time.sleep(0.3)

    def __call__(self):
        if self.started.is_set() and self.canceled_at is None:
            self.canceled_at = time.time()
        return self.started.is_set()


def test_cancel_while_activating_leaves_each_host_confirmed_or_rolled_back(deployed_awx):
    awx = deployed_awx
    lab, flake = awx.lab, awx.flake
    before = dict((h, assert_consistent(lab, h)) for h in NAMES)
    # a fleet mid-deploy: a1 activates at once and is confirmed before the
    # cancel, the others are still activating when it comes (held until the
    # job has ended)
    for host in NAMES:
        lab.run_in(host, ['rm', '-f', RELEASE])
    flake.set_all(version='c1', behaviour='slow', slow_seconds=SLOW, on_activate=HOLD)
    flake.set_config(flake.config_of(FAST), behaviour='ok', on_activate='')
    awx.commit('version c1, slow activations but on %s' % FAST)
    try:
        cancel = WhenActivating(lab, NAMES, confirmed={FAST: before[FAST]})
        pod = awx.pod_name('cancel')
        try:
            job = awx.job(pod=pod, extravars={'nix_confirm_timeout': CONFIRM},
                          cancel=Cancel(cancel, lambda: podman('stop', '--time', '30', pod)))
        finally:
            cancel.done.set()
            ended = time.time()
            # the job is over: the held activations end now, and nothing is
            # left to confirm them
            for host in NAMES:
                lab.run_in(host, ['touch', RELEASE])
        # what `process` read from the worker's stream (AWX itself records a job
        # it canceled as 'canceled' whatever the stream says)
        assert job.status == 'canceled', job.tail()
        assert job.statuses[-1] == 'canceled' and job.worker_rc is not None, job.tail()
        assert cancel.canceled_at is not None
        new = dict((e['event_data']['host'], e['event_data']['res']['out_path'])
                   for e in job.events if e.get('event') == 'runner_on_ok'
                   and e['event_data']['task'] == EVAL)
        assert sorted(new) == NAMES, new

        # the job's pod (container) is gone with it
        wait_until(lambda: not containers_named(pod), WAIT, interval=0.1,
                   what='container %s to go' % pod)

        # each host settles within its activation and confirmation window once
        # the job has ended (the hold's release)
        settled = {}
        for host in NAMES:
            wait_until(lambda h=host: not locks(lab, h), WAIT, interval=0.1,
                       what='the locks of %s' % host)
            settled[host] = round(time.time() - ended, 1)
        outcomes = {}
        for host in NAMES:
            active = assert_consistent(lab, host)
            assert active in (before[host], new[host]), (host, active, before[host], new[host])
            outcomes[host] = 'confirmed' if active == new[host] else 'rolled back'
            assert not locks(lab, host), host
        assert outcomes == dict((h, 'confirmed' if h == FAST else 'rolled back')
                                for h in NAMES), outcomes
        # within the activation and the confirmation window, give or take the
        # rollback and the ssh logins: no host waited for anything longer
        assert max(settled.values()) <= SETTLE, settled
        print('cancel: %.1f s after the activations started the job ended; hosts settled '
              '(seconds after the job ended): %s; %s'
              % (ended - cancel.canceled_at, settled, outcomes))

        # a new job converges: every host on its new system
        job = awx.job()
        assert job.status == 'successful', job.tail()
        stats = set_stats_of(job.artifacts)['nixdeploy']
        for host in NAMES:
            assert stats[host]['path'] == new[host], stats[host]
            assert assert_consistent(lab, host) == new[host], host
            assert not locks(lab, host), host
    finally:
        # later tests start from systems without the hold (their next commit).
        # The release stays: a later test's rollback re-activates this test's
        # systems, whose hold would otherwise wait its HOLD_LIMIT (the
        # navigator test's failing a2 took 190 s when it came next)
        for host in NAMES:
            flake.set_config(flake.config_of(host), on_activate='')
            lab.run_in(host, ['touch', RELEASE])
