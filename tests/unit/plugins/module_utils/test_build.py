"""nix_build's logic (module_utils/_build.py): closures, GC roots, and the
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

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _build, _closure, _nix, _nix_output)


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
    good, bad = _nix.Runner(opts).json('eval', ['--json', '--impure', '--expr', expr], 'eval')
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
