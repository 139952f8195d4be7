"""Pure logic of nix_activate: parameter checks, status -> result, script
building (quoting, platform data). Running the scripts is the lab's job."""

import shlex
import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _activate, _platforms, _target  # noqa: E402


def params(**changes):
    base = {name: spec.get('default') for name, spec in _activate.ARGUMENT_SPEC.items()}
    base.update(changes)
    return base


@pytest.mark.parametrize('platform,goal,problem', [
    ('nixos', 'boot', None),
    ('nixos', 'test', None),
    ('darwin', 'boot', 'darwin supports the goals switch, not boot'),
    ('home-manager', 'test', 'home-manager supports the goals switch, not test'),
    ('nix-on-droid', 'dry-activate', None),
])
def test_goals_per_platform(platform, goal, problem):
    assert _activate.check_params(params(path='/nix/store/x', goal=goal), platform) == problem


def test_path_is_required_and_absolute():
    assert 'path' in _activate.check_params(params(), 'nixos')
    assert 'absolute' in _activate.check_params(params(path='nix/store/x'), 'nixos')
    assert _activate.check_params(params(state='rolled_back'), 'nixos') is None
    assert 'generation' in _activate.check_params(params(state='rolled_back', generation=0), 'nixos')


def test_magic_rollback_only_for_switch_and_test():
    assert _activate.magic_applies(params(goal='switch'), 'nixos')
    assert _activate.magic_applies(params(goal='test'), 'nixos')
    assert not _activate.magic_applies(params(goal='boot'), 'nixos')
    assert not _activate.magic_applies(params(goal='switch', magic_rollback=False), 'darwin')


def status(**values):
    base = {'state': 'done', 'prev_gen': '3', 'prev_path': '/nix/store/a', 'new_gen': '4',
            'new_path': '/nix/store/b', 'activated': '1', 'rolled_back': '0', 'confirmed': '1',
            'profile': '/nix/var/nix/profiles/system', 'reason': ''}
    base.update(values)
    return base


def test_result_done():
    res = _activate.result_from_status(status(), 'line1\n\nline2', 'nixos', 'switch', 1.234)
    assert res['changed'] and not res.get('failed')
    assert res['previous'] == {'generation': 3, 'path': '/nix/store/a'}
    assert res['new'] == {'generation': 4, 'path': '/nix/store/b'}
    assert res['log_tail'] == ['line1', 'line2'] and res['duration'] == 1.23


def test_rolled_back_host_is_a_failed_host():
    res = _activate.result_from_status(
        status(state='rolled_back', rolled_back='1', reason='no confirmation within 5s'),
        '', 'nixos', 'switch', 1)
    assert res['failed'] and res['rolled_back']
    assert res['msg'] == 'rolled back: no confirmation within 5s'
    assert res['rollback_reason'] == 'no confirmation within 5s'


def test_unchanged_and_lock_failure_report_no_change():
    assert _activate.result_from_status(status(state='unchanged', activated='0'), '', 'nixos',
                                        'switch', 0)['changed'] is False
    res = _activate.result_from_status(status(state='failed', activated='0', reason='timed out'),
                                       '', 'nixos', 'switch', 0)
    assert res['failed'] and res['changed'] is False and res['msg'] == 'timed out'


def test_finished():
    assert _activate.finished({'state': 'awaiting_confirmation'}, magic=True)
    assert not _activate.finished({'state': 'awaiting_confirmation'}, magic=False)
    assert not _activate.finished({'state': 'running'}, magic=True)
    assert _activate.finished({'state': 'rolled_back'}, magic=False)


def test_check_mode_result():
    values = {'prev_gen': '3', 'prev_path': '/nix/store/a', 'active': '/nix/store/a', 'present': '1'}
    res = _activate.check_mode_result(values, '', 'darwin', 'switch', '/nix/store/b', False, 0)
    assert res['changed'] and 'no dry activation' in res['msg']
    res = _activate.check_mode_result(values, '', 'nixos', 'switch', '/nix/store/a', False, 0)
    assert res['changed'] is False
    res = _activate.check_mode_result(dict(values, dry_rc='1'), '', 'nixos', 'switch',
                                      '/nix/store/b', True, 0)
    assert res['failed']


def test_parse_markers_and_log():
    values, log = _target.parse('junk\n@@nixdeploy state=done\n@@nixdeploy reason=a=b\n'
                                '@@nixdeploy-log\nhello\n@@nixdeploy alive=0\nworld\n')
    assert values == {'state': 'done', 'reason': 'a=b', 'alive': '0'}
    assert log == 'hello\nworld'


HOSTILE = "/nix/store/x'; touch pwned; echo '$(id)`id`\n"


@pytest.mark.parametrize('platform', sorted(_platforms.PLATFORMS))
def test_scripts_are_valid_sh_and_quote_every_value(platform):
    spec = _platforms.PLATFORMS[platform]
    scripts = [
        _target.launch_script(platform, spec, 'r1', 'activate', path=HOSTILE, profile=HOSTILE,
                              remote_nix_dir=HOSTILE),
        _target.launch_script(platform, spec, 'r1', 'rollback', generation=3),
        _target.confirm_script(platform, spec, profile=HOSTILE, run=HOSTILE, wait=5),
        _target.inspect_script(platform, spec, path=HOSTILE, dry=True),
        _target.poll_script(platform, spec, HOSTILE, profile=HOSTILE, wait=5),
    ]
    for script in scripts:
        assert subprocess.run(['sh', '-n'], input=script, universal_newlines=True,
                              check=False).returncode == 0


def test_values_reach_sh_as_data(tmp_path):
    # one level (task values) and two (the runner's own assignments inside RUNNER)
    inner = _target._assign([('NEW', HOSTILE)]) + 'printf %s "$NEW"'
    for script in (inner, _target._assign([('RUNNER', inner)]) + 'sh -c "$RUNNER"'):
        out = subprocess.run(['sh', '-c', script], cwd=str(tmp_path), stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
        assert out == HOSTILE
    assert not (tmp_path / 'pwned').exists()
    assert shlex.split(_target.q(HOSTILE)) == [HOSTILE]


def test_activation_snippets_from_the_table():
    nixos, nixos_dry = _target.snippets(_platforms.PLATFORMS['nixos'])
    assert nixos == 'exec "$1"/bin/switch-to-configuration "$2"'
    assert nixos_dry == 'exec "$1"/bin/switch-to-configuration dry-activate'
    droid, droid_dry = _target.snippets(_platforms.PLATFORMS['nix-on-droid'])
    assert droid == 'exec "$1"/activate' and droid_dry == 'exec env DRY_RUN=1 "$1"/activate'
    home, home_dry = _target.snippets(_platforms.PLATFORMS['home-manager'])
    assert '--driver-version 1' in home and 'gen-version' in home and home_dry == ''


def test_home_manager_profile_resolution(tmp_path):
    spec = _platforms.PLATFORMS['home-manager']
    func = _target.resolve_profile_function(spec)
    script = func + 'resolve_profile; echo "$PROFILE"'
    home = tmp_path / 'home'
    home.mkdir()
    env = {'HOME': str(home), 'USER': 'alice', 'PATH': '/usr/bin:/bin'}
    out = subprocess.run(['sh', '-c', script], env=env, stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.strip()
    assert out == '/nix/var/nix/profiles/per-user/alice/home-manager'
    (home / '.local/state/nix/profiles').mkdir(parents=True)
    out = subprocess.run(['sh', '-c', script], env=env, stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.strip()
    assert out == '%s/.local/state/nix/profiles/home-manager' % home
