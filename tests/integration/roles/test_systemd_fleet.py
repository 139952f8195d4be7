"""Issue 21's fleet: NixOS hosts that boot a real systemd (their activation runs
under systemd-run) beside plain darwin, nix-on-droid and home-manager hosts, in
ONE `ansible-playbook nixdeploy.fleet.deploy` run where one systemd host takes
its network down, one fails its activation, one activates for longer than the
confirmation window and one is healthy.

Under systemd-run the runner used to lose every $VAR to systemd's own
expansion: no magic rollback, empty generation numbers, a failed host left on
its broken generation and a deploy that never ended.
"""

import os

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory
from tests.lab import nspawn

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(nspawn.unsupported() is not None, reason=str(nspawn.unsupported())),
]

ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
HOSTS = [{'name': 'sdok', 'persona': 'nixos', 'systemd': True},
         {'name': 'sdnet', 'persona': 'nixos', 'systemd': True},
         {'name': 'sdfail', 'persona': 'nixos', 'systemd': True},
         {'name': 'sdslow', 'persona': 'nixos', 'systemd': True},
         {'name': 'mac', 'persona': 'darwin'},
         {'name': 'phone', 'persona': 'nix-on-droid'},
         {'name': 'home', 'persona': 'home-manager'}]
SYSTEMD = ('sdok', 'sdnet', 'sdfail', 'sdslow')
CONFIRM_TIMEOUT = 8
SLOW_SECONDS = 14


def profile(lab, host):
    """What the host's system profile points at (NixOS hosts)."""
    return lab.ssh(host, 'readlink -f /nix/var/nix/profiles/system').stdout.strip()


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('sdf', HOSTS)
    base = str(tmp_path_factory.mktemp('sdf'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    fleet = DeployFleet(lab, flake, inventory, base)
    run = fleet.deploy()
    assert run.rc == 0, run
    summary = run.summary()
    for host in lab.hosts:
        assert summary[host]['outcome'] == 'switched', (host, summary)
        assert summary[host]['after'] == 1, (host, summary)
    for host in SYSTEMD:
        res = run.result(ACTIVATE, host)['result']
        assert res['detached_with'] == 'systemd-run', (host, res)
    return fleet


def test_systemd_hosts_beside_plain_ones_in_one_run(fleet):
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    profiles = {host: profile(lab, host) for host in SYSTEMD}
    flake.set_all(version='2')
    flake.set_config('sdnet', behaviour='break-network')
    flake.set_config('sdfail', behaviour='fail')
    flake.set_config('sdslow', behaviour='slow', slow_seconds=SLOW_SECONDS)
    try:
        run = fleet.deploy('-e', 'nix_confirm_timeout=%d' % CONFIRM_TIMEOUT)
    finally:
        for host in ('sdnet', 'sdfail', 'sdslow'):
            flake.set_config(host, behaviour='ok')
    assert run.rc != 0, run
    # it ends (run_playbook's own timeout fails a deploy that never does):
    # each host's activation task, from its start to its result (the run's
    # record: not the build and copy before it, which a busy machine slows),
    # took the slow activation plus the window and a minute at the most
    took = {}
    for host in lab.hosts:
        rec = run.result(ACTIVATE, host)
        took[host] = round(rec['ended'] - rec['started'], 1)
    assert max(took.values()) < SLOW_SECONDS + CONFIRM_TIMEOUT + 60, took
    print('activation tasks (seconds): %s' % took)
    summary = run.summary()
    assert sorted(summary) == sorted(lab.hosts), summary

    # healthy and slow hosts, systemd or not: on the new system, gen N -> N+1
    for host in ('sdok', 'sdslow', 'mac', 'phone', 'home'):
        assert not summary[host]['failed'], (host, summary[host])
        assert summary[host]['outcome'] == 'switched', (host, summary[host])
        assert summary[host]['after'] == summary[host]['before'] + 1 == 2, summary[host]
        assert lab.active(host) != before[host], host
        assert run.result(ACTIVATE, host)['result']['confirmed'], host

    # the network-breaking systemd host rolled ITSELF back: profile and system
    assert summary['sdnet']['failed'] and summary['sdnet']['rolled_back'], summary['sdnet']
    assert summary['sdnet']['connection_lost'], summary['sdnet']
    assert summary['sdnet']['before'] == summary['sdnet']['after'] == 1, summary['sdnet']
    lab.wait_up('sdnet', timeout=300)  # bounds the wait only: generous, for a busy machine
    assert lab.active('sdnet') == before['sdnet']
    assert profile(lab, 'sdnet') == profiles['sdnet']

    # the failing one: rolled back, still on generation 1 and its system
    assert summary['sdfail']['failed'] and summary['sdfail']['rolled_back'], summary['sdfail']
    assert summary['sdfail']['phase'] == 'activate', summary['sdfail']
    assert lab.active('sdfail') == before['sdfail']
    assert profile(lab, 'sdfail') == profiles['sdfail']

    # each systemd run was a transient unit of its own, named per run
    units = set()
    for host in SYSTEMD:
        res = run.result(ACTIVATE, host)['result']
        assert res['detached_with'] == 'systemd-run', (host, res)
        assert (res.get('unit') or '').startswith('nixdeploy-activate-'), (host, res)
        units.add(res['unit'])
    assert len(units) == len(SYSTEMD), units
