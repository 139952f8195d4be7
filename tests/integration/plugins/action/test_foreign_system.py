"""Hosts the controller cannot build for (issue 36), for real: the deploy role
against lab hosts, real Nix on the controller.

An EE is x86_64-linux; an aarch64 NixOS host or a darwin host needs a machine of
its own platform. The fixture flake here gives two configurations another
``system``: f1 (NixOS) is for aarch64-linux, f3 (nix-darwin) for
aarch64-darwin, beside f2, a NixOS host for this machine's system. The flake is
the lab's own (lib.nix, fleet.json) under a flake.nix of this test's that
evaluates those configurations with the other system (their derivations, the
busybox they build with included, say ``system = "aarch64-linux"``; the busybox
binary that runs the builds is still this machine's, so a Nix told that it
builds aarch64-linux builds them and the lab host runs them).

1. One deploy of the three: f1 and f3 fail at their build with the message
   that names their system and the ways out, before anything is copied (no copy
   ran for them, nothing of theirs is in their stores, the controller's one
   ``nix build`` holds none of their derivations); f2 builds and deploys.
2. The same deploy with ``nix_options: {extra-platforms: aarch64-linux}`` (what
   binfmt/qemu emulation sets): the check reads what Nix builds under the
   task's options, so f1 now builds and deploys; f3 still fails; f2 is unchanged.
"""

import json
import os
import uuid

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory
from tests.integration.plugins.action.conftest_eval import calls, nix_wrapper
from tests.lab.fixtures import nix_system

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'f1', 'persona': 'nixos'}, {'name': 'f2', 'persona': 'nixos'},
         {'name': 'f3', 'persona': 'darwin'}]
NATIVE = nix_system()
OTHER_LINUX = 'aarch64-linux' if NATIVE != 'aarch64-linux' else 'x86_64-linux'
FOREIGN = {'f1': OTHER_LINUX, 'f3': 'aarch64-darwin'}
BUILD = 'nixdeploy.fleet.deploy : Build the system of each host'
COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'

# the lab's lib.nix, a second time with another system for the configurations
# fleet.json's "foreign" names
FLAKE_NIX = r'''
{
  description = "nixdeploy.fleet lab fleet, some configurations for other platforms";
  outputs = { self }:
    let
      fleet = builtins.fromJSON (builtins.readFile ./fleet.json);
      labFor = system: import ./lib.nix { fleet = fleet // { inherit system; }; busyboxDir = ./busybox; };
      native = labFor fleet.system;
      pick = kind: builtins.mapAttrs
        (name: value: if fleet.foreign ? ${name} then (labFor fleet.foreign.${name}).${kind}.${name} else value)
        native.${kind};
    in
    native // {
      nixosConfigurations = pick "nixosConfigurations";
      darwinConfigurations = pick "darwinConfigurations";
    };
}
'''


@pytest.fixture(scope='module')
def frn_fleet(make_lab, tmp_path_factory):
    lab = make_lab('frn', HOSTS)
    base = str(tmp_path_factory.mktemp('frn'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    with open(os.path.join(flake.path, 'flake.nix'), 'w') as handle:
        handle.write(FLAKE_NIX)
    flake.data['foreign'] = dict(FOREIGN)
    for name, system in FOREIGN.items():
        flake.data['hosts'][name]['system'] = system        # the inventory's nix_system
    flake.set_all(version=uuid.uuid4().hex[:10])           # new to every store
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    return DeployFleet(lab, flake, inventory, base)


def test_a_host_of_another_platform_fails_at_its_build_and_the_rest_deploys(frn_fleet):
    fleet, lab = frn_fleet, frn_fleet.lab
    before = dict((h, lab.active(h)) for h in FOREIGN)
    nix, log = nix_wrapper(fleet.workdir)
    run = fleet.deploy('-l', 'f1,f2,f3', '-e', json.dumps({'nix_bin': nix}))
    assert run.rc != 0
    drvs = dict((h, run.result(EVAL, h)['result']['drv_path']) for h in ('f1', 'f2', 'f3'))
    outs = dict((h, run.result(EVAL, h)['result']['out_path']) for h in ('f1', 'f2', 'f3'))
    for host, system in FOREIGN.items():
        res = run.result(BUILD, host)
        assert res['status'] == 'failed', res
        msg = res['result']['msg']
        assert msg.startswith('%s: cannot build it here: its system %s is for %s'
                              % (host, drvs[host], system)), msg
        assert "this machine's Nix builds %s" % NATIVE in msg, msg
        assert 'Nothing was built or copied for this host.' in msg
        for way in ('nix_build_on: target', 'nix_build_on: [builder]', "Nix's builders setting",
                    'binary cache'):
            assert way in msg, (way, msg)
        # emulation only where the kernel is the same: not for a darwin system here
        emulation = 'extra-platforms: %s, with binfmt/qemu' % system
        assert (emulation in msg) == system.endswith('-linux'), msg
        # not Nix's own failure: the build never tried it
        assert 'is required to build' not in msg and 'platform mismatch' not in msg, msg
        assert res['result']['phase'] == 'build'
        assert run.summary()[host]['outcome'].startswith('FAILED at build: cannot build it here: ')
        # nothing copied, nothing activated
        assert not run.results(COPY, host), run.results(COPY, host)
        assert not lab.store_has(host, outs[host]) and not lab.store_has(host, drvs[host])
        assert lab.active(host) == before[host]
    # the one real build held f2's system alone
    builds = [b for b in calls(log, 'build') if '--dry-run' not in b]
    assert len(builds) == 1 and drvs['f2'] in builds[0], builds
    assert drvs['f1'] not in builds[0] and drvs['f3'] not in builds[0], builds
    assert run.result(BUILD, 'f2')['status'] == 'ok'
    assert lab.active('f2') == outs['f2']
    fleet.outs = outs


def test_extra_platforms_in_nix_options_let_the_controller_build_it(frn_fleet):
    fleet, lab = frn_fleet, frn_fleet.lab
    run = fleet.deploy('-l', 'f1,f2,f3', '-e', json.dumps(
        {'nix_options': {'substituters': '', 'extra-platforms': OTHER_LINUX}}))
    assert run.rc != 0                       # f3 (aarch64-darwin) still cannot be built
    f1 = run.result(BUILD, 'f1')
    assert f1['status'] == 'ok' and f1['result']['built'] is True, f1
    assert lab.active('f1') == fleet.outs['f1']
    assert run.result(BUILD, 'f3')['result']['msg'].startswith('f3: cannot build it here: ')
    assert run.result(BUILD, 'f2')['result']['changed'] is False
    assert lab.active('f2') == fleet.outs['f2']
