"""Host keys under ansible-runner's environment, on the `hkc` lab: the deploy
role run with ``ANSIBLE_HOST_KEY_CHECKING=False`` in the environment, which
ansible-runner (and so AWX and ansible-navigator) puts into every job's
environment, and which beats ansible.cfg. The inventory is the one users keep
(group_vars with the lab's known_hosts and StrictHostKeyChecking=yes, which
Ansible's own -o StrictHostKeyChecking=no comes before).

- without ``ansible_host_key_checking`` every host is refused, naming the fix,
  and nothing changes on any host (no store path, no activation);
- a host whose ``nix_host_key_unchecked`` is true deploys all the same and
  says so (its results and its summary line), the others are refused;
- with ``ansible_host_key_checking: true`` in group_vars a host whose
  known_hosts line holds another key fails at the login probe, before its
  build, saying it is the host key and how to fix it (failed, not
  unreachable), the others deploy; with the right key it deploys too.
"""

import json
import os
import subprocess

import pytest

from tests.collection import run_playbook
from tests.deploy_fleet import lab_group_vars, prepare, write_inventory

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'k1', 'persona': 'nixos'}, {'name': 'k2', 'persona': 'nixos'},
         {'name': 'k3', 'persona': 'nixos'}]
NAMES = [h['name'] for h in HOSTS]
# what ansible-runner sets for every job unless the job's env sets it
RUNNER_ENV = {'ANSIBLE_HOST_KEY_CHECKING': 'False'}
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'


class Fleet:
    def __init__(self, lab, flake, secret, base):
        self.lab, self.flake, self.secret, self.base = lab, flake, secret, base
        self.inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
        # the fleet's own known_hosts (a copy of the lab's), so one line can be made wrong
        self.known_hosts = os.path.join(base, 'known_hosts')
        with open(lab.known_hosts) as handle:
            self.right = handle.read()
        self.runs = 0

    def group_vars(self, **extra):
        variables = lab_group_vars(self.lab, self.secret)
        # as the job's inventory is before its users turn checking on
        variables.pop('ansible_host_key_checking', None)
        variables['ansible_ssh_common_args'] = variables['ansible_ssh_common_args'].replace(
            self.lab.known_hosts, self.known_hosts)
        variables.update(extra)
        with open(os.path.join(self.inventory, 'group_vars', 'all.yml'), 'w') as handle:
            json.dump(variables, handle, indent=2)

    def host_vars(self, name, **variables):
        folder = os.path.join(self.inventory, 'host_vars')
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, '%s.yml' % name)
        if variables:
            with open(path, 'w') as handle:
                json.dump(variables, handle)
        elif os.path.exists(path):
            os.remove(path)

    def known(self, wrong=None):
        """The fleet's known_hosts; ``wrong``: a host whose line holds
        another key (a new ed25519 key, as a host posing as it would have)."""
        text = self.right
        if wrong:
            key = os.path.join(self.base, 'other_host_key')
            if not os.path.exists(key):
                subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key],
                               check=True, stdin=subprocess.DEVNULL)
            with open(key + '.pub') as handle:
                other = ' '.join(handle.read().split()[:2])
            address = self.lab.host(wrong)['address']
            text = ''.join('%s %s\n' % (address, other) if line.split()[:1] == [address]
                           else line + '\n' for line in self.right.splitlines())
            assert text != self.right
        with open(self.known_hosts, 'w') as handle:
            handle.write(text)

    def deploy(self):
        self.runs += 1
        return run_playbook('nixdeploy.fleet.deploy', self.inventory,
                            os.path.join(self.base, 'run%d' % self.runs), env=RUNNER_ENV)


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('hkc', HOSTS)
    base = str(tmp_path_factory.mktemp('hkc'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    fleet = Fleet(lab, flake, secret, base)
    fleet.known()
    return fleet


def out_paths(run):
    return dict((r['host'], r['result']['out_path']) for r in run.results(EVAL)
                if r['status'] == 'ok')


def test_without_the_group_var_every_host_is_refused_and_nothing_changes(fleet):
    fleet.group_vars()
    run = fleet.deploy()
    assert run.rc != 0, run
    paths = out_paths(run)
    assert sorted(paths) == NAMES, run
    for name in NAMES:
        copy = run.result(COPY, name)
        assert copy['status'] == 'failed', copy
        msg = copy['result']['msg']
        assert msg.startswith('%s: refused: ssh would not check the host key of %s' % (name, name))
        assert 'ANSIBLE_HOST_KEY_CHECKING=False' in msg and 'ansible_host_key_checking: true' in msg
        assert 'nothing was copied' in msg and copy['result']['connection_lost'] is False
        assert not run.results(ACTIVATE, name), name
        # nothing reached the host: no store path, no activation, no GC root
        assert not fleet.lab.store_has(name, paths[name]), name
        assert fleet.lab.active(name) is None, name
        assert fleet.lab.run_in(name, ['ls', '/nix/var/nixdeploy/gcroots'],
                                check=False).stdout.strip() == '', name
    outcomes = run.outcomes()
    assert all(o.startswith('FAILED at copy: refused: ssh would not check the host key')
               for o in outcomes.values()), outcomes


def test_the_opt_out_deploys_that_host_and_says_so(fleet):
    fleet.group_vars()
    fleet.host_vars('k3', nix_host_key_unchecked=True)
    try:
        run = fleet.deploy()
    finally:
        fleet.host_vars('k3')
    assert run.rc != 0, run   # k1 and k2 are still refused
    paths = out_paths(run)
    assert fleet.lab.active('k3') == paths['k3'], run
    for task in (COPY, ACTIVATE):
        assert run.result(task, 'k3')['result']['host_key_unchecked'] is True, task
    assert 'k3: the host key is NOT checked' in run.stdout + run.stderr, run
    assert run.summary()['k3']['host_key_unchecked'] is True
    assert run.outcomes()['k3'] == 'switched (host key unchecked)', run.outcomes()
    assert [line for line in run.stdout.splitlines() if line.startswith('k3 ')][-1].endswith(
        'switched (host key unchecked)'), run
    for name in ('k1', 'k2'):
        assert run.result(COPY, name)['status'] == 'failed'
        assert fleet.lab.active(name) is None, name


# a wrong key under the runner's env: test_hostile_fleet's h5, test_host_key_masters' m2
@pytest.mark.here_only
def test_with_checking_on_a_wrong_host_key_stops_that_host_only(fleet):
    fleet.group_vars(ansible_host_key_checking=True)
    fleet.flake.set_all(version='2')
    # k2 has never been reached (refused so far): no ssh master of an earlier run to ride
    fleet.known(wrong='k2')
    run = fleet.deploy()
    assert run.rc != 0, run
    paths = out_paths(run)
    # found by the login probe, beside the evaluation: nothing built or copied
    evaluated = run.result(EVAL, 'k2')
    assert evaluated['status'] == 'failed', evaluated
    msg = evaluated['result']['msg']
    # the copy's words: the host, the cause, ssh's lines, the fix
    assert msg.startswith('k2: the host key changed: it does not match known_hosts'), msg
    assert 'nothing was built or copied for it' in msg.split('\n')[0], msg
    assert 'ssh said:' in msg and msg.split('\n')[-1].strip().startswith(
        'to fix: if the host was reinstalled'), msg
    assert 'ssh-keygen -R %s' % fleet.lab.host('k2')['address'] in msg, msg
    assert evaluated['result']['connection_lost'] is False
    assert not evaluated['result'].get('unreachable'), evaluated
    assert 'k2' not in paths and not run.results(COPY, 'k2') and not run.results(ACTIVATE, 'k2')
    assert run.outcomes()['k2'].startswith('FAILED at eval: the host key changed'), \
        run.outcomes()
    assert fleet.lab.active('k2') is None
    recap = [line for line in run.stdout.splitlines() if line.startswith('k2 ') and 'ok=' in line]
    assert recap and 'failed=1' in recap[-1] and 'unreachable=0' in recap[-1], recap
    for name in ('k1', 'k3'):
        assert fleet.lab.active(name) == paths[name], (name, run)
        assert run.outcomes()[name] == 'switched', run.outcomes()
        assert 'host_key_unchecked' not in run.result(ACTIVATE, name)['result']

    # the right key: the same job deploys k2 too
    fleet.known()
    run = fleet.deploy()
    assert run.rc == 0, run
    assert fleet.lab.active('k2') == out_paths(run)['k2'], run
    assert run.outcomes() == {'k1': 'unchanged', 'k2': 'switched', 'k3': 'unchanged'}, run.outcomes()
