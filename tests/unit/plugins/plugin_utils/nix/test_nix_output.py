"""The readers of Nix's outputs (plugin_utils/nix/_nix_output.py) against samples
of every shape: Nix 2.8, 2.18, 2.19+, 2.23, 2.32, 2.33+ (2.34), Lix and
Determinate Nix. Where each sample comes from: nix_samples/README.md."""

import json
import os
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import (  # noqa: E402
    _nix, _nix_features, _nix_output, _nix_stderr)

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nix_samples')

S = '/nix/store/'
TOP_DRV = S + '2zpnh6fdpbq6vld8cpz5fgwi0rg75k0w-nixdeploy-sample-top.drv'
LIB_DRV = S + 'v6nrnkpfa8k2c2cbnfsbshmpajwvc78z-nixdeploy-sample-lib.drv'
TOP = S + 'rrc079mpvdazdszlr272shyz1bc3s24r-nixdeploy-sample-top'
TOP_DEV = S + 'qxsdmh3may8b4j70akdf6c8v9izx2sr2-nixdeploy-sample-top-dev'
LIB = S + 'ch8ihxp4c4wxxgwa8q5zhifzyj7d6yra-nixdeploy-sample-lib'
GONE = S + '00000000000000000000000000000000-nixdeploy-sample-gone'
BAD_DRV = S + 'kif9ljks6xgjn1v78kfxvzzz3ihskbwg-nixdeploy-sample-bad.drv'
BADTOP_DRV = S + 'j3pc3xd8w4v3dzqjan4i10sk0sy2mzxg-nixdeploy-sample-badtop.drv'
FOREIGN_DRV = S + 'x3hrsaynl66i4zkghmzrlsrqndbsn06v-nixdeploy-sample-foreign.drv'
FOO = S + 'n5wkd9frr45pa74if5gpz9j7mifg27fh-foo'
BAR = S + 'g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar'


def text(name):
    with open(os.path.join(SAMPLES, name), encoding='utf-8') as handle:
        return handle.read()


def data(name):
    return json.loads(text(name))


# ------------------------------------------------------------------ nix --version
@pytest.mark.parametrize('name,flavour,version', [
    ('version-2.8.txt', 'nix', (2, 8, 0)),
    ('version-2.34.txt', 'nix', (2, 34, 8)),
    ('version-lix.txt', 'lix', (2, 93, 0)),
    ('version-determinate.txt', 'determinate', (2, 31, 1)),
])
def test_nix_version_of_each_flavour(name, flavour, version):
    assert _nix_output.nix_version(text(name)) == (flavour, version)


def test_nix_version_of_prereleases_and_nonsense():
    assert _nix_output.nix_version('nix (Nix) 2.35.0pre20260101_abcdef\n') == ('nix', (2, 35, 0))
    assert _nix_output.nix_version('nix (Lix, like Nix) 2.94.0-dev-pre20250101\n') == (
        'lix', (2, 94, 0))
    assert _nix_output.nix_version('nix (Nix) 2.3') == ('nix', (2, 3, 0))
    with pytest.raises(ValueError):
        _nix_output.nix_version('bash: nix: command not found')


@pytest.mark.parametrize('name,derivation_show,all_outputs,json_format,outputs_fragment', [
    ('version-2.8.txt', False, False, False, False),
    ('version-2.34.txt', True, True, True, True),
    ('version-lix.txt', True, True, False, True),          # Lix 2.93 is a 2.18 here, but has #.
    ('version-determinate.txt', True, True, False, True),  # its upstream Nix: 2.31
])
def test_command_line_forms_follow_the_version(name, derivation_show, all_outputs, json_format,
                                               outputs_fragment):
    features = _nix_features.NixFeatures(*_nix_output.nix_version(text(name)))
    assert (features.derivation_show, features.all_outputs, features.json_format,
            features.outputs_fragment) == (derivation_show, all_outputs, json_format,
                                           outputs_fragment)
    assert not _nix_features.NixFeatures('nix', (2, 18, 8)).outputs_fragment
    assert _nix_features.NixFeatures('nix', (2, 19, 0)).outputs_fragment
    assert _nix_features.NixFeatures('nix', (2, 13, 0)).all_outputs
    assert not _nix_features.NixFeatures('nix', (2, 14, 1)).derivation_show
    assert _nix_features.NixFeatures('determinate', (2, 33, 0)).json_format
    # --reference-lock-file (the run's resolved lock graph): not on 2.8, nor
    # on a Lix (like 2.18 here)
    assert [_nix_features.NixFeatures(*_nix_output.nix_version(text(n))).reference_lock_file for n in (
        'version-2.8.txt', 'version-2.34.txt', 'version-lix.txt', 'version-determinate.txt')] \
        == [False, True, False, True]


def test_the_controllers_nix_is_asked_once():
    runner = _nix.NixCommand(_nix.NixOptions())
    first = runner.features()
    assert runner.features() is first and _nix.nix_features('nix') is first
    assert first.flavour in ('nix', 'lix', 'determinate') and first.version >= (2, 8, 0)
    assert runner.processes == 0  # the version probe is not one of the task's commands
    drv = '/nix/store/%s-x.drv' % ('0' * 32)
    assert runner.built([drv, LIB]) == [drv + ('^*' if first.all_outputs else ''), LIB]


def test_a_nix_that_does_not_run_is_a_nix_error(tmp_path):
    with pytest.raises(_nix.NixError) as info:
        _nix.nix_features(str(tmp_path / 'no-nix-here'))
    assert 'no-nix-here' in str(info.value)


# ------------------------------------------------------------------ path-info
@pytest.mark.parametrize('name', ['path-info-2.8.json', 'path-info-2.34.json',
                                  'path-info-2.34-format1.json', 'path-info-2.34-format2.json'])
def test_path_infos_printed_by_nix_2_8_and_2_34(name):
    found = _nix_output.path_infos(data(name))
    assert set(found) == {TOP, GONE}
    assert found[GONE] is None
    info = found[TOP]
    assert info['path'] == TOP and info['references'] == [LIB] and info['narSize'] == 184
    assert info['signatures'] == [] and info['deriver'] == TOP_DRV


@pytest.mark.parametrize('name', ['path-info-r-2.8.json', 'path-info-r-2.34.json'])
def test_recursive_path_infos(name):
    found = _nix_output.path_infos(data(name))
    assert set(found) == {TOP, LIB}
    assert found[LIB]['references'] == [] and found[LIB]['narSize'] == 120


@pytest.mark.parametrize('name', ['path-info-2.18.json', 'path-info-2.19.json',
                                  'path-info-2.23.json', 'path-info-2.35-format3.json',
                                  'path-info-lix.json'])
def test_path_infos_from_nix_and_lix_test_data(name):
    found = _nix_output.path_infos(data(name))
    assert found[GONE] is None
    info = found[FOO]
    assert info['references'] == [BAR, FOO]
    assert info['narSize'] == 34878 and info['deriver'] == BAR + '.drv'
    assert [s.partition(':')[0] for s in info['signatures']] == ['asdf', 'qwer']


def test_path_infos_with_null_fields_since_2_23():
    found = _nix_output.path_infos(data('path-info-2.23.json'))
    empty = found[BAR]
    assert empty['deriver'] is None and empty['signatures'] == [] and empty['narSize'] == 0


def test_path_infos_since_2_33_warn_without_json_format():
    assert "'--json' without '--json-format' is deprecated" in text('path-info-2.34.stderr')


def test_path_infos_of_another_store_dir_and_bad_input():
    found = _nix_output.path_infos({'version': 2, 'storeDir': '/gnu/store',
                                    'info': {'abc-x': {'references': ['abc-x']}}})
    assert found == {'/gnu/store/abc-x': {
        'path': '/gnu/store/abc-x', 'references': ['/gnu/store/abc-x'], 'narSize': 0,
        'signatures': [], 'deriver': None}}
    for bad in ('text', 3, None, ['x']):
        with pytest.raises(ValueError):
            _nix_output.path_infos(bad)


def test_paths_an_error_calls_not_valid():
    err = ("error: path '%s' is not valid\n"
           "\x1b[31;1merror:\x1b[0m path '\x1b[35;1m%s\x1b[0m' is not valid\n" % (TOP, LIB))
    assert _nix_stderr.not_valid(err) == {TOP, LIB}  # in colour too
    assert _nix_stderr.not_valid("error: path '%s' is not valid" % LIB) == {LIB}
    assert _nix_stderr.not_valid('') == set() and _nix_stderr.not_valid(None) == set()


def test_listed_paths():
    assert _nix_output.listed_paths('%s\n\n  %s  \n' % (TOP, LIB)) == {TOP, LIB}
    assert _nix_output.listed_paths('') == set()


# ------------------------------------------------------------------ errors and traces
def test_error_message_starts_at_nixs_error():
    err = ("copying path '%s' from 'https://cache'...\n\nwarning: Git tree is dirty\n"
           "error: attribute 'lab' missing\n\n       at /nix/store/s-source/lib.nix:64:38:\n" % TOP)
    assert _nix_stderr.error_message(err) == (
        "error: attribute 'lab' missing\n       at /nix/store/s-source/lib.nix:64:38:")
    # 2.8 writes "error: ..." after a colour code
    assert _nix_stderr.error_message('noise\n\x1b[31;1merror:\x1b[0m boom\n') \
        == '\x1b[31;1merror:\x1b[0m boom'
    lines = '\n'.join('line %d' % i for i in range(50))
    assert _nix_stderr.error_message(lines).splitlines() == ['line %d' % i for i in range(10, 50)]
    assert _nix_stderr.error_message('') == '' and _nix_stderr.error_message(None) == ''


def test_traces_with_a_marker():
    err = '\n'.join(['trace: @m@1 {"out": "/nix/store/a"}', 'trace: @m@x {bad',
                     'trace: other', 'error: boom'])
    found, rest = _nix_stderr.traces(err, '@m@')
    assert found == {1: {'out': '/nix/store/a'}}
    assert rest == 'trace: @m@x {bad\ntrace: other\nerror: boom'
    assert _nix_stderr.traces(None, '@m@') == ({}, '')


# ------------------------------------------------------------------ nix copy
def test_sent_paths_reads_nix_copy_progress():
    err = ("copying 2 paths...\ncopying path '%s' to 'ssh-ng://root@h'...\n"
           "copying path '%s' to 'ssh-ng://root@h'...\n" % (LIB, TOP))
    assert _nix_stderr.sent_paths(err) == [LIB, TOP]
    assert _nix_stderr.sent_paths('copying 0 paths...\n') == []
    assert _nix_stderr.sent_paths('') is None
    assert _nix_stderr.sent_paths(None) is None
    # Nix may colour even a pipe
    assert _nix_stderr.sent_paths("\x1b[1mcopying path '%s' to 'ssh-ng://h'\x1b[0m...\n"
                                  % TOP) == [TOP]


# ------------------------------------------------------------------ derivation show
@pytest.mark.parametrize('name', ['derivation-show-2.8.json', 'derivation-show-2.34.json'])
def test_derivations_printed_by_nix_2_8_and_2_34(name):
    graph = _nix_output.derivations(data(name))
    assert graph == {
        TOP_DRV: {'outputs': {'out': TOP, 'dev': TOP_DEV}, 'input_drvs': [LIB_DRV]},
        LIB_DRV: {'outputs': {'out': LIB}, 'input_drvs': []},
    }


@pytest.mark.parametrize('name', ['derivation-show-2.18.json', 'derivation-show-lix.json'])
def test_derivations_with_dynamic_outputs_2_18_and_lix(name):
    graph = _nix_output.derivations(data(name))
    simple = graph[S + 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-simple-derivation.drv']
    assert simple == {'outputs': {}, 'input_drvs': [S + 'c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv']}
    dep = graph[S + 'c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv']
    assert dep['outputs'] == {'out': S + 'c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-drv-name-output-name'}


def test_derivations_with_bare_names_since_2_32():
    graph = _nix_output.derivations(data('derivation-show-2.32.json'))
    dyn = graph[S + 'zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-dyn-dep-derivation.drv']
    assert dyn == {'outputs': {}, 'input_drvs': [S + 'c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv']}
    adv = graph[S + 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy-advanced-attributes.drv']
    assert adv['outputs'] == {'out': S + 'wyhpwd748pns4k7svh48wdrc8kvjk0ra-advanced-attributes'}
    assert adv['input_drvs'] == [S + 'afc3vbjbzql750v2lp8gxgaxsajphzih-foo.drv',
                                 S + 'vj2i49jm2868j2fmqvxm70vlzmzvgv14-bar.drv']


def test_derivations_without_output_paths_and_bad_input():
    graph = _nix_output.derivations({'version': 4, 'derivations': {
        'abc-ca.drv': {'outputs': {'out': {'method': 'nar', 'hashAlgo': 'sha256'}},
                       'inputs': {'srcs': [], 'drvs': {}}}}})
    assert graph == {S + 'abc-ca.drv': {'outputs': {'out': None}, 'input_drvs': []}}
    for bad in ([], 'x', {'a.drv': 3}):
        with pytest.raises(ValueError):
            _nix_output.derivations(bad)


# ------------------------------------------------------------------ build errors
@pytest.mark.parametrize('name', ['build-failure-2.8.txt', 'build-failure-2.34.txt',
                                  'build-failure-lix.txt'])
def test_build_failures_name_the_derivation_whose_builder_failed(name):
    by_drv, other = _nix_stderr.build_failures(text(name))
    assert list(by_drv) == [BAD_DRV]
    assert by_drv[BAD_DRV].startswith('error: ')
    assert 'broken on purpose' in by_drv[BAD_DRV]
    # the derivation that only waited for it is not blamed
    assert len(other) == 1 and BADTOP_DRV in other[0]


def test_build_failures_in_colour():
    coloured = text('build-failure-2.34.txt').replace(
        "Cannot build '%s'" % BAD_DRV, "Cannot build '\x1b[35;1m%s\x1b[0m'" % BAD_DRV).replace(
        'Reason: builder failed', 'Reason: \x1b[31;1mbuilder failed').replace(
        'error:', '\x1b[31;1merror:\x1b[0m')
    by_drv, other = _nix_stderr.build_failures(coloured)
    assert list(by_drv) == [BAD_DRV] and '\x1b' not in by_drv[BAD_DRV]
    assert len(other) == 1


@pytest.mark.parametrize('name', ['build-foreign-2.8.txt', 'build-foreign-2.34.txt'])
def test_build_failures_for_want_of_a_platform(name):
    by_drv, other = _nix_stderr.build_failures(text(name))
    assert list(by_drv) == [FOREIGN_DRV] and other == []
    assert 'aarch64-darwin' in by_drv[FOREIGN_DRV]


def test_build_failures_of_nothing():
    assert _nix_stderr.build_failures('') == ({}, [])
    assert _nix_stderr.build_failures('error: flake has no attribute x\n') == (
        {}, ['error: flake has no attribute x'])


@pytest.mark.parametrize('name', ['dry-run-2.8.txt', 'dry-run-2.34.txt'])
def test_dry_run(name):
    build, fetch = _nix_stderr.dry_run(text(name))
    assert build == [LIB_DRV, TOP_DRV, BAD_DRV, BADTOP_DRV] and fetch == []


def test_dry_run_with_paths_to_fetch():
    stderr = ('these 2 derivations will be built:\n  /nix/store/aaa-system-h1.drv\n'
              '  /nix/store/bbb-busybox.drv\n'
              'this path will be fetched (0.01 MiB download, 0.02 MiB unpacked):\n'
              '  /nix/store/ccc-glibc\n')
    assert _nix_stderr.dry_run(stderr) == (
        ['/nix/store/aaa-system-h1.drv', '/nix/store/bbb-busybox.drv'], ['/nix/store/ccc-glibc'])
    assert _nix_stderr.dry_run('') == ([], [])


# ------------------------------------------------------------------ diff-closures
@pytest.mark.parametrize('name', ['diff-closures-2.8.txt', 'diff-closures-2.34.txt'])
def test_diff_closures_before_and_after_2_33(name):
    lines, summary = _nix_output.diff_closures(text(name))
    assert lines == [u'nixdeploy-sample-app: 1.0 \u2192 2.0, -52.6 KiB',
                     u'nixdeploy-sample-new: \u2205 \u2192 3.1, %s32.3 KiB'
                     % ('+' if '2.8' in name else ''),
                     u'nixdeploy-sample-old: 1.0 \u2192 \u2205']
    assert summary['added'] == ['nixdeploy-sample-new']
    assert summary['removed'] == ['nixdeploy-sample-old']
    assert summary['changed'] == ['nixdeploy-sample-app']
    assert summary['size_change_bytes'] == int(32.3 * 1024) - int(52.6 * 1024)
    assert summary['lines'] == lines


def test_diff_closures_units_and_version_sets():
    lines, summary = _nix_output.diff_closures(
        u'glibc: 2.39, 2.40 \u2192 2.41, 1.5 MiB\n'
        u'linux: 6.6 \u2192 \u2205\n'
        u'perl: 12.0 KiB\n'
        u'tool: \u03b5 \u2192 1.0, -8.1 KiB\n')
    assert summary['changed'] == ['glibc', 'perl', 'tool'] and summary['removed'] == ['linux']
    assert summary['size_change_bytes'] == int(1.5 * (1 << 20)) + 12 * 1024 - int(8.1 * 1024)
    assert _nix_output.diff_closures('') == ([], {'added': [], 'removed': [], 'changed': [],
                                                  'size_change_bytes': 0, 'lines': []})


# ------------------------------------------------------------------ signatures
@pytest.mark.parametrize('name', ['unsigned-2.8.txt', 'unsigned-2.34.txt', 'unsigned-lix.txt'])
def test_unsigned(name):
    assert _nix_stderr.unsigned(text(name))


def test_not_unsigned():
    assert not _nix_stderr.unsigned(text('build-failure-2.34.txt'))
    assert not _nix_stderr.unsigned('')
    assert not _nix_stderr.unsigned(None)


# ------------------------------------------------------------------ flake metadata
REV = '45c6883893e7b99ecb04dac18750727d200b44e2'


@pytest.mark.parametrize('version', ['2.8', '2.34'])
def test_flake_metadata_of_a_git_flake(version):
    facts = _nix_output.flake_metadata(data('flake-metadata-%s-git.json' % version))
    assert facts['revision'] == REV and facts['dirty'] is False
    assert facts['url'].startswith('git+file:///tmp/nixsamples/flake?ref=')
    assert facts['url'].endswith('rev=' + REV)
    assert facts['type'] == 'git' and facts['last_modified'] == 1704067200
    assert facts['nar_hash'] == 'sha256-i2s3L4a0YcbqcoGsDNHHKd/EKHhueKj5T8kj8aghKkM='


@pytest.mark.parametrize('version,dirty_revision', [('2.8', None), ('2.34', REV + '-dirty')])
def test_flake_metadata_of_a_dirty_git_tree(version, dirty_revision):
    facts = _nix_output.flake_metadata(data('flake-metadata-%s-dirty.json' % version))
    assert facts['revision'] is None and facts['dirty'] is True
    assert facts['dirty_revision'] == dirty_revision


@pytest.mark.parametrize('version', ['2.8', '2.34'])
def test_flake_metadata_of_a_path_flake(version):
    facts = _nix_output.flake_metadata(data('flake-metadata-%s-path.json' % version))
    assert facts['revision'] is None and facts['dirty'] is False and facts['type'] == 'path'


def test_flake_metadata_unknown():
    assert _nix_output.flake_metadata(None) == {
        'url': None, 'revision': None, 'dirty': None, 'dirty_revision': None, 'type': None,
        'nar_hash': None, 'last_modified': None, 'path': None}


@pytest.mark.parametrize('version,expected', [
    ((2, 8, 0), ['--option', 'system', 'nixdeploy-outputs-only',
                 '--option', 'extra-extra-platforms', 'aarch64-linux', 'path:/f#""']),
    ((2, 19, 2), ['path:/f#.']),
])
def test_outputs_are_named_by_the_form_each_version_reads(monkeypatch, version, expected):
    runner = _nix.NixCommand(_nix.NixOptions(options={'system': 'aarch64-linux'}))
    monkeypatch.setattr(runner, 'features', lambda: _nix_features.NixFeatures('nix', version))
    assert runner.outputs('path:/f') == expected


def test_native_system_is_spelled_as_nix_does(monkeypatch):
    monkeypatch.setattr(_nix.os, 'uname', lambda: ('Darwin', 'm', '24', 'v', 'arm64'))
    assert _nix.native_system() == 'aarch64-darwin'


# ------------------------------------------------------------------ store faults
@pytest.mark.parametrize('text,kind', [
    # Nix 2.8 and 2.34 (the daemon's or the local store's words)
    ("error: writing to file: No space left on device", _nix_stderr.NO_SPACE),
    ("error: cannot add path '/nix/store/x' because: No space left on device", _nix_stderr.NO_SPACE),
    ('error: sqlite: database or disk is full (in \'/nix/var/nix/db/db.sqlite\')', _nix_stderr.NO_SPACE),
    ("error: creating directory '/nix/store/x': Read-only file system", _nix_stderr.READ_ONLY),
    ("error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused",
     _nix_stderr.NO_DAEMON),
    ("error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': No such file or "
     "directory", _nix_stderr.NO_DAEMON),
    ('\x1b[31;1merror:\x1b[0m writing to file: No space left on device', _nix_stderr.NO_SPACE),
    ('error: path is not valid', None),
    ('', None),
])
def test_store_fault_in_every_nixs_words(text, kind):
    found, line = _nix_stderr.store_fault('copying 2 paths...\n' + text + '\n')
    assert found == kind
    assert (line is None) == (kind is None)
    if line:
        assert '\x1b' not in line and line.startswith('error:')


def test_store_fault_quotes_nixs_words_without_the_wrappers():
    said = ("nix-env --set /p failed: error: cannot connect to socket at "
            "'/nix/var/nix/daemon-socket/socket': Connection refused (nothing was activated, "
            "/p is left at generation 3)")
    assert _nix_stderr.store_fault(said) == (
        _nix_stderr.NO_DAEMON,
        "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': "
        "Connection refused")
