"""nix_build with build_on: target (plugin_utils/builds/_target_build.py
build_on_target) up to the target's store, through the fake Host: the copy
stage's real probe (copy/target/copy-probe.sh) runs against this machine's
Nix as the target's, the system built by the controller's real Nix from a
tiny flake. A system the target holds needs no build (check mode: nothing
over ssh); a target without Nix, a connection the controller's ssh cannot
take and an evaluation that fails end the host before anything reaches the
target; values the probe reports that are not what they must be are
dropped with a warning naming the host.

Not reached here: ``nix copy --derivation`` and ``nix build --store
ssh-ng://`` (they need an ssh login to the target: the lab's
test_build_on_target_copy.py and test_nix_build.py)."""

import os
import shutil
import sys

import pytest

from tests.collection import collections_path
from tests.unit.fake_host import fake_host
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import Host as TargetFolder
from tests.unit.plugins.plugin_utils.stages.stage_nix import Flake, controller_folders, options

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import (  # noqa: E402
    _build, _target_build)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._copy import (  # noqa: E402
    probe_target)
# the error family: which of its errors says it is the stage's (names move, issue 64)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (  # noqa: E402
    NixdeployError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix  # noqa: E402

NIX_DIR = os.path.dirname(os.path.realpath(shutil.which('nix') or '/nonexistent/nix'))


@pytest.fixture
def flake(tmp_path, monkeypatch):
    controller_folders(tmp_path, monkeypatch)
    return Flake(tmp_path / 'flake')


@pytest.fixture
def target(tmp_path):
    # not root (a fake id): the GC root the probe plants is in the test's folder
    host = fake_host(folder(tmp_path).env, name='web1')
    yield host
    host.close()


def folder(tmp_path):
    (tmp_path / 'target').mkdir(exist_ok=True)
    return TargetFolder(tmp_path / 'target')


def build(flake, target, check_mode, request, nix_dir=NIX_DIR):
    args = dict(_nix.options_of({}), timeout=60, remote_nix_dir=nix_dir)
    return _target_build.build_on_target(options(), args, check_mode, 'web1', request, target,
                                         probe_target)


def request(drv=None, evaluate=None):
    return {'drv': drv, 'eval': evaluate, 'build_on': 'target'}


def built_here(flake, name):
    """The system ``name`` built in this machine's store (the target's here)."""
    drv = flake.drv(name)
    runner = _build.Builder(options(), 60)
    _build.build_group(runner, [drv], runner.derivations([drv]))
    return drv


def test_a_system_the_target_holds_needs_no_build(flake, target):
    drv = built_here(flake, 'good')
    entry = build(flake, target, True, request(drv))
    result = entry['result']
    assert 'error' not in entry and 'warnings' not in result, entry
    assert result['built'] is False and result['would_build'] == []
    assert result['drv_path'] == drv and os.path.exists(result['out_path'])
    assert result['target_store'] == 'ssh-ng://127.0.0.1?remote-program=%s/nix-daemon' % NIX_DIR
    (call,) = target.calls
    # the probe, with become, the system's path on its stdin; no root in check mode
    assert (call.name, call.sudoable, call.in_data) == (
        'copy-probe.sh', True, result['out_path'] + '\n')
    assert 'target_gc_root' not in result and 'gc_root' not in call.values


def test_a_target_without_nix_fails_the_host(flake, target, tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(NixdeployError, match='no nix found on the target'):
        build(flake, target, True, request(flake.drv('good')), nix_dir=str(tmp_path / 'empty'))


def test_a_connection_the_controllers_ssh_cannot_take_fails_before_any_program(flake, tmp_path):
    local = fake_host(folder(tmp_path).env, transport='local')
    with pytest.raises(NixdeployError, match="connection 'local' is not ssh"):
        build(flake, local, True, request(flake.drv('good')))
    assert local.calls == []


def test_an_evaluation_that_fails_is_the_hosts_error_before_the_target(flake, target):
    entry = build(flake, target, False, request(evaluate=flake.request('nosuch')))
    assert 'nosuch' in entry['error'] and entry['result'] == {}
    assert target.calls == []


def test_what_the_probe_reports_wrongly_is_dropped_with_a_warning(flake, target):
    drv = built_here(flake, 'good')
    target.then('copy-probe.sh', hostile=True, values={
        'nix_dir': NIX_DIR, 'uid': '0', 'user': 'root', 'store_writable': 'yes',
        'invalid': '', 'complete': '1', 'groups': 'root,$(reboot)', 'store_df': ''})
    result = build(flake, target, True, request(drv))['result']
    (warning,) = result['warnings']
    assert warning.startswith('web1: the target reported values that are not what they must be')
    assert "groups: not a list of a user or group name: 'root,$(reboot)'" in warning
    assert result['built'] is False
