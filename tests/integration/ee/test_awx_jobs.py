"""One fleet in one AWX job, in the execution environment: two NixOS hosts
beside a nix-darwin, a nix-on-droid and a home-manager persona, one of them
(a2) failing its activation, then one (a1) switched off.

Jobs run as jobs.py describes: ``ansible-runner transmit`` | the EE as a
container group's pod, ``ansible-runner worker`` as UID 1000650000 in group 0 |
``ansible-runner process``, the project copied as AWX copies it, the inventory
AWX stored. Each job checks what AWX shows of it: its status, the
``nixdeploy`` custom stat in the artifact data of the playbook_on_stats event
(what a workflow's next node receives) and the report in the job's artifacts
folder, with the AWX variables AWX passed; and, on the hosts themselves, what
each runs. Last, the template "nix status" as a *Check* job with fact
storage on, on the same fleet: each host's class in the job's fact cache.
"""

import json
import os
import subprocess

import pytest

from tests.collection import set_stats_of
from tests.fact_cache import cached_facts

from tests.integration.ee.jobs import (INVENTORY, NAMES, STATUS_PLAYBOOK, STATUS_TEMPLATE,
                                       TEMPLATE)

pytestmark = pytest.mark.lab


def report_of(artifacts):
    with open(os.path.join(artifacts, 'nixdeploy-report.json')) as handle:
        return json.load(handle)


def changed_hosts(job):
    """Hosts a task changed, besides the build: the job's store is the
    container's own, new in every job, so every job builds (on the controller)
    and Ansible's recap counts that as a change of each host."""
    return sorted({e['event_data']['host'] for e in job.events
                   if e.get('event') == 'runner_on_ok' and e['event_data']['res'].get('changed')
                   and not e['event_data']['task'].startswith('Build the system')})


def test_inventory_update_reads_the_flake_in_the_ee(awx):
    # what AWX stored, as the export printed it: every ordinary string from the
    # flake is a plain JSON string (AWX's API, UI and smart inventories see
    # values, not {"__ansible_unsafe": ...}); only a value holding template
    # syntax keeps the marker (test_inventory_export.py), and this flake has none
    assert '__ansible_unsafe' not in json.dumps(awx.inventory)
    inventory = awx.inventory
    hostvars = inventory['_meta']['hostvars']
    for name, host in hostvars.items():
        assert isinstance(host['ansible_host'], str) and host['ansible_host'].startswith('10.'), host
        assert isinstance(host['nix_platform'], str) and isinstance(host['nix_system'], str), host
        assert all(isinstance(tag, str) for tag in host['nix_tags']), (name, host['nix_tags'])
    assert sorted(hostvars) == NAMES
    # the flake as the EE saw it: AWX's copy of the project, without .git, at
    # /runner/project, which Nix reads as a path: flake
    assert {v['nix_flake'] for v in hostvars.values()} == {'path:/runner/project'}
    assert sorted(inventory['vps']['hosts']) == ['a1', 'a2']
    assert inventory['darwin']['vars'] == {'ansible_become': True}
    assert 'UserKnownHostsFile=known_hosts' in inventory['all']['vars']['ansible_ssh_common_args']
    # what turns host key checking on under ansible-runner's ANSIBLE_HOST_KEY_CHECKING=False
    assert inventory['all']['vars']['ansible_host_key_checking'] is True
    print('inventory update (transmit | pod | process): %.1f s' % awx.inventory_seconds)


def run_script(path):
    return json.loads(subprocess.run([path], stdout=subprocess.PIPE, check=True).stdout)


def test_mixed_fleet_job_with_a_failing_host_then_fixed_then_nothing_to_do(awx):
    lab, flake = awx.lab, awx.flake

    # a first job: every host on its system
    flake.set_all(version='a1')
    awx.commit('version a1')
    job = awx.job()
    assert job.status == 'successful', job.tail()
    assert job.rc == 0
    first = set_stats_of(job.artifacts)['nixdeploy']
    assert {h: r['outcome'] for h, r in first.items()} == dict.fromkeys(NAMES, 'switched'), first
    # AWX put ANSIBLE_HOST_KEY_CHECKING=False into the job's environment; the
    # inventory's ansible_host_key_checking turned it on: every key was checked
    assert job.env['ANSIBLE_HOST_KEY_CHECKING'] == 'False'
    assert not any(r['host_key_unchecked'] for r in first.values()), first
    for name in NAMES:
        assert lab.active(name) == first[name]['path'], name
    # the job's inventory script prints what the update stored, verbatim
    printed = run_script(os.path.join(job.private, 'inventory', 'hosts'))
    for name, hostvars in printed['_meta']['hostvars'].items():
        assert hostvars.pop('remote_tower_id') == hostvars.pop('remote_host_id') \
            == INVENTORY['host_ids'][name]
        assert hostvars.pop('remote_tower_enabled') == hostvars.pop('remote_host_enabled') == 'true'
    assert printed == awx.inventory
    # the report names the job as AWX passed it (env/extravars, !unsafe strings)
    report = report_of(job.artifacts)
    run = report['runs'][0]
    assert run['id'] == 'awx-%d' % awx.job_id
    assert run['awx'] == {'awx_job_id': awx.job_id, 'awx_job_template_name': TEMPLATE['name'],
                          'awx_project_revision': awx.revision, 'awx_job_launch_type': 'manual'}, run
    assert run['runner_ident'] == str(awx.job_id)
    # AWX's copy has no .git: Nix reads a path: flake, which has no revision
    assert [(f['ref'], f['revision']) for f in run['flakes']] == [('path:/runner/project', None)]
    assert sorted(report['hosts']) == NAMES

    # a new version; a2's activation fails: the job fails, a2 rolls back to
    # what it ran, every other host switches
    flake.set_all(version='a2')
    flake.set_config('a2', behaviour='fail')
    awx.commit('version a2, a2 broken')
    job = awx.job()
    assert job.status == 'failed', job.tail()
    assert job.rc != 0
    stats = set_stats_of(job.artifacts)['nixdeploy']
    assert sorted(stats) == NAMES
    assert stats['a2']['failed'] and stats['a2']['rolled_back'], stats['a2']
    assert stats['a2']['phase'] == 'activate', stats['a2']
    assert lab.active('a2') == first['a2']['path']
    for name in NAMES:
        if name == 'a2':
            continue
        assert not stats[name]['failed'] and stats[name]['outcome'] == 'switched', stats[name]
        assert lab.active(name) == stats[name]['path'] != first[name]['path'], name
    report = report_of(job.artifacts)
    assert report['hosts']['a2']['status'] == 'rolled_back'
    assert {n: report['hosts'][n]['status'] for n in NAMES if n != 'a2'} == \
        dict.fromkeys([n for n in NAMES if n != 'a2'], 'changed')
    assert report['runs'][0]['awx']['awx_project_revision'] == awx.revision
    assert job.stats['failures'].get('a2')

    # a2 fixed: the next job succeeds and changes a2 alone
    flake.set_config('a2', behaviour='ok')
    awx.commit('a2 fixed')
    job = awx.job()
    assert job.status == 'successful', job.tail()
    assert changed_hosts(job) == ['a2'], job.stats
    fixed = set_stats_of(job.artifacts)['nixdeploy']
    assert fixed['a2']['outcome'] == 'switched' and lab.active('a2') == fixed['a2']['path']

    # the same job again changes nothing
    job = awx.job()
    assert job.status == 'successful', job.tail()
    assert changed_hosts(job) == [], job.stats
    again = set_stats_of(job.artifacts)['nixdeploy']
    assert {h: r['outcome'] for h, r in again.items()} == dict.fromkeys(NAMES, 'unchanged')
    assert report_of(job.artifacts)['totals']['changed'] == 0
    for name in NAMES:
        assert lab.active(name) == again[name]['path'], name
    print('job seconds (transmit | pod | process), the last one: %.1f' % job.seconds)

    # a1 is off: the job's login probe finds it, AWX's host summary counts it
    # unreachable (not failed), nothing is done to it, the others are unchanged
    lab.switch_off('a1')
    try:
        job = awx.job()
    finally:
        lab.switch_on('a1')
    assert job.status == 'failed' and job.rc == 4, job.tail()
    assert job.stats['dark'].get('a1') and not job.stats['failures'].get('a1'), job.stats
    assert not any(job.stats['dark'].get(n) or job.stats['failures'].get(n)
                   for n in NAMES if n != 'a1'), job.stats
    report = report_of(job.artifacts)
    assert report['hosts']['a1']['unreachable'], report['hosts']['a1']
    assert report['totals']['unreachable'] == 1
    assert {report['hosts'][n]['status'] for n in NAMES if n != 'a1'} == {'unchanged'}
    assert lab.active('a1') == again['a1']['path']


def test_status_check_job_keeps_each_hosts_class_in_the_job_fact_cache(deployed_awx):
    awx, lab, flake = deployed_awx, deployed_awx.lab, deployed_awx.flake
    # status.yml beside deploy.yml, as docs/awx-semaphore.md's "nix status";
    # a commit for a3 that no job deploys: a3 is pending, the others in sync
    with open(os.path.join(awx.upstream, 'status.yml'), 'w') as handle:
        handle.write(STATUS_PLAYBOOK)
    config = flake.config_of('a3')
    before = dict(flake.data['configurations'][config])
    flake.set_config(config, version='%s-next' % before['version'])
    awx.commit('status.yml; a new version for a3, not deployed')
    try:
        job = awx.job(template=STATUS_TEMPLATE)
    finally:
        flake.set_config(config, **before)
        awx.commit('a3 back to what it runs')
    assert job.status == 'successful' and job.rc == 0, job.tail()
    folder = os.path.join(job.artifacts, 'fact_cache')
    kept = dict((name, (cached_facts(folder, name) or {}).get('nixdeploy_status'))
                for name in NAMES)
    assert dict((name, (fact or {}).get('class')) for name, fact in kept.items()) == \
        dict(dict.fromkeys(NAMES, 'in_sync'), a3='pending'), kept
    for name, fact in kept.items():
        assert fact['current'] == lab.active(name), (name, fact)
        assert fact['desired'] == fact['current'] or name == 'a3', (name, fact)
        assert fact['last_deploy']['state'] in ('done', 'unchanged'), (name, fact)
    # the job's store is the container's own: a3's new system is not in it
    assert kept['a3']['closure_diff'] is None and kept['a1']['closure_diff'] == \
        {'paths_added': 0, 'paths_removed': 0, 'size_change_bytes': 0}, kept
    # a Check job with fact storage: ansible-playbook --check, the jsonfile cache
    assert 'ansible-playbook --check -u root ' in job.command[-1], job.command
    assert job.env['ANSIBLE_CACHE_PLUGIN'] == 'jsonfile', job.env
