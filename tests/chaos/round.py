"""One round of the campaign: give the drawn hosts their new systems, run
the deploy with the drawn faults at their moments, remove the faults, wait
the time the docs promise, check the invariants, then one clean run that
must converge every host to the round's systems, changing only the hosts
that were not there yet."""

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from tests.chaos import invariants
from tests.chaos.faults import Injector, kill_whole
from tests.chaos.fleet import CONTROL_PERSIST
from tests.chaos.schedule import BAD

RUN_TIMEOUT = 900   # a run still going after this is a hang: a violation
PADDING = {'extra_paths': 2, 'extra_bytes': 256 * 1024}   # something to copy


def system_knobs(fleet, configuration, behaviour, version):
    """The knobs of a new system of ``configuration`` that behaves so."""
    knobs = fleet.base_knobs(configuration)
    knobs.update(PADDING, version=version, extra_seed=version)
    knobs['kernel_version'] = fleet.good[configuration].get('kernel_version')
    if behaviour == 'failing-activation':
        knobs['behaviour'] = 'fail'
    elif behaviour == 'breaking-network':
        knobs['behaviour'] = 'break-network'
    elif behaviour == 'slow':
        knobs['behaviour'] = 'slow'
    elif behaviour == 'unhealthy':
        knobs['http_status'] = 500
    elif behaviour == 'needing-reboot':
        knobs['kernel_version'] = '6.6.%s' % version
    if knobs['kernel_version'] is None:
        del knobs['kernel_version']
    return knobs


def out_paths(fleet, hosts):
    """{host: the out path its system evaluates to now}, in one Nix process."""
    if not hosts:
        return {}
    body = ' '.join('"%s" = f.%s.outPath;' % (h, fleet.flake.attr(h)) for h in hosts)
    expr = 'let f = builtins.getFlake "%s"; in { %s }' % (fleet.flake.ref, body)
    proc = subprocess.run(['nix', '--extra-experimental-features', 'nix-command flakes',
                           '--option', 'substituters', '', 'eval', '--impure', '--json',
                           '--expr', expr], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=True)
    return json.loads(proc.stdout)


def wait_masters(runs):
    """Until the runs' ssh masters are gone, at most what ssh promises: each
    lives ControlPersist after its last use, and one whose link went dead
    until its keepalives give up (ServerAliveInterval 5 s, 3 unanswered).
    The runs have ended, so nothing starts a master any more: the wait ends
    as soon as nothing the controller check counts is left (a killed run's
    stale socket file is not), often before ControlPersist has passed."""
    deadline = time.monotonic() + CONTROL_PERSIST + 5 * 3 + 2
    while any(invariants.controller_processes(r) or invariants.sockets_left(r) for r in runs
              if os.path.isdir(r.control_dir)):
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)


class RoundRun:
    """The runs of a round (the main one, a second deploy beside it)."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.runs = []
        self.main = None
        self.started = None
        self.link_start = {}

    def start(self):
        lab = self.fleet.lab
        self.link_start = dict((h, lab.link_bytes(h)[0]) for h in lab.hosts)
        self.started = time.monotonic()
        self.main = self.fleet.start('main')
        self.runs.append(self.main)

    def add_run(self, run):
        self.runs.append(run)

    def running(self):
        return any(r.proc.poll() is None for r in self.runs)

    def wait(self):
        """Wait for every run; a run past RUN_TIMEOUT is killed and named."""
        deadline = self.started + RUN_TIMEOUT
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.5)
        hung = []
        for run in self.runs:
            if run.proc.poll() is None:
                hung.append('run %s still running after %ds: killed' % (run.label, RUN_TIMEOUT))
                kill_whole(run)
        return hung


def play(fleet, schedule, log):
    """Play ``schedule`` on ``fleet``; returns (violations, injectors)."""
    lab = fleet.lab
    hosts = sorted(lab.hosts)
    before = dict((h, lab.active(h)) for h in hosts)
    version = 's%sr%d' % (schedule.seed, schedule.number)
    for cfg, behaviour in sorted(schedule.systems.items()):
        fleet.set_system(cfg, system_knobs(fleet, cfg, behaviour, version))
    changing = sorted(h for cfg in schedule.systems for h in fleet.hosts_of(cfg))
    new = dict((h, before[h]) for h in hosts)
    new.update(out_paths(fleet, changing))
    fleet.set_copy_modes(schedule.modes)
    fleet.fill_cache([h for h, m in schedule.modes.items() if m == 'cache'])

    rr = RoundRun(fleet)
    rr.start()
    injectors = [Injector(fault, rr, log) for fault in schedule.faults]
    for injector in injectors:
        injector.start()
    violations = rr.wait()
    for injector in injectors:
        violations += injector.remove()
    # a second deploy its fault started as the first one ended
    violations += rr.wait()
    for run in rr.runs:
        log('  run %s: %s%s' % (run.label, 'killed' if run.killed else 'rc %s' % run.proc.returncode,
                                ' (cancelled)' if run.cancelled else ''))
    # hosts a fault left down (a reboot) come back; then the time the docs promise
    for host in hosts:
        if lab.power_state(host) != 'up':
            lab.wait_up(host, timeout=120)
    deadline = time.monotonic() + invariants.SETTLE_SECONDS
    while invariants.unsettled(lab) and time.monotonic() < deadline:
        time.sleep(1)
    wait_masters(rr.runs)

    final = dict((h, lab.active(h)) for h in hosts)
    # each host's checks are mostly waiting on its own Nix: a few at once
    with ThreadPoolExecutor(4) as pool:
        for found in pool.map(lambda h: invariants.check_host(lab, h, before[h], new[h]), hosts):
            violations += found
    violations += invariants.check_runs(rr.runs, final, before, new)
    for run in rr.runs:
        violations += invariants.check_controller(run, fleet.gc_root_dir)
    if violations:
        return violations, injectors
    return converge(fleet, schedule, before, new, final, log), injectors


def converge(fleet, schedule, before, new, final, log):
    """The clean run: the bad systems of the round go back to what their
    hosts ran (a deploy of them only fails again), every other host must end
    on its round's system, and exactly the hosts not on it yet change."""
    lab = fleet.lab
    bad = [cfg for cfg, b in schedule.systems.items() if b in BAD]
    good = [cfg for cfg in schedule.systems if cfg not in bad]
    for cfg in bad:
        fleet.restore(cfg)
    target = dict(new)
    for cfg in bad:
        for host in fleet.hosts_of(cfg):
            target[host] = before[host]
    fleet.set_copy_modes({})
    run = fleet.start('clean')
    deadline = time.monotonic() + RUN_TIMEOUT
    while run.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if run.proc.poll() is None:
        kill_whole(run)
        return ['clean run still running after %ds: killed' % RUN_TIMEOUT]
    log('  clean run: rc %s' % run.proc.returncode)
    out = []
    if run.proc.returncode != 0:
        out.append('clean run failed (rc %s): %s' % (run.proc.returncode, run.output()[-3000:]))
    report = run.report() or {'hosts': {}}
    counts = invariants.recap(run) or {}
    for host in sorted(lab.hosts):
        try:
            active = invariants.assert_consistent(lab, host)
        except AssertionError as exc:
            out.append('after the clean run: %s' % exc)
            continue
        if active != target[host]:
            out.append('after the clean run %s runs %s, not the round\'s %s' % (host, active, target[host]))
        out += ['after the clean run: %s' % v for v in invariants.gc_roots_converged(lab, host, active)]
        should_change = final[host] != target[host]
        changed, _failed = counts.get(host, (None, None))
        status = (report['hosts'].get(host) or {}).get('status')
        if changed is None or bool(changed) != should_change:
            out.append('clean run: %s changed=%s in the recap, expected %s (it ran %s, the round '
                       'gives it %s)' % (host, changed, 'a change' if should_change else 'none',
                                         final[host], target[host]))
        if status != ('changed' if should_change else 'unchanged'):
            out.append('clean run: %s is %s in the report, expected %s'
                       % (host, status, 'changed' if should_change else 'unchanged'))
    wait_masters([run])
    out += invariants.check_controller(run, fleet.gc_root_dir)
    fleet.keep_good(good)
    return out
