"""One fleet in one AWX job, in the execution environment: two NixOS hosts
beside a nix-darwin, a nix-on-droid and a home-manager persona, one of them
(a2) failing its activation.

Jobs run as conftest.py describes (ansible-runner, podman, the EE image, UID
1000650000 in group 0, --net=host). Each job checks what AWX shows of it: its
status, the ``nixdeploy`` custom stat in the artifact data of the
playbook_on_stats event (what a workflow's next node receives) and the report
in the job's artifacts folder; and, on the hosts themselves, what each runs.
"""

import json
import os

import pytest

from tests.collection import set_stats_of

from tests.integration.ee.jobs import JOB_UID, NAMES

pytestmark = pytest.mark.lab


def stdout(runner):
    return runner.stdout.read()[-6000:]


def report_of(artifacts):
    with open(os.path.join(artifacts, 'nixdeploy-report.json')) as handle:
        return json.load(handle)


def changed_hosts(runner):
    """Hosts a task changed, besides the build: the job's store is the
    container's own, new in every job, so every job builds (on the controller)
    and Ansible's recap counts that as a change of each host."""
    return sorted({e['event_data']['host'] for e in runner.events
                   if e.get('event') == 'runner_on_ok' and e['event_data']['res'].get('changed')
                   and not e['event_data']['task'].startswith('Build the system')})


def test_inventory_update_reads_the_flake_in_the_ee(awx):
    inventory = awx.inventory
    hostvars = inventory['_meta']['hostvars']
    assert sorted(hostvars) == NAMES
    # the flake as the EE saw it: the project's git checkout at /runner/project
    assert {v['nix_flake'] for v in hostvars.values()} == {'git+file:///runner/project'}
    assert sorted(inventory['vps']['hosts']) == ['a1', 'a2']
    assert inventory['darwin']['vars'] == {'ansible_become': True}
    assert 'UserKnownHostsFile=known_hosts' in inventory['all']['vars']['ansible_ssh_common_args']
    # what turns host key checking on under ansible-runner's ANSIBLE_HOST_KEY_CHECKING=False
    assert inventory['all']['vars']['ansible_host_key_checking'] is True


def test_mixed_fleet_job_with_a_failing_host_then_fixed_then_nothing_to_do(awx):
    lab, flake = awx.lab, awx.flake

    # a first job: every host on its system
    flake.set_all(version='a1')
    awx.commit('version a1')
    runner, artifacts = awx.job()
    assert runner.status == 'successful', stdout(runner)
    first = set_stats_of(artifacts)['nixdeploy']
    assert {h: r['outcome'] for h, r in first.items()} == dict.fromkeys(NAMES, 'switched'), first
    # ansible-runner turned Ansible's host key checking off for the job; the
    # inventory's ansible_host_key_checking turned it on: every key was checked
    assert runner.config.env['ANSIBLE_HOST_KEY_CHECKING'] == 'False'
    assert not any(r['host_key_unchecked'] for r in first.values()), first
    for name in NAMES:
        assert lab.active(name) == first[name]['path'], name
    report = report_of(artifacts)
    assert report['runs'][0]['id'] == 'awx-%d' % awx.job_id
    # written in the container by the job's arbitrary UID
    assert os.stat(os.path.join(artifacts, 'nixdeploy-report.json')).st_uid == JOB_UID
    assert sorted(report['hosts']) == NAMES

    # a new version; a2's activation fails: the job fails, a2 rolls back to
    # what it ran, every other host switches
    flake.set_all(version='a2')
    flake.set_config('a2', behaviour='fail')
    awx.commit('version a2, a2 broken')
    runner, artifacts = awx.job()
    assert runner.status == 'failed', stdout(runner)
    assert runner.rc != 0
    stats = set_stats_of(artifacts)['nixdeploy']
    assert sorted(stats) == NAMES
    assert stats['a2']['failed'] and stats['a2']['rolled_back'], stats['a2']
    assert stats['a2']['phase'] == 'activate', stats['a2']
    assert lab.active('a2') == first['a2']['path']
    for name in NAMES:
        if name == 'a2':
            continue
        assert not stats[name]['failed'] and stats[name]['outcome'] == 'switched', stats[name]
        assert lab.active(name) == stats[name]['path'] != first[name]['path'], name
    report = report_of(artifacts)
    assert report['hosts']['a2']['status'] == 'rolled_back'
    assert {n: report['hosts'][n]['status'] for n in NAMES if n != 'a2'} == \
        dict.fromkeys([n for n in NAMES if n != 'a2'], 'changed')
    assert report['runs'][0]['runner_ident'] == os.path.basename(artifacts)
    assert runner.stats['failures'].get('a2')

    # a2 fixed: the next job succeeds and changes a2 alone
    flake.set_config('a2', behaviour='ok')
    awx.commit('a2 fixed')
    runner, artifacts = awx.job()
    assert runner.status == 'successful', stdout(runner)
    assert changed_hosts(runner) == ['a2'], runner.stats
    fixed = set_stats_of(artifacts)['nixdeploy']
    assert fixed['a2']['outcome'] == 'switched' and lab.active('a2') == fixed['a2']['path']

    # the same job again changes nothing
    runner, artifacts = awx.job()
    assert runner.status == 'successful', stdout(runner)
    assert changed_hosts(runner) == [], runner.stats
    again = set_stats_of(artifacts)['nixdeploy']
    assert {h: r['outcome'] for h, r in again.items()} == dict.fromkeys(NAMES, 'unchanged')
    assert report_of(artifacts)['totals']['changed'] == 0
    for name in NAMES:
        assert lab.active(name) == again[name]['path'], name
