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
"""

import glob
import json
import os
import re
import signal
import subprocess
import time

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
# h2's activation holds (after its slow 6 s) until this file exists; bounded
# under the role's activation timeout so that a test that never lets go
# leaves none behind
RELEASE = '/nix/var/lab/interrupted-release'
HOLD = 'n=0; while [ ! -e %s ] && [ $n -lt 900 ]; do sleep 0.2; n=$((n+1)); done' % RELEASE
# the interrupted run's confirmation window: long enough that the run
# started at once reaches h2's lock while it is held
CONFIRM = 40
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
    rundir = fleet.rundir()
    log = open(os.path.join(rundir, 'output.log'), 'w')
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', fleet.inventory,
            DeployFleet.PLAYBOOK] + list(args)
    env = ansible_env(dict(env, ANSIBLE_CALLBACKS_ENABLED=CALLBACKS,
                           NIXDEPLOY_REPORT_DIR=fleet.reports,
                           NIXDEPLOY_TEST_RECORD=os.path.join(rundir, 'record.jsonl')))
    proc = subprocess.Popen(argv, cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    proc.rundir = rundir
    return proc


def activated(proc, host):
    return any(r['task'] == ACTIVATE and r['host'] == host and r['status'] == 'ok'
               for r in records(proc))


def test_an_interrupted_run_says_what_it_left_and_the_next_says_what_it_waits_for(fleet):
    lab = fleet.lab
    before = dict((h, assert_consistent(lab, h)) for h in ('h1', 'h2'))
    seen = len(history(lab, 'h2'))
    lab.run_in('h2', ['rm', '-f', RELEASE])
    fleet.flake.set_config(fleet.flake.config_of('h1'), version='i2')
    fleet.flake.set_config(fleet.flake.config_of('h2'), version='i2', behaviour='slow',
                           on_activate=HOLD)
    proc = rerun = None
    try:
        proc = start(fleet, '-e', 'nix_confirm_timeout=%d' % CONFIRM)
        # h1 switched and h2's activation runs (held)
        wait_until(lambda: proc.poll() is not None or (
            activated(proc, 'h1') and len(history(lab, 'h2')) > seen), 600, interval=0.2,
            what='h1 to switch and h2 to activate')
        assert proc.poll() is None, output(proc)[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        stopped = time.time()
        proc.wait(timeout=120)
        # the held activation goes on, then awaits a confirmation that never comes
        lab.run_in('h2', ['touch', RELEASE])
        rerun = start(fleet, '-e', 'nix_lock_timeout=240', NIXDEPLOY_PROGRESS_INTERVAL='2')
        out = output(proc)
        assert proc.returncode == 99, out[-3000:]
        assert 'User interrupted execution' in out, out[-3000:]
        window = check_console(out)
        check_report(fleet, window)
        # h2 rolls back by itself within the window the console gave
        rolled = wait_until(lambda: [t for t, _goal, path in history(lab, 'h2')
                                     if path == before['h2'] and t >= int(stopped)],
                            window + ROLLBACK_SLACK + 30, what='h2 to roll back')
        assert rolled[0] - stopped <= window + ROLLBACK_SLACK, (rolled, stopped, window)
        rerun.wait(timeout=600)
    finally:
        # a run the test gave up on stops with it (its own group, its workers)
        for left in (proc, rerun):
            if left is not None and left.poll() is None:
                kill_controller(left)
        lab.run_in('h2', ['touch', RELEASE])
        fleet.flake.set_config(fleet.flake.config_of('h2'), behaviour='ok', on_activate='')
    again = output(rerun)
    assert rerun.returncode == 0, again[-3000:]
    check_rerun_waits(again)
    for host in ('h1', 'h2'):
        settled(lab, host)
        assert assert_consistent(lab, host) != before[host]
    lab.run_in('h2', ['rm', '-f', RELEASE])


def check_console(out):
    """The interrupted summary: h1 switched, h2 in flight with its window
    (returned, in seconds), and the closing line counting both."""
    assert 'NIXDEPLOY SUMMARY (interrupted by SIGINT)' in out, out[-3000:]
    summary = out[out.index('NIXDEPLOY SUMMARY (interrupted by SIGINT)'):]
    assert re.search(r'^h1 .* switched', summary, re.M), summary
    found = re.search(r'^h2 .*activation under way when interrupted; unconfirmed, it rolls back '
                      r'by itself within (\d+) s', summary, re.M)
    assert found, summary
    window = int(found.group(1))
    # its confirmation window at most, and more than the time it has left
    assert 0 < window <= CONFIRM + 240 + 5, window
    assert 'nixdeploy: interrupted by SIGINT: 1 changed, 1 activating' in summary, summary
    return window


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
    assert len(glob.glob(os.path.join(fleet.reports, 'nixdeploy-report-*.json'))) >= 2


def check_rerun_waits(out):
    """h2's progress lines name what it waits for, and the bound."""
    waits = re.findall(r"h2 \(\d+s, waiting for another run's (unconfirmed activation to be "
                       r"confirmed or rolled back|rollback) \d+s, at most (\d+)s more\)", out)
    assert waits, out[-4000:]
    assert all(0 <= int(bound) <= 240 for _what, bound in waits), waits
