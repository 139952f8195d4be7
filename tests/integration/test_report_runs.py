"""Issue 61: what a run prints and the report it keeps agree with each other
and with the exit code, and each run keeps its own report.

Four lab NixOS hosts (`rru` lab) are deployed twice with
`ansible-playbook nixdeploy.fleet.deploy`, the summary and report callbacks
enabled and one report folder for both runs. The second run mixes, in one
play, a host whose activation fails (it rolls back), a host nothing answers
at (its address moved to one no lab host has), and two healthy hosts: the
PLAY RECAP, the summary's closing line, the report's totals and tiles and
the exit code must count the same hosts the same way, each failed host's
cause is printed once (the rescue points at it), and the folder holds both
runs' reports, the latest name being the second's.
"""

import contextlib
import glob
import json
import os
import re

import jsonschema
import pytest

from tests.collection import REPO, run_playbook
from tests.deploy_fleet import DeployFleet, prepare, write_inventory

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

HOSTS = [{'name': name, 'persona': 'nixos'} for name in ('h1', 'h2', 'h3', 'h4')]
SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')
CALLBACKS = 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report'
RESCUE = 'nixdeploy.fleet.deploy : Fail the host with the message of its failed phase'


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('rru', HOSTS)
    base = str(tmp_path_factory.mktemp('report_runs'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    made = DeployFleet(lab, flake, inventory, base)
    made.reports = os.path.join(base, 'reports')
    return made


def deploy(fleet, *args):
    return fleet.deploy(*args, env={'ANSIBLE_CALLBACKS_ENABLED': CALLBACKS,
                                    'NIXDEPLOY_REPORT_DIR': fleet.reports}, timeout=600)


@contextlib.contextmanager
def h4_nowhere(fleet):
    """h4 at an address of the lab's subnet no host has: nothing answers
    there (its host_vars, for the runs inside)."""
    nowhere = fleet.lab.host('h1')['address'].rsplit('.', 1)[0] + '.250'
    host_vars = os.path.join(fleet.inventory, 'host_vars')
    os.makedirs(host_vars, exist_ok=True)
    with open(os.path.join(host_vars, 'h4.yml'), 'w') as handle:
        json.dump({'ansible_host': nowhere}, handle)
    try:
        yield
    finally:
        os.remove(os.path.join(host_vars, 'h4.yml'))


def recap(stdout):
    """{host: {ok, changed, unreachable, failed, ...}} of the PLAY RECAP."""
    rows = {}
    text = stdout[stdout.rindex('PLAY RECAP'):]
    for host, counts in re.findall(r'^(\S+)\s+:\s+(.*)$', text, re.M):
        rows[host] = dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', counts))
    return rows


def own_reports(fleet):
    """The runs' own JSON reports (not the latest name), oldest first."""
    return sorted(p for p in glob.glob(os.path.join(fleet.reports, 'nixdeploy-report-*.json')))


def latest(fleet):
    with open(os.path.join(fleet.reports, 'nixdeploy-report.json')) as handle:
        report = json.load(handle)
    with open(SCHEMA) as handle:
        jsonschema.validate(report, json.load(handle))
    return report


def tiles(page):
    section = page.split('<section class="totals">', 1)[1].split('</section>', 1)[0]
    return dict((label, int(value)) for value, label in re.findall(
        r'<div class="card [^"]*"><b>(\d+)</b><small>([^<]*)</small>', section))


def test_recap_summary_report_and_exit_code_agree_and_each_run_keeps_its_report(fleet):
    lab, flake = fleet.lab, fleet.flake
    first = deploy(fleet)
    assert first.rc == 0, first
    assert 'nixdeploy: 4 hosts: 0 failed, 4 changed, 0 unchanged' in first.stdout, first
    (first_file,) = own_reports(fleet)
    assert latest(fleet)['runs'][0]['id'] in first_file
    assert latest(fleet)['runs'][0]['mode'] == 'deploy'

    before = {name: lab.active(name) for name in ('h1', 'h2', 'h3', 'h4')}
    flake.set_all(version='2')
    flake.set_config('h3', behaviour='fail')          # its activation fails: rolls back
    try:
        with h4_nowhere(fleet):
            second = deploy(fleet)
    finally:
        flake.set_config('h3', behaviour='ok')

    # the hosts themselves: h1 and h2 on the new system, h3 back, h4 untouched
    for name in ('h3', 'h4'):
        assert lab.active(name) == before[name], name
    for name in ('h1', 'h2'):
        assert lab.active(name) != before[name], name

    # the PLAY RECAP: h3 failed; h4, which the login probe beside the
    # evaluation reached nowhere, is Ansible's unreachable
    rows = recap(second.stdout)
    failed = sorted(h for h, row in rows.items() if row.get('failed'))
    unreachable = sorted(h for h, row in rows.items() if row.get('unreachable'))
    assert failed == ['h3'] and unreachable == ['h4'], (rows, second)
    # ... the exit code: 4, Ansible's for a run with unreachable hosts (it
    # says so whatever else failed; 2 without them)
    assert second.rc == 4, second

    # ... the summary's closing line counts the same
    assert 'nixdeploy: 4 hosts: 1 failed (1 rolled back), 1 unreachable, 2 changed, ' \
        '0 unchanged' in second.stdout, second

    # ... and the report's totals and tiles
    report = latest(fleet)
    totals = report['totals']
    assert (totals['failed_total'], totals['rolled_back'], totals['unreachable']) == (1, 1, 1), \
        totals
    assert report['hosts']['h3']['status'] == 'rolled_back'
    h4 = report['hosts']['h4']
    # never connected: no connection lost (issue 93)
    assert h4['unreachable'] and not h4['connection_lost'] and h4['failed_phase'] == 'eval', h4
    # nothing was built for it: the run never got past its probe
    assert [p['name'] for p in h4['phases']] == ['eval'], h4['phases']
    with open(os.path.join(fleet.reports, 'nixdeploy-report.html')) as handle:
        page = handle.read()
    found = tiles(page)
    assert found['unreachable'] == 1, found
    assert found['changed'] == 2, found
    row = page.split('<tr data-host="h4">', 1)[1].split('</tr>', 1)[0]
    assert 'badge unreachable' in row, row

    # each failed host's message printed once by its phase; the rescue only
    # points at it
    # (an unreachable host runs no rescue: Ansible ends it)
    for rec in second.results(task=RESCUE):
        assert rec['result']['msg'] == 'the activate phase failed: see its error above', rec
    assert len(second.results(task=RESCUE)) == 1
    # and the role's maintainer comments are not what ansible-core shows
    # around a failed task (its Origin: the two lines above the task)
    shown = re.findall(r'Origin: [^\n]*\n\n(.*?)\^ column', second.stdout + second.stderr, re.S)
    assert len(shown) >= 2, second          # h3's phase and its rescue
    for context in shown:
        assert '#' not in context and '- name:' in context, context

    # two runs, two reports of their own; the latest name is the second run's
    own = own_reports(fleet)
    assert len(own) == 2 and own[0] == first_file, own
    with open(own[1]) as handle:
        assert json.load(handle) == report
    assert report['runs'][0]['id'] in own[1] and report['runs'][0]['state'] == 'done'


def test_the_rollback_says_rolled_back_once_and_keeps_its_report(fleet):
    """After the runs above h1 runs generation 2: the rollback playbook takes
    it back to 1, its summary says so once (the role prints no list of its
    own beside the callback), and its report is kept as a third, mode
    rollback."""
    lab = fleet.lab
    before = lab.active('h1')
    run = run_playbook('nixdeploy.fleet.rollback', fleet.inventory, fleet.rundir(),
                       args=['-l', 'h1'], env={'ANSIBLE_CALLBACKS_ENABLED': CALLBACKS,
                                               'NIXDEPLOY_REPORT_DIR': fleet.reports})
    assert run.rc == 0, run
    assert lab.active('h1') != before, run
    assert run.stdout.count('NIXDEPLOY SUMMARY') == 1, run
    summary = run.stdout.split('NIXDEPLOY SUMMARY', 1)[1].split('PLAY RECAP', 1)[0]
    lines = [line for line in summary.splitlines() if line.startswith('h1 ')]
    assert lines == ['h1             nixos         gen   2 -> 1   rolled back'], run
    assert 'switched' not in summary, run
    # the role's own list is skipped beside the callback
    assert 'rollback_summary_line' not in run.stdout and \
        run.result('nixdeploy.fleet.rollback : Show the rollback summary of this batch',
                   'h1')['status'] == 'skipped', run
    assert 'nixdeploy: 1 host: 0 failed, 1 changed, 0 unchanged' in run.stdout, run
    report = latest(fleet)
    assert report['runs'][0]['mode'] == 'rollback', report['runs']
    assert report['hosts']['h1']['summary'] == 'rolled back'
    assert len(own_reports(fleet)) == 3


def profile_generation(lab, name):
    """The generation the host's system profile is on, read on the host."""
    link = lab.run_in(name, ['readlink', '/nix/var/nix/profiles/system']).stdout.strip()
    assert re.match(r'^system-\d+-link$', link), (name, link)
    return int(link[len('system-'):-len('-link')])


def test_hosts_that_fail_before_activating_show_the_generation_they_are_on(fleet):
    """Issue 93: a host whose build fails was logged in to by the probe,
    which read its profile's generation: the summary line and the report
    show it (before and after alike: the run changed nothing there) instead
    of `- -> -`; the unreachable host beside it was never reached and keeps
    `-`; a healthy host switches from the generation it was on."""
    lab, flake = fleet.lab, fleet.flake
    if lab.run_in('h2', ['readlink', '/nix/var/nix/profiles/system'], check=False).returncode:
        # run alone (-k): the module's earlier tests deployed h1 and h2 once
        assert deploy(fleet, '-l', 'h1,h2').rc == 0
    on = dict((name, profile_generation(lab, name)) for name in ('h1', 'h2'))
    flake.set_all(version='3')
    flake.set_config('h2', broken_build=True)
    try:
        with h4_nowhere(fleet):
            run = deploy(fleet, '-l', 'h1,h2,h4')
    finally:
        flake.set_config('h2', broken_build=False)
    assert run.rc == 4, run
    summary = run.stdout.split('NIXDEPLOY SUMMARY', 1)[1].split('PLAY RECAP', 1)[0]
    lines = dict((line.split()[0], line) for line in summary.splitlines()
                 if line.split()[:1] in (['h1'], ['h2'], ['h4']))
    assert re.search(r'gen +%d -> %-3d FAILED at build' % (on['h2'], on['h2']), lines['h2']), \
        lines
    assert re.search(r'gen +- -> - +UNREACHABLE', lines['h4']), lines
    assert re.search(r'gen +%d -> %-3d switched' % (on['h1'], profile_generation(lab, 'h1')),
                     lines['h1']), lines
    hosts = latest(fleet)['hosts']
    assert hosts['h2']['generation']['before']['generation'] == on['h2'], hosts['h2']
    assert hosts['h2']['generation']['after']['generation'] == on['h2'], hosts['h2']
    assert hosts['h4']['generation']['before']['generation'] is None, hosts['h4']
    assert hosts['h1']['generation']['before']['generation'] == on['h1'], hosts['h1']
