"""Faults of the targets themselves (issue 30), each in ONE fleet run beside
healthy hosts (`tfl`: plain and systemd NixOS hosts, darwin, home-manager and
nix-on-droid, each /nix a small filesystem of its own; tests/lab/target_faults.py
makes the faults): a full disk during the copy and during the activation, a
garbage collection between copy and activation and after a push-only run, a
stopped nix-daemon, a read-only store, a sudo that asks for a password and a
become_user that does not exist.

For each: the faulty host fails at the right phase with a message that names
the host and the cause, keeps its previous system (profile, active system and
boot default agree, as before) and leaves no lock; the healthy hosts deploy;
a re-run once the fault is gone converges. A garbage collection is no fault
to a deploy: the copied closure is rooted until the activation, so every host
deploys and the collection removes nothing it needs (only real garbage).
"""

import json
import os
import subprocess

import pytest

from tests.faults.fleet import (COPY, PROFILES, TFL_SUDO, assert_consistent, locks,
                                out_paths, summaries, verify_store)
from tests.lab import nspawn

pytestmark = [pytest.mark.faults, pytest.mark.lab]

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
RESCUE = 'Fail the host with the message of its failed phase'
# a plain and (where they run) a systemd NixOS host, both deployed as root
NIXOS = ['n1', 's1']
PADDING = {'extra_paths': 2, 'extra_bytes': 6 << 20}   # more than a full store has left


# ------------------------------------------------------------------ helpers
def system_path(tfl, host):
    """The out path the host's system evaluates to now (the controller's Nix)."""
    proc = subprocess.run(NIX[:1] + ['eval'] + NIX[1:] + [
        '--raw', '%s#%s.outPath' % (tfl.flake.ref, tfl.flake.attr(host))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def closure(path):
    """The closure of ``path`` in the controller's store."""
    proc = subprocess.run(['nix-store', '-qR', path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=True)
    return set(proc.stdout.split())


def generation_time(lab, host, path):
    """When the host's profile got the generation that is ``path`` (the
    generation link's mtime), or None."""
    profile = PROFILES[lab.host(host)['persona']]
    folder = os.path.join(lab.host(host)['dir'], os.path.dirname(profile).lstrip('/'))
    name = os.path.basename(profile) + '-'
    for entry in os.listdir(folder):
        link = os.path.join(folder, entry)
        if entry.startswith(name) and entry.endswith('-link') and \
                os.path.islink(link) and os.readlink(link) == path:
            return os.lstat(link).st_mtime
    return None


def failure(run, host):
    """(task, msg) of the host's first failed task (its phase's, not the
    role's rescue that repeats it)."""
    for rec in run.results(host=host):
        if rec['status'] in ('failed', 'unreachable') and not rec['task'].endswith(RESCUE):
            return rec['task'], rec['result'].get('msg') or json.dumps(rec['result'])
    raise AssertionError('%s did not fail\n%r' % (host, run))


def snapshot(lab, hosts):
    return dict((h, assert_consistent(lab, h)) for h in hosts)


def assert_fault(run, lab, host, before, phase, words):
    """The host failed at ``phase``, its message names it and one of
    ``words`` (lower case), it runs what it ran and holds no lock."""
    summary = summaries(run)[host]
    task, msg = failure(run, host)
    print('%s failed at %s: %s' % (host, summary.get('phase'), msg))   # shown when a test fails
    assert summary['failed'], (host, summary)
    assert summary['phase'] == phase, (host, phase, summary, task, msg)
    assert host in msg, (host, task, msg)
    assert any(word in msg.lower() for word in words), (host, words, task, msg)
    assert assert_consistent(lab, host) == before[host], host
    assert not locks(lab, host), (host, locks(lab, host))
    return msg


def assert_deployed(run, lab, hosts):
    paths = out_paths(run)
    for host in hosts:
        assert summaries(run)[host]['outcome'] == 'switched', (host, summaries(run)[host])
        assert assert_consistent(lab, host) == paths[host], host
        assert not locks(lab, host), host
    return paths


def converge(tfl, hosts):
    """Once the fault is gone, a re-run deploys the hosts."""
    run = tfl.deploy('-l', ','.join(hosts))
    assert run.rc == 0, run
    return assert_deployed(run, tfl.lab, hosts)


def healthy(tfl, faulty):
    return sorted(h for h in tfl.lab.hosts if h not in faulty)


def run_with_fault(tfl, faulty, phase, words, break_host=None, mend_host=None, args=()):
    """ONE deploy of a new version to the whole fleet, ``faulty`` broken by
    ``break_host`` before it (``mend_host`` after it, whatever happens):
    each faulty host fails at ``phase``, names one of ``words``, keeps what it
    ran and holds no lock; the others switch; once mended, a re-run of the
    faulty hosts converges."""
    lab = tfl.lab
    before = snapshot(lab, lab.hosts)
    tfl.new_version()
    for host in faulty:
        if break_host:
            break_host(host)
    try:
        run = tfl.deploy(*args)
    finally:
        for host in faulty:
            if mend_host:
                mend_host(host)
    assert run.rc != 0, run
    for host in faulty:
        assert_fault(run, lab, host, before, phase, words)
    assert_deployed(run, lab, healthy(tfl, faulty))
    converge(tfl, faulty)


# ------------------------------------------------------------------ the fleet
def test_systemd_hosts_in_the_fleet(tfl):
    if not tfl.systemd:
        pytest.skip('s1, s2 are plain hosts here: %s' % nspawn.unsupported())
    for host in ('s1', 's2'):
        assert tfl.lab.host(host)['systemd']
        assert tfl.lab.run_in(host, ['cat', '/proc/1/comm']).stdout.strip() == 'systemd'


# ------------------------------------------------------------------ full disk
def test_full_disk_during_the_copy(tfl):
    lab, faulty = tfl.lab, list(NIXOS)
    before = snapshot(lab, lab.hosts)
    version = tfl.new_version()
    for host in faulty:   # new bytes the full store has no room for
        tfl.flake.set_config(tfl.flake.config_of(host), extra_seed=version, **PADDING)
        lab.fill_store(host, 1 << 20)
    try:
        run = tfl.deploy()
        frees = dict((h, lab.store_free(h)) for h in faulty)
    finally:
        for host in faulty:
            lab.unfill_store(host)
    assert run.rc != 0, run
    for host in faulty:
        assert_fault(run, lab, host, before, 'copy', ('space',))
        assert frees[host] <= 2 << 20, frees   # nothing filled the store further
    assert_deployed(run, lab, healthy(tfl, faulty))
    converge(tfl, faulty)


@pytest.mark.slow
def test_full_disk_when_the_activation_starts(tfl):
    """The closure is there; then something else fills /nix (logs, another
    copy) before the activation: the profile link and the state folder have
    no room."""
    lab, faulty = tfl.lab, list(NIXOS)
    before = snapshot(lab, lab.hosts)
    tfl.new_version()
    watchers = [lab.fill_when_valid(h, system_path(tfl, h), 0, timeout=300) for h in faulty]
    try:
        run = tfl.deploy()
        for watcher in watchers:
            assert watcher.wait(timeout=60) < (64 << 10), watcher.result
    finally:
        for watcher in watchers:
            watcher.stop()
        for host in faulty:
            lab.unfill_store(host)
    assert run.rc != 0, run
    for host in faulty:
        assert_fault(run, lab, host, before, 'activate', ('space', 'full'))
    assert_deployed(run, lab, healthy(tfl, faulty))
    converge(tfl, faulty)


def test_full_disk_in_the_middle_of_the_activation(tfl):
    """The new system's activation itself fills /nix and cannot write its
    boot loader entry: the host rolls back (with the little room left)."""
    lab, faulty = tfl.lab, list(NIXOS)
    before = snapshot(lab, lab.hosts)
    tfl.new_version()
    fill = lab.fill_store_sh(256 << 10) + (
        '; head -c 1048576 /dev/zero >/nix/var/lab/boot-entry 2>/dev/null || {'
        ' rm -f /nix/var/lab/boot-entry;'
        ' echo "lab: cannot write the boot loader entry: No space left on device" >&2; exit 1; }')
    for host in faulty:
        tfl.flake.set_config(tfl.flake.config_of(host), on_activate=fill)
    try:
        run = tfl.deploy()
    finally:
        for host in faulty:
            tfl.flake.set_config(tfl.flake.config_of(host), on_activate='')
            lab.unfill_store(host)
    assert run.rc != 0, run
    for host in faulty:
        assert_fault(run, lab, host, before, 'activate', ('space',))
        assert summaries(run)[host]['rolled_back'], summaries(run)[host]
    assert_deployed(run, lab, healthy(tfl, faulty))
    tfl.new_version(faulty)
    converge(tfl, faulty)


# ------------------------------------------------------------------ garbage collection
def add_garbage(lab, host):
    """An unrooted path in the host's store: what a collection must take."""
    user = 'app' if lab.host(host)['persona'] == 'nix-on-droid' else None
    # the file is removed after the add: the host's /tmp is the machine's
    proc = lab.run_in(host, ['sh', '-c', 'f=$(mktemp) && echo garbage-%s >"$f" && '
                             '{ nix-store --add "$f"; rc=$?; rm -f "$f"; exit $rc; }' % host],
                      user=user)
    return proc.stdout.strip()


@pytest.mark.slow
def test_gc_between_the_copy_and_the_activation(tfl):
    lab = tfl.lab
    # root's store (plain and systemd), a user's (home-manager: the daemon's
    # roots for app) and a single-user store (nix-on-droid)
    watched = NIXOS + ['m1', 'a1']
    tfl.new_version()
    garbage = dict((h, add_garbage(lab, h)) for h in watched)
    paths = dict((h, system_path(tfl, h)) for h in watched)
    watchers = dict((h, lab.gc_when_valid(h, paths[h], timeout=300)) for h in watched)
    try:
        run = tfl.deploy()
        deleted = dict((h, w.wait(timeout=60)) for h, w in watchers.items())
    finally:
        for watcher in watchers.values():
            watcher.stop()
    for host in watched:
        # the collection took real garbage, and nothing of the system the
        # activation needs
        assert garbage[host] in deleted[host], (host, deleted[host])
        assert not closure(paths[host]) & set(deleted[host]), (host, deleted[host])
    assert run.rc == 0, run
    assert_deployed(run, lab, sorted(lab.hosts))
    for host in watched:
        # ... and it ran between the copy and the activation: before the
        # profile got the new generation
        started = watchers[host].result['action_started']
        switched = generation_time(lab, host, paths[host])
        assert switched is not None and started < switched, (host, started, switched)
        verify_store(lab, host, paths[host])


def test_gc_after_a_push_only_run(tfl):
    lab = tfl.lab
    tfl.new_version()
    before = snapshot(lab, lab.hosts)
    push = tfl.deploy('--skip-tags', 'activate')
    assert push.rc == 0, push
    paths = out_paths(push)
    for host in sorted(lab.hosts):
        assert assert_consistent(lab, host) == before[host], host   # nothing activated
        assert lab.store_has(host, paths[host]), host
        garbage = add_garbage(lab, host)
        deleted = lab.gc(host)
        assert garbage in deleted, (host, deleted)
        # the pushed closure stays: rooted until an activation replaces the root
        assert not closure(paths[host]) & set(deleted), (host, deleted)
        verify_store(lab, host, paths[host])
    run = tfl.deploy()
    assert run.rc == 0, run
    assert assert_deployed(run, lab, sorted(lab.hosts)) == paths
    for host in sorted(lab.hosts):   # nothing to send again
        assert run.result(COPY, host)['result']['paths_sent'] == 0, run.result(COPY, host)


# ------------------------------------------------------------------ nix-daemon, store
def test_stopped_daemon(tfl):
    """A user's copy needs the daemon (home-manager's app; s2's deploy, on a
    systemd host). Root opens the store itself: n1 and s1 deploy without
    noticing, as NixOS's root does."""
    run_with_fault(tfl, ['m1', 's2'], 'copy', ('nix-daemon', 'daemon'),
                   tfl.lab.stop_daemon, tfl.lab.start_daemon)


def test_read_only_store(tfl):
    lab = tfl.lab
    run_with_fault(tfl, NIXOS + ['m1'], 'copy', ('read-only',),
                   lambda host: lab.set_store_read_only(host, True),
                   lambda host: lab.set_store_read_only(host, False))


# ------------------------------------------------------------------ sudo
def test_sudo_asks_for_a_password(tfl):
    """d1 (darwin) and s2 (NixOS on systemd) log in as deploy and become
    root with sudo, and no become password is given."""
    lab = tfl.lab
    # the copy is the deploy user's own (signed paths): root is first needed
    # by the activation
    run_with_fault(tfl, list(TFL_SUDO), 'activate', ('password',),
                   lambda host: lab.set_sudo_password(host, True),
                   lambda host: lab.set_sudo_password(host, False))


def test_become_user_that_does_not_exist(tfl):
    # only the hosts that become someone use it
    run_with_fault(tfl, list(TFL_SUDO), 'activate', ('nosuchuser',),
                   args=('-e', 'ansible_become_user=nosuchuser'))
