"""The lab fleets the fault suite breaks things on.

`flt`: eight hosts of every persona, deployed once (version f1) so that every
host has a previous generation to roll back to. Tests leave it deployable:
each restores what it broke (links, behaviours) in a ``finally``.

`tfl` (test_target_faults.py): six hosts whose /nix is a small filesystem of
its own, plain and systemd, for faults of the targets themselves (fleet.py's
TFL_HOSTS); deployed once (version t1), left deployable the same way.
"""

import os

import pytest

from tests.deploy_fleet import prepare, write_inventory
from tests.faults.fleet import TFL_HOSTS, TFL_STORE, FaultFleet
from tests.lab import Lab, nspawn

PERSONAS = ['nixos', 'nixos', 'darwin', 'home-manager', 'nixos', 'nix-on-droid', 'nixos', 'nixos']


@pytest.fixture(scope='package')
def flt(tmp_path_factory):
    lab = Lab('flt').up(len(PERSONAS), personas=PERSONAS)
    try:
        base = str(tmp_path_factory.mktemp('flt'))
        flake, secret = prepare(lab, os.path.join(base, 'flake'), tags={'h1': ['vps']})
        flake.set_all(version='f1')
        inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
        fleet = FaultFleet(lab, flake, secret, inventory, base)
        run = fleet.deploy()
        assert run.rc == 0, run
        yield fleet
    finally:
        lab.down()


# The `tfl` fleet of test_target_faults.py (its hosts: fleet.TFL_HOSTS).
@pytest.fixture(scope='module')
def tfl(tmp_path_factory):
    systemd = nspawn.unsupported() is None
    hosts = [dict(spec, store_size=TFL_STORE, systemd=spec.get('systemd', False) and systemd)
             for spec in TFL_HOSTS]
    lab = Lab('tfl').up(hosts)
    try:
        base = str(tmp_path_factory.mktemp('tfl'))
        flake, secret = prepare(lab, os.path.join(base, 'flake'))
        flake.data['hosts']['s2']['user'] = 'deploy'
        flake.set_all(version='t1')
        inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
        os.makedirs(os.path.join(inventory, 'host_vars'))
        with open(os.path.join(inventory, 'host_vars', 's2.yml'), 'w') as handle:
            handle.write('ansible_become: true\n')
        fleet = FaultFleet(lab, flake, secret, inventory, base)
        fleet.systemd = systemd
        run = fleet.deploy()
        assert run.rc == 0, run
        yield fleet
    finally:
        lab.down()
