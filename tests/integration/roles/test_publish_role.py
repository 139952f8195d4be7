"""Pull deploys on the `pub` lab: `ansible-playbook nixdeploy.fleet.publish` builds
every host's system, pushes what built to a file:// binary cache, signed, and
moves each host's nixos-tested-<host> branch in a bare git repository; then
each host pulls its own branch ITSELF, as its auto-upgrade would: `nix build`
of its branch's system from the cache with building disabled, then the
activation nixos-rebuild runs.

The tests run in order on one fleet of four NixOS hosts:
  1. commit 1: every channel moves, every host pulls and switches;
  2. commit 2 (h4 does not build) in check mode: the four refs that would
     move are listed, nothing moves, nothing is copied;
  3. commit 2 for real: the play fails naming h4; h1-h3 move, are in the
     cache, signed, and pull and switch with no build; h4 keeps commit 1
     and its pull brings nothing new;
  4. commit 2 again: nothing is copied and nothing moves;
  5. commit 3 with every host off (h4 still broken): the three systems are
     built, pushed signed and their refs moved, no host is unreachable; a
     second publish changes nothing;
  6. commit 4 with h1 and h2 off, h3 and h4 on: the same, h4 failing alone.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.collection import collections_path, run_playbook
from tests.deploy_fleet import signing_key, trust_key, write_inventory
from tests.lab.fixtures import FleetFlake

sys.path.insert(0, collections_path())
# path-info --json is a list before Nix 2.19 and a map after: read by the collection's reader
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.here_only]

PLAYBOOK = 'nixdeploy.fleet.publish'
PIN = 'nixdeploy.fleet.publish : Pin the flake to its commit'
EVAL = 'nixdeploy.fleet.publish : Evaluate the system of each host'
BUILD = 'nixdeploy.fleet.publish : Build the system of each host'
PUBLISH = 'nixdeploy.fleet.publish : Push the closures to the cache, signed'
CHANNEL = "nixdeploy.fleet.publish : Move each host's tested channel to the commit"
HOSTS = ['h1', 'h2', 'h3', 'h4']
GOOD = ['h1', 'h2', 'h3']
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes']
# what the host's auto-upgrade passes to nixos-rebuild: the cache as its only
# substituter, and no way to build anything (no local jobs, no builders)
PULL_FLAGS = "--option substituters {cache} --option builders '' --max-jobs 0"


def git(cwd, *args):
    return subprocess.run(['git', '-c', 'user.name=ci', '-c', 'user.email=ci@localhost']
                          + list(args), cwd=cwd, check=True, universal_newlines=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.strip()


class Fleet:
    def __init__(self, lab, flake, inventory, workdir, cache, repo, key_name):
        self.lab, self.flake, self.inventory, self.workdir = lab, flake, inventory, workdir
        self.cache, self.repo, self.key_name = cache, repo, key_name
        self.runs = 0
        self.commits = []
        self.systems = []    # per commit: {host: out path}

    def commit(self, message):
        git(self.flake.path, 'add', '-A')
        git(self.flake.path, 'commit', '-q', '-m', message)
        self.commits.append(git(self.flake.path, 'rev-parse', 'HEAD'))
        return self.commits[-1]

    def publish(self, *args):
        self.runs += 1
        workdir = os.path.join(self.workdir, 'run%d' % self.runs)
        extra = {'nix_publish_cache': 'file://' + self.cache, 'nix_channel_repo': self.repo}
        return run_playbook(PLAYBOOK, self.inventory, workdir,
                            args=['-e', json.dumps(extra)] + list(args))

    def refs(self):
        out = subprocess.run(['git', 'ls-remote', self.repo], check=True, universal_newlines=True,
                             stdout=subprocess.PIPE).stdout
        return dict((ref.rsplit('nixos-tested-', 1)[1], commit)
                    for commit, ref in (line.split('\t') for line in out.splitlines()))

    def cache_listing(self):
        """{file: (size, mtime)} of the cache: any copy or signature changes it."""
        found = {}
        for folder, _dirs, files in os.walk(self.cache):
            for name in files:
                stat = os.stat(os.path.join(folder, name))
                found[os.path.relpath(os.path.join(folder, name), self.cache)] = (
                    stat.st_size, stat.st_mtime_ns)
        return found

    def cached(self, paths):
        """{path: signatures or None} as the cache holds them."""
        out = subprocess.run(NIX + ['path-info', '--json', '--store', 'file://' + self.cache]
                             + list(paths), check=True, universal_newlines=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
        return dict((path, info['signatures'] if info else None)
                    for path, info in _nix_output.path_infos(json.loads(out)).items())

    def pull(self, host):
        """The host's own pull of its channel, as root on the host over ssh:
        the nix build nixos-rebuild runs for system.autoUpgrade.flake, then the
        activation it runs. Returns (system, nix's output)."""
        flake = 'git+file://%s?ref=nixos-tested-%s' % (self.repo, host)
        attr = '%s#%s' % (flake, self.flake.attr(host))
        script = '\n'.join([
            'set -eu',
            'nix --extra-experimental-features "nix-command flakes" build --refresh --no-link'
            ' --json %s %s >/tmp/pull-$$.json' % (
                shlex.quote(attr), PULL_FLAGS.format(cache=shlex.quote('file://' + self.cache))),
            'top=$(sed -n \'s/.*"out":"\\([^"]*\\)".*/\\1/p\' /tmp/pull-$$.json); rm /tmp/pull-$$.json',
            'nix-env -p /nix/var/nix/profiles/system --set "$top"',
            '"$top/bin/switch-to-configuration" switch >&2',
            'echo "$top"',
        ])
        proc = self.lab.ssh(host, script, user='root', check=False, timeout=120)
        assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
        return proc.stdout.strip().splitlines()[-1], proc.stderr

    def pull_all(self, hosts):
        with ThreadPoolExecutor(len(hosts)) as pool:
            return dict(zip(hosts, pool.map(self.pull, hosts)))

    def store_count(self, host):
        return len(self.lab.run_in(host, ['ls', '/nix/store']).stdout.split())


@pytest.fixture(scope='module')
def pub(make_lab, tmp_path_factory):
    lab = make_lab('pub', 4)
    base = str(tmp_path_factory.mktemp('pub'))
    secret, public = signing_key(base)
    trust_key(lab, public)
    # the fleet's flake as a git checkout, the bare repository of the channels
    # and the cache: under /tmp, which the hosts share (only /nix, /home, /root
    # and /etc/nix are their own)
    flake = FleetFlake.for_lab(os.path.join(base, 'fleet'), lab)
    git(flake.path, 'init', '-q')
    repo = os.path.join(base, 'channels.git')
    git(base, 'init', '-q', '--bare', repo)
    cache = os.path.join(base, 'cache')
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    fleet = Fleet(lab, flake, inventory, base, cache, repo, public.split(':')[0])
    fleet.commit('version 1')
    return fleet


def systems(run, task=EVAL):
    return dict((r['host'], r['result']['out_path']) for r in run.results(task)
                if r['status'] == 'ok')


def test_first_publish_moves_every_channel_and_each_host_pulls_it(pub):
    run = pub.publish()
    assert run.rc == 0, run
    first = systems(run)
    assert sorted(first) == HOSTS, run
    pub.systems.append(first)
    assert pub.refs() == dict((h, pub.commits[0]) for h in HOSTS)
    # the batch was one publish and one ls-remote + push, each done by one host's task
    assert len([r for r in run.results(PUBLISH) if r['result'].get('published_here')]) == 1
    pushers = [r['result'] for r in run.results(CHANNEL) if r['result'].get('pushed_here')]
    assert [(p['batch_hosts'], p['processes']) for p in pushers] == [(4, 2)], pushers
    for host in HOSTS:
        assert run.result(CHANNEL, host)['result']['status'] == 'new'
    # the closing line says what the run did: no host activated, four refs made
    assert re.search(r'^nixdeploy: 4 hosts: .*, 4 not activated, channel refs: 4 new$',
                     run.stdout, re.M), run.stdout[-2000:]
    pulled = pub.pull_all(HOSTS)
    for host in HOSTS:
        assert pulled[host][0] == first[host]
        assert pub.lab.active(host) == first[host]


def test_check_mode_lists_the_channels_that_would_move(pub):
    pub.flake.set_all(version='2')
    pub.flake.set_config('h4', broken_build=True)
    pub.commit('version 2, h4 broken')
    listing = pub.cache_listing()
    run = pub.publish('--check', '--diff')
    assert run.rc == 0, run
    moving = sorted(r['host'] for r in run.results(CHANNEL) if r['result'].get('changed'))
    # check mode builds nothing, so h4's broken build is not known yet
    assert moving == HOSTS, run
    assert 'would move' in run.result(CHANNEL, 'h1')['result']['msg']
    assert pub.commits[1] in run.stdout  # --diff shows the commit each ref would get
    assert pub.refs() == dict((h, pub.commits[0]) for h in HOSTS)
    assert pub.cache_listing() == listing


def test_broken_host_fails_alone_and_the_others_pull_the_new_commit(pub):
    before_h4 = pub.store_count('h4')
    run = pub.publish()
    assert run.rc != 0, run
    second = systems(run)
    pub.systems.append(second)
    # h4 fails at its build, with the build's own message, and goes no further
    failure = run.result(BUILD, 'h4')
    assert failure['status'] == 'failed'
    assert failure['result']['msg'].startswith('h4: ')
    assert 'this system does not build' in failure['result']['msg']
    assert 'fatal: [h4]' in run.stdout and 'this system does not build' in run.stdout
    assert run.results(PUBLISH, 'h4') == [] and run.results(CHANNEL, 'h4') == []
    # three refs moved to the new commit, the fourth did not
    refs = pub.refs()
    assert refs == {'h1': pub.commits[1], 'h2': pub.commits[1], 'h3': pub.commits[1],
                    'h4': pub.commits[0]}, refs
    for host in GOOD:
        result = run.result(CHANNEL, host)['result']
        assert (result['status'], result['before']) == ('moved', pub.commits[0]), result
    # the cache holds the three new closures, every path signed by the key;
    # nothing of h4's new system
    closures = subprocess.run(NIX + ['path-info', '-r'] + [second[h] for h in GOOD],
                              check=True, universal_newlines=True,
                              stdout=subprocess.PIPE).stdout.split()
    cached = pub.cached(closures + [second['h4']])
    for path in closures:
        assert cached[path], path
        assert any(s.startswith(pub.key_name + ':') for s in cached[path]), (path, cached[path])
    assert cached[second['h4']] is None
    # each of the three pulls its branch from the cache, building nothing
    # (--max-jobs 0, no builders), and switches to the new system
    pulled = pub.pull_all(HOSTS)
    for host in GOOD:
        system, log = pulled[host]
        assert system == second[host] != pub.systems[0][host]
        assert "copying path '%s' from 'file://%s'" % (second[host], pub.cache) in log, log
        assert pub.lab.active(host) == second[host]
    # h4's branch still names commit 1: its pull brings nothing new
    assert pulled['h4'][0] == pub.systems[0]['h4']
    assert pub.lab.active('h4') == pub.systems[0]['h4']
    assert pub.store_count('h4') == before_h4


def test_second_publish_copies_nothing_and_moves_nothing(pub):
    refs, listing = pub.refs(), pub.cache_listing()
    run = pub.publish()
    assert run.rc != 0, run   # h4 still does not build
    for host in GOOD:
        published = run.result(PUBLISH, host)['result']
        assert not published['changed'] and not published['copied'], published
        assert published['missing_paths'] == 0, published
        channel = run.result(CHANNEL, host)['result']
        assert (channel['changed'], channel['status']) == (False, 'current'), channel
    assert pub.refs() == refs
    assert pub.cache_listing() == listing


def switch_off(lab, hosts):
    """The hosts go off and stay off (sshd and every process gone)."""
    for host in hosts:
        lab.set_power(host, comes_back=False, down_seconds=0)
        lab.reboot(host, wait=False)
    for host in hosts:
        deadline = time.monotonic() + 30
        while lab.power_state(host) != 'off':
            assert time.monotonic() < deadline, '%s did not go off within 30 s' % host
            time.sleep(0.1)
        assert lab.ssh(host, 'true', user='root', check=False, timeout=20).returncode == 255, host


def switch_on(lab, hosts):
    for host in hosts:
        lab.set_power(host, comes_back=True, down_seconds=1)
        if lab.power_state(host) == 'off':
            lab.power_on(host)


def published_while_off(pub, run, commit, off):
    """What a publish of ``commit`` with the hosts ``off`` must have done:
    h4 fails at its build, as with every host on; h1-h3 are built, in the
    cache, signed, and their refs at ``commit``; no host is unreachable."""
    assert run.rc == 2, run   # the exit code of a publish with one failed host
    assert 'this system does not build' in run.result(BUILD, 'h4')['result']['msg'], run
    for host in HOSTS:
        assert re.search(r'%s\s+: ok=\d+ .*unreachable=0 +failed=%d'
                         % (host, host == 'h4'), run.stdout), (host, run.stdout[-3000:])
    assert 'UNREACHABLE' not in run.stdout and 'to try again' not in run.stdout, run.stdout[-3000:]
    closing = [line for line in run.stdout.splitlines() if line.startswith('nixdeploy: 4 hosts: ')]
    assert len(closing) == 1 and closing[0].startswith('nixdeploy: 4 hosts: 1 failed, '), closing
    assert 'unreachable' not in closing[0], closing
    built = systems(run)
    assert sorted(built) == HOSTS, run
    refs = pub.refs()
    assert refs == {'h1': commit, 'h2': commit, 'h3': commit, 'h4': pub.commits[0]}, refs
    closures = subprocess.run(NIX + ['path-info', '-r'] + [built[h] for h in GOOD],
                              check=True, universal_newlines=True,
                              stdout=subprocess.PIPE).stdout.split()
    cached = pub.cached(closures + [built['h4']])
    for path in closures:
        assert any(s.startswith(pub.key_name + ':') for s in cached[path] or ()), (path, cached)
    assert cached[built['h4']] is None
    # the hosts that were off still are: nothing logged in to them
    for host in off:
        assert pub.lab.power_state(host) == 'off', host
    return built


def test_publish_with_every_host_off_builds_pushes_and_moves_refs(pub):
    pub.flake.set_all(version='3')
    pub.flake.set_config('h4', broken_build=True)
    commit = pub.commit('version 3, h4 still broken')
    switch_off(pub.lab, HOSTS)
    try:
        run = pub.publish()
        published_while_off(pub, run, commit, HOSTS)
        # a second publish with the hosts still off changes nothing
        refs, listing = pub.refs(), pub.cache_listing()
        again = pub.publish()
        assert again.rc == 2, again
        for host in GOOD:
            channel = again.result(CHANNEL, host)['result']
            assert (channel['changed'], channel['status']) == (False, 'current'), channel
            assert not again.result(PUBLISH, host)['result']['copied'], again
        assert pub.refs() == refs and pub.cache_listing() == listing
        assert 'unreachable=1' not in again.stdout, again.stdout[-3000:]
    finally:
        switch_on(pub.lab, HOSTS)


def test_publish_with_some_hosts_off_and_a_broken_one(pub):
    pub.flake.set_all(version='4')
    pub.flake.set_config('h4', broken_build=True)
    commit = pub.commit('version 4, h4 still broken')
    switch_off(pub.lab, ['h1', 'h2'])
    try:
        run = pub.publish()
        built = published_while_off(pub, run, commit, ['h1', 'h2'])
    finally:
        switch_on(pub.lab, ['h1', 'h2'])
    # h3, on all along, pulls the new commit; h1, back on, does too
    pulled = pub.pull_all(['h1', 'h3'])
    for host in ('h1', 'h3'):
        assert pulled[host][0] == built[host]
        assert pub.lab.active(host) == built[host]
