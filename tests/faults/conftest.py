"""The `flt` lab fleet the fault suite breaks things on.

Eight hosts of every persona, deployed once (version f1) so that every host
has a previous generation to roll back to. Tests leave it deployable: each
restores what it broke (links, behaviours) in a ``finally``.
"""

import os

import pytest

from tests.deploy_fleet import prepare, write_inventory
from tests.faults.fleet import FaultFleet
from tests.lab import Lab

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
