"""The deploy report of a real fleet, run the way AWX runs it.

Six lab hosts of every persona (`rep` lab) are deployed by ansible-runner with
the callback nixdeploy.fleet.report enabled in env/envvars: the report lands in
the job's artifact folder beside the set_stats data the deploy role
publishes. The second deploy has one host whose activation fails (it rolls
back) and one whose build fails, beside four healthy hosts; its JSON is
validated against docs/report.schema.json and compared with what each host
runs, and its HTML page is rendered in a real headless Chromium.

As in AWX, the job's environment leaves ANSIBLE_HOST_KEY_CHECKING to
ansible-runner, which sets it to False; the inventory's group_vars turn
checking on (``ansible_host_key_checking: true``, which beats it), as users
must: the collection refuses a host whose key is not checked. (A job that
finds nothing to change: tests/integration/ee/test_awx_jobs.py.)
"""

import json
import os
import shutil

import jsonschema
import pytest

from tests.collection import REPO, set_stats_of
from tests.deploy_fleet import prepare, runner_private_dir, write_inventory
from tests.integration import chromium

ansible_runner = pytest.importorskip('ansible_runner')

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'nixos'},
         {'name': 'h3', 'persona': 'nixos'}, {'name': 'h4', 'persona': 'darwin'},
         {'name': 'h5', 'persona': 'home-manager'}, {'name': 'h6', 'persona': 'nix-on-droid'}]
NAMES = [h['name'] for h in HOSTS]
SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')


class Fleet:
    def __init__(self, lab, flake, private):
        self.lab, self.flake, self.private = lab, flake, private

    def deploy(self, ident, cmdline=None):
        """ansible-runner, as AWX runs a job template; returns (runner, artifact dir)."""
        runner = ansible_runner.run(private_data_dir=self.private, playbook='deploy.yml',
                                    ident=ident, cmdline=cmdline, quiet=True)
        return runner, os.path.join(self.private, 'artifacts', ident)


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('rep', HOSTS)
    base = str(tmp_path_factory.mktemp('report'))
    # a padding path per system, so a new version has a closure difference to show
    flake, secret = prepare(lab, os.path.join(base, 'flake'), configurations=dict(
        (name, {'platform': lab.hosts[name]['platform'], 'extra_paths': 1, 'extra_bytes': 4000})
        for name in NAMES))
    private = os.path.join(base, 'private')
    write_inventory(os.path.join(private, 'inventory'), lab, flake, secret)
    runner_private_dir(private, envvars={'ANSIBLE_CALLBACKS_ENABLED': 'nixdeploy.fleet.report',
                                         'ANSIBLE_FORKS': '25'})
    return Fleet(lab, flake, private)


def report_of(artifacts):
    with open(os.path.join(artifacts, 'nixdeploy-report.json')) as handle:
        report = json.load(handle)
    with open(SCHEMA) as handle:
        jsonschema.validate(report, json.load(handle))
    return report


def stdout(runner):
    return runner.stdout.read()[-6000:]


def test_first_deploy_reports_every_host(fleet):
    lab = fleet.lab
    runner, artifacts = fleet.deploy('first')
    assert runner.status == 'successful', stdout(runner)
    # as in AWX, the job ran with ansible-runner's own ANSIBLE_HOST_KEY_CHECKING
    # (False); the inventory's ansible_host_key_checking kept every key checked
    assert runner.config.env['ANSIBLE_HOST_KEY_CHECKING'] == 'False'
    copied = [e['event_data'] for e in runner.events if e.get('event') == 'runner_on_ok'
              and e['event_data']['task_action'].endswith('nix_copy_closure')]
    assert sorted(e['host'] for e in copied) == NAMES
    assert not any(e['res'].get('host_key_unchecked') for e in copied)
    assert set(runner.stats['changed']) == set(NAMES)
    assert not runner.stats['failures'] and not runner.stats['dark']
    report = report_of(artifacts)
    assert os.path.exists(os.path.join(artifacts, 'nixdeploy-report.html'))
    (run,) = report['runs']
    assert run['runner_ident'] == 'first' and run['limit'] is None
    assert run['flakes'][0]['nar_hash'].startswith('sha256-')
    assert sorted(report['hosts']) == NAMES
    platforms = {}
    for name in NAMES:
        rec = report['hosts'][name]
        platforms[name] = rec['platform']
        assert rec['status'] == 'changed', rec
        # what the report says each host runs is what the host runs
        assert rec['generation']['after']['path'] == lab.active(name) == rec['store_path'], name
        assert rec['copy']['paths_sent'] > 0 and rec['copy']['bytes_sent'] > 0, rec['copy']
        names = [p['name'] for p in rec['phases']]
        # in deploy order (other phases, such as keys, may come between)
        assert [n for n in names if n in ('eval', 'build', 'copy', 'activate')] == [
            'eval', 'build', 'copy', 'activate'], names
        for phase in rec['phases']:
            assert run['started'] <= phase['start'] <= phase['end'] <= run['ended'], phase
    assert platforms == {'h1': 'nixos', 'h2': 'nixos', 'h3': 'nixos', 'h4': 'darwin',
                         'h5': 'home-manager', 'h6': 'nix-on-droid'}
    # magic rollback hosts confirm inside the activate task
    assert 'confirm' in [p['name'] for p in report['hosts']['h1']['phases']]
    totals = report['totals']
    assert (totals['hosts'], totals['changed'], totals['failed']) == (6, 6, 0)
    # one evaluation of the batch, counted once (one Nix process per evaluator)
    (here,) = [rec for rec in report['hosts'].values() if rec['eval']['evaluated_here']]
    assert totals['nix_evaluations'] == here['eval']['nix_processes'] >= 1
    assert not any(rec['eval']['from_cache'] for rec in report['hosts'].values())
    stats = set_stats_of(artifacts)['nixdeploy']
    assert {h: s['outcome'] for h, s in stats.items()} == dict((n, 'switched') for n in NAMES)


# failed hosts in the report: test_new_user's mistakes run; runner and set_stats: the first test
@pytest.mark.here_only
def test_failed_and_rolled_back_hosts_first_in_json_and_page(fleet, tmp_path):
    lab, flake = fleet.lab, fleet.flake
    before = {name: lab.active(name) for name in NAMES}
    flake.set_all(version='2', extra_seed='v2')
    flake.set_config('h2', behaviour='fail')        # activation fails: rolls back
    flake.set_config('h3', broken_build=True)       # the builder exits 1
    try:
        runner, artifacts = fleet.deploy('second', cmdline='--diff')
    finally:
        flake.set_config('h2', behaviour='ok')
        flake.set_config('h3', broken_build=False)
    assert runner.status == 'failed', stdout(runner)
    report = report_of(artifacts)
    hosts = report['hosts']
    assert {name: rec['status'] for name, rec in hosts.items()} == {
        'h1': 'changed', 'h2': 'rolled_back', 'h3': 'failed', 'h4': 'changed',
        'h5': 'changed', 'h6': 'changed'}, report['totals']

    # every host, read on the host itself
    for name in ('h1', 'h4', 'h5', 'h6'):
        rec = hosts[name]
        assert rec['generation']['before']['path'] == before[name]
        assert rec['generation']['after']['path'] == lab.active(name) != before[name], name
        assert rec['generation']['after']['generation'] == \
            rec['generation']['before']['generation'] + 1, rec['generation']
        diff = rec['closure_diff']
        assert diff and 'lab-extra-v2' in diff['added'] and diff['lines'], (name, diff)
    rolled = hosts['h2']
    assert lab.active('h2') == before['h2'] == rolled['generation']['after']['path']
    assert rolled['failed'] and rolled['rolled_back'] and rolled['rollback_reason'], rolled
    assert rolled['failed_phase'] == 'activate'
    assert rolled['generation']['attempted']['path'] == rolled['store_path'] != before['h2']
    broken = hosts['h3']
    assert lab.active('h3') == before['h3']
    assert broken['failed_phase'] == 'build' and not broken['rolled_back']
    assert 'build' in broken['message'] and broken['message'] == broken['message'].strip()
    assert [p['name'] for p in broken['phases']] == ['eval', 'build']
    assert broken['phases'][-1]['outcome'] == 'failed'
    totals = report['totals']
    assert (totals['changed'], totals['failed'], totals['rolled_back']) == (4, 1, 1)
    assert totals['closure_diff']['added'] >= 4 and totals['bytes_sent'] > 0
    assert report['runs'][0]['diff_mode']

    # the set_stats artifacts AWX passes to the next workflow node say the same
    stats = set_stats_of(artifacts)['nixdeploy']
    assert stats['h2']['rolled_back'] and stats['h3']['failed'] and stats['h3']['phase'] == 'build'
    assert not stats['h1']['failed']

    # the page, in a real browser: every host, the failed ones first, no console errors
    if chromium.binary() is None:
        pytest.fail('Debian chromium is needed for this test (make deps installs it)')
    page = chromium.render(os.path.join(artifacts, 'nixdeploy-report.html'),
                           str(tmp_path / 'report.png'), height=1500)
    assert page.console == [], page.console
    assert os.path.getsize(page.screenshot) > 10000
    for name in NAMES:
        assert 'data-host="%s"' % name in page.dom, name
    attention = page.dom[page.dom.index('id="attention"'):page.dom.index('id="timeline"')]
    assert attention.index('data-host="h3"') < attention.index('data-host="h2"')
    timeline = page.dom[page.dom.index('id="timeline"'):page.dom.index('id="hosts"')]
    order = [timeline.index('data-host="%s"' % name) for name in NAMES]
    assert order[2] < order[1] < min(order[0], order[3], order[4], order[5]), order
    assert rolled['rollback_reason'] in attention or \
        rolled['rollback_reason'].replace('"', '&quot;') in attention
    # make docs/images/report.png from a real run: NIXDEPLOY_DOCS_SCREENSHOT=docs/images/report.png
    keep = os.environ.get('NIXDEPLOY_DOCS_SCREENSHOT')
    if keep:
        shutil.copy(page.screenshot, keep)
