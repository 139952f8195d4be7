"""A fleet on real networks, deployed in ONE run (`ansible-playbook
nixdeploy.fleet.deploy`, lab `net`, real ssh and Nix, magic rollback on):

- ``h1``: a plain host;
- ``jump``: a plain host that is also the only way to the inner subnet;
- ``b1``, ``b2``: only on that subnet, reached through ``jump`` (ProxyJump in
  ``ansible_ssh_common_args``, with host keys checked for both hops);
- ``b3``: behind ``jump`` too, but the ssh config it is given knows no key
  for the jump host: it is never reached (host key checking holds for the
  jump as for the target) until that is mended;
- ``v6``: IPv6 only, its address given in brackets in the flake;
- ``m1``: its first address (``targetHosts`` in the flake) is dead;
- ``mv``: its new system moves it to its second address during the
  activation, so its confirmation must find it there;
- ``off1``: switched off, as a phone that is off.

The first run (``nix_unreachable: skip``, the default) deploys every
reachable host and confirms it over the path it was reached by; ``off1`` is
Ansible's unreachable in the recap, the summary and the report, nothing of
its system was built on the controller or copied to it, and the retry file
names it and ``b3``. The second run (``nix_unreachable: fail``, a new
version) fails naming both after every other host switched; then, both
mended, a run limited by the retry file deploys them alone, and the file goes.
"""

import json
import os
import re
import subprocess

import pytest

from tests.collection import BIN, ansible_env, run_playbook
from tests.deploy_fleet import DeployFleet, prepare, write_host_vars, write_inventory
from tests.lab.lab import sh

pytestmark = pytest.mark.lab

EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
HOSTS = [{'name': 'h1'}, {'name': 'jump', 'bastion': True},
         {'name': 'b1', 'behind': 'jump'}, {'name': 'b2', 'behind': 'jump'},
         {'name': 'b3', 'behind': 'jump'},
         {'name': 'v6', 'ipv6_only': True}, {'name': 'm1', 'dead_first': True},
         {'name': 'mv', 'listen_any': True}, {'name': 'off1'}]
REACHABLE = ('h1', 'jump', 'b1', 'b2', 'v6', 'm1', 'mv')
UNREACHABLE = ('b3', 'off1')
RETRY_FILE = 'nixdeploy-unreachable.txt'
# where mv's new system moves it: an address of the lab bridge no host has
MOVED_TO = 250
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes']


def recap(stdout):
    """{host: {ok: n, changed: n, unreachable: n, failed: n, ...}} of the PLAY RECAP."""
    found = {}
    for line in stdout.split('PLAY RECAP')[-1].splitlines():
        match = re.match(r'^(\S+)\s+:\s+(.*)$', line.strip())
        if match:
            found[match.group(1)] = dict((k, int(v)) for k, v in
                                         re.findall(r'(\w+)=(\d+)', match.group(2)))
    return found


def controller_has(path):
    return subprocess.run(['nix-store', '--check-validity', path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False).returncode == 0


@pytest.fixture(scope='module')
def net_fleet(make_lab, tmp_path_factory):
    lab = make_lab('net', HOSTS)
    base = str(tmp_path_factory.mktemp('net'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    subnet = lab.host('h1')['address'].rsplit('.', 1)[0]
    moved = '%s.%d' % (subnet, MOVED_TO)
    hosts = flake.data['hosts']
    # what users write in the flake's inventory: several addresses, and an
    # IPv6 literal in brackets
    dead_first = lab.ansible_vars('m1')['nix_target_hosts']
    hosts['m1']['extra'] = {'targetHost': dead_first[0], 'targetHosts': dead_first}
    hosts['mv']['extra'] = {'targetHosts': [lab.host('mv')['address'], moved]}
    hosts['v6']['extra'] = {'targetHost': '[%s]' % lab.host('v6')['address']}
    flake.save()
    # mv's new system takes its second address and drops its first, as a
    # host whose LAN address changes with its configuration
    # (the old one goes first: Linux drops an address's secondaries with it)
    flake.set_config(flake.config_of('mv'), on_activate=(
        'ip addr del %s/24 dev eth0 2>/dev/null; ip addr add %s/24 dev eth0 2>/dev/null; true'
        % (lab.host('mv')['address'], moved)))
    # nothing known for mv's new address: its key, known at its first
    # address, is the one that must answer there (HostKeyAlias)
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    # off1 trusts the signing key like the others, then goes off
    lab.switch_off('off1')
    fleet = DeployFleet(lab, flake, inventory, base)
    # the jump host as Ansible users give it: in ansible_ssh_common_args
    for name in ('b1', 'b2', 'b3'):
        write_host_vars(inventory, name, {
            'ansible_ssh_common_args': lab.ansible_vars(name)['ansible_ssh_common_args']})
    # b3's ssh config: the lab's, with an empty known_hosts for the jump host
    unknown = os.path.join(base, 'known_hosts.empty')
    open(unknown, 'w').close()
    with open(lab.ssh_config) as handle:
        config = handle.read().replace(lab.known_hosts, unknown)
    unknown_config = os.path.join(base, 'ssh_config.jump-unknown')
    with open(unknown_config, 'w') as handle:
        handle.write(config)
    write_host_vars(inventory, 'b3', {'ansible_ssh_common_args': lab.ansible_vars('b3')[
        'ansible_ssh_common_args'].replace(lab.ssh_config, unknown_config)})
    fleet.moved = moved
    yield fleet
    # mv back where the lab knows it (its namespace stays the lab's to remove)
    sh(['ip', '-n', lab.host('mv')['netns'], 'addr', 'add', '%s/24' % lab.host('mv')['address'],
        'dev', 'eth0'], check=False)


def test_a_mixed_network_fleet_deploys_and_the_host_that_is_off_is_unreachable(net_fleet):
    lab, flake = net_fleet.lab, net_fleet.flake
    flake.set_all(version='n1')
    env = {'ANSIBLE_CALLBACKS_ENABLED': 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report'}
    # the cascade: hosts behind the jump get their closure from the
    # controller (no nix_peer_host says where the others reach them)
    run = net_fleet.deploy('-e', 'nix_copy_mode=cascade', env=env)
    rundir = os.path.join(net_fleet.workdir, 'run%d' % net_fleet.runs)
    # Ansible's exit code for unreachable hosts, nothing failed
    assert run.rc == 4, run
    counts = recap(run.stdout)
    for name in UNREACHABLE:
        assert counts[name]['unreachable'] == 1 and counts[name]['failed'] == 0, (name, counts)
    for name in REACHABLE:
        assert counts[name]['unreachable'] == 0 and counts[name]['failed'] == 0, (name, counts)
    # the custom stat (AWX's artifacts) holds every host, the unreachable ones too
    outcomes = run.outcomes()
    for name in UNREACHABLE:
        assert outcomes[name].startswith('UNREACHABLE: %s is unreachable at ' % name), outcomes
    for name in REACHABLE:
        assert outcomes[name] == 'switched', (name, outcomes)
        # magic rollback on: each was confirmed, and kept its new system
        assert lab.active(name) == run.summary()[name]['path'], name
    # the probe: m1 and mv at their second address, the others at their first
    evaluated = dict((name, run.result(EVAL, name)['result']) for name in REACHABLE)
    assert evaluated['m1']['address'] == lab.host('m1')['address'], evaluated['m1']
    assert evaluated['m1']['probe']['tried'][0]['reason'] == 'no route', evaluated['m1']
    for name in ('h1', 'jump', 'b1', 'b2', 'v6'):
        assert evaluated[name]['address'] == lab.host(name)['address'], evaluated[name]
        assert evaluated[name]['probe']['tried'] == [], evaluated[name]
    # mv moved during its activation and was confirmed at its new address
    shown = lab.run_in('mv', ['ip', '-o', 'addr', 'show', 'dev', 'eth0']).stdout
    assert net_fleet.moved + '/24' in shown and lab.host('mv')['address'] + '/' not in shown
    # off1: unreachable, named with why, nothing built or copied for it
    off = run.result(EVAL, 'off1')
    assert off['status'] == 'unreachable', off
    assert off['result']['msg'].startswith('off1: off1 is unreachable at %s: no route'
                                           % lab.host('off1')['address']), off['result']['msg']
    assert not controller_has(off['result']['out_path'])
    assert 'UNREACHABLE: ' in run.stdout and 'to try again: -l @%s' % RETRY_FILE in run.stdout
    with open(os.path.join(rundir, RETRY_FILE)) as handle:
        assert handle.read() == 'b3\noff1\n'
    # b3: the jump host's key is unknown to the ssh config it was given
    b3 = run.result(EVAL, 'b3')['result']
    # (a failed or unreachable result keeps the batch's figures under details)
    assert b3['details']['probe']['tried'][0]['reason'] == 'jump failed (host key)', b3
    assert 'jump failed (host key)' in b3['msg'] and 'play_hosts' not in b3, b3

    with open(os.path.join(rundir, 'nixdeploy-report.json')) as handle:
        report = json.load(handle)
    # the report's schema: a failed host that Ansible could not reach
    off_record = report['hosts']['off1']
    assert off_record['unreachable'] and off_record['summary'].startswith('UNREACHABLE: off1 is'), \
        off_record
    assert {report['hosts'][n]['status'] for n in REACHABLE} == {'changed'}
    assert report['totals']['unreachable'] == 2
    lab.switch_on('off1')
    assert not lab.store_has('off1', off['result']['out_path'])
    lab.switch_off('off1')


def test_with_nix_unreachable_fail_the_run_fails_naming_the_host_after_the_others(net_fleet):
    lab, flake = net_fleet.lab, net_fleet.flake
    flake.set_all(version='n2')
    run = net_fleet.deploy('-e', 'nix_unreachable=fail')
    assert run.rc == 2, run
    counts = recap(run.stdout)
    summary = run.summary()
    for name in UNREACHABLE:
        assert counts[name]['failed'] == 1 and counts[name]['unreachable'] == 0, counts
        assert summary[name]['failed'] and summary[name]['phase'] == 'eval', summary[name]
        assert '%s is unreachable at' % name in summary[name]['msg'], summary[name]
    for name in REACHABLE:
        assert summary[name]['outcome'] == 'switched', (name, summary[name])
        assert lab.active(name) == summary[name]['path'], name

    # off1 back on, b3 given the lab's ssh config: the retry file limits the
    # next run to them
    rundir = os.path.join(net_fleet.workdir, 'run%d' % net_fleet.runs)
    lab.switch_on('off1')
    write_host_vars(net_fleet.inventory, 'b3', {
        'ansible_ssh_common_args': lab.ansible_vars('b3')['ansible_ssh_common_args']})
    retry = os.path.join(rundir, RETRY_FILE)
    with open(retry) as handle:
        assert handle.read() == 'b3\noff1\n'
    # in the same folder, as a user runs it: the file goes once they are reached
    again = run_playbook(net_fleet.PLAYBOOK, net_fleet.inventory, rundir,
                         args=['-l', '@%s' % RETRY_FILE])
    assert again.rc == 0, again
    assert again.outcomes() == {'b3': 'switched', 'off1': 'switched'}
    for name in UNREACHABLE:
        assert lab.active(name) == again.summary()[name]['path'], name
    assert not os.path.exists(retry)


def play_order(fleet):
    """The hosts in the order the deploy play runs them, which cuts its
    serial batches: the inventory's (``ansible all --list-hosts`` says it;
    ansible-playbook --list-hosts prints them in no set order)."""
    proc = subprocess.run([os.path.join(BIN, 'ansible'), '-i', fleet.inventory, 'all',
                           '--list-hosts'], cwd=fleet.workdir, env=ansible_env(),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stdout.split('hosts (', 1)[1].splitlines()[1:]
            if line.strip()]


def test_an_unreachable_host_counts_toward_nix_max_fail_percentage(net_fleet):
    """Serial batches of 3: one host of the first batch is off (skipped as
    unreachable, the default), 1 of 3 is more than nix_max_fail_percentage
    30, so the second batch never starts; the first batch's others switch."""
    lab, flake = net_fleet.lab, net_fleet.flake
    # b3 given the lab's ssh config (as the test before leaves it)
    write_host_vars(net_fleet.inventory, 'b3', {
        'ansible_ssh_common_args': lab.ansible_vars('b3')['ansible_ssh_common_args']})
    order = play_order(net_fleet)
    # a plain host early in the play's order is the one that goes off
    victim = [h for h in order if h in ('h1', 'v6', 'm1', 'off1', 'b1', 'b2')][0]
    at = order.index(victim)
    hosts = (order[max(0, at - 2):at] + [victim] + order[at + 1:])[:5]
    first, second = hosts[:3], hosts[3:]
    assert victim in first and len(second) == 2, (order, hosts)
    before = dict((name, lab.active(name)) for name in second)
    flake.set_all(version='n3')
    lab.switch_off(victim)
    try:
        run = net_fleet.deploy('-e', '{"nix_serial": 3, "nix_max_fail_percentage": 30}',
                               '-l', ','.join(hosts))
    finally:
        lab.switch_on(victim)
    assert run.rc != 0, run
    counts = recap(run.stdout)
    assert counts[victim]['unreachable'] == 1, counts
    outcomes = run.outcomes()
    for name in first:
        if name != victim:
            assert outcomes[name] == 'switched', (name, outcomes)
    stop = [ln for ln in run.stdout.splitlines() if 'no further batch starts' in ln]
    assert stop and '1 of 3 hosts of batch 1 failed (%s)' % victim in stop[0], run
    # the second batch: evaluated by nobody, its systems as they were
    assert not [r for r in run.results(EVAL) if r['host'] in second
                and not r['result'].get('stopped')], run
    for name in second:
        assert lab.active(name) == before[name], name
