"""nixdeploy.fleet.nix_build for real: playbooks against the lab, real Nix.

Every test's systems carry a version unique to the test folder, so nothing
of theirs is in the controller's store before the test builds it.
"""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from benchmarks._pipeline_figures import MARKER, NixSampler
from tests.integration.plugins.action import conftest_eval
from tests.integration.plugins.action.conftest_eval import (
    NIX_OPTIONS, calls, inventory, lab_session, make_flake, nix_wrapper, play, truth)
from tests.collection import collections_path
from tests.lab import heavy

sys.path.insert(0, collections_path())
# how many evaluators nix_eval's defaults give a batch on this controller
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.pool._budget import (  # noqa: E402
    DEFAULT_MAX_MEMORY_MB, default_workers)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _gc_roots  # noqa: E402

pytestmark = pytest.mark.lab


@pytest.fixture(scope='module')
def evb_lab():
    yield from lab_session()


# the module-scoped fixture of conftest_eval, visible to pytest here
calibrated = conftest_eval.calibrated


def tasks(nix, roots, **build_args):
    common = {'nix_bin': nix, 'nix_options': NIX_OPTIONS}
    build = dict(common, gc_root_dir=str(roots))
    build.update(build_args)
    return [{'name': 'evaluate', 'nixdeploy.fleet.nix_eval': common},
            {'name': 'build', 'nixdeploy.fleet.nix_build': build}]


def valid_here(path):
    return subprocess.run(['nix-store', '--check-validity', path], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode == 0


def root_of(roots, flake, host):
    """A host's controller GC root: <roots>/<the flake's fleet>/<host>."""
    return _gc_roots.root_path(str(roots), host, _gc_roots.fleet_of(flake.ref))


def roots_of(path):
    return subprocess.run(['nix-store', '--query', '--roots', path], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout


def test_roots_in_the_stores_gcroots_are_plain_symlinks(evb_lab, tmp_path):
    """The default gc_root_dir lies in /nix/var/nix/gcroots: there a symlink
    is a root by itself, so no nix-store process runs per host."""
    flake = make_flake(tmp_path / 'flake', evb_lab)
    roots = '/nix/var/nix/gcroots/nixdeploy-test-%s' % flake.token
    nix, _log = nix_wrapper(tmp_path)
    # a logging nix-store beside it (the build finds nix-store beside nix_bin)
    store_log = tmp_path / 'nix-store.log'
    wrapper = tmp_path / 'nix-store'
    wrapper.write_text('#!/bin/sh\necho "$*" >>%s\nexec /usr/bin/nix-store "$@"\n' % store_log)
    wrapper.chmod(0o755)
    try:
        run = play(tmp_path / 'play', evb_lab, flake, tasks(nix, roots))
        assert run.rc == 0, run
        store_calls = store_log.read_text().splitlines() if store_log.exists() else []
        assert not [c for c in store_calls if '--add-root' in c], store_calls
        for host in evb_lab.hosts:
            got = run.result('build', host)['result']
            root = root_of(roots, flake, host)
            assert got['gc_root'] == root and os.readlink(root) == got['out_path']
            # Nix's own collector counts it
            assert root in roots_of(got['out_path']), host
    finally:
        shutil.rmtree(roots, ignore_errors=True)


def test_one_build_gc_roots_replaced(evb_lab, tmp_path):
    flake = make_flake(tmp_path / 'flake', evb_lab,
                       configurations={'h2': {'platform': 'darwin', 'extra_paths': 3,
                                              'extra_bytes': 3000}})
    nix, log = nix_wrapper(tmp_path)
    roots = tmp_path / 'roots'
    run = play(tmp_path / 'play1', evb_lab, flake, tasks(nix, roots))
    assert run.rc == 0, run
    # one real build for the 8 systems (plus the dry run that says what to build)
    builds = calls(log, 'build')
    assert len([b for b in builds if '--dry-run' not in b]) == 1, builds
    first = {}
    for host in evb_lab.hosts:
        res = run.result('build', host)
        assert res['status'] == 'ok', res
        got = res['result']
        assert got['built'] is True and got['changed'] is True
        assert got['build_on'] == 'controller'
        assert got['out_path'] == run.result('evaluate', host)['result']['out_path']
        assert valid_here(got['out_path'])
        assert got['closure_paths'] >= 2 and got['closure_bytes'] > 0
        root = root_of(roots, flake, host)
        assert got['gc_root'] == root and os.readlink(root) == got['out_path']
        assert root in roots_of(got['out_path'])
        first[host] = got['out_path']
    assert run.result('build', 'h2')['result']['closure_paths'] >= 5   # 3 padding paths
    # next deploy: h1 changes; its root moves, the others are not rebuilt
    flake.set_config('h1', version='2-%s' % flake.token)
    run = play(tmp_path / 'play2', evb_lab, flake, tasks(nix, roots))
    assert run.rc == 0, run
    h1 = run.result('build', 'h1')['result']
    assert h1['built'] is True and h1['out_path'] != first['h1']
    assert os.readlink(root_of(roots, flake, 'h1')) == h1['out_path']
    assert root_of(roots, flake, 'h1') not in roots_of(first['h1'])
    for host in set(evb_lab.hosts) - {'h1'}:
        got = run.result('build', host)['result']
        assert got['built'] is False and got['changed'] is False
        assert os.readlink(root_of(roots, flake, host)) == first[host]


# Proven elsewhere, so not here again: a broken build fails its hosts alone,
# named, with the builder's log tail (test_new_user.py, test_report.py, and
# the stage's test_build_stage.py); check mode builds nothing and says what it
# would build (test_build_stage.py, with real Nix).
def test_build_on_target_and_on_builder(evb_lab, tmp_path):
    flake = make_flake(tmp_path / 'flake', evb_lab)
    nix, _log = nix_wrapper(tmp_path)
    roots = tmp_path / 'roots'
    # h1-h4: one of each persona builds on itself; h6 (darwin) on the
    # builder h5, an inventory host outside the play (-l)
    extra = dict((h, {'nix_build_on': 'target'}) for h in ('h1', 'h2', 'h3', 'h4'))
    extra['h6'] = {'nix_build_on': 'h5'}
    inv = inventory(evb_lab, flake, extra=extra)
    limit = ['-l', 'h1,h2,h3,h4,h6']
    check = play(tmp_path / 'check', evb_lab, flake, tasks(nix, roots), inv=inv, check=True,
                 args=limit)
    assert check.rc == 0, check
    for host in ('h1', 'h2', 'h3', 'h4', 'h6'):
        got = check.result('build', host)['result']
        assert got['drv_path'] in got['would_build'] and not got['built'], got
        assert not evb_lab.store_has(host, got['drv_path'])   # check mode copies nothing
    run = play(tmp_path / 'play', evb_lab, flake, tasks(nix, roots), inv=inv, args=limit)
    assert run.rc == 0, run
    for host in ('h1', 'h2', 'h3', 'h4'):
        got = run.result('build', host)['result']
        assert got['build_on'] == 'target' and got['built'] is True, got
        out = got['out_path']
        assert evb_lab.store_has(host, out), host
        assert not valid_here(out), 'built on %s but in the controller store' % host
        assert got['closure_paths'] >= 2
        assert not os.path.exists(root_of(roots, flake, host))
    h6 = run.result('build', 'h6')['result']
    assert h6['build_on'] == 'h5' and h6['built'] is True
    assert evb_lab.store_has('h5', h6['out_path'])          # built on the builder
    assert not evb_lab.store_has('h6', h6['out_path'])      # not yet on the target
    assert valid_here(h6['out_path'])                       # fetched for nix_copy_closure
    assert os.readlink(root_of(roots, flake, 'h6')) == h6['out_path']
    # again: everything is there, nothing is built
    run = play(tmp_path / 'again', evb_lab, flake, tasks(nix, roots), inv=inv, args=limit)
    assert run.rc == 0, run
    for host in ('h1', 'h2', 'h3', 'h4', 'h6'):
        assert run.result('build', host)['result']['changed'] is False


# test_a_slow_system_in_a_wave_holds_only_its_host: h1's build (seconds of
# sleep), and how long before it the other hosts of its wave end
SLOW_BUILD = 10
WAVE_GAP = 4


# the wave's rules on both stacks: test_build_stage.py and test_batch_server.py (unit, real Nix)
@pytest.mark.here_only
def test_a_slow_system_in_a_wave_holds_only_its_host(evb_lab, tmp_path, calibrated):
    """Hosts that ask together share ONE nix build (a wave); a slow system in
    it holds only its own host: the others are answered as soon as their
    own systems are in the store, not when the wave's build ends. Nix's
    default max-jobs (1) would build them one behind the other: the wave
    asks for as many side by side as it has systems, up to the cores."""
    # h1's build sleeps SLOW_BUILD seconds; the others are built in well
    # under a second, and the build's watch (_build._Watch) looks for them
    # every second: they end at least WAVE_GAP before h1 (the rest of the
    # build is left for a busy machine's answers), where a wave that holds
    # every host until its build ends gives no gap at all
    flake = make_flake(tmp_path / 'flake', evb_lab, configurations={
        'h1': heavy.heavy_config(build_seconds=SLOW_BUILD, calibration=calibrated)})
    nix, log = nix_wrapper(tmp_path)
    roots = tmp_path / 'roots'
    run = play(tmp_path / 'play', evb_lab, flake, tasks(nix, roots),
               hosts='h1,h2,h3,h4,h5,h6,h7,h8')
    assert run.rc == 0, run
    builds = [b for b in calls(log, 'build') if '--dry-run' not in b]
    assert len(builds) == 1, builds  # one wave for the hosts that asked together
    ended = dict((r['host'], r['ended']) for r in run.results('build'))
    others = [h for h in evb_lab.hosts if h != 'h1']
    assert all(run.result('build', h)['result']['built'] for h in evb_lab.hosts)
    assert ended['h1'] - max(ended[h] for h in others) > WAVE_GAP, ended


# nix_build's own evaluation on both stacks: test_build_stage.py (unit, real Nix)
@pytest.mark.here_only
def test_given_no_derivation_it_evaluates_as_nix_eval_does(evb_lab, tmp_path, calibrated):
    """nix_build alone (no nix_eval before it, no nix_drv_path fact): the
    wave's hosts are evaluated side by side, as nix_eval's evaluators do,
    within the job's evaluator slots; a host whose system does not evaluate
    fails alone with Nix's message; a second run of the unchanged flake
    answers every host from the evaluation cache and evaluates nothing."""
    # half a CPU second each: long enough for the sampler to see them
    configurations = dict((host, dict(heavy.heavy_config(seconds=0.5, calibration=calibrated),
                                      platform=spec['platform']))
                          for host, spec in evb_lab.hosts.items())
    configurations['h3'].update({'platform': 'nix-on-droid', 'broken_eval': True})
    flake = make_flake(tmp_path / 'flake', evb_lab, configurations=configurations)
    nix, log = nix_wrapper(tmp_path)
    token = uuid.uuid4().hex
    env = {'NIXDEPLOY_EVAL_CACHE': str(tmp_path / 'cache'), MARKER: token}
    build = [{'name': 'build', 'nixdeploy.fleet.nix_build': {
        'nix_bin': nix, 'nix_options': NIX_OPTIONS, 'gc_root_dir': str(tmp_path / 'roots')}}]
    good = sorted(h for h in evb_lab.hosts if h != 'h3')
    # each plain nix eval costs the system's half second again: once each
    outs = dict((host, truth(flake, host)['outPath']) for host in good)

    def check(run):
        assert run.rc != 0, run
        res = run.result('build', 'h3')
        assert res['status'] == 'failed', res
        assert res['result']['msg'].startswith('h3: '), res
        assert "attribute 'lab' missing" in res['result']['msg'], res
        for host in good:
            got = run.result('build', host)
            assert got['status'] == 'ok', got
            assert got['result']['out_path'] == outs[host], host
            assert valid_here(got['result']['out_path'])

    sampler = NixSampler(token, every=0.05).start()
    try:
        run = play(tmp_path / 'first', evb_lab, flake, build, env=env)
    finally:
        seen = sampler.stop()
    check(run)
    assert all(run.result('build', h)['result']['built'] for h in good)
    evaluations = calls(log, 'eval')
    # the evaluators of nix_eval's defaults (cores and free memory: 2 on a
    # 2-core controller) at once; while recording for reuse across commits
    # each is replaced every few hosts (pool/_pool._per_process), plus one
    # for the hosts after the broken one: never more than one a host
    workers = default_workers(len(evb_lab.hosts), DEFAULT_MAX_MEMORY_MB)
    assert workers <= len(evaluations) <= len(evb_lab.hosts), evaluations
    assert seen['sampled_most_at_once'] == workers, seen

    open(log, 'w').close()
    run = play(tmp_path / 'again', evb_lab, flake, build, env=env)
    check(run)
    assert not any(run.result('build', h)['result']['built'] for h in good)
    # from the cache: no evaluator ran (the broken host, never cached, again)
    evaluations = calls(log, 'eval')
    assert len(evaluations) == 1, evaluations


# a loop's items (the same request stream): test_nix_eval's test_a_loop_...; builds: the tests above
@pytest.mark.here_only
def test_a_loop_gets_each_item_its_own_build(evb_lab, tmp_path):
    """nix_build in a loop over two derivations per host (its own system,
    then its neighbour's): each item is built and answered for its own
    derivation, never with what the previous item got."""
    flake = make_flake(tmp_path / 'flake', evb_lab)
    hosts = sorted(evb_lab.hosts)
    known = dict((host, truth(flake, host)) for host in hosts)
    wanted = dict((host, [known[host], known[hosts[(i + 1) % len(hosts)]]])
                  for i, host in enumerate(hosts))
    inv = inventory(evb_lab, flake, extra=dict(
        (host, {'loop_drvs': [w['drvPath'] for w in wanted[host]]}) for host in hosts))
    nix, _log = nix_wrapper(tmp_path)
    build = [{'name': 'build', 'loop': '{{ loop_drvs }}', 'nixdeploy.fleet.nix_build': {
        'drv_path': '{{ item }}', 'nix_bin': nix, 'nix_options': NIX_OPTIONS,
        'gc_root_dir': str(tmp_path / 'roots')}}]
    run = play(tmp_path / 'play', evb_lab, flake, build, inv=inv)
    assert run.rc == 0, run
    for host in hosts:
        items = run.result('build', host)['result']['results']
        assert [i['drv_path'] for i in items] == [w['drvPath'] for w in wanted[host]], host
        assert [i['out_path'] for i in items] == [w['outPath'] for w in wanted[host]], host
