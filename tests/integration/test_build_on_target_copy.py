"""A host that builds its own system is not copied to, beside one that is
(the deploy role, real lab hosts, real Nix): the copy task skips a host whose
``nix_build_on`` is ``target`` in the action itself (issue 37: a ``when:`` on the
role's task cost every host a Jinja compilation in its own worker)."""

import json
import os
import uuid

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory

pytestmark = pytest.mark.lab

COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'
BUILD = 'nixdeploy.fleet.deploy : Build the system of each host'


@pytest.fixture(scope='module')
def cpt_fleet(make_lab, tmp_path_factory):
    lab = make_lab('cpt', [{'name': 't1', 'persona': 'nixos'}, {'name': 't2', 'persona': 'nixos'},
                           {'name': 't3', 'persona': 'nixos'}])
    base = str(tmp_path_factory.mktemp('cpt'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    flake.set_all(version=uuid.uuid4().hex[:10])
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    # t1 as a string, t3 as a list of one (both mean the host itself)
    os.makedirs(os.path.join(inventory, 'host_vars'))
    for host, value in (('t1', 'target'), ('t3', [' target'])):
        with open(os.path.join(inventory, 'host_vars', '%s.yml' % host), 'w') as handle:
            json.dump({'nix_build_on': value}, handle)
    return DeployFleet(lab, flake, inventory, base)


def test_hosts_that_build_their_own_system_are_not_copied_to(cpt_fleet):
    fleet, lab = cpt_fleet, cpt_fleet.lab
    run = fleet.deploy('-l', 't1,t2,t3')
    assert run.rc == 0, run
    for host in ('t1', 't3'):
        build = run.result(BUILD, host)['result']
        assert build['build_on'] == 'target' and build['built'] is True, build
        copy = run.result(COPY, host)
        assert copy['status'] == 'skipped', copy
        assert 'nix_build_on is target' in copy['result']['skip_reason'], copy
        assert lab.active(host) == build['out_path']
    copy = run.result(COPY, 't2')
    assert copy['status'] == 'ok' and copy['result']['changed'] and copy['result']['paths_sent'], copy
    assert lab.active('t2') == run.result(BUILD, 't2')['result']['out_path']
    summary = run.summary()
    assert all(not summary[h]['outcome'].startswith('FAILED') for h in ('t1', 't2', 't3')), summary
