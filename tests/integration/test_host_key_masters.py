"""An ssh master opened with host key checking off is never ridden once a
later play of the same job turns checking on (issue 43), on the `hkm` lab.

ssh checks a host's key when a master logs in, never when a client rides
that master. Ansible's ssh names its master by host, port and user only, so
the master that a first play opened with ``StrictHostKeyChecking=no`` and a
``/dev/null`` known_hosts (as a user might, for a quick look at new hosts)
carried the deploy of the next play, whose checking is on, to a host whose
key does not match known_hosts: its probe, its ``nix copy`` and its
activation all rode it. Here m2's line in known_hosts holds another key:

- play 1 (checking off, ControlPersist) reaches both hosts and leaves them
  a master each;
- play 2, the deploy playbook with checking on: m2 is refused at its login
  probe with the host-key message and nothing reaches it (no GC root, no
  store path, no build, no activation); m1 beside it deploys, its copy and activation
  sharing one login (the collection's own master), plus the confirmation's.
"""

import glob
import json
import os
import subprocess

import pytest

from tests.collection import run_playbook
from tests.deploy_fleet import lab_group_vars, prepare, write_inventory

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'm1', 'persona': 'nixos'}, {'name': 'm2', 'persona': 'nixos'}]
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
LOOK = 'Look at the new hosts'
# ssh_args as this repository's ansible.cfg has them: one master per host that
# outlives the first play (no -C: the copy may ride a master that does not compress)
SSH_ARGS = '-o ControlMaster=auto -o ControlPersist=300s -o ServerAliveInterval=15'
# what a user writes for a quick look at hosts whose keys they do not have yet
UNCHECKED = ('-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes '
             '-o ControlMaster=auto -o ControlPersist=300s')


def wrong_known_hosts(lab, base, name):
    """A copy of the lab's known_hosts whose line for ``name`` holds another
    (new ed25519) key, as a host posing as it would have."""
    key = os.path.join(base, 'other_host_key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True,
                   stdin=subprocess.DEVNULL)
    with open(key + '.pub') as handle:
        other = ' '.join(handle.read().split()[:2])
    address = lab.host(name)['address']
    with open(lab.known_hosts) as handle:
        right = handle.read()
    text = ''.join('%s %s\n' % (address, other) if line.split()[:1] == [address] else line + '\n'
                   for line in right.splitlines())
    assert text != right
    path = os.path.join(base, 'known_hosts')
    with open(path, 'w') as handle:
        handle.write(text)
    return path


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('hkm', HOSTS)
    base = str(tmp_path_factory.mktemp('hkm'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    variables = lab_group_vars(lab, secret)  # checking on: ansible_host_key_checking true
    variables['ansible_ssh_common_args'] = variables['ansible_ssh_common_args'].replace(
        lab.known_hosts, wrong_known_hosts(lab, base, 'm2'))
    with open(os.path.join(inventory, 'group_vars', 'all.yml'), 'w') as handle:
        json.dump(variables, handle, indent=2)
    return lab, inventory, base


def stop_masters(folder):
    """The masters the job left (ControlPersist): stopped by their sockets."""
    for socket in glob.glob(os.path.join(folder, '*')):
        subprocess.run(['ssh', '-o', 'ControlPath=%s' % socket.replace('%', '%%'), '-O', 'exit',
                        'x'], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10, check=False)


def test_a_master_opened_unchecked_earlier_in_the_job_is_not_ridden(fleet):
    lab, inventory, base = fleet
    playbook = [
        {'name': 'A first look at the hosts, host key checking off', 'hosts': 'all',
         'gather_facts': False,
         'vars': {'ansible_host_key_checking': False, 'ansible_ssh_common_args': UNCHECKED},
         'tasks': [{'name': LOOK, 'ansible.builtin.raw': 'true'}]},
        {'ansible.builtin.import_playbook': 'nixdeploy.fleet.deploy'},
    ]
    control = os.path.join(base, 'cp')
    logins = dict((h['name'], lab.accepted_connections(h['name'])) for h in HOSTS)
    try:
        run = run_playbook(playbook, inventory, os.path.join(base, 'run'),
                           env={'ANSIBLE_SSH_ARGS': SSH_ARGS,
                                'ANSIBLE_SSH_CONTROL_PATH_DIR': control})
    finally:
        stop_masters(control)
    logins = dict((name, lab.accepted_connections(name) - count) for name, count in logins.items())
    # play 1 reached both hosts with checking off: each got a master
    for name in ('m1', 'm2'):
        assert run.result(LOOK, name)['status'] == 'ok', run
    assert run.rc != 0, run
    paths = dict((r['host'], r['result']['out_path']) for r in run.results(EVAL)
                 if r['status'] == 'ok')
    assert sorted(paths) == ['m1'], run

    # m2: refused at its login probe (its own master), as a host whose key does not match
    evaluated = run.result(EVAL, 'm2')
    assert evaluated['status'] == 'failed', (evaluated, run)
    msg = evaluated['result']['msg']
    assert msg.startswith('m2: the host key changed: it does not match known_hosts'), msg
    assert evaluated['result']['connection_lost'] is False, evaluated
    assert not run.results(COPY, 'm2') and not run.results(ACTIVATE, 'm2'), run
    assert run.outcomes()['m2'].startswith('FAILED at eval: the host key'), run.outcomes()
    # nothing reached it: the copy's probe (which plants a GC root) never ran
    assert lab.run_in('m2', ['ls', '/nix/var/nixdeploy/gcroots'], check=False).stdout.strip() == ''
    assert lab.active('m2') is None

    # m1 beside it deploys, with its key checked
    assert lab.active('m1') == paths['m1'], run
    assert run.outcomes()['m1'] == 'switched', run.outcomes()
    assert 'host_key_unchecked' not in run.result(ACTIVATE, 'm1')['result']
    # logins: play 1's master; play 2's own, which the probe opened and the
    # copy, keys and activation rode; the confirmation's new login
    assert logins['m1'] == 3, logins
