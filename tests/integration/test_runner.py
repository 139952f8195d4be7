"""The deploy playbook through ansible-runner, the engine AWX/AAP job templates
run on: a private data dir with an inventory source (the nixdeploy.fleet.nix
plugin config and group_vars), a project (the repository's deploy.yml) and
env/ (envvars, settings), against the `rol` lab.

As in AWX, the job's environment leaves ANSIBLE_HOST_KEY_CHECKING to
ansible-runner, which sets it to False; the inventory's group_vars turn
checking on (``ansible_host_key_checking: true``, which beats it), as users
must: the collection refuses a host whose key is not checked.
"""

import os

import pytest

from tests.deploy_fleet import prepare, runner_private_dir, write_inventory
from tests.integration.host_key_vars import check_host_keys, runner_env_as_awx

ansible_runner = pytest.importorskip('ansible_runner')

pytestmark = pytest.mark.lab

# The personas the role tests do not cover: home-manager (app, daemon store,
# signed copies) and nix-on-droid (app, single-user store, nix off PATH).
HOSTS = [{'name': 'h1', 'persona': 'nixos'}, {'name': 'h2', 'persona': 'home-manager'},
         {'name': 'h3', 'persona': 'nix-on-droid'}]


@pytest.fixture(scope='module')
def data_dir(make_lab, tmp_path_factory):
    lab = make_lab('rol', HOSTS)
    base = str(tmp_path_factory.mktemp('runner'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'), tags={'h1': ['vps']})
    private = os.path.join(base, 'private')
    inventory = write_inventory(os.path.join(private, 'inventory'), lab, flake, secret)
    check_host_keys(os.path.join(inventory, 'group_vars', 'all.yml'))
    runner_private_dir(private, envvars={'ANSIBLE_FORKS': '25'})
    assert 'ANSIBLE_HOST_KEY_CHECKING' not in runner_env_as_awx(private)
    return lab, private


def run(private):
    return ansible_runner.run(private_data_dir=private, playbook='deploy.yml', quiet=True)


def test_runner_deploys_then_finds_nothing_to_change(data_dir):
    lab, private = data_dir
    first = run(private)
    assert first.status == 'successful', first.stdout.read()[-4000:]
    assert first.rc == 0
    # the job ran with ansible-runner's own setting, and host keys checked all the same
    assert first.config.env['ANSIBLE_HOST_KEY_CHECKING'] == 'False'
    checked = [e['event_data'] for e in first.events if e.get('event') == 'runner_on_ok'
               and e['event_data']['task_action'].endswith('nix_copy_closure')]
    assert sorted(e['host'] for e in checked) == ['h1', 'h2', 'h3']
    assert not any(e['res'].get('host_key_unchecked') for e in checked)
    assert set(first.stats['ok']) == {'h1', 'h2', 'h3'}
    assert set(first.stats['changed']) == {'h1', 'h2', 'h3'}
    assert not first.stats['failures'] and not first.stats['dark']
    for host in lab.hosts:
        assert lab.active(host), host

    second = run(private)
    assert second.status == 'successful', second.stdout.read()[-4000:]
    changed = {host: count for host, count in second.stats.get('changed', {}).items() if count}
    assert changed == {}, changed
