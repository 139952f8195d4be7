"""Builders checked before use (issue 22), for real: lab hosts are the builders.

One lab: the builders b1 and b2 (NixOS-shaped lab hosts) and four targets of
three personas. The tests run in order on it:

1. both builders up: two systems are spread over them, one build each; a
   third builder, a store URI whose login works but whose store does not
   answer, is skipped; a system of another platform and one that needs a
   feature no builder has fail with each builder's reason; builders "full"
   (free space under builder_min_free_mb) are skipped as such;
2. b1 powered off: one deploy (the deploy role, ``nix_build_on: [b1, b2]``)
   builds every system on b2, names b1 and why in every host's result and
   summary line, and every host runs its new system;
3. b2's link cut as well: the next deploy fails every host at build, naming
   both builders with their reasons, and no host changes.

Every system carries a version unique to the run, so nothing of it is in
the controller's store before (a system the controller holds needs no
builder).
"""

import json
import os
import subprocess
import time
import uuid

import pytest

from tests.collection import run_playbook
from tests.deploy_fleet import DeployFleet, prepare, write_inventory

pytestmark = pytest.mark.lab

BUILDERS = ['b1', 'b2']
TARGETS = ['t1', 't2', 't3', 't4']
HOSTS = [{'name': 'b1', 'persona': 'nixos'}, {'name': 'b2', 'persona': 'nixos'},
         {'name': 't1', 'persona': 'nixos'}, {'name': 't2', 'persona': 'darwin'},
         {'name': 't3', 'persona': 'home-manager'}, {'name': 't4', 'persona': 'nixos'}]
BUILD = 'nixdeploy.fleet.deploy : Build the system of each host'
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
NIX_OPTIONS = {'substituters': ''}


@pytest.fixture(scope='module')
def bld_fleet(make_lab, tmp_path_factory):
    lab = make_lab('bld', HOSTS)
    base = str(tmp_path_factory.mktemp('bld'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    # b2's own ssh settings, as an inventory gives them: the probe's login
    # uses them (a cut link costs 3 s, not ssh's default 10 s)
    os.makedirs(os.path.join(inventory, 'host_vars'))
    with open(os.path.join(inventory, 'host_vars', 'b2.yml'), 'w') as handle:
        json.dump({'ansible_ssh_common_args': lab.ansible_vars('b2')['ansible_ssh_common_args']
                   + ' -o ConnectTimeout=3'}, handle)
    return DeployFleet(lab, flake, inventory, base)


def new_versions(fleet):
    token = uuid.uuid4().hex[:10]
    fleet.flake.set_all(version=token)
    return token


def instantiate(name, system, features=()):
    """A derivation in the controller's store, never built here."""
    expr = ('derivation { name = %s; system = %s; builder = "/bin/sh"; '
            'args = [ "-c" "echo > $out" ]; requiredSystemFeatures = [ %s ]; }'
            % (json.dumps(name), json.dumps(system), ' '.join(json.dumps(f) for f in features)))
    return subprocess.run(['nix-instantiate', '--expr', expr], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout.strip()


def valid_here(path):
    return subprocess.run(['nix-store', '--check-validity', path], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def wait_off(lab, name, timeout=300):
    """Wait until the host is powered off: the deadline bounds the wait only
    (it ends at the power-off), generous for a busy machine."""
    deadline = time.monotonic() + timeout
    while lab.power_state(name) != 'off':
        assert time.monotonic() < deadline, '%s did not power off within %ss' % (name, timeout)
        time.sleep(0.2)


def summary_lines(run):
    """{host: its line of the NIXDEPLOY SUMMARY}."""
    text = run.stdout.split('NIXDEPLOY SUMMARY', 1)[-1]
    return dict((ln.split()[0], ln) for ln in text.splitlines()
                if ln.split() and ln.split()[0] in TARGETS)


def test_builds_spread_over_the_builders_that_suit_them(bld_fleet):
    fleet, lab = bld_fleet, bld_fleet.lab
    token = new_versions(fleet)
    started = time.time()
    # t3: a platform no lab builder builds; t4: a feature none has
    drvs = {'t3': instantiate('nd-foreign-%s' % token, 'aarch64-darwin'),
            't4': instantiate('nd-feature-%s' % token, 'x86_64-linux',
                              ['nixdeploy-%s' % token])}
    # b2 again, as a store URI whose nix-daemon is not where it says: ssh
    # logs in (its options from NIX_SSHOPTS, as Nix's own), the store does not answer
    no_store = 'ssh-ng://root@%s?ssh-key=%s&remote-program=/nowhere/nix-daemon' % (
        lab.host('b2')['address'], lab.key)
    sshopts = lab.ansible_vars('b2')['ansible_ssh_common_args']
    tasks = [
        {'name': 'evaluate', 'nixdeploy.fleet.nix_eval': {'nix_options': NIX_OPTIONS},
         'when': "inventory_hostname in ['t1', 't2']"},
        # every builder "full": more free space asked than any disk has
        {'name': 'full', 'when': "inventory_hostname == 't1'", 'ignore_errors': True,
         'nixdeploy.fleet.nix_build': {
             'drv_path': instantiate('nd-small-%s' % token, 'x86_64-linux'),
             'build_on': 'b1, b2', 'builder_min_free_mb': 10 ** 9,
             'nix_options': NIX_OPTIONS, 'gc_root_dir': os.path.join(fleet.workdir, 'roots')}},
        # t1, t2: their nix_eval fact; t3, t4: their host var nix_drv_path
        {'name': 'build', 'nixdeploy.fleet.nix_build': {
            'build_on': BUILDERS + [no_store], 'nix_options': NIX_OPTIONS,
            'gc_root_dir': os.path.join(fleet.workdir, 'roots')}},
    ]
    playbook = [{'hosts': ','.join(TARGETS), 'gather_facts': False, 'tasks': tasks}]
    rundir = fleet.rundir()
    extra = os.path.join(rundir, 'drvs.json')
    with open(extra, 'w') as handle:
        json.dump({'all': {'hosts': dict((h, {'nix_drv_path': d}) for h, d in drvs.items())}},
                  handle)
    run = run_playbook(playbook, fleet.inventory, rundir, args=['-i', extra],
                       env={'NIX_SSHOPTS': sshopts})
    print('spread, unsuited, full: %.1fs' % (time.time() - started))
    full = run.result('full', 't1')
    assert full['status'] == 'failed', full
    msg = full['result']['msg']
    assert msg.startswith('t1: no builder can build it: '), msg
    for name in BUILDERS:
        assert '%s: only ' % name in msg and 'MB free in /nix/store (builder_min_free_mb: ' \
            '1000000000)' in msg, msg
    # the two systems: one on each builder, built there and fetched here
    used = {}
    for host in ('t1', 't2'):
        res = run.result('build', host)
        assert res['status'] == 'ok', res
        got = res['result']
        [skipped] = got['builders_skipped']
        assert got['built'] is True and skipped['name'] == no_store, got
        assert skipped['reason'].startswith('store not reachable: error: '), got
        assert got['build_on'] == got['builder'] and got['builder'] in BUILDERS, got
        assert lab.store_has(got['builder'], got['out_path']), got
        assert valid_here(got['out_path'])
        used[host] = got['builder']
    assert sorted(used.values()) == BUILDERS, used
    foreign = run.result('build', 't3')
    assert foreign['status'] == 'failed', foreign
    for name in BUILDERS:
        assert '%s: cannot build aarch64-darwin (it builds x86_64-linux' % name \
            in foreign['result']['msg'], foreign
    assert [s['name'] for s in foreign['result']['builders_skipped']] == BUILDERS + [no_store]
    feature = run.result('build', 't4')
    assert feature['status'] == 'failed', feature
    for name in BUILDERS:
        assert '%s: lacks the system features nixdeploy-%s' % (name, token) \
            in feature['result']['msg'], feature


def test_a_stopped_builder_is_skipped_and_named_and_every_host_deployed(bld_fleet):
    fleet, lab = bld_fleet, bld_fleet.lab
    lab.ssh('b1', 'poweroff', user='root', check=False)
    wait_off(lab, 'b1')
    new_versions(fleet)
    started = time.time()
    run = fleet.deploy('-l', ','.join(TARGETS), '-e', json.dumps({'nix_build_on': BUILDERS}))
    print('deploy with b1 stopped: %.1fs' % (time.time() - started))
    assert run.rc == 0, run.stdout[-3000:]
    lines = summary_lines(run)
    records = run.summary()
    fleet.deployed = {}
    for host in TARGETS:
        got = run.result(BUILD, host)['result']
        assert got['builder'] == 'b2' and got['build_on'] == 'b2', got
        assert got['built'] is True, got
        [skipped] = got['builders_skipped']
        assert skipped['name'] == 'b1' and skipped['reason'].startswith('login failed: '), got
        out = run.result(EVAL, host)['result']['out_path']
        assert got['out_path'] == out and lab.store_has('b2', out)
        assert lab.active(host) == out, host
        fleet.deployed[host] = out
        # named in the summary line and in the record AWX keeps
        assert 'switched (built on b2; b1 skipped: login failed: ' in lines[host], lines
        assert records[host]['built_on'] == 'b2', records[host]
        assert [s['name'] for s in records[host]['builders_skipped']] == ['b1']


# builder logins that fail: test_a_stopped_builder_is_skipped_...; failing every host is our logic
@pytest.mark.here_only
def test_no_builder_alive_fails_every_host_at_build(bld_fleet):
    fleet, lab = bld_fleet, bld_fleet.lab
    assert lab.power_state('b1') == 'off'
    lab.cut('b2')
    try:
        new_versions(fleet)
        started = time.time()
        run = fleet.deploy('-l', ','.join(TARGETS),
                           '-e', json.dumps({'nix_build_on': 'b1,b2'}))
        took = time.time() - started
        print('deploy with both builders stopped: %.1fs' % took)
    finally:
        lab.restore('b2')
    assert run.rc != 0
    lines = summary_lines(run)
    records = run.summary()
    for host in TARGETS:
        res = run.result(BUILD, host)
        assert res['status'] == 'failed', res
        msg = res['result']['msg']
        assert msg.startswith('%s: no builder can build it: b1: login failed: ' % host), msg
        assert '; b2: login failed: ' in msg, msg
        assert res['result']['phase'] == 'build'
        assert records[host]['outcome'].startswith(
            'FAILED at build: no builder can build it: b1: login failed: '), records[host]
        # the summary says the shared cause under the first host, the others
        # point to it
        first = sorted(lines)[0]
        assert 'FAILED at build: no builder can build it: b1: ' in lines[first], lines
        assert host == first or 'FAILED at build: the same as %s' % first in lines[host], lines
        # nothing changed on the host
        assert lab.active(host) == getattr(fleet, 'deployed', {}).get(host), host
