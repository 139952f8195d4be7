"""The one Nix runner: quoting that real Nix reads back, errors that carry
Nix's own message."""

import sys

import pytest

from plugins.module_utils import _nix
from tests.collection import collections_path

# plugins import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

NASTY = [
    'plain',
    'with "quotes" and \\backslashes\\',
    '${builtins.abort "interpolated"}',
    '$${not} ${{ lookup("pipe", "id") }}',
    "'' indented '' string ''${x}",
    'new\nline\ttab\rcr',
    'unicode \u00e9\u4e2d\u2603',
    '$',
    '\\${escaped}',
]


def nix_eval(expr):
    opts = _nix.NixOptions(options={'substituters': ''})
    return _nix.nix_json(opts, 'eval', ['--json', '--expr', expr], 'eval', flake_command=False)


@pytest.mark.parametrize('text', NASTY)
def test_nix_string_round_trips_through_real_nix(text):
    assert nix_eval(_nix.nix_string(text)) == text


def test_nix_list_round_trips():
    assert nix_eval(_nix.nix_list(NASTY)) == NASTY


def test_error_carries_nix_message_with_position(tmp_path):
    bad = tmp_path / 'bad.nix'
    bad.write_text('{\n  a = 1;\n  b = missing.attr;\n}\n')
    opts = _nix.NixOptions()
    with pytest.raises(_nix.NixError) as info:
        _nix.nix(opts, 'eval', ['--json', '--file', str(bad), 'b'], 'evaluating web1',
                 flake_command=False)
    text = str(info.value)
    assert text.startswith('evaluating web1: error:')
    assert "undefined variable 'missing'" in text
    assert 'bad.nix:3:' in text
    assert info.value.rc == 1


def test_missing_nix_binary_is_a_nix_error():
    with pytest.raises(_nix.NixError) as info:
        _nix.nix(_nix.NixOptions(nix_bin='/nonexistent/nix'), 'eval', ['--expr', '1'], 'probe')
    assert '/nonexistent/nix' in str(info.value)


def test_options_become_argv_items_never_shell():
    opts = _nix.NixOptions(options={'max-jobs': 4, 'substituters': ['a b', 'c'],
                                    'sandbox': False},
                           impure=True, show_trace=True,
                           override_inputs={'nixpkgs': 'path:/x; rm -rf /'},
                           extra_args=['--keep-going'])
    argv = opts.argv('build', ['path:/f#a'])
    assert argv[:2] == ['nix', 'build']
    assert ['--option', 'max-jobs', '4'] == argv[argv.index('max-jobs') - 1:argv.index('max-jobs') + 2]
    assert '--impure' in argv and '--show-trace' in argv and '--keep-going' in argv
    assert 'path:/x; rm -rf /' in argv
    assert argv[-1] == 'path:/f#a'


def test_nix_json_rejects_non_json():
    opts = _nix.NixOptions()
    with pytest.raises(_nix.NixError):
        _nix.nix_json(opts, 'eval', ['--raw', '--expr', '"not json {"'], 'eval',
                      flake_command=False)


def test_runner_counts_passes_env_and_finds_tools_beside_nix(tmp_path):
    fake = tmp_path / 'nix-store'
    fake.write_text('#!/bin/sh\nprintf "%s|%s" "$NIX_SSHOPTS" "$*"\n')
    fake.chmod(0o755)
    runner = _nix.Runner(_nix.NixOptions(nix_bin=str(tmp_path / 'nix')))
    out = runner.check(None, ['--check-validity', 'a b'], 'probe', tool='nix-store',
                       env={'NIX_SSHOPTS': '-p 2222'})
    assert out == '-p 2222|--check-validity a b'
    argv, rc, _out, err = runner.run('eval', ['--expr', '1'])
    assert argv[0] == str(tmp_path / 'nix') and rc == 127 and 'nix' in err
    assert runner.processes == 2


def test_runner_json_and_flake_only_options():
    opts = _nix.NixOptions(options={'substituters': ''}, impure=True,
                           override_inputs={'a': 'path:/b'})
    runner = _nix.Runner(opts)
    assert '--impure' not in runner.argv('copy', ['x'])
    assert '--impure' in runner.argv('eval', ['x'], flake_command=True)
    assert runner.json('eval', ['--json', '--expr', '{ a = 1; }'], 'eval') == {'a': 1}


def test_one_options_spec_matches_the_doc_fragment():
    import yaml
    from ansible_collections.nixdeploy.fleet.plugins.doc_fragments.nix import ModuleDocFragment
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    assert sorted(documented) == sorted(_nix.OPTIONS_SPEC)
    for name, spec in _nix.OPTIONS_SPEC.items():
        for key in ('type', 'elements', 'default'):
            assert documented[name].get(key) == spec.get(key), (name, key)
    assert _nix.options_of({'nix_bin': 'x', 'flake': 'y'}) == dict(
        (name, 'x' if name == 'nix_bin' else None) for name in _nix.OPTIONS_SPEC)


def test_every_nix_task_takes_the_one_spec():
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import (
        _build, _channel, _copy, _eval, _publish)
    for spec in (_eval.ARGUMENT_SPEC, _build.ARGUMENT_SPEC, _publish.ARGUMENT_SPEC,
                 _channel.ARGUMENT_SPEC, _copy.ARGUMENT_SPEC):
        assert dict((k, spec[k]) for k in _nix.OPTIONS_SPEC) == _nix.OPTIONS_SPEC
