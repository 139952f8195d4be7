"""Under magic rollback a NixOS switch is two parts of its goal's row
(module_utils/_platforms.py GOALS, the platform row's boot_when_confirmed):
``switch-to-configuration test`` before the confirmation, ``boot`` once it
is confirmed. Until then the previous system stays the boot default, so a
host that restarts in its confirmation window (a power cut, a hang reset by
hand, a shutdown) boots the previous system, and the runner's exit or the
look that ends its dead run puts the profile back to it. Run by the real sh
programs on the fake target of test_target_scripts.py."""

import os
import sys

import pytest

from tests.collection import collections_path
from tests.unit.plugins.plugin_utils.activation.test_goal_steps import stepped_system
from tests.unit.plugins.plugin_utils.activation.test_target_scripts import (
    Host, _gone, _wait_for, nixos_without_root)

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _programs)


@pytest.fixture
def host(tmp_path, monkeypatch):
    nixos_without_root(monkeypatch)
    return Host(tmp_path)


def steps(platform, goal, magic):
    values = _programs.runner_values(platform, 'r1', 'activate', path='/nix/store/x',
                                     goal=_platforms.GOALS[goal], magic_rollback=magic)
    return values.steps, values.confirmed_steps


def test_only_a_nixos_switch_under_magic_rollback_waits_to_become_the_boot_default(monkeypatch):
    assert steps('nixos', 'switch', True) == ('test', 'boot')
    assert steps('nixos', 'switch', False) == ('switch', '')
    assert steps('nixos', 'test', True) == ('test', '')
    assert steps('nixos', 'boot', True) == ('boot', '')
    for platform in ('darwin', 'home-manager', 'nix-on-droid'):
        assert steps(platform, 'switch', True) == ('switch', ''), platform
    # a command without '{step}' would run its one activation twice: the
    # row's word alone does not split it
    spec = _platforms.PLATFORMS['darwin']
    monkeypatch.setitem(_platforms.PLATFORMS, 'darwin', dict(
        spec, activation=dict(spec['activation'], boot_when_confirmed=True)))
    assert steps('darwin', 'switch', True) == ('switch', '')


def awaiting(host, system, run, **params):
    params.setdefault('confirm_timeout', 300)
    values = host.activate(system, run, magic_rollback=True, **params)[0]
    assert values['state'] == _programs.AWAITING, values['output']
    return values


def test_the_boot_step_runs_once_the_system_is_confirmed(host):
    good = stepped_system(host, 'good')
    awaiting(host, good, 'r1')
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, good),
                           'activate good test']
    values, log = host.confirm()
    assert values['state'] == 'done' and values['confirmed'] == '1', values['output']
    assert host.took() == ['activate good boot']
    assert 'confirmed: making %s the boot default' % good in log
    assert host.generations() == ('1', ['1'])


def test_an_unconfirmed_system_never_becomes_the_boot_default(host):
    good, bad = stepped_system(host, 'good'), stepped_system(host, 'bad')
    assert host.activate(good, 'r1')[0]['state'] == 'done'
    host.took()
    # a window long enough that a loaded machine's launcher still finds the
    # system awaiting its confirmation (with 1 s it found it rolled back)
    values = host.activate(bad, 'r2', magic_rollback=True, confirm_timeout=3)[0]
    assert values['state'] == _programs.AWAITING, values['output']
    values = host.sh(_programs.poll_script('nixos', 'r2', wait=20, stop_awaiting=False,
                                           **host.common))[0]
    assert (values['state'], values['cause']) == ('rolled_back', 'unconfirmed'), values['output']
    assert host.took() == [
        'nix-env --profile %s --set %s' % (host.profile, bad), 'activate bad test',
        'nix-env --profile %s --switch-generation 1' % host.profile,
        'nix-env --profile %s --delete-generations 2' % host.profile,
        'activate good switch']
    assert host.generations() == ('1', ['1'])


@pytest.mark.parametrize('auto', [True, False])
def test_a_boot_step_that_fails_after_the_confirmation(host, auto):
    """The new system runs and was confirmed, but cannot be the boot
    default: rolled back to the previous system (and its boot default), or
    with auto rollback off reported failed as it is."""
    good = stepped_system(host, 'good')
    assert host.activate(good, 'r1')[0]['state'] == 'done'
    bad = stepped_system(host, 'bad', fail_at='boot', says='installing the boot loader failed')
    awaiting(host, bad, 'r2', auto_rollback=auto)
    host.took()
    values = host.confirm()[0]
    said = '%s was confirmed, but making it the boot default failed: the activation failed ' \
        'with exit code 1' % bad
    if auto:
        assert (values['state'], values['reason']) == ('rolled_back', said), values['output']
        assert host.took() == [
            'activate bad boot', 'nix-env --profile %s --switch-generation 1' % host.profile,
            'nix-env --profile %s --delete-generations 2' % host.profile, 'activate good switch']
        assert host.generations() == ('1', ['1'])
    else:
        assert values['state'] == 'failed', values['output']
        assert values['reason'] == said + ' (auto rollback is off: %s runs, the host boots the ' \
            'previous system)' % bad
        assert host.took() == ['activate bad boot']
        assert host.generations() == ('2', ['1', '2'])


@pytest.mark.parametrize('signal', [15, 9])
def test_a_run_ended_in_its_window_leaves_the_profile_on_what_boots(host, signal):
    """A shutdown's SIGTERM runs the runner's exit; a power cut's SIGKILL
    leaves the run to the next look. Either way the new system was never
    confirmed, so never the boot default: the profile goes back to the
    previous generation, which the host boots, the new one is dropped, no
    canary or lock is left, and the next deploy of the new system activates
    it again (it is not recorded as what runs)."""
    old, new = stepped_system(host, 'old'), stepped_system(host, 'new')
    assert host.activate(old, 'r1')[0]['state'] == 'done'
    awaiting(host, new, 'r2')
    runner = _wait_for(os.path.join(host.state_dir(), 'runs', 'r2', 'pid'))
    os.kill(runner, signal)
    assert _gone(runner, seconds=30)
    values = host.sh(_programs.poll_script('nixos', 'r2', **host.common))[0]
    assert (values['state'], values['alive']) == ('failed', '0'), values['output']
    why = {15: 'the activation run stopped unexpectedly in state awaiting_confirmation; %s is '
               'back at generation 1, which the host boots',
           9: 'the activation run died in state awaiting_confirmation (killed, or its host went '
              'down without a shutdown); %s is back at generation 1'}[signal]
    assert values['reason'] == why % host.profile, values['output']
    # the task reads this as: roll back, the new system may still run
    assert values['cause'] == 'ended_unconfirmed', values['output']
    assert host.generations() == ('1', ['1'])
    folder = host.state_dir()
    assert not os.path.exists(os.path.join(folder, 'canary'))
    assert not os.path.exists(os.path.join(folder, 'lock'))
    with open(os.path.join(folder, 'active')) as handle:
        assert handle.read().strip() == old
    host.took()
    values = host.activate(new, 'r3')[0]
    assert values['state'] == 'done', values['output']
    assert host.took() == ['nix-env --profile %s --set %s' % (host.profile, new),
                           'activate new switch']
