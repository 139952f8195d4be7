"""The `rol` lab fleet the deploy role tests deploy to, for real."""

import os

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory
from tests.lab import nspawn

# Two NixOS hosts tagged vps (root) and one nix-darwin host (deploy + sudo,
# signed copies): root and non-root paths through every phase. h2 boots a real
# systemd as PID 1 (as every NixOS server does: its activation runs under
# systemd-run) where the lab can make such hosts; a plain host elsewhere.
# h3's system builds slowly (its builder sleeps first: no CPU): the build
# answers h1 and h2 while it still builds, as a loaded machine's would.
HOSTS = [{'name': 'h1', 'persona': 'nixos'},
         {'name': 'h2', 'persona': 'nixos', 'systemd': not nspawn.unsupported()},
         {'name': 'h3', 'persona': 'darwin'}]
TAGS = {'h1': ['vps'], 'h2': ['vps', 'hk']}


@pytest.fixture(scope='module')
def rol_fleet(make_lab, tmp_path_factory):
    lab = make_lab('rol', HOSTS)
    base = str(tmp_path_factory.mktemp('rol'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'), tags=TAGS,
                            configurations={'h1': {'platform': 'nixos', 'extra_paths': 2,
                                                   'extra_bytes': 20000},
                                            'h3': {'platform': 'darwin', 'build_seconds': 4}})
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    return DeployFleet(lab, flake, inventory, base)
