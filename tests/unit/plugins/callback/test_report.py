"""The callback nixdeploy.fleet.report as Ansible loads it: its documented
options, and a real ansible-playbook run whose nix_eval tasks (real Nix, a
fixture flake, no target needed) it turns into a report. The lab tests
(tests/integration/test_report.py, test_slices.py) run whole deploys."""

import json
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml

from tests.collection import BIN, REPO, ansible_env, collections_path
from tests.lab.fixtures import FleetFlake

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.callback import report as plugin  # noqa: E402

SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')
PLAYBOOK = '''
- name: Evaluate only
  hosts: all
  gather_facts: false
  tasks:
    - name: Evaluate the system of each host
      nixdeploy.fleet.nix_eval:
        flake: "{{ nix_flake }}"
        attr: "{{ nix_attr }}"
        nix_options: {substituters: ""}
'''


def test_documented_options():
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    assert doc['name'] == 'report' and doc['type'] == 'aggregate'
    options = doc['options']
    assert options['report_dir']['env'] == [{'name': 'NIXDEPLOY_REPORT_DIR'}]
    assert options['report_dir']['ini'] == [{'section': 'callback_nixdeploy_report',
                                             'key': 'report_dir'}]
    for name in ('html', 'unique_names', 'flake_metadata', 'nix_bin'):
        assert options[name]['ini'][0]['section'] == 'callback_nixdeploy_report', name
    assert plugin.CallbackModule.CALLBACK_NEEDS_ENABLED


def test_ansible_doc_reads_the_plugin():
    proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', 'callback', '--json',
                           'nixdeploy.fleet.report'], env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)['nixdeploy.fleet.report']['doc']
    assert set(doc['options']) == {'report_dir', 'html', 'unique_names', 'flake_metadata',
                                   'nix_bin'}


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    """A flake with three hosts, one of which does not evaluate."""
    base = tmp_path_factory.mktemp('callback')
    hosts = {name: {'address': '127.0.0.1'} for name in ('good', 'broken', 'spare')}
    flake = FleetFlake.write(str(base / 'flake'), hosts,
                             configurations={'broken': {'broken_eval': True}})
    inventory = {'all': {'hosts': dict(
        (name, {'ansible_connection': 'local', 'nix_flake': flake.ref, 'nix_attr': flake.attr(name)})
        for name in hosts)}}
    (base / 'inventory.json').write_text(json.dumps(inventory))
    (base / 'play.yml').write_text(PLAYBOOK)
    return base, flake


def run(base, workdir, env, playbook='play.yml', extra=()):
    os.makedirs(str(workdir), exist_ok=True)
    full = ansible_env(dict(env, ANSIBLE_CALLBACKS_ENABLED='nixdeploy.fleet.report'))
    for name in list(full):
        # nothing of the caller's own report settings or runner job
        if name.startswith('NIXDEPLOY_REPORT_') or name == 'AWX_ISOLATED_DATA_DIR':
            if name not in env:
                del full[name]
    return subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', str(base / 'inventory.json'),
                           str(base / playbook), '-l', 'good,broken'] + list(extra),
                          cwd=str(workdir), env=full,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False)


def test_a_real_run_writes_a_valid_report(evaluated):
    base, flake = evaluated
    out = base / 'reports'
    proc = run(base, base / 'run1', {'NIXDEPLOY_REPORT_DIR': str(out),
                                     'NIXDEPLOY_REPORT_UNIQUE_NAMES': 'true'})
    assert proc.returncode != 0, proc.stdout    # the broken host fails the play
    report = json.loads((out / 'nixdeploy-report.json').read_text())
    with open(SCHEMA) as handle:
        jsonschema.validate(report, json.load(handle))
    (run_,) = report['runs']
    assert run_['limit'] == 'good,broken' and run_['playbooks'] == ['play.yml']
    # the same files under the run's own name as well
    assert json.loads((out / ('nixdeploy-report-%s.json' % run_['id'])).read_text()) == report
    assert (out / ('nixdeploy-report-%s.html' % run_['id'])).exists()
    assert sorted(report['hosts']) == ['broken', 'good']      # spare was not selected
    good, broken = report['hosts']['good'], report['hosts']['broken']
    assert good['status'] == 'incomplete' and good['store_path'].startswith('/nix/store/')
    assert [p['name'] for p in good['phases']] == ['eval']
    assert good['phases'][0]['start'] <= good['phases'][0]['end']
    assert broken['status'] == 'failed' and broken['failed_phase'] == 'eval'
    assert 'this_option_does_not_exist' in broken['message'], broken['message']
    # whichever host's task came first evaluated the batch; its Nix processes
    # (the failure isolated in a second one) are the run's
    (here,) = [rec for rec in (good, broken) if rec['eval']['evaluated_here']]
    assert report['totals']['nix_evaluations'] == here['eval']['nix_processes'] == 2
    # the flake's hash comes from what Nix pinned for the evaluation
    (meta,) = run_['flakes']
    assert meta['ref'] == flake.ref and meta['nar_hash'].startswith('sha256-'), meta
    assert meta['dirty'] is False and meta['revision'] is None     # a path: flake
    assert report['collection_version'] == yaml.safe_load(open(os.path.join(REPO, 'galaxy.yml')))[
        'version']
    assert 'nixdeploy report: %s' % (out / 'nixdeploy-report.json') in proc.stdout
    page = (out / 'nixdeploy-report.html').read_text()
    assert page.index('data-host="broken"') < page.index('data-host="good"')


def test_report_lands_in_ansible_runners_artifact_dir(evaluated):
    """ansible-runner (AWX's engine) exports the job's artifact folder; without
    report_dir the report goes there, else into the current folder."""
    base, _flake = evaluated
    artifacts = base / 'artifacts' / 'ident-1'
    os.makedirs(str(artifacts))
    env = {'AWX_ISOLATED_DATA_DIR': str(artifacts), 'NIXDEPLOY_REPORT_HTML': 'false'}
    run(base, base / 'run2', env)
    report = json.loads((artifacts / 'nixdeploy-report.json').read_text())
    assert report['runs'][0]['runner_ident'] == 'ident-1'
    assert not (artifacts / 'nixdeploy-report.html').exists()
    assert not (base / 'run2' / 'nixdeploy-report.json').exists()
    # the flake is named by what its evaluation pinned, with or without a
    # second look at its metadata
    run(base, base / 'run3', {'NIXDEPLOY_REPORT_FLAKE_METADATA': 'false'})
    report = json.loads((base / 'run3' / 'nixdeploy-report.json').read_text())
    (meta,) = report['runs'][0]['flakes']
    assert meta['nar_hash'].startswith('sha256-') and meta['evaluated'].startswith('path:'), meta


EARLY = '''
- name: Check the selection first
  hosts: all
  gather_facts: false
  tasks:
    - name: Stop before any host is deployed
      ansible.builtin.fail:
        msg: nothing selected
      run_once: true
''' + PLAYBOOK


def test_each_run_keeps_its_report_and_a_run_without_hosts_says_so(evaluated):
    """Issue 61: two runs, two reports of their own, the latest name the
    second's; a run that deploys no host replaces the latest with a report
    that says so (never an older run's result looking current)."""
    base, _flake = evaluated
    out = base / 'kept'
    env = {'NIXDEPLOY_REPORT_DIR': str(out), 'NIXDEPLOY_REPORT_HTML': 'false'}
    run(base, base / 'k1', env)
    run(base, base / 'k2', env, extra=['-e', 'awx_job_id=77'])
    own = sorted(p.name for p in out.iterdir() if p.name != 'nixdeploy-report.json')
    assert len(own) == 2 and 'nixdeploy-report-awx-77.json' in own, own
    latest = json.loads((out / 'nixdeploy-report.json').read_text())
    assert latest['runs'][0]['id'] == 'awx-77' and latest['runs'][0]['state'] == 'done'
    assert latest == json.loads((out / 'nixdeploy-report-awx-77.json').read_text())
    (base / 'early.yml').write_text(EARLY)
    proc = run(base, base / 'k3', env, playbook='early.yml')
    assert proc.returncode != 0 and 'nixdeploy report: no host deployed' in proc.stdout, proc.stdout
    latest = json.loads((out / 'nixdeploy-report.json').read_text())
    with open(SCHEMA) as handle:
        jsonschema.validate(latest, json.load(handle))
    assert latest['runs'][0]['state'] == 'no_hosts' and latest['hosts'] == {}, latest
    assert latest['runs'][0]['playbooks'] == ['early.yml']
    # the runs' own reports stay; none is written for a run without hosts
    assert len([p for p in out.iterdir() if p.name != 'nixdeploy-report.json']) == 2
