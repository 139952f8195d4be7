"""Lab systems that cost what real ones cost (issue 45), with real Nix.

Times are the evaluating process's CPU seconds (a busy machine stretches the
wall clock, not the work) and bounds are ratios or halves of what was asked,
so they hold beside other load.
"""

import json
import os
import subprocess
import tempfile
import time

import pytest

from tests.lab import heavy
from tests.lab.fixtures import FleetFlake

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.here_only]

NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '', '--option', 'eval-cache', 'false']
HOSTS = ['h1', 'h2', 'h3', 'h4']
SHARED_S, OWN_S = 2.0, 0.5
OWN_MB = 100
BUILD_S = 3


@pytest.fixture(scope='module')
def cal(tmp_path_factory):
    # measured afresh: figures cached on an idle machine would ask too
    # little work of a test run on a busy one (or the other way round)
    return heavy.calibrate(None, str(tmp_path_factory.mktemp('calibration')))


def fleet(path, configs, cost=None):
    hosts = {h: {'address': '10.0.0.%d' % i} for i, h in enumerate(sorted(configs), 11)}
    return FleetFlake.write(str(path), hosts, configs, cost=cost)


def evaluate(flake, names):
    """Every named system's drvPath in ONE nix process, as nix_eval does:
    (drvPaths, CPU seconds, peak RSS in MB, wall seconds): the nix process's
    own, not this pytest process's size (heavy.run_measured)."""
    apply = 'cs: map (n: cs.${n}.config.system.build.toplevel.drvPath) [ %s ]' % ' '.join(
        json.dumps(n) for n in names)
    # files, not pipes, so nothing needs reading while it runs
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        code, cpu, rss = heavy.run_measured(NIX[:1] + ['eval'] + NIX[1:] + [
            '--json', '%s#nixosConfigurations' % flake.ref, '--apply', apply],
            stdout=out, stderr=err)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        assert code == 0, err.read().decode(errors='replace')
        drvs = json.loads(out.read())
    return drvs, cpu, rss / 2.0 ** 20, wall


def drv(flake, name):
    return evaluate(flake, [name])[0][0]


def test_the_shared_part_is_paid_once_per_process(cal, tmp_path):
    flake = fleet(tmp_path / 'f', {h: heavy.heavy_config(seconds=OWN_S) for h in HOSTS},
                  cost=heavy.heavy_shared(seconds=SHARED_S))
    _drvs, one, _rss, one_wall = evaluate(flake, ['h1'])
    drvs, four, _rss, four_wall = evaluate(flake, HOSTS)
    assert len(set(drvs)) == 4
    seen = 'one host %.1f s CPU (%.1f s wall), four %.1f s (%.1f s)' % (
        one, one_wall, four, four_wall)
    # the work is really done (laziness skips none of it)...
    assert one >= 0.5 * (SHARED_S + OWN_S), seen
    assert four >= 0.5 * (SHARED_S + 4 * OWN_S), seen
    # ...each host's own part once per host...
    assert four - one >= 0.5 * 3 * OWN_S, seen
    # ...and the shared part once: four processes of one host would cost 4x
    assert four < 0.7 * 4 * one, seen


def test_peak_rss_grows_with_eval_mb(cal, tmp_path):
    configs = {h: heavy.heavy_config(mb=OWN_MB) for h in HOSTS}
    configs['light'] = {}
    flake = fleet(tmp_path / 'f', configs)
    base = evaluate(flake, ['light'])[2]
    one = evaluate(flake, ['h1'])[2]
    four = evaluate(flake, HOSTS)[2]
    seen = 'peak RSS: no eval_mb %.0f MB, one host %.0f MB, four hosts %.0f MB' % (base, one, four)
    # Nix 2.34's collector gives part of one host's allocation back before the
    # peak (38-49 MB of 100 measured in full runs): still far above no eval_mb
    assert one - base >= 0.25 * OWN_MB, seen
    # each host's memory stays held while the next is evaluated
    assert four - base >= 0.5 * 4 * OWN_MB, seen


def test_a_peak_is_the_processs_own_whatever_the_size_of_who_asks():
    """A process forked from a large one (a pytest worker after hundreds of
    tests) inherits that one's peak RSS in its ru_maxrss: two CI runs read a
    light evaluation at 173 and 176 MB. heavy.run_measured reads Nix's own."""
    held = bytearray(300 * 2 ** 20)
    held[::4096] = b'\x01' * len(range(0, len(held), 4096))
    code, _cpu, rss = heavy.run_measured(['nix-instantiate', '--eval', '-E', '1'],
                                         stdout=subprocess.DEVNULL)
    assert code == 0
    assert rss < 100 * 2 ** 20, rss
    del held


def test_knobs_change_the_derivation_and_defaults_do_not(cal, tmp_path):
    flake = fleet(tmp_path / 'f', {'h1': {}})
    plain = drv(flake, 'h1')
    seen = {plain}
    for knob, value in (('eval_work', 10), ('eval_mb', 1), ('build_seconds', 1)):
        flake.set_config('h1', **{knob: value})
        seen.add(drv(flake, 'h1'))
        flake.set_config('h1', **{knob: 0})
        assert drv(flake, 'h1') == plain, knob
    flake.data.update(heavy.heavy_shared(seconds=0.01))
    flake.save()
    seen.add(drv(flake, 'h1'))
    assert len(seen) == 5


def test_build_seconds_and_broken_build(cal, tmp_path):
    # a version of its own: a build an earlier run left would not be built
    version = os.urandom(6).hex()
    flake = fleet(tmp_path / 'f', {
        'slow': dict(heavy.heavy_config(build_seconds=BUILD_S), version=version),
        'broken': dict(heavy.heavy_config(build_seconds=1, broken_build=True), version=version)})

    def build(host):
        start = time.monotonic()
        proc = subprocess.run(NIX[:1] + ['build'] + NIX[1:] + [
            '--no-link', '--print-build-logs', '%s#%s' % (flake.ref, flake.attr(host))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
            check=False)
        return proc, time.monotonic() - start

    # busybox first, so the timed build is the system's own
    subprocess.run(NIX[:1] + ['build'] + NIX[1:] + [
        '--no-link', '%s#%s.busybox' % (flake.ref, flake.attr('slow'))], check=True)
    proc, took = build('slow')
    assert proc.returncode == 0, proc.stderr
    assert took >= BUILD_S, took
    proc, _took = build('broken')
    assert proc.returncode != 0
    assert 'building broken failed on purpose (broken_build)' in proc.stderr, proc.stderr
