"""What the controller's Nix builds (plugin_utils/builds/_build_platforms.py) and Nix's
own words for a platform it does not build (_nix_stderr.platform_mismatch).
The build against real Nix: test_build.py."""

import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (  # noqa: E402
    _build_platforms)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._build_platforms import (  # noqa: E402
    LocalBuilds, Platforms, builder_systems)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr  # noqa: E402


def test_builders_read_as_nix_reads_them():
    files = {'/etc/nix/machines': 'ssh://mac aarch64-darwin,x86_64-darwin /key 4\n'
                                  '# a comment\n\n@/etc/nix/more\n',
             '/etc/nix/more': 'ssh-ng://arm aarch64-linux - 2 1 big-parallel'}

    def read(path):
        if path not in files:
            raise IOError(2, 'No such file')
        return files[path]
    assert builder_systems('', 'x86_64-linux', read) == []
    # the default, a machines file that does not exist: no builders
    assert builder_systems('@/etc/nix/machines-absent', 'x86_64-linux', read) == []
    assert builder_systems('@/etc/nix/machines', 'x86_64-linux', read) == [
        {'aarch64-darwin', 'x86_64-darwin'}, {'aarch64-linux'}]
    # `;` between entries; no systems field or `-`: the local system
    assert builder_systems('ssh://a ; ssh://b - ; ssh://c i686-linux#x', 'x86_64-linux', read) == [
        {'x86_64-linux'}, {'x86_64-linux'}, {'i686-linux'}]
    # a file naming itself ends
    files['/loop'] = '@/loop\nssh://x riscv64-linux'
    assert {'riscv64-linux'} in builder_systems('@/loop', 'x86_64-linux', read)


@pytest.mark.parametrize('shape', ['value', 'bare'])
def test_platforms_from_config_show(shape):
    config = {'system': 'x86_64-linux', 'extra-platforms': ['i686-linux', 'x86_64-v2-linux'],
              'builders': 'ssh://arm aarch64-linux', 'max-jobs': 1}
    if shape == 'value':
        config = dict((k, {'value': v, 'defaultValue': None, 'description': ''})
                      for k, v in config.items())
    platforms = Platforms.from_config(config, read_file=lambda p: '')
    assert platforms.builds('x86_64-linux') and platforms.builds('i686-linux')
    assert platforms.builds('aarch64-linux')          # on the builder
    assert platforms.builds('builtin')
    assert not platforms.builds('aarch64-darwin')
    assert 'x86_64-linux and its extra-platforms i686-linux, x86_64-v2-linux' in platforms.describe()
    assert 'its builders build aarch64-linux' in platforms.describe()
    # extra-platforms as one string (nix.conf's spelling)
    assert Platforms.from_config({'system': 'x86_64-linux', 'extra-platforms': 'aarch64-linux i686-linux'}) \
        .builds('aarch64-linux')


class FakeRunner:
    """Answers ``config show --json``; counts the processes."""

    def __init__(self, config):
        self.config, self.asked = config, []

    def features(self):
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixFeatures
        return NixFeatures('nix', (2, 34, 0))

    def json(self, sub, args, what):
        self.asked.append((sub, args))
        return self.config


NEEDS = {'/nix/store/a-system-f1.drv': {'system': 'aarch64-linux', 'features': []},
         '/nix/store/a-busybox.drv': {'system': 'aarch64-linux', 'features': []},
         '/nix/store/x-system-f2.drv': {'system': 'x86_64-linux', 'features': []},
         '/nix/store/fetch.drv': {'system': 'builtin', 'features': []}}


def test_refused_asks_nix_only_for_another_system():
    runner = FakeRunner({'system': {'value': 'x86_64-linux'}, 'extra-platforms': {'value': []},
                         'builders': {'value': ''}})
    local = LocalBuilds(runner, NEEDS, native='x86_64-linux')
    assert local.refused(['/nix/store/x-system-f2.drv', '/nix/store/fetch.drv']) == {}
    assert runner.asked == []                           # an ordinary build: no process more
    refused = local.refused(sorted(NEEDS))
    assert refused == {'/nix/store/a-system-f1.drv': 'aarch64-linux',
                       '/nix/store/a-busybox.drv': 'aarch64-linux'}
    assert runner.asked == [('config show', ['--json'])]
    local.refused(sorted(NEEDS))
    assert len(runner.asked) == 1                       # asked once per build
    msg = local.message('/nix/store/a-system-f1.drv', refused)
    assert msg.startswith('cannot build it here: its system /nix/store/a-system-f1.drv is for '
                          'aarch64-linux (and so is 1 more derivation it needs that is not built yet), '), msg
    assert "this machine's Nix builds x86_64-linux; it has no builders" in msg
    assert 'Nothing was built or copied for this host.' in msg
    for way in ('nix_build_on: target', 'nix_build_on: [builder]', "Nix's builders",
                'extra-platforms: aarch64-linux', 'binfmt/qemu', 'nix_copy_mode: cache'):
        assert way in msg, way


def test_extra_platforms_and_builders_let_it_through():
    for config in ({'system': 'x86_64-linux', 'extra-platforms': ['aarch64-linux']},
                   {'system': 'x86_64-linux', 'builders': 'ssh-ng://arm aarch64-linux'}):
        local = LocalBuilds(FakeRunner(config), NEEDS, native='x86_64-linux')
        assert local.refused(sorted(NEEDS)) == {}


def test_show_config_before_nix_2_20():
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixFeatures
    assert _build_platforms.config_subcommand(NixFeatures('nix', (2, 8, 0))) == 'show-config'
    assert _build_platforms.config_subcommand(NixFeatures('nix', (2, 19, 3))) == 'show-config'
    assert _build_platforms.config_subcommand(NixFeatures('nix', (2, 20, 0))) == 'config show'
    assert _build_platforms.config_subcommand(NixFeatures('lix', (2, 93, 0))) == 'show-config'


# what Nix 2.8.0 and 2.34.8 printed here for a derivation of system aarch64-linux
NIX_2_8 = ("error: a 'aarch64-linux' with features {} is required to build "
           "'/nix/store/aq7ichbskkwiyfaii28jigvkd4ilz5km-foreign-probe-h36.drv', but I am a "
           "'x86_64-linux' with features {benchmark, big-parallel, kvm, nixos-test}")
NIX_2_34 = ("error: Cannot build '/nix/store/aq7ichbskkwiyfaii28jigvkd4ilz5km-foreign-probe-h36.drv'.\n"
            "       Reason: platform mismatch\n"
            "       Required system: 'aarch64-linux'\n"
            "       Current system: 'x86_64-linux'")


@pytest.mark.parametrize('text', [NIX_2_8, NIX_2_34, '\x1b[31;1merror:\x1b[0m ' + NIX_2_8[7:]])
def test_platform_mismatch_in_every_version(text):
    assert _nix_stderr.platform_mismatch(text) == ('aarch64-linux', 'x86_64-linux')
    by_drv, other = _nix_stderr.build_failures(text)
    assert list(by_drv) == ['/nix/store/aq7ichbskkwiyfaii28jigvkd4ilz5km-foreign-probe-h36.drv']
    assert other == []


def test_other_failures_are_no_platform_mismatch():
    assert _nix_stderr.platform_mismatch(
        "error: builder for '/nix/store/x.drv' failed with exit code 1;") is None
    assert _nix_stderr.platform_mismatch(
        "error: Cannot build '/nix/store/x.drv'.\n       Reason: builder failed with exit code 1.") is None


def test_emulation_is_offered_only_within_one_kernel():
    linux = _build_platforms.ways_out('aarch64-linux', 'x86_64-linux')
    assert 'extra-platforms: aarch64-linux, with binfmt/qemu' in linux
    darwin = _build_platforms.ways_out('aarch64-darwin', 'x86_64-linux')
    assert 'extra-platforms' not in darwin
    assert darwin.startswith('Ways out: build it on the host itself (nix_build_on: target); on a builder '
                             'that builds aarch64-darwin'), darwin
    assert darwin.endswith('; or have it prebuilt in a binary cache this machine substitutes from '
                           '(nix_options extra-substituters; nix_copy_mode: cache lets the hosts fetch it '
                           'there too).'), darwin


def test_a_native_system_that_needs_a_foreign_derivation():
    runner = FakeRunner({'system': 'x86_64-linux'})
    needs = dict(NEEDS, **{'/nix/store/x-tool.drv': {'system': 'aarch64-linux', 'features': []}})
    local = LocalBuilds(runner, needs, native='x86_64-linux')
    refused = local.refused(['/nix/store/x-system-f2.drv', '/nix/store/x-tool.drv'])
    msg = local.message('/nix/store/x-system-f2.drv', refused)
    assert msg.startswith('cannot build it here: its system /nix/store/x-system-f2.drv needs 1 derivation '
                          'for aarch64-linux that is not built yet (/nix/store/x-tool.drv), '), msg
