"""AWX job slicing on a nine-host lab (`slc`): three slices of one inventory
run at the same time through ansible-runner, as AWX runs a sliced job (each
slice a job of its own, with an inventory of every third host and its own
private data dir). Each slice evaluates its hosts in one Nix process, every
host is deployed exactly once, and the three reports merge into one.
"""

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from tests.collection import BIN, REPO, ansible_env, set_stats_of
from tests.deploy_fleet import prepare, runner_private_dir, write_inventory

ansible_runner = pytest.importorskip('ansible_runner')

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

NAMES = ['h%d' % n for n in range(1, 10)]
SLICES = 3
SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')
MERGE = os.path.join(REPO, 'plugins', 'plugin_utils', 'report', '_report.py')


def slice_hosts(hosts, number, count=SLICES):
    """The hosts of slice ``number`` (1-based): AWX gives slice n every
    count-th host from the (n-1)-th on."""
    return sorted(hosts)[number - 1::count]


def slice_inventories(inventory_dir, base):
    """The synced inventory as AWX keeps it (hosts with their variables and
    groups), written out per slice as a static inventory."""
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', inventory_dir, '--list'],
                          env=ansible_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=True)
    listed = json.loads(proc.stdout)
    hostvars = listed['_meta']['hostvars']
    groups = dict((name, set(data.get('hosts') or ())) for name, data in listed.items()
                  if name not in ('_meta', 'all') and isinstance(data, dict))
    paths = []
    for number in range(1, SLICES + 1):
        hosts = slice_hosts(hostvars, number)
        inventory = {'all': {'hosts': dict((h, hostvars[h]) for h in hosts), 'children': dict(
            (group, {'hosts': dict((h, {}) for h in sorted(members & set(hosts)))})
            for group, members in groups.items() if members & set(hosts))}}
        path = os.path.join(base, 'slice%d.json' % number)
        with open(path, 'w') as handle:
            json.dump(inventory, handle)
        paths.append(path)
    return paths


def private_dir(base, number, inventory):
    """One slice job's private data dir: project, env, and its inventory."""
    return runner_private_dir(os.path.join(base, 'job%d' % number), inventory,
                              {'ANSIBLE_CALLBACKS_ENABLED': 'nixdeploy.fleet.report'})


@pytest.fixture(scope='module')
def slices(make_lab, tmp_path_factory):
    lab = make_lab('slc', [{'name': name, 'persona': 'nixos'} for name in NAMES])
    base = str(tmp_path_factory.mktemp('slices'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    jobs = [private_dir(base, number, path)
            for number, path in enumerate(slice_inventories(inventory, base), 1)]
    return lab, base, jobs


def test_three_concurrent_slices_deploy_every_host_once(slices):
    lab, base, jobs = slices
    # all three at once, each in its own thread and ansible-playbook process
    started = [ansible_runner.run_async(private_data_dir=job, playbook='deploy.yml',
                                        ident='slice%d' % number, quiet=True)
               for number, job in enumerate(jobs, 1)]
    runners = []
    for thread, runner in started:
        thread.join(600)
        runners.append(runner)
    for runner in runners:
        assert runner.status == 'successful', runner.stdout.read()[-4000:]

    with open(SCHEMA) as handle:
        schema = json.load(handle)
    reports, seen, evaluations = [], [], 0
    for number, job in enumerate(jobs, 1):
        path = os.path.join(job, 'artifacts', 'slice%d' % number, 'nixdeploy-report.json')
        with open(path) as handle:
            report = json.load(handle)
        jsonschema.validate(report, schema)
        reports.append(path)
        hosts = report['hosts']
        assert sorted(hosts) == slice_hosts(NAMES, number), (number, sorted(hosts))
        seen += sorted(hosts)
        # one evaluation of this slice's batch, counted once, on the host whose
        # answer completed it: one Nix process per evaluator (at most one per core)
        (here,) = [rec for rec in hosts.values() if rec['eval']['evaluated_here']]
        assert report['totals']['nix_evaluations'] == here['eval']['nix_processes'], number
        assert 1 <= here['eval']['nix_processes'] <= min(3, os.cpu_count() or 1), number
        evaluations += here['eval']['nix_processes']
        assert all(rec['eval']['batch_hosts'] == 3 for rec in hosts.values())
        assert all(rec['status'] == 'changed' for rec in hosts.values()), report['totals']
    assert sorted(seen) == NAMES

    # every host runs its system and was activated exactly once (under magic
    # rollback a NixOS switch is its test, then once confirmed its boot)
    for name in NAMES:
        history = lab.read(name, '/nix/var/lab/history-%s' % lab.state_key(name)) or ''
        goals = [line.split()[1] for line in history.splitlines() if line.strip()]
        assert goals == ['test', 'boot'], (name, history)

    # AWX hands the next workflow node the slices' artifacts merged key by
    # key: `nixdeploy` is the last slice's, the per-job keys keep all nine
    merged_artifacts = {}
    for number, job in enumerate(jobs, 1):
        merged_artifacts.update(set_stats_of(os.path.join(job, 'artifacts', 'slice%d' % number)))
    per_job = [v for k, v in merged_artifacts.items() if k.startswith('nixdeploy_job_')]
    assert len(per_job) == 3, sorted(merged_artifacts)
    assert sorted(h for records in per_job for h in records) == NAMES

    # the three reports merge into one of nine hosts and three runs
    out = os.path.join(base, 'merged')
    proc = subprocess.run([sys.executable, MERGE, 'merge', '-o', out] + reports,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(out, 'nixdeploy-report.json')) as handle:
        merged = json.load(handle)
    jsonschema.validate(merged, schema)
    assert sorted(merged['hosts']) == NAMES and merged['duplicates'] == []
    # the merge adds up each run's evaluations
    assert len(merged['runs']) == 3 and merged['totals']['nix_evaluations'] == evaluations
    assert merged['totals']['changed'] == 9
    assert sorted(r['runner_ident'] for r in merged['runs']) == ['slice1', 'slice2', 'slice3']
    for name in NAMES:
        assert merged['hosts'][name]['generation']['after']['path'] == lab.active(name), name
    page = open(os.path.join(out, 'nixdeploy-report.html')).read()
    assert all('data-host="%s"' % name in page for name in NAMES)
