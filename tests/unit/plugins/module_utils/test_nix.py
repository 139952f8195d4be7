"""The one Nix runner: quoting that real Nix reads back, errors that carry
Nix's own message."""

import pytest

from plugins.module_utils import _nix

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


def test_flake_ref_for_paths_and_refs(tmp_path):
    assert _nix.flake_ref('github:owner/repo') == 'github:owner/repo'
    assert _nix.flake_ref('.', base_dir=str(tmp_path)) == 'path:%s' % tmp_path
    (tmp_path / 'repo' / '.git').mkdir(parents=True)
    assert _nix.flake_ref(str(tmp_path / 'repo')) == 'git+file://%s' % (tmp_path / 'repo')
    with pytest.raises(_nix.NixError):
        _nix.flake_ref('')


def test_nix_json_rejects_non_json():
    opts = _nix.NixOptions()
    with pytest.raises(_nix.NixError):
        _nix.nix_json(opts, 'eval', ['--raw', '--expr', '"not json {"'], 'eval',
                      flake_command=False)
