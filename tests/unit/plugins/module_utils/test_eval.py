"""Pure logic of nix_eval / nix_build: parsing and mapping, no Nix run."""

import json
import os
import sys

import pytest

from tests.collection import collections_path

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _batch, _build, _eval  # noqa: E402


@pytest.mark.parametrize('text, expected', [
    ('nixosConfigurations.web.config.system.build.toplevel',
     ['nixosConfigurations', 'web', 'config', 'system', 'build', 'toplevel']),
    ('homeConfigurations."app@host".activationPackage',
     ['homeConfigurations', 'app@host', 'activationPackage']),
    ('a."b.c".d', ['a', 'b.c', 'd']),
    ('a."say \\"hi\\"".b', ['a', 'say "hi"', 'b']),
    (['x', 'y.z'], ['x', 'y.z']),
    ('', None),
    (None, None),
])
def test_parse_attr(text, expected):
    assert _eval.parse_attr(text) == expected


def test_parse_attr_rejects_broken_paths():
    with pytest.raises(_eval.EvalError):
        _eval.parse_attr('a."b')
    with pytest.raises(_eval.EvalError):
        _eval.parse_attr('a..b')


def test_attr_round_trip_through_platforms_attr_string():
    from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string
    path = ['homeConfigurations', 'app@h.example', 'activationPackage']
    assert _eval.parse_attr(attr_string(path)) == path


def ident(ref):
    return ref


def test_host_request_defaults_and_precedence():
    hv = {'nix_flake': 'path:/f', 'nix_platform': 'darwin', 'nix_configuration': 'mac1'}
    req = _eval.host_request('h1', {}, hv, ident)
    assert req['attr'] == ['darwinConfigurations', 'mac1', 'system']
    assert req['platform'] == 'darwin' and req['flake'] == 'path:/f'
    # no configuration: the host name; explicit arguments win over host vars
    req = _eval.host_request('h1', {'flake': 'path:/g', 'attr': 'nixosConfigurations.x.y'},
                             {'nix_platform': None}, ident)
    assert req['flake'] == 'path:/g' and req['platform'] == 'nixos'
    req = _eval.host_request('box', {}, {'nix_flake': 'f', 'nix_platform': 'nix-on-droid'}, ident)
    assert req['attr'] == ['nixOnDroidConfigurations', 'box', 'activationPackage']
    with pytest.raises(_eval.EvalError):
        _eval.host_request('h', {}, {'nix_platform': 'nixos'}, ident)
    with pytest.raises(_eval.EvalError):
        _eval.host_request('h', {}, {'nix_flake': 'f'}, ident)


def test_apply_expression_quotes_inventory_data():
    hostile = 'x"; builtins.readFile /etc/shadow; "${toString 1}'
    expr = _eval.apply_expression([['nixosConfigurations', hostile, 'config']])
    assert '"x\\"; builtins.readFile /etc/shadow; \\"\\${toString 1}"' in expr
    assert expr.count('${toString 1}') == expr.count('\\${toString 1}') == 1


def test_parse_traces_keeps_other_lines():
    stderr = '\n'.join([
        'trace: %s0 {"drv":"/nix/store/a.drv","out":"/nix/store/a","system":"x"}' % _eval.TRACE_MARKER,
        'trace: user trace',
        'error: attribute \'lab\' missing',
        '       at /nix/store/s-source/lib.nix:64:38:',
    ])
    found, rest = _eval.parse_traces(stderr)
    assert found == {0: {'drv': '/nix/store/a.drv', 'out': '/nix/store/a', 'system': 'x'}}
    assert 'user trace' in rest and 'lib.nix:64:38' in rest and _eval.TRACE_MARKER not in rest


def test_default_chunk_size(tmp_path):
    meminfo = tmp_path / 'meminfo'
    meminfo.write_text('MemTotal: 1 kB\nMemAvailable: %d kB\n' % (5 * 1024 * 1024))
    assert _eval.default_chunk_size(str(meminfo)) == 8        # (5120 - 1024) / 512
    meminfo.write_text('MemAvailable: 1000 kB\n')
    assert _eval.default_chunk_size(str(meminfo)) == 1
    assert _eval.default_chunk_size(str(tmp_path / 'absent')) == 8


def test_unlink_host_args():
    own = {'nix_attr': 'a.b', 'nix_flake': 'path:/f'}
    out = _batch.unlink_host_args({'attr': 'a.b', 'flake': 'path:/other'}, own, _eval.PER_HOST_ARGS)
    assert out == {'attr': None, 'flake': 'path:/other'}


def test_batch_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {'h1': {'x': 1}}

    batch = _batch.Batch(str(tmp_path), 'eval', _batch.batch_key('k', ['h1']))
    assert batch.results(compute) == ({'h1': {'x': 1}}, True)
    again = _batch.Batch(str(tmp_path), 'eval', _batch.batch_key('k', ['h1']))
    assert again.results(compute) == ({'h1': {'x': 1}}, False)
    assert len(calls) == 1
    assert _batch.batch_key('k', ['h1']) != _batch.batch_key('k', ['h2'])


def test_play_batch():
    assert _batch.play_batch({'inventory_hostname': 'a', 'ansible_play_batch': ['a', 'b']}) == ['a', 'b']
    assert _batch.play_batch({'inventory_hostname': 'c', 'ansible_play_batch': ['a']}) == ['c']


DRY_RUN = """\
these 2 derivations will be built:
  /nix/store/aaa-system-h1.drv
  /nix/store/bbb-busybox.drv
this path will be fetched (0.01 MiB download, 0.02 MiB unpacked):
  /nix/store/ccc-glibc
"""


def test_parse_dry_run():
    assert _build.parse_dry_run(DRY_RUN) == (
        ['/nix/store/aaa-system-h1.drv', '/nix/store/bbb-busybox.drv'], ['/nix/store/ccc-glibc'])
    assert _build.parse_dry_run('') == ([], [])


BUILD_ERR = """\
building '/nix/store/aaa-system-h1.drv'...
error: builder for '/nix/store/aaa-system-h1.drv' failed with exit code 1;
       last 2 log lines:
       > lab: building h1 failed on purpose (broken_build)
       > error: builder for h1: this system does not build
       For full logs, run 'nix log /nix/store/aaa-system-h1.drv'.
error: build of '/nix/store/aaa-system-h1.drv', '/nix/store/ddd-system-h2.drv' failed
"""


def test_failure_blocks():
    by_drv, other = _build.failure_blocks(BUILD_ERR)
    assert list(by_drv) == ['/nix/store/aaa-system-h1.drv']
    assert 'failed on purpose' in by_drv['/nix/store/aaa-system-h1.drv']
    assert other == ["error: build of '/nix/store/aaa-system-h1.drv', '/nix/store/ddd-system-h2.drv' failed"]


def test_closures():
    graph = {'/d/top.drv': {'inputDrvs': {'/d/lib.drv': ['out']},
                            'outputs': {'out': {'path': '/o/top'}, 'dev': {'path': '/o/dev'}}},
             '/d/lib.drv': {'inputDrvs': {}, 'outputs': {'out': {'path': '/o/lib'}}}}
    assert _build.drv_closure(graph, '/d/top.drv') == {'/d/top.drv', '/d/lib.drv'}
    assert _build.outputs_of(graph, '/d/top.drv') == ['/o/top', '/o/dev']
    infos = [{'path': '/o/top', 'narSize': 10, 'references': ['/o/lib', '/o/top']},
             {'path': '/o/lib', 'narSize': 5, 'references': []},
             {'path': '/o/other', 'narSize': 99, 'references': []}]
    assert _build.closure_sizes(infos, '/o/top') == (2, 15)
    assert json.loads(json.dumps(_build.closure_sizes(infos, '/o/lib'))) == [1, 5]


def test_build_place_and_drv():
    assert _build.build_place({}, {}) == 'controller'
    assert _build.build_place({}, {'nix_build_on': 'target'}) == 'target'
    assert _build.build_place({'build_on': 'b1'}, {'nix_build_on': 'target'}) == 'b1'
    assert _build.drv_of({}, {'nix_drv_path': '/nix/store/x.drv'}) == '/nix/store/x.drv'


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
