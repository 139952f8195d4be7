"""nix_build's logic (plugin_utils/builds/_build.py): closures, GC roots, and the
Builder against the controller's real Nix (whatever its version) with two
tiny derivations (one builds, one fails on purpose). Reading Nix's outputs:
test_nix_output.py."""

import os
import sys
import uuid

import pytest

from tests.collection import collections_path

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (  # noqa: E402
    _build, _build_platforms, _closure)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import (  # noqa: E402
    _nix, _nix_output)


# every shape of `derivation show` / `path-info --json` reads the same (test_nix_output.py);
# the graph and infos here are what the readers return
def test_closures():
    graph = _nix_output.derivations({'version': 4, 'derivations': {
        'd-top.drv': {'inputs': {'drvs': {'d-lib.drv': {'outputs': ['out']}}},
                      'outputs': {'out': {'path': 'o-top'}, 'dev': {'path': 'o-dev'}}},
        'd-lib.drv': {'inputs': {'drvs': {}}, 'outputs': {'out': {'path': 'o-lib'}}}}})
    top, lib = '/nix/store/d-top.drv', '/nix/store/d-lib.drv'
    assert _build.drv_closure(graph, top) == {top, lib}
    assert _build.drv_closure(graph, lib) == {lib}
    assert _build.outputs_of(graph, top) == ['/nix/store/o-top', '/nix/store/o-dev']
    # closure sizes: test_closure.py


def test_build_place_and_drv():
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
    assert _build.build_place({}) == 'controller'
    assert _build.build_place({'build_on': 'b1, b2'}) == ['b1', 'b2']

    def filled(args, hostvars):
        return _role_vars.fill(_role_vars.BUILD, args, hostvars, lambda v: v, False).args

    # the task's argument wins over the host var, which fills an unset one
    assert _build.build_place(filled({}, {'nix_build_on': 'target'})) == 'target'
    assert _build.build_place(filled({'build_on': 'b1'}, {'nix_build_on': 'target'})) == 'b1'
    # the derivation: nix_eval's fact, when the task gives none
    facts = {'ansible_facts': {'nix_drv_path': '/nix/store/x.drv'}}
    assert filled({}, facts)['drv_path'] == '/nix/store/x.drv'
    assert filled({'drv_path': '/nix/store/y.drv'}, facts)['drv_path'] == '/nix/store/y.drv'


def test_gc_root_of_a_hostile_host_name_stays_in_its_folder(tmp_path):
    folder = str(tmp_path / 'roots')
    for name in ('../escaped', '..', '.', 'a/b', '/etc/passwd', 'web 1;rm', 'caf\u00e9'):
        root = _build.gc_root_path(folder, name)
        assert os.path.dirname(root) == folder, name
        assert os.path.basename(root) not in ('', '.', '..'), name
    assert _build.gc_root_path(folder, 'web-1.example') == os.path.join(folder, 'web-1.example')
    assert _build.gc_root_path(folder, 'a/b') != _build.gc_root_path(folder, 'a_b')


def test_gc_root_of_a_long_host_name_fits_a_file_name(tmp_path):
    folder = str(tmp_path)
    long_a, long_b = 'a$(x)/' * 60 + 'one', 'a$(x)/' * 60 + 'two'
    root_a, root_b = _build.gc_root_path(folder, long_a), _build.gc_root_path(folder, long_b)
    assert len(os.path.basename(root_a)) <= 255 and os.path.dirname(root_a) == folder
    assert root_a != root_b
    open(root_a, 'w').close()  # the file system takes it


TWO = r'''{ tag }: {
  good = derivation { name = "house-good-${tag}"; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" "echo ok > $out" ]; };
  bad = derivation { name = "house-bad-${tag}"; system = builtins.currentSystem;
    builder = "/bin/sh"; args = [ "-c" "echo broken on purpose >&2; exit 1" ]; };
}
'''


@pytest.fixture
def two_drvs(tmp_path):
    """(good drv, bad drv), new ones per test (a fresh tag), instantiated in
    the controller's store."""
    (tmp_path / 'two.nix').write_text(TWO)
    opts = _nix.NixOptions(options={'substituters': ''})
    expr = ('let x = import %s { tag = %s; }; in [ x.good.drvPath x.bad.drvPath ]'
            % (tmp_path / 'two.nix', _nix.nix_string(uuid.uuid4().hex[:12])))
    good, bad = _nix.NixCommand(opts).json('eval', ['--json', '--impure', '--expr', expr], 'eval')
    return good, bad


def builder():
    return _build.Builder(_nix.NixOptions(options={'substituters': ''}), timeout=120)


def test_check_mode_says_what_would_be_built_and_builds_nothing(two_drvs):
    good, bad = two_drvs
    nix = builder()
    graph = nix.derivations([good, bad])
    answers = _build.build_group(nix, [good, bad], graph, check_mode=True)
    assert answers[good] == {'would_build': [good], 'would_fetch': [], 'built': False}
    assert answers[bad]['would_build'] == [bad]
    outs = [_build.outputs_of(graph, d)[0] for d in (good, bad)]
    assert nix.invalid(outs) == set(outs)


def test_one_broken_system_does_not_stop_the_others(two_drvs, tmp_path):
    good, bad = two_drvs
    nix = builder()
    graph = nix.derivations([good, bad])
    answers = _build.build_group(nix, [good, bad], graph)
    assert answers[good]['built'] is True and 'error' not in answers[good]
    assert answers[bad]['built'] is False
    assert answers[bad]['error'].startswith('building %s failed:' % bad)
    assert 'broken on purpose' in answers[bad]['error']
    out = _build.outputs_of(graph, good)[0]
    root = _build.gc_root_path(str(tmp_path), 'web 1/../x')
    nix.add_root(root, out)
    assert os.path.realpath(root) == out
    infos = nix.path_infos([out])
    assert _closure.sizes(infos, out)[0] == 1
    # derivation show, dry run, build, validity, root, path-info (not `nix --version`,
    # asked once per process)
    assert nix.processes == 6
    # built already: nothing to do, no build process
    again = builder()
    assert _build.build_group(again, [good], graph) == {
        good: {'would_build': [], 'would_fetch': [], 'built': False}}
    assert again.processes == 1


def test_a_missing_derivation_is_a_nix_error_naming_the_step():
    with pytest.raises(_nix.NixError) as info:
        builder().derivations(['/nix/store/00000000000000000000000000000000-gone.drv'])
    assert str(info.value).startswith('reading derivations: error:')


# ------------------------------------------------------------------ another platform
def _other_system():
    return 'aarch64-linux' if _nix.native_system() != 'aarch64-linux' else 'x86_64-linux'


@pytest.fixture
def foreign_drv(tmp_path):
    """(good drv, a drv for another platform whose builder runs here), new per test."""
    (tmp_path / 'two.nix').write_text(TWO)
    expr = ('let x = import %s { tag = %s; }; in [ x.good.drvPath (derivation { name = %s; '
            'system = %s; builder = "/bin/sh"; args = [ "-c" "echo other > $out" ]; }).drvPath ]'
            % (tmp_path / 'two.nix', _nix.nix_string(uuid.uuid4().hex[:12]),
               _nix.nix_string('house-foreign-' + uuid.uuid4().hex[:12]),
               _nix.nix_string(_other_system())))
    opts = _nix.NixOptions(options={'substituters': ''})
    return _nix.NixCommand(opts).json('eval', ['--json', '--impure', '--expr', expr], 'eval')


def test_a_system_for_another_platform_fails_before_the_build(foreign_drv):
    good, other = foreign_drv
    nix = builder()
    graph, needs = nix.derivations_and_needs([good, other])
    local = _build_platforms.LocalBuilds(nix.runner, needs)
    answers = _build.build_group(nix, [good, other], graph, local=local)
    assert answers[good]['built'] is True and 'error' not in answers[good]
    msg = answers[other]['error']
    assert msg.startswith('cannot build it here: its system %s is for %s, and this machine\'s Nix '
                          'builds %s' % (other, _other_system(), _nix.native_system())), msg
    assert 'nix_build_on: target' in msg and 'extra-platforms: %s' % _other_system() in msg
    assert answers[other]['would_build'] == [other] and answers[other]['built'] is False
    # derivation show, dry run, config show, ONE build (of `good` alone: it succeeded, so
    # no validity check follows)
    assert nix.processes == 4


def test_extra_platforms_in_nix_options_let_nix_build_it(foreign_drv):
    _good, other = foreign_drv
    nix = _build.Builder(_nix.NixOptions(options={'substituters': '', 'extra-platforms': _other_system()}),
                         timeout=120)
    graph, needs = nix.derivations_and_needs([other])
    answers = _build.build_group(nix, [other], graph,
                                 local=_build_platforms.LocalBuilds(nix.runner, needs))
    assert answers[other]['built'] is True and 'error' not in answers[other], answers


def test_when_nix_fails_on_the_platform_its_message_stays_with_the_ways_out(foreign_drv):
    _good, other = foreign_drv
    nix = builder()
    graph = nix.derivations([other])
    # without the check (as when Nix's daemon is configured otherwise): Nix's own words
    msg = _build.build_group(nix, [other], graph)[other]['error']
    assert msg.startswith('building %s failed:\n' % other), msg
    assert ("a '%s' with features {} is required to build" % _other_system() in msg
            or 'Reason: platform mismatch' in msg), msg
    assert msg.splitlines()[-1].startswith('Ways out: build it on the host itself (nix_build_on: target)')


def test_a_system_only_to_fetch_is_fetched_by_the_build(two_drvs, tmp_path):
    """Every system in a binary cache (the publish role's): nothing to build,
    but the build step still fetches the outputs, so later steps (closure
    sizes, the copy) find them valid."""
    good, _bad = two_drvs
    cache = 'file://%s' % (tmp_path / 'cache')
    first = builder()
    graph = first.derivations([good])
    assert _build.build_group(first, [good], graph)[good]['built'] is True
    out = _build.outputs_of(graph, good)[0]
    nix = _nix.NixCommand(_nix.NixOptions(options={'substituters': ''}))
    nix.check('copy', ['--to', cache, out], 'filling the cache', flake_command=True)
    nix.check('store', ['delete', out], 'deleting the output', flake_command=True)
    assert first.invalid([out]) == {out}
    fetching = _build.Builder(_nix.NixOptions(options={
        'substituters': cache, 'require-sigs': False}), timeout=120)
    answers = _build.build_group(fetching, [good], graph)
    assert answers[good]['would_build'] == [] and answers[good]['would_fetch'] == [out], answers
    assert fetching.invalid([out]) == set(), 'the build step fetched nothing'
