"""Interruptions from outside a deploy: the controller SIGKILLed mid-copy and
mid-activation, a link lost during a copy, two deploys at once.

After each: no host is half-switched (its profile, active system and boot
default agree), no activation lock is left, and a re-run converges.
"""

import copy
import os
import shutil

import pytest

from tests.controller import kill_controller
from tests.deploy_fleet import write_inventory
from tests.faults.fleet import (COPY, assert_consistent, history, locks, out_paths, output,
                                records, settled, verify_store, wait_until)
from tests.lab.fixtures import FleetFlake

pytestmark = [pytest.mark.faults, pytest.mark.lab, pytest.mark.slow]

PADDING = 6000000   # bytes of new paths per host: seconds on an 8 Mbit/s link
SLOW_LINK = '8mbit'
# The rate a host's link drops to the moment the test sees its copy under
# way, until the test is done with it (kills the controller, cuts the link):
# the rest of the padding (5 MB) takes about 2.5 minutes there (a copy held
# for 90 s was still running, 2.8 MB further), so the copy still runs however
# long a busy machine makes the test take to get there. Not slower: ssh's
# keepalive (ServerAliveInterval=5, ServerAliveCountMax=3,
# plugin_utils/host/_host.py) must still get its answer through what the link
# has queued, or the copy would fail by itself.
HOLD_LINK = '256kbit'
# A slow activation that also holds (after its 6 s) until the test lets it
# go: the controller is killed while it runs, however long the deploy took to
# start the other host's (a busy machine). Bounded (under the role's
# nix_activation_timeout, 240 s) so that a test that never lets go leaves none.
RELEASE = '/nix/var/lab/interruptions-release'
HOLD = ('n=0; while [ ! -e %s ] && [ $n -lt 900 ]; do sleep 0.2; n=$((n+1)); done' % RELEASE)


def sending(lab, hosts, proc, bytes_=1000000):
    """Wait until every host received ``bytes_`` more over its link, and hold
    each copy: the moment a host has, its link drops to HOLD_LINK (the test
    shapes it back once it is done with the copy). Then no copy has ended:
    the test acts on copies under way."""
    start = dict((h, lab.link_bytes(h)[0]) for h in hosts)
    held = set()

    def all_held():
        for host in hosts:
            if host not in held and lab.link_bytes(host)[0] - start[host] > bytes_:
                lab.shape(host, rate=HOLD_LINK)
                held.add(host)
        return proc.poll() is not None or held == set(hosts)

    # the deadline bounds the wait only (the evaluation and the builds come
    # first): generous, for a busy machine
    wait_until(all_held, 900, interval=0.2, what='the copies to start')
    assert proc.poll() is None, output(proc)[-3000:]
    ended = [(r['host'], r['status']) for r in records(proc) if r['task'] == COPY]
    assert not ended, (ended, output(proc)[-3000:])


def test_controller_killed_mid_copy(flt):
    lab = flt.lab
    hosts = ['h1', 'h3']   # root, and darwin's deploy user with sudo (signed copies)
    before = dict((h, assert_consistent(lab, h)) for h in hosts)
    version = flt.new_version(hosts, extra_paths=4, extra_bytes=PADDING)
    for host in hosts:   # padding of its own: all of it must cross the link
        flt.flake.set_config(flt.flake.config_of(host), extra_seed=version)
    for host in hosts:
        lab.shape(host, rate=SLOW_LINK)
    try:
        proc = flt.start('-l', ','.join(hosts))
        sending(lab, hosts, proc)
        kill_controller(proc)
    finally:
        for host in hosts:
            lab.shape(host)
    for host in hosts:
        assert assert_consistent(lab, host) == before[host]
        assert not locks(lab, host)
    run = flt.deploy('-l', ','.join(hosts))
    assert run.rc == 0, run
    for host, path in out_paths(run).items():
        assert assert_consistent(lab, host) == path
        verify_store(lab, host, path)
        assert not locks(lab, host)


def test_controller_killed_mid_activation(flt):
    lab = flt.lab
    hosts = ['h5', 'h4']   # NixOS and home-manager
    before = dict((h, assert_consistent(lab, h)) for h in hosts)
    seen = dict((h, len(history(lab, h))) for h in hosts)
    for host in hosts:
        lab.run_in(host, ['rm', '-f', RELEASE])
    # activation takes 6 s, then holds until the controller is dead
    flt.new_version(hosts, behaviour='slow', on_activate=HOLD)
    try:
        proc = flt.start('-l', ','.join(hosts), '-e', 'nix_confirm_timeout=5')
        try:
            wait_until(lambda: proc.poll() is not None or all(
                len(history(lab, h)) > seen[h] for h in hosts), 180, interval=0.2,
                what='the activations to start')
            assert proc.poll() is None, output(proc)[-3000:]
            kill_controller(proc)
        finally:
            for host in hosts:
                lab.run_in(host, ['touch', RELEASE])
        # the activations run on, detached; nobody confirms them, so each
        # host rolls back by itself and lets go of its lock
        for host in hosts:
            settled(lab, host, timeout=300)
            assert assert_consistent(lab, host) == before[host]
        run = flt.deploy('-l', ','.join(hosts))
    finally:
        for host in hosts:
            flt.flake.set_config(flt.flake.config_of(host), behaviour='ok', on_activate='')
            lab.run_in(host, ['rm', '-f', RELEASE])
    assert run.rc == 0, run
    for host, path in out_paths(run).items():
        assert assert_consistent(lab, host) == path
        assert not locks(lab, host)


def test_link_lost_during_copy(flt):
    lab = flt.lab
    host = 'h7'
    before = assert_consistent(lab, host)
    version = flt.new_version([host], extra_paths=4, extra_bytes=PADDING)
    flt.flake.set_config(flt.flake.config_of(host), extra_seed=version)
    lab.shape(host, rate=SLOW_LINK)
    try:
        proc = flt.start('-l', host)
        sending(lab, [host], proc)
        lab.cut(host)
        proc.wait(timeout=180)
    finally:
        lab.restore(host)
        lab.shape(host)
    assert proc.returncode != 0, output(proc)[-3000:]
    failed = [r for r in records(proc) if r['task'] == COPY and r['host'] == host]
    assert failed and failed[-1]['status'] in ('failed', 'unreachable'), output(proc)[-3000:]
    msg = failed[-1]['result'].get('msg', '')
    # clear: which host, that the copy failed, and why (ssh's dead link)
    assert msg.startswith(host) and 'copying' in msg, msg
    assert 'link went dead' in msg or 'timed out' in msg or 'connection' in msg, msg
    assert assert_consistent(lab, host) == before
    assert not locks(lab, host)
    run = flt.deploy('-l', host)
    assert run.rc == 0, run
    path = out_paths(run)[host]
    assert assert_consistent(lab, host) == path
    verify_store(lab, host, path)


def test_two_deploys_at_once_are_serialized(flt, tmp_path):
    lab = flt.lab
    hosts = ['h1', 'h2', 'h6']   # NixOS (root) and nix-on-droid (no root)
    # deploy A: the fleet flake; deploy B: a second checkout with another version
    flt.new_version(hosts, behaviour='slow')
    path_b = str(tmp_path / 'flake-b')
    shutil.copytree(flt.flake.path, path_b)
    flake_b = FleetFlake(path_b, copy.deepcopy(flt.flake.data))
    for host in hosts:
        flake_b.set_config(flake_b.config_of(host), version='B%d' % flt.version)
    inventory_b = write_inventory(os.path.join(str(tmp_path), 'inventory-b'), lab, flake_b,
                                  flt.secret)
    try:
        first = flt.start('-l', ','.join(hosts))
        second = flt.start('-l', ','.join(hosts), inventory=inventory_b)
        first.wait(timeout=300)
        second.wait(timeout=300)
    finally:
        for host in hosts:
            flt.flake.set_config(flt.flake.config_of(host), behaviour='ok')
    # both deploys succeed: the later one waited for the host's lock
    assert first.returncode == 0, output(first)[-3000:]
    assert second.returncode == 0, output(second)[-3000:]
    paths_a, paths_b = out_paths(records(first)), out_paths(records(second))
    for host in hosts:
        final = assert_consistent(lab, host)
        assert final in (paths_a[host], paths_b[host]), host
        assert not locks(lab, host)
        # one activation after the other: each slow one takes 6 s
        times = dict((path, t) for t, _goal, path in history(lab, host))
        assert abs(times[paths_a[host]] - times[paths_b[host]]) >= 5, history(lab, host)
