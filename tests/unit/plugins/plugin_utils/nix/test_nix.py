"""The one Nix runner: quoting that real Nix reads back, errors that carry
Nix's own message."""

import json
import sys

import pytest

from tests.collection import collections_path

# plugins import each other as ansible_collections.nixdeploy.fleet...
sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _options  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import (  # noqa: E402
    _nix, _nix_config, _nix_output, _nix_stderr)

# the collection's own lines, after the user's NIX_CONFIG, before nix_options
FIXED = 'extra-experimental-features = nix-command flakes\naccept-flake-config = false\n'

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


def test_options_go_to_nix_config_never_argv():
    """nix_options may hold secrets (access-tokens): none is in argv, which
    every user of the controller sees in ps; the rest stays argv items."""
    opts = _nix.NixOptions(options={'max-jobs': 4, 'substituters': ['a b', 'c'],
                                    'sandbox': False, 'access-tokens': 'example.org=s3cr3t'},
                           impure=True, show_trace=True,
                           override_inputs={'nixpkgs': 'path:/x; rm -rf /'},
                           extra_args=['--keep-going'])
    argv = opts.argv('build', ['path:/f#a'])
    assert argv[:2] == ['nix', 'build']
    assert '--option' not in argv and not [a for a in argv if 's3cr3t' in a or 'max-jobs' in a]
    assert '--impure' in argv and '--show-trace' in argv and '--keep-going' in argv
    assert 'path:/x; rm -rf /' in argv
    assert argv[-1] == 'path:/f#a'
    assert opts.config_lines() == ['access-tokens = example.org=s3cr3t', 'max-jobs = 4',
                                   'sandbox = false', 'substituters = a b c']
    # after the user's own NIX_CONFIG, so that ours win as --option did
    env = opts.environment({'NIX_CONFIG': 'connect-timeout = 3\nmax-jobs = 1\n'})
    assert env == {'NIX_CONFIG': 'connect-timeout = 3\nmax-jobs = 1\n' + FIXED +
                                 'access-tokens = example.org=s3cr3t\n'
                                 'max-jobs = 4\nsandbox = false\nsubstituters = a b c\n'}
    # without nix_options, the collection's own line all the same
    assert _nix.NixOptions().environment({'NIX_CONFIG': 'x = 1'}) == {
        'NIX_CONFIG': 'x = 1\n' + FIXED}
    assert _nix.NixOptions().environment({}) == {'NIX_CONFIG': FIXED}
    assert _nix.NixOptions(options={'substituters': ''}).config_lines() == ['substituters =']


FLAKE_WITH_CONFIG = '''{
  nixConfig.pure-eval = false;
  nixConfig.allow-import-from-derivation = true;
  outputs = { self }: { x = builtins.getEnv "NIXDEPLOY_TEST_FLAKE_CONFIG"; };
}
'''


@pytest.mark.parametrize('given, opted_in', [
    (dict(), False),
    (dict(options={'accept-flake-config': True}), True),
    (dict(extra_args=['--accept-flake-config']), True),
    (dict(extra_args=['--option', 'accept-flake-config', 'true']), True),
    (dict(options={'accept-flake-config': True}, extra_args=['--no-accept-flake-config']), False),
])
def test_a_flakes_nix_config_is_refused_whatever_the_users_configuration(
        tmp_path, monkeypatch, given, opted_in):
    """A user's nix.conf (here NIX_CONFIG, as CI sets it) that accepts flake
    configuration: a real Nix still ignores the flake's nixConfig (pure-eval =
    false would let it read the environment), and names what it ignored;
    only the operator's own nix_options or nix_args opt in."""
    (tmp_path / 'flake.nix').write_text(FLAKE_WITH_CONFIG)
    # as a CI's nix.conf has it (Nix 2.34 reads the setting only where flakes are on)
    monkeypatch.setenv('NIX_CONFIG', 'experimental-features = nix-command flakes\n'
                       'accept-flake-config = true')
    monkeypatch.setenv('NIXDEPLOY_TEST_FLAKE_CONFIG', 'from-the-environment')
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path / 'config'))
    opts = _nix.NixOptions(**given)
    assert _nix_config.accepts_flake_config(opts.options, opts.extra_args) is opted_in
    argv, rc, out, err = _nix.NixCommand(opts).run(
        'eval', ['--json', 'path:%s#x' % tmp_path], flake_command=True)
    assert rc == 0, err
    assert json.loads(out) == ('from-the-environment' if opted_in else '')
    refused = _nix_stderr.refused_flake_settings(err)
    assert refused == ([] if opted_in else ['allow-import-from-derivation', 'pure-eval'])


def test_refused_flake_settings_are_read_from_every_nix_and_shown_only_as_names():
    said = ("warning: ignoring untrusted flake configuration setting 'pure-eval'\n"
            "warning: ignoring untrusted flake configuration setting 'sandbox'.\n"
            "Pass '--accept-flake-config' to trust it\n"
            "\x1b[35;1mwarning:\x1b[0m ignoring untrusted flake configuration setting "
            "'post-build-hook'.\nPass '--accept-flake-config' to trust it\n"
            "warning: ignoring untrusted flake configuration setting '\x1b]0;x\x07 a b'\n"
            "warning: ignoring untrusted flake configuration setting 'pure-eval'\n")
    assert _nix_stderr.refused_flake_settings(said) == ['post-build-hook', 'pure-eval', 'sandbox']
    assert _nix_stderr.refused_flake_settings('') == []
    # only Nix's own warning line: the flake's builtins.trace names nothing
    assert _nix_stderr.refused_flake_settings(
        "trace: warning: ignoring untrusted flake configuration setting 'sandbox'\n"
        "error: ignoring untrusted flake configuration setting 'sandbox'\n") == []
    assert _nix_stderr.refused_flake_settings(None) == []


def test_options_of_the_collections_own_go_over_the_users():
    """with_options (a private netrc-file for the calls that open a cache
    with a login): over nix_options, in NIX_CONFIG too, refused alike."""
    opts = _nix.NixOptions(nix_bin='/x/nix', options={'netrc-file': '/etc/mine', 'max-jobs': 2},
                           extra_args=['-L'], impure=True)
    ours = opts.with_options({'netrc-file': '/tmp/p/netrc'})
    assert ours.config_lines() == ['max-jobs = 2', 'netrc-file = /tmp/p/netrc']
    assert opts.config_lines() == ['max-jobs = 2', 'netrc-file = /etc/mine']
    assert ours.argv('build', ['f#a']) == opts.argv('build', ['f#a'])
    with pytest.raises(_nix.NixError):
        opts.with_options({'netrc-file': '/tmp/p#x'})


@pytest.mark.parametrize('options, said', [
    ({'substituters': 'https://a\nsandbox = false'}, 'the value of substituters holds a line break'),
    ({'substituters': 'https://a\rsandbox = false'}, 'holds a line break'),
    ({'access-tokens': ['example.org=s3cr3t', '#x']}, "holds '#'"),
    ({'sandbox = false\nmax-jobs': 1}, 'is not a Nix setting name'),
    ({'include': '/etc/shadow'}, 'is not a Nix setting name'),
    ({'!include': '/etc/shadow'}, 'is not a Nix setting name'),
    ({'': 'x'}, 'is not a Nix setting name'),
    # `$` would match before the final line break: the name ends the line
    ({'substituters\n': 'x'}, 'is not a Nix setting name'),
    ({'sandbox\n': 'false'}, 'is not a Nix setting name'),
])
def test_options_nix_would_read_as_more_settings_are_refused(options, said):
    with pytest.raises(_nix.NixError) as info:
        _nix.NixOptions(options=options)
    assert said in str(info.value)
    assert 's3cr3t' not in str(info.value) and 'https://a' not in str(info.value)


def test_options_take_effect_through_the_environment_of_real_nix(monkeypatch):
    """A real nix reads nix_options from NIX_CONFIG, over the user's own
    NIX_CONFIG, and the argv the runner ran holds none of them."""
    monkeypatch.setenv('NIX_CONFIG', 'system = from-the-user\nconnect-timeout = 7')
    runner = _nix.NixCommand(_nix.NixOptions(options={'system': 'nixdeploy-opt-7f3a'}))
    argv, rc, out, err = runner.run('eval', ['--impure', '--json', '--expr', 'builtins.currentSystem'])
    assert (rc, out.strip()) == (0, '"nixdeploy-opt-7f3a"'), err
    assert not [a for a in argv if 'nixdeploy-opt-7f3a' in a or a == '--option']
    # the user's other settings stay (`show-config` became `config show` in 2.20)
    features = runner.features()
    like = _nix_output.like_nix(features.flavour, features.version)
    argv, rc, out, err = runner.run('config show' if like >= (2, 20) else 'show-config', ['--json'])
    assert rc == 0, err
    assert json.loads(out)['connect-timeout']['value'] == 7


def test_ps_shows_no_option_value_of_a_real_nix_process(tmp_path):
    """What ps reads (/proc/PID/cmdline) of the process the runner starts
    holds no nix_options value; the value is in that process's NIX_CONFIG,
    and the real nix behind it evaluates with it."""
    secret = 'example.invalid=nixdeploy-token-91c2'
    seen = tmp_path / 'seen'
    wrapper = tmp_path / 'nix'
    wrapper.write_text('#!/bin/sh\ntr "\\0" " " </proc/$$/cmdline >"%s"\necho >>"%s"\n'
                       'printf "%%s" "$NIX_CONFIG" >>"%s"\nexec nix "$@"\n' % (seen, seen, seen))
    wrapper.chmod(0o755)
    runner = _nix.NixCommand(_nix.NixOptions(nix_bin=str(wrapper),
                                             options={'access-tokens': secret, 'substituters': ''}))
    assert runner.json('eval', ['--json', '--expr', '{ a = 1; }'], 'eval') == {'a': 1}
    cmdline, config = seen.read_text().split('\n', 1)
    assert 'eval --extra-experimental-features' in cmdline
    assert secret not in cmdline and 'access-tokens' not in cmdline
    assert 'access-tokens = %s' % secret in config.splitlines()


def test_credentials_never_reach_a_nix_error_or_stderr():
    """Nix echoes the URL it could not fetch, credentials and all; the
    NixError (message, argv, stderr) and the runner's stderr mask them."""
    ref = 'https://oauth2:s3cr3t-1@127.0.0.1:9/x.tar.gz?access_token=s3cr3t-2&rev=1'
    runner = _nix.NixCommand(_nix.NixOptions(options={'download-attempts': 1, 'connect-timeout': 1}))
    _argv, rc, _out, err = runner.run('flake metadata', ['--json', ref], flake_command=True)
    assert rc != 0 and 'unable to download' in err and '127.0.0.1:9' in err
    assert 's3cr3t' not in err
    assert 'https://oauth2:***@127.0.0.1:9/x.tar.gz?access_token=***' in err
    with pytest.raises(_nix.NixError) as info:
        runner.check('flake metadata', ['--json', ref], 'reading %s' % ref, flake_command=True)
    exc = info.value
    shown = ' '.join([str(exc), exc.message, exc.stderr, exc.nix_message()] + exc.argv)
    assert 's3cr3t' not in shown
    assert str(exc).startswith('reading https://oauth2:***@127.0.0.1:9/')


def test_nix_json_rejects_non_json():
    opts = _nix.NixOptions()
    with pytest.raises(_nix.NixError):
        _nix.nix_json(opts, 'eval', ['--raw', '--expr', '"not json {"'], 'eval',
                      flake_command=False)


def test_runner_counts_passes_env_and_finds_tools_beside_nix(tmp_path):
    fake = tmp_path / 'nix-store'
    fake.write_text('#!/bin/sh\nprintf "%s|%s" "$NIX_SSHOPTS" "$*"\n')
    fake.chmod(0o755)
    runner = _nix.NixCommand(_nix.NixOptions(nix_bin=str(tmp_path / 'nix')))
    out = runner.check(None, ['--check-validity', 'a b'], 'probe', tool='nix-store',
                       env={'NIX_SSHOPTS': '-p 2222'})
    assert out == '-p 2222|--check-validity a b'
    argv, rc, _out, err = runner.run('eval', ['--expr', '1'])
    assert argv[0] == str(tmp_path / 'nix') and rc == 127 and 'nix' in err
    assert runner.processes == 2


def test_runner_json_and_flake_only_options():
    opts = _nix.NixOptions(options={'substituters': ''}, impure=True,
                           override_inputs={'a': 'path:/b'})
    runner = _nix.NixCommand(opts)
    assert '--impure' not in runner.argv('copy', ['x'])
    assert '--impure' in runner.argv('eval', ['x'], flake_command=True)
    assert runner.json('eval', ['--json', '--expr', '{ a = 1; }'], 'eval') == {'a': 1}


def test_one_options_spec_matches_the_doc_fragment():
    import yaml
    from ansible_collections.nixdeploy.fleet.plugins.doc_fragments.nix import ModuleDocFragment
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    assert sorted(documented) == sorted(_options.NIX_OPTIONS)
    for name, spec in _options.NIX_OPTIONS.items():
        for key in ('type', 'elements', 'default'):
            assert documented[name].get(key) == spec.get(key), (name, key)
    assert _nix.options_of({'nix_bin': 'x', 'flake': 'y'}) == dict(
        (name, 'x' if name == 'nix_bin' else None) for name in _options.NIX_OPTIONS)


def test_every_nix_task_takes_the_one_spec():
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _specs
    for spec in (_specs.EVAL_SPEC, _specs.BUILD_SPEC, _specs.PUBLISH_SPEC,
                 _specs.CHANNEL_SPEC, _specs.COPY_SPEC):
        assert dict((k, spec[k]) for k in _options.NIX_OPTIONS) == _options.NIX_OPTIONS
