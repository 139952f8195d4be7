"""Pure logic of nix_eval: attribute paths, requests, the apply expression
and its traces (no Nix run; plugin_utils/evaluation/_eval.py)."""

import sys

import pytest

from tests.collection import collections_path

# module_utils import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr  # noqa: E402


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


def request(host, args, hostvars):
    """What the action asks for ``host``: its arguments filled from its
    variables as the option table says, then the request."""
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
    filled = _role_vars.fill(_role_vars.EVAL, args, hostvars, lambda v: v, False)
    return _eval.host_request(host, filled.args, hostvars, ident)


def test_host_request_defaults_and_precedence():
    hv = {'nix_flake': 'path:/f', 'nix_platform': 'darwin', 'nix_configuration': 'mac1'}
    req = request('h1', {}, hv)
    assert req['attr'] == ['darwinConfigurations', 'mac1', 'system']
    assert req['platform'] == 'darwin' and req['flake'] == 'path:/f'
    # no configuration: the host name; explicit arguments win over host vars
    req = request('h1', {'flake': 'path:/g', 'attr': 'nixosConfigurations.x.y'},
                  {'nix_platform': None, 'nix_flake': 'path:/f', 'nix_attr': 'a.b'})
    assert req['flake'] == 'path:/g' and req['platform'] == 'nixos'
    req = request('box', {}, {'nix_flake': 'f', 'nix_platform': 'nix-on-droid'})
    assert req['attr'] == ['nixOnDroidConfigurations', 'box', 'activationPackage']
    with pytest.raises(_eval.EvalError):
        request('h', {}, {'nix_platform': 'nixos'})
    with pytest.raises(_eval.EvalError):
        request('h', {}, {'nix_flake': 'f'})


def test_apply_expression_quotes_inventory_data():
    hostile = 'x"; builtins.readFile /etc/shadow; "${toString 1}'
    expr = _eval.apply_expression([['nixosConfigurations', hostile, 'config']])
    assert '"x\\"; builtins.readFile /etc/shadow; \\"\\${toString 1}"' in expr
    assert expr.count('${toString 1}') == expr.count('\\${toString 1}') == 1


def test_traces_keep_other_lines():
    stderr = '\n'.join([
        'trace: %s0 {"drv":"/nix/store/a.drv","out":"/nix/store/a","system":"x"}' % _eval.TRACE_MARKER,
        'trace: user trace',
        'error: attribute \'lab\' missing',
        '       at /nix/store/s-source/lib.nix:64:38:',
    ])
    found, rest = _nix_stderr.traces(stderr, _eval.TRACE_MARKER)
    assert found == {0: {'drv': '/nix/store/a.drv', 'out': '/nix/store/a', 'system': 'x'}}
    assert 'user trace' in rest and 'lib.nix:64:38' in rest and _eval.TRACE_MARKER not in rest


def test_default_chunk_size(tmp_path):
    meminfo = tmp_path / 'meminfo'
    meminfo.write_text('MemTotal: 1 kB\nMemAvailable: %d kB\n' % (5 * 1024 * 1024))
    assert _eval.default_chunk_size(str(meminfo)) == 8        # (5120 - 1024) / 512
    meminfo.write_text('MemAvailable: 1000 kB\n')
    assert _eval.default_chunk_size(str(meminfo)) == 1
    assert _eval.default_chunk_size(str(tmp_path / 'absent')) == 8


def test_evaluations_run_without_import_from_derivation_unless_nix_options_say():
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions
    assert _eval.evaluation_options(None) == {'allow-import-from-derivation': False}
    assert _eval.evaluation_options({'allow-import-from-derivation': True}) == \
        {'allow-import-from-derivation': True}
    opts = NixOptions(nix_bin='nix2', extra_args=['--offline'], options={'substituters': ''},
                      impure=True, show_trace=True, override_inputs={'a': 'path:/x'})
    runner = _eval.Evaluator(opts, chunk_size=1).runner
    # after the collection's fixed lines (_nix_config.FIXED_LINES), the
    # evaluation's own before the task's
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_config
    fixed = ''.join(line + '\n' for line in getattr(_nix_config, 'FIXED_LINES', ()))
    config = runner.opts.environment({})['NIX_CONFIG']
    assert config.endswith(fixed + 'allow-import-from-derivation = false\nsubstituters =\n'), config
    # everything else of the task's options as it was; the task's own untouched
    assert runner.opts.argv('eval', []) == opts.argv('eval', [])
    assert opts.options == {'substituters': ''}
