"""Issue 93: a run stopped by Ctrl-C says what it left, and the run that
follows says what it waits for.

Two lab NixOS hosts (`irq` lab), deployed once. Then a new version: h1's
activates at once, h2's is slow and holds until the test lets it go. The
test sends SIGINT to ansible-playbook's process group (as a terminal does
on Ctrl-C) once h1 has switched and h2 activates. The exit code stays
ansible-core's (99); the console's interrupted summary names h1 switched
and h2 in flight, with the seconds within which h2 rolls back by itself;
the report (latest name and the run's own) is an interrupted run holding
both hosts; h2 is back on its previous system within those seconds; and a
run started at once says, for h2, that it waits for the interrupted run's
unconfirmed activation or rollback, with the bound, then deploys both.
A rollback of h2 asked at once after another such Ctrl-C says what it
waits for, and once the watchdog has put h2's previous system back it
goes no further (the trial's "two generations back").

The run after the Ctrl-C starts while h2's activation still holds, and the
test lets the activation go once that run waits for h2's lock (its status
file on h2 says so): the run is then at the lock when the watchdog's window
opens, whatever the machine's load, so the window (``nix_confirm_timeout``,
which users set too) only has to be long enough for a progress line or two
once that run's controller follows the wait: its activation's launch session
returns as soon as the run waits for the lock, saying for what, and a look
returns as soon as that changes.
"""

import glob
import json
import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager

import jsonschema
import pytest

from tests.collection import BIN, REPO, ansible_env
from tests.controller import kill_controller
from tests.deploy_fleet import DeployFleet, prepare, write_inventory
from tests.faults.fleet import (ACTIVATE, assert_consistent, history, output, records, settled,
                                wait_until)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

HOSTS = [{'name': name, 'persona': 'nixos'} for name in ('h1', 'h2')]
SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')
CALLBACKS = 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report'
# h2's activation holds (after its slow SLOW s) until this file exists;
# bounded under the role's activation timeout so that a test that never lets
# go leaves none behind
RELEASE = '/nix/var/lab/interrupted-release'
HOLD = 'n=0; while [ ! -e %s ] && [ $n -lt 900 ]; do sleep 0.2; n=$((n+1)); done' % RELEASE
# slow, but not for long: the hold is what keeps the activation under way
# (the activation after the hold, by the run that follows, is slow too)
SLOW = 1
# the interrupted runs' confirmation windows: the run that follows is at
# h2's lock before the window opens (``wait_at_lock``); its controller
# learns what it waits for as soon as its run waits (its launch session
# returns then) and says it in its next progress line (every PROGRESS s;
# the summary callback looks once a second): 6 s leave a few lines in it
# (and more while the watchdog rolls back), a loaded machine included
PROGRESS = '1'
CONFIRM = ROLLBACK_CONFIRM = 6
# a run on h2 waits for the lock the held activation holds: its status file
# on the host (the controller's console may reach its log file only later)
WAITING_FOR_ACTIVATION = (
    'for f in /nix/var/nixdeploy/*/runs/*/status; do'
    ' grep -qx state=waiting_lock "$f" && grep -qx waiting_for=activation "$f" && echo waiting;'
    ' done; true')
# slack for the watchdog's own rollback (one fast re-activation) and the
# lab's clock read in whole seconds
ROLLBACK_SLACK = 15


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('irq', HOSTS)
    base = str(tmp_path_factory.mktemp('interrupted'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    flake.set_all(version='i1')
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    made = DeployFleet(lab, flake, inventory, base)
    made.reports = os.path.join(base, 'reports')
    run = made.deploy(env={'ANSIBLE_CALLBACKS_ENABLED': CALLBACKS,
                           'NIXDEPLOY_REPORT_DIR': made.reports})
    assert run.rc == 0, run
    return made


def start(fleet, *args, **env):
    """ansible-playbook in the background, in a session of its own (its
    process group is the terminal's foreground group a Ctrl-C reaches)."""
    return start_playbook(fleet, DeployFleet.PLAYBOOK, *args, **env)


def start_playbook(fleet, playbook, *args, **env):
    rundir = fleet.rundir()
    log = open(os.path.join(rundir, 'output.log'), 'w')
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', fleet.inventory,
            playbook] + list(args)
    env = ansible_env(dict(env, ANSIBLE_CALLBACKS_ENABLED=CALLBACKS,
                           NIXDEPLOY_REPORT_DIR=fleet.reports,
                           NIXDEPLOY_TEST_RECORD=os.path.join(rundir, 'record.jsonl')),
                      cwd=rundir)
    proc = subprocess.Popen(argv, cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    proc.rundir = rundir
    return proc


def activated(proc, host):
    return any(r['task'] == ACTIVATE and r['host'] == host and r['status'] == 'ok'
               for r in records(proc))


@contextmanager
def held(fleet, version):
    """h2's next version (``version``) holds in its activation until the
    test lets it go; yields the list the test puts its runs in. Whatever
    happens, a run the test gave up on stops with it (its own group, its
    workers), and h2's activation is let go and made plain again."""
    fleet.lab.run_in('h2', ['rm', '-f', RELEASE])
    fleet.flake.set_config(fleet.flake.config_of('h2'), version=version, behaviour='slow',
                           slow_seconds=SLOW, on_activate=HOLD)
    runs = []
    try:
        yield runs
    finally:
        for left in runs:
            if left.poll() is None:
                kill_controller(left)
        fleet.lab.run_in('h2', ['touch', RELEASE])
        fleet.flake.set_config(fleet.flake.config_of('h2'), behaviour='ok', on_activate='')


def interrupt(proc, ready, what):
    """SIGINT to the run's process group (a terminal's Ctrl-C) once
    ``ready()``; returns when it was sent, after the run ended."""
    wait_until(lambda: proc.poll() is not None or ready(), 600, interval=0.2, what=what)
    assert proc.poll() is None, output(proc)[-3000:]
    os.killpg(proc.pid, signal.SIGINT)
    stopped = time.time()
    proc.wait(timeout=120)
    return stopped


def wait_at_lock(lab, proc, what):
    """Until a run on h2 waits for the held activation's lock (or ``proc`` ends)."""
    wait_until(lambda: proc.poll() is not None or 'waiting' in lab.run_in(
        'h2', ['sh', '-c', WAITING_FOR_ACTIVATION]).stdout.split(), 300, interval=0.5, what=what)
    assert proc.poll() is None, output(proc)[-3000:]


def test_an_interrupted_run_says_what_it_left_and_the_next_says_what_it_waits_for(fleet):
    lab = fleet.lab
    before = dict((h, assert_consistent(lab, h)) for h in ('h1', 'h2'))
    seen = len(history(lab, 'h2'))
    fleet.flake.set_config(fleet.flake.config_of('h1'), version='i2')
    with held(fleet, 'i2') as runs:
        proc = start(fleet, '-e', 'nix_confirm_timeout=%d' % CONFIRM)
        runs.append(proc)
        # h1 switched and h2's activation runs (held)
        stopped = interrupt(proc, lambda: activated(proc, 'h1') and len(history(lab, 'h2')) > seen,
                            'h1 to switch and h2 to activate')
        out = output(proc)
        assert proc.returncode == 99, out[-3000:]
        assert 'User interrupted execution' in out, out[-3000:]
        at_most = check_console(out)
        # read before the next run writes the latest report
        check_report(fleet, at_most)
        # a run started at once reaches h2's lock while the activation holds;
        # then the activation goes on and awaits a confirmation that never comes
        rerun = start(fleet, '-e', 'nix_lock_timeout=240', NIXDEPLOY_PROGRESS_INTERVAL=PROGRESS)
        runs.append(rerun)
        wait_at_lock(lab, rerun, 'the run after the Ctrl-C to wait for h2\'s lock')
        lab.run_in('h2', ['touch', RELEASE])
        released = time.time()
        # h2 rolls back by itself the window the console gave after its
        # activation ended (here: when the test let it go), and within the most
        rolled = wait_until(lambda: [t for t, _goal, path in history(lab, 'h2')
                                     if path == before['h2'] and t >= int(stopped)],
                            at_most + ROLLBACK_SLACK + 30, what='h2 to roll back')
        assert rolled[0] - released <= CONFIRM + ROLLBACK_SLACK, (rolled, released)
        assert rolled[0] - stopped <= at_most + ROLLBACK_SLACK, (rolled, stopped, at_most)
        rerun.wait(timeout=600)
    again = output(rerun)
    assert rerun.returncode == 0, again[-3000:]
    check_rerun_waits(again)
    for host in ('h1', 'h2'):
        settled(lab, host)
        assert assert_consistent(lab, host) != before[host]
    lab.run_in('h2', ['rm', '-f', RELEASE])


def test_a_rollback_right_after_a_ctrl_c_waits_and_goes_back_no_further(fleet):
    """Ctrl-C while h2's new system activates, then at once the rollback of
    h2: its progress line says that it waits for the interrupted run, and
    once the watchdog has put h2's previous system back, the rollback
    leaves it there and says so (not a second generation back)."""
    lab = fleet.lab
    before = assert_consistent(lab, 'h2')
    seen = len(history(lab, 'h2'))
    with held(fleet, 'i3') as runs:
        proc = start(fleet, '-l', 'h2', '-e', 'nix_confirm_timeout=%d' % ROLLBACK_CONFIRM)
        runs.append(proc)
        interrupt(proc, lambda: len(history(lab, 'h2')) > seen, 'h2 to activate')
        back = start_playbook(fleet, 'nixdeploy.fleet.rollback', '-l', 'h2',
                              NIXDEPLOY_PROGRESS_INTERVAL=PROGRESS)
        runs.append(back)
        wait_at_lock(lab, back, 'the rollback to wait for h2\'s lock')
        lab.run_in('h2', ['touch', RELEASE])
        back.wait(timeout=600)
    said = output(back)
    assert back.returncode == 0, said[-3000:]
    assert re.search(r"h2 \(\d+s, waiting for another run's (unconfirmed activation to be "
                     r"confirmed or rolled back|rollback) \d+s, at most \d+s more\)", said), \
        said[-4000:]
    summary = said[said.index('NIXDEPLOY SUMMARY'):]
    assert re.search(r'^h2 .* unchanged \(while this rollback waited for the lock, another run '
                     r'.* moved \S+ from generation (\d+) to (\d+): left there, not rolled back '
                     r'further', summary, re.M), summary
    settled(lab, 'h2')
    assert assert_consistent(lab, 'h2') == before
    lab.run_in('h2', ['rm', '-f', RELEASE])


def check_console(out):
    """The interrupted summary: h1 switched, h2 in flight (its activation
    held) with the watchdog's real window after the activation and the most
    it may take (returned, in seconds), and the closing line counting both."""
    assert 'NIXDEPLOY SUMMARY (interrupted by SIGINT)' in out, out[-3000:]
    summary = out[out.index('NIXDEPLOY SUMMARY (interrupted by SIGINT)'):]
    assert re.search(r'^h1 .* switched', summary, re.M), summary
    found = re.search(r'^h2 .*activation under way when interrupted; unconfirmed, it rolls back '
                      r'by itself (\d+) s after its activation ends, within (\d+) s at the latest',
                      summary, re.M)
    assert found, summary
    window, at_most = int(found.group(1)), int(found.group(2))
    assert window == CONFIRM, summary
    # the activation's timeout (the role's default) and the window at most
    assert window < at_most <= CONFIRM + 240 + 5, at_most
    assert 'nixdeploy: interrupted by SIGINT: 1 changed, 1 activating' in summary, summary
    return at_most


def check_report(fleet, window):
    """The latest report and the run's own: an interrupted run, both hosts."""
    with open(SCHEMA) as handle:
        schema = json.load(handle)
    with open(os.path.join(fleet.reports, 'nixdeploy-report.json')) as handle:
        latest = json.load(handle)
    jsonschema.validate(latest, schema)
    run = latest['runs'][0]
    assert run['state'] == 'interrupted' and run['interrupted_by'] == 'SIGINT', run
    assert sorted(latest['hosts']) == ['h1', 'h2'] == sorted(run['hosts']), latest['hosts']
    h1, h2 = latest['hosts']['h1'], latest['hosts']['h2']
    assert h1['status'] == 'changed' and h1['interrupted']['state'] == 'changed', h1
    assert h2['interrupted'] == {'state': 'activating', 'phase': 'activate',
                                 'rolls_back_within': h2['interrupted']['rolls_back_within']}, h2
    assert abs(h2['interrupted']['rolls_back_within'] - window) <= 2, (h2, window)
    assert 'activation under way when interrupted' in h2['summary'], h2
    own = os.path.join(fleet.reports, 'nixdeploy-report-%s.json' % run['id'])
    with open(own) as handle:
        assert json.load(handle)['runs'][0]['id'] == run['id']
    assert os.path.exists(own[:-len('.json')] + '.html')
    with open(os.path.join(fleet.reports, 'nixdeploy-report.html')) as handle:
        page = handle.read()
    assert 'interrupted by SIGINT' in page, page[:2000]
    # one word for one state: the console's, in the JSON's counts and on the page
    assert latest['totals']['interrupted'] == {'changed': 1, 'activating': 1}, latest['totals']
    assert '<span class="badge activating">activating</span>' in page, page
    assert '<small>not activated</small>' not in page and 'every host went through' not in page
    assert len(glob.glob(os.path.join(fleet.reports, 'nixdeploy-report-*.json'))) >= 2


def check_rerun_waits(out):
    """h2's progress lines name what it waits for, and the bound."""
    waits = re.findall(r"h2 \(\d+s, waiting for another run's (unconfirmed activation to be "
                       r"confirmed or rolled back|rollback) \d+s, at most (\d+)s more\)", out)
    assert waits, out[-4000:]
    assert all(0 <= int(bound) <= 240 for _what, bound in waits), waits
