"""Each host confirms its own activation: the deploy of a mixed fleet in ONE run
(`ansible-playbook nixdeploy.fleet.deploy`, lab `pip`, real ssh and Nix).

Six hosts: one activates for longer than the confirmation window, one takes
its network down, one fails to activate, three are healthy (NixOS, nix-darwin
and home-manager). With a lockstep play the slow host made every healthy host
miss its confirmation and roll back; here every host's window is its own.
Then a canary (`serial: [1, "100%"]`, `max_fail_percentage: 0`) that fails
stops the rest of the fleet.
"""

import glob
import json
import os
import re
import threading
import time

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory

pytestmark = pytest.mark.lab

ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'

HOSTS = [{'name': 'slow', 'persona': 'nixos'}, {'name': 'netbreak', 'persona': 'nixos'},
         {'name': 'failing', 'persona': 'nixos'}, {'name': 'ok1', 'persona': 'nixos'},
         {'name': 'ok2', 'persona': 'darwin'}, {'name': 'ok3', 'persona': 'home-manager'}]
CONFIRM_TIMEOUT = 8
# longer than the window: a lockstep play would have rolled the others back
SLOW_SECONDS = 14
PROGRESS_INTERVAL = 4
# The slow host's activation also holds until the test lets it go, which it
# does once every healthy host's activation task has ended (confirmed): on a
# busy machine the healthy hosts may need longer than SLOW_SECONDS, and they
# must still be done before the slow activation is. HOLD_LIMIT bounds the
# hold (under nix_activation_timeout, 240 s): in a lockstep play the healthy
# hosts could never confirm first, so it would end there and the test fail.
RELEASE = '/nix/var/lab/pipeline-release'
HOLD_LIMIT = 180
HOLD = ('n=0; while [ ! -e %s ] && [ $n -lt %d ]; do sleep 0.2; n=$((n+1)); done'
        % (RELEASE, HOLD_LIMIT * 5))
HEALTHY = ('ok1', 'ok2', 'ok3')
# a progress line: phases in order, each with its counts, the hosts still in
# it and how long they ran (and the step of an activation a person waits on)
PROGRESS = re.compile(r'^nixdeploy: progress: (?P<parts>.+)$')
PART = re.compile(r'^(?P<phase>[a-z]+): \d+ of \d+ done(?: \(\d+ failed\))?'
                  r'(?:, \d+ running: (?P<hosts>.+?)(?: and \d+ more)?)?$')
HOST = re.compile(r'^(?P<host>[\w.-]+) \((?P<seconds>\d+)s(?:, [a-z ]+ \d+s)?\)$')


def active(fleet):
    return {host: fleet.lab.active(host) for host in fleet.lab.hosts}


def recorded(path):
    """The task results the test's record callback has written so far (the
    line being written, if any, is left for the next look)."""
    found = []
    for name in glob.glob(path):
        with open(name) as handle:
            for line in handle:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    break
    return found


class Releaser(threading.Thread):
    """Lets the slow host's activation end (touches RELEASE on it) once each
    of ``hosts`` has its activation task's result in the run's ``record``
    files, or when ``stop`` is set or ``timeout`` seconds passed; then
    ``released`` says which."""

    def __init__(self, lab, record, hosts, stop, timeout=HOLD_LIMIT):
        super(Releaser, self).__init__(daemon=True)
        self.lab, self.record, self.hosts, self.stop = lab, record, set(hosts), stop
        self.timeout, self.released = timeout, None

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            done = {r['host'] for r in recorded(self.record) if r['task'] == ACTIVATE}
            if done >= self.hosts:
                self.released = 'after %s' % ', '.join(sorted(self.hosts))
                break
            time.sleep(0.2)
        else:
            self.released = 'stopped' if self.stop.is_set() else 'timed out'
        self.lab.run_in('slow', ['touch', RELEASE])


def progress_parts(line):
    """{phase: {host: seconds}} of a progress line (AssertionError if it is
    not one)."""
    match = PROGRESS.match(line)
    assert match, line
    parts = {}
    for part in match.group('parts').split('; '):
        found = PART.match(part)
        assert found, (part, line)
        hosts = {}
        for entry in re.split(r'(?<=\)), ', found.group('hosts')) if found.group('hosts') else ():
            host = HOST.match(entry)
            assert host, (entry, line)
            hosts[host.group('host')] = int(host.group('seconds'))
        parts[found.group('phase')] = hosts
    return parts


@pytest.fixture(scope='module')
def pip_fleet(make_lab, tmp_path_factory):
    lab = make_lab('pip', HOSTS)
    base = str(tmp_path_factory.mktemp('pip'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    fleet = DeployFleet(lab, flake, inventory, base)
    run = fleet.deploy()
    assert run.rc == 0, run
    return fleet


def test_every_host_confirms_its_own_activation(pip_fleet):
    lab, flake = pip_fleet.lab, pip_fleet.flake
    before = active(pip_fleet)
    flake.set_all(version='2')
    flake.set_config('slow', behaviour='slow', slow_seconds=SLOW_SECONDS, on_activate=HOLD)
    flake.set_config('netbreak', behaviour='break-network')
    flake.set_config('failing', behaviour='fail')
    lab.run_in('slow', ['rm', '-f', RELEASE])
    # the record files of the run deploy() makes next (tests/deploy_fleet.py)
    record = os.path.join(pip_fleet.workdir, 'run%d' % (pip_fleet.runs + 1), 'record-*.jsonl')
    stop = threading.Event()
    releaser = Releaser(lab, record, HEALTHY, stop)
    releaser.start()
    try:
        # progress every 4 s: the slow host (14 s at least) is named whatever
        # the order in which the hosts reached their activation
        run = pip_fleet.deploy('-e', 'nix_confirm_timeout=%d' % CONFIRM_TIMEOUT,
                               env={'NIXDEPLOY_PROGRESS_INTERVAL': str(PROGRESS_INTERVAL)})
    finally:
        stop.set()
        releaser.join()
        lab.run_in('slow', ['rm', '-f', RELEASE])
        flake.set_config('slow', on_activate='')
        for host in ('slow', 'netbreak', 'failing'):
            flake.set_config(host, behaviour='ok')
    assert run.rc != 0, run
    new = {r['host']: r['result']['out_path'] for r in run.results(EVAL)}
    # hosts advance on their own, but the batch is still evaluated once: one
    # Nix process per evaluator, counted once (by the answer that completed it)
    evaluated = [r['result'] for r in run.results(EVAL) if r['result'].get('evaluated_here')]
    assert len(evaluated) == 1, evaluated
    assert evaluated[0]['nix_processes'] == evaluated[0]['evaluation']['workers'] >= 1, evaluated
    assert all(r['result']['batch_hosts'] == 6 for r in run.results(EVAL)), run
    summary = run.summary()
    assert sorted(summary) == sorted(lab.hosts), summary

    # the slow host and the healthy ones: on the new system, confirmed, ok
    for host in ('slow', 'ok1', 'ok2', 'ok3'):
        assert lab.active(host) == new[host] != before[host], (host, run)
        res = run.result(ACTIVATE, host)
        assert res['status'] == 'ok' and res['result']['confirmed'], (host, res)
        assert not summary[host]['failed'] and summary[host]['outcome'] == 'switched', summary
        assert summary[host]['after'] == summary[host]['before'] + 1, summary[host]
    # ... the healthy hosts did not wait for the slow one: each confirmed
    # before the slow host's activation even ended (which waited for them)
    assert releaser.released == 'after ok1, ok2, ok3', releaser.released
    slow_phases = run.result(ACTIVATE, 'slow')['result']['phases']
    slow_activated = [p for p in slow_phases if p['name'] == 'activate'][0]['end']
    for host in ('ok1', 'ok2', 'ok3'):
        confirm = [p for p in run.result(ACTIVATE, host)['result']['phases']
                   if p['name'] == 'confirm'][0]
        assert confirm['end'] < slow_activated, (host, confirm, slow_activated)

    # the network-breaking host: rolled itself back (no confirmation came),
    # reachable again, reported failed with keys programs read
    assert lab.active('netbreak') == before['netbreak']
    assert summary['netbreak']['failed'] and summary['netbreak']['rolled_back'], summary
    assert summary['netbreak']['connection_lost'], summary
    assert summary['netbreak']['phase'] == 'confirm', summary
    assert summary['netbreak']['before'] == summary['netbreak']['after'], summary
    lab.ssh('netbreak', 'true')

    # the failing host: auto rolled back, failed
    assert lab.active('failing') == before['failing']
    assert summary['failing']['failed'] and summary['failing']['rolled_back'], summary
    assert summary['failing']['phase'] == 'activate' and not summary['failing']['connection_lost']
    assert 'exit code 1' in summary['failing']['outcome'], summary

    # the summary the run prints says which host did what
    lines = run.stdout[run.stdout.index('NIXDEPLOY SUMMARY'):].splitlines()
    for host in lab.hosts:
        line = [ln for ln in lines if ln.startswith(host + ' ')]
        assert line and summary[host]['outcome'] in line[0], (host, lines)
    recap = run.stdout[run.stdout.index('PLAY RECAP'):]
    assert recap.count('failed=1') == 2, recap

    # the slow host's activation ran past the progress interval: a progress
    # line named it in the activate phase, with how long it had run. Which
    # other hosts and phases a line shows depends on how fast each host got
    # there (on a busy machine a copy runs past the interval too): each line
    # only names hosts of the fleet, in known phases, one of which ran that long.
    progress = [ln for ln in run.stdout.splitlines() if ln.startswith('nixdeploy: progress:')]
    assert progress, run
    for line in progress:
        parts = progress_parts(line)
        assert set(parts) <= {'eval', 'build', 'copy', 'keys', 'activate'}, line
        for hosts in parts.values():
            assert set(hosts) <= set(lab.hosts), line
        # a line comes once a task has run that long
        assert max(s for hosts in parts.values() for s in hosts.values()) >= PROGRESS_INTERVAL, \
            line
    assert any('slow' in progress_parts(line).get('activate', {}) for line in progress), progress
    # builtin strategy, supported plugin types only: no deprecation warning
    assert 'DEPRECATION' not in run.stdout + run.stderr, run
    # AWX keeps the records twice: by name and by job (slices stay apart)
    jobs = [key for key in run.stats() if key.startswith('nixdeploy_job_')]
    assert len(jobs) == 1 and run.stats()[jobs[0]] == summary, run.stats()


# its serial batches and the stop between them: test_failing_canary_stops_the_rest
@pytest.mark.here_only
def test_batch_over_its_percentage_stops_the_next(pip_fleet):
    """Two hosts per batch, one of the first batch fails: 50% is more than
    nix_max_fail_percentage 40, so the second batch never starts (Ansible's own
    rule stops only after a batch whose every host failed)."""
    lab, flake = pip_fleet.lab, pip_fleet.flake
    before = active(pip_fleet)
    histories = {h: lab.read(h, '/nix/var/lab/history-%s' % lab.state_key(h)) for h in lab.hosts}
    flake.set_all(version='4')
    first = sorted(lab.hosts)[:2]
    flake.set_config(first[0], behaviour='fail')
    try:
        run = pip_fleet.deploy('-e', '{"nix_serial": 2, "nix_max_fail_percentage": 40}',
                               '-l', ','.join(sorted(lab.hosts)))
    finally:
        flake.set_config(first[0], behaviour='ok')
    assert run.rc != 0, run
    summary = run.summary()
    assert sorted(summary) == first, summary
    assert summary[first[0]]['failed'] and not summary[first[1]]['failed'], summary
    assert lab.active(first[1]) != before[first[1]]
    stop = [ln for ln in run.stdout.splitlines() if 'no further batch starts' in ln]
    assert stop and '1 of 2 hosts of batch 1 failed (%s)' % first[0] in stop[0], run
    # the run's end names the hosts of the batch that did not start, and
    # counts those of the batch after it, which the play's end left unrun
    rest = sorted(lab.hosts)[2:]
    stopped = sorted(r['host'] for r in run.results(EVAL) if r['result'].get('stopped'))
    assert stopped and set(stopped) < set(rest), run
    assert 'nixdeploy: %d hosts not deployed: no batch started for them: %s and %d more' % (
        len(rest), ', '.join(stopped), len(rest) - len(stopped)) in run.stdout, run
    # the second batch was evaluated by nobody and touched nowhere
    assert not [r for r in run.results(EVAL) if r['host'] not in first and not
                r['result'].get('stopped')], run
    for host in sorted(lab.hosts)[2:]:
        assert lab.active(host) == before[host], host
        assert lab.read(host, '/nix/var/lab/history-%s' % lab.state_key(host)) == \
            histories[host], host


def test_failing_canary_stops_the_rest(pip_fleet):
    lab, flake = pip_fleet.lab, pip_fleet.flake
    before = active(pip_fleet)
    histories = {h: lab.read(h, '/nix/var/lab/history-%s' % lab.state_key(h)) for h in lab.hosts}
    flake.set_all(version='3')
    # the first host of the inventory is the canary of serial [1, "100%"]
    canary = sorted(lab.hosts)[0]
    flake.set_config(canary, behaviour='fail')
    try:
        run = pip_fleet.deploy('-e', '{"nix_serial": [1, "100%"], "nix_max_fail_percentage": 0}')
    finally:
        flake.set_config(canary, behaviour='ok')
    assert run.rc != 0, run
    summary = run.summary()
    assert list(summary) == [canary], summary
    assert summary[canary]['failed'] and summary[canary]['rolled_back'], summary
    assert 'no further batch starts' in run.stdout, run
    # nobody else was touched: same system, no activation ran
    assert active(pip_fleet) == before
    for host in lab.hosts:
        if host != canary:
            assert lab.read(host, '/nix/var/lab/history-%s' % lab.state_key(host)) == \
                histories[host], host
