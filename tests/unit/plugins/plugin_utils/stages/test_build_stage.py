"""nix_build's wave (plugin_utils/builds/_build_stage.py BuildStage) with the
controller's real Nix and a tiny flake: one build for the wave's systems,
each host answered once and as soon as its own system is in the store, a
broken system failing its own hosts only, GC roots and closure sizes, check
mode, hosts evaluated first, and builders: none probed for what the
controller holds, a host no builder can build for failing alone."""

import os
import subprocess
import sys
import threading

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.stages.stage_nix import (
    SANDBOX_OFF, Flake, controller_folders, options)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (  # noqa: E402
    _build, _build_stage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402


class Answers:
    """The answers a wave gives (``put``), in order, each host at most once."""

    def __init__(self):
        self.order, self.entries = [], {}
        self._lock = threading.Lock()

    def put(self, host, entry):
        with self._lock:
            assert host not in self.entries, '%s answered twice' % host
            self.order.append(host)
            self.entries[host] = entry


@pytest.fixture
def flake(tmp_path, monkeypatch):
    controller_folders(tmp_path, monkeypatch)
    return Flake(tmp_path / 'flake')


def stage(tmp_path, check_mode=False, nix_options=None):
    args = dict(_nix.options_of({}), timeout=120, gc_root_dir=str(tmp_path / 'roots'),
                builder_min_free_mb=0)
    return _build_stage.BuildStage(options(nix_options), args, check_mode)


def request(drv=None, evaluate=None, build_on='controller', fleet=None):
    out = {'drv': drv, 'eval': evaluate, 'build_on': build_on}
    if fleet is not None:
        out['fleet'] = fleet
    return out


def test_a_wave_builds_each_system_once_and_a_broken_one_fails_its_host_alone(tmp_path, flake):
    good, bad = flake.drv('good'), flake.drv('bad')
    answers = Answers()
    stage(tmp_path).wave({'web1': request(good), 'web2': request(good), 'db': request(bad),
                          'mail': request(evaluate=flake.request('other'))}, answers.put)
    entries = answers.entries
    assert sorted(entries) == ['db', 'mail', 'web1', 'web2']
    web1, web2 = entries['web1']['result'], entries['web2']['result']
    assert web1['built'] is True and web1['out_path'] == web2['out_path']
    for name in ('web1', 'web2', 'mail'):
        result = entries[name]['result']
        assert 'error' not in entries[name], entries[name]
        # the host's own root, in the folder, to its system; the closure's size
        assert result['gc_root'] == os.path.join(str(tmp_path / 'roots'), name)
        assert os.path.realpath(result['gc_root']) == result['out_path']
        assert result['closure_paths'] == 1 and result['closure_bytes'] > 0
        # what stays in the batch: nothing of the wave's own bookkeeping
        assert not [k for k in result if k.startswith('_')]
    # the host with no derivation was evaluated first, as nix_eval would
    assert entries['mail']['result']['drv_path'] == flake.drv('other')
    assert entries['db']['error'].startswith('building %s failed:' % bad)
    assert 'broken on purpose' in entries['db']['error']
    assert 'gc_root' not in entries['db']['result']


def test_each_fleet_roots_its_own_host_of_a_name_and_the_flat_root_goes(tmp_path, flake):
    """The action names each host's fleet (its flake, builds/_gc_roots.py):
    the root is <gc_root_dir>/<fleet>/<host>, and a root the host had
    directly in gc_root_dir before fleets is removed."""
    good, other = flake.drv('good'), flake.drv('other')
    roots = tmp_path / 'roots'
    roots.mkdir()
    os.symlink('/nix/store/%s-old' % ('0' * 32), str(roots / 'web1'))
    answers = Answers()
    stage(tmp_path).wave({'web1': request(good, fleet='a-000000000000')}, answers.put)
    first = answers.entries['web1']['result']
    assert first['gc_root'] == str(roots / 'a-000000000000' / 'web1')
    assert os.readlink(first['gc_root']) == first['out_path']
    assert not os.path.lexists(str(roots / 'web1'))
    second = Answers()
    stage(tmp_path).wave({'web1': request(other, fleet='b-111111111111')}, second.put)
    result = second.entries['web1']['result']
    assert result['gc_root'] == str(roots / 'b-111111111111' / 'web1')
    assert os.readlink(result['gc_root']) == result['out_path'] != first['out_path']
    # fleet a's web1 keeps its own system
    assert os.readlink(first['gc_root']) == first['out_path']


def test_a_host_is_answered_when_its_own_system_is_built(tmp_path, flake, monkeypatch):
    # the wave looks for built systems every PERIOD s (1 s: less in a unit test)
    monkeypatch.setattr(_build._Watch, 'PERIOD', 0.1)
    answers = Answers()
    seen = {}

    def put(host, entry):
        # what was built when this host was told
        seen[host] = os.path.exists(entry['result']['out_path'])
        answers.put(host, entry)
        if host == 'web1':
            seen['slow built then'] = os.path.exists(slow_out)
            # the slow system is built only now: web1 did not wait for it
            flake.open_gate()

    slow, good = flake.drv('slow'), flake.drv('good')
    slow_out = _nix.NixCommand(options()).json(
        'eval', ['--json', '%s#slow.outPath' % flake.ref], 'eval')
    stage(tmp_path, nix_options=SANDBOX_OFF).wave({'web1': request(good), 'batch': request(slow)},
                                                  put)
    assert answers.order == ['web1', 'batch']
    assert seen == {'web1': True, 'slow built then': False, 'batch': True}


def test_a_host_whose_evaluation_fails_is_answered_before_any_build(tmp_path, flake):
    answers = Answers()
    stage(tmp_path).wave({'web1': request(flake.drv('good')),
                          'typo': request(evaluate=flake.request('nosuch'))}, answers.put)
    assert answers.order == ['typo', 'web1']
    assert 'nosuch' in answers.entries['typo']['error']
    assert answers.entries['typo']['result'] == {}
    assert answers.entries['web1']['result']['built'] is True


def test_the_timeout_stops_an_evaluation_that_never_ends_and_only_its_host(tmp_path, flake):
    """nix_build's timeout bounds each host it evaluates itself: a host whose
    evaluation would take minutes fails saying so, beside a host with its
    derivation and one evaluated in the same wave, both built."""
    args = dict(_nix.options_of({}), timeout=8, gc_root_dir=str(tmp_path / 'roots'),
                builder_min_free_mb=0)
    answers = Answers()
    _build_stage.BuildStage(options(), args, False).wave(
        {'web1': request(flake.drv('good')), 'stuck': request(evaluate=flake.request('stuck')),
         'mail': request(evaluate=flake.request('other'))}, answers.put)
    entries = answers.entries
    assert 'took longer than the timeout (8 s): stopped' in entries['stuck']['error'], entries
    assert entries['stuck']['result'] == {}
    for name in ('web1', 'mail'):
        assert 'error' not in entries[name], entries[name]
        assert entries[name]['result']['built'] is True, entries[name]
    assert entries['mail']['result']['drv_path'] == flake.drv('other')


def test_check_mode_says_what_would_be_built_and_builds_nothing(tmp_path, flake):
    good = flake.drv('good')
    answers = Answers()
    stage(tmp_path, check_mode=True).wave({'web1': request(good)}, answers.put)
    result = answers.entries['web1']['result']
    assert result['built'] is False and result['would_build'] == [good]
    assert 'gc_root' not in result and not os.path.exists(str(tmp_path / 'roots'))
    assert _nix.NixCommand(options()).run('path-info', [result['out_path']])[1] != 0


def test_a_root_that_cannot_be_made_fails_its_host_and_not_the_others(tmp_path, flake):
    good = flake.drv('good')
    # something that is not a root already stands where web1's root goes
    (tmp_path / 'roots' / 'web1').mkdir(parents=True)
    (tmp_path / 'roots' / 'web1' / 'keep').write_text('mine')
    answers = Answers()
    stage(tmp_path).wave({'web1': request(good), 'web2': request(good)}, answers.put)
    assert answers.entries['web1']['error'] and 'gc_root' not in answers.entries['web1']['result']
    assert (tmp_path / 'roots' / 'web1' / 'keep').read_text() == 'mine'
    assert os.path.realpath(answers.entries['web2']['result']['gc_root']) == \
        answers.entries['web2']['result']['out_path']


def test_what_the_controller_holds_is_answered_without_probing_a_builder(tmp_path, flake):
    good = flake.drv('good')
    stage(tmp_path).wave({'web1': request(good)}, Answers().put)
    answers = Answers()
    # 'b1' is no inventory host: a probe would fail it
    stage(tmp_path).wave({'web2': request(good, build_on=['b1'])}, answers.put)
    entry = answers.entries['web2']
    assert 'error' not in entry, entry
    assert entry['result']['built'] is False and entry['result']['gc_root']


def test_a_host_no_builder_can_build_for_fails_alone(tmp_path, flake):
    answers = Answers()
    stage(tmp_path).wave({'web1': request(flake.drv('good')),
                          'web2': request(flake.drv('other'), build_on=['b1', 'ssh://-oops'])},
                         answers.put)
    assert answers.entries['web1']['result']['built'] is True
    error = answers.entries['web2']['error']
    assert error.startswith('no builder can build it: ')
    assert 'b1: b1 is neither an inventory host nor a store URI' in error
    skipped = answers.entries['web2']['result']['builders_skipped']
    assert [s['name'] for s in skipped] == ['b1', 'ssh://-oops']


def test_systems_one_look_finds_built_are_listed_together(tmp_path, flake, monkeypatch):
    """The look for finished systems during a build (every PERIOD s) may
    find several at once: their hosts are answered together, with one
    ``nix path-info`` of their closures, not one each, while the slow one
    still builds. Real Nix behind a wrapper that logs each call."""
    # one look, late enough for both small systems to be built by then
    monkeypatch.setattr(_build._Watch, 'PERIOD', 2.0)
    log = tmp_path / 'calls.log'
    wrappers = tmp_path / 'bin'
    wrappers.mkdir()
    for tool in ('nix', 'nix-store'):
        real = subprocess.run(['sh', '-c', 'command -v %s' % tool], check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        (wrappers / tool).write_text('#!/bin/sh\necho "%s $1" >> %s\nexec %s "$@"\n'
                                     % (tool, log, real))
        (wrappers / tool).chmod(0o755)
    answers = Answers()

    def put(host, entry):
        answers.put(host, entry)
        if set(answers.entries) >= {'web1', 'web2'}:
            flake.open_gate()

    good, other, slow = flake.drv('good'), flake.drv('other'), flake.drv('slow')
    nix_options = _nix.NixOptions(nix_bin=str(wrappers / 'nix'),
                                  options=dict(options(SANDBOX_OFF).options))
    args = dict(_nix.options_of({}), timeout=120, gc_root_dir=str(tmp_path / 'roots'),
                builder_min_free_mb=0)
    _build_stage.BuildStage(nix_options, args, False).wave(
        {'web1': request(good), 'web2': request(other), 'batch': request(slow)}, put)
    assert answers.order[-1] == 'batch', answers.order
    assert all('error' not in entry for entry in answers.entries.values()), answers.entries
    listings = [line for line in log.read_text().splitlines() if line == 'nix path-info']
    # one for web1 and web2 (found by one look), one for the slow system
    assert len(listings) == 2, log.read_text()
