"""Pure logic of nix_activate: parameter checks, status -> result, program
building (quoting, platform data). test_target_scripts.py runs the programs
with a fake nix-env; the lab runs them with the real thing."""

import subprocess
import sys

import pytest

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (  # noqa: E402
    _platforms, _specs)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (  # noqa: E402
    _activation_fields, _activation_result, _programs)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _script, _program_fields)


def params(**changes):
    base = {name: spec.get('default') for name, spec in _specs.ACTIVATE_SPEC.items()}
    base.update(changes)
    return base


def check_params(given, platform):
    """check_params as nix_activate calls it: with the row of the goal."""
    return _activation_result.check_params(given, platform, _platforms.goal_row(given['goal']))


@pytest.mark.parametrize('platform,goal,problem', [
    ('nixos', 'boot', None),
    ('nixos', 'test', None),
    ('darwin', 'boot', 'darwin supports the goals switch, not boot'),
    ('home-manager', 'test', 'home-manager supports the goals switch, not test'),
    ('nix-on-droid', 'dry-activate', None),
])
def test_goals_per_platform(platform, goal, problem):
    assert check_params(params(path='/nix/store/x', goal=goal), platform) == problem


def test_goals_say_what_the_code_branches_on():
    goal = _platforms.goal_row
    assert [name for name, row in _platforms.GOALS.items() if row.dry] == ['dry-activate']
    assert _platforms.reboot_goal() == goal('boot') and _platforms.reboot_goal().name == 'boot'
    assert [p for p in sorted(_platforms.PLATFORMS) if _platforms.reboots(p)] == ['nixos']
    # a dry goal on every platform, the others where the row lists them
    for platform in _platforms.PLATFORMS:
        assert _platforms.offers_goal(platform, goal('dry-activate'))
        assert _platforms.offers_goal(platform, goal('switch'))
    assert not _platforms.offers_goal('darwin', goal('boot'))
    for name, row in _platforms.GOALS.items():
        assert isinstance(row, _platforms.Goal) and row.name == name
        assert row._fields == ('name', 'steps', 'window_steps', 'confirmed_steps', 'dry',
                               'moves_profile', 'records_active', 'magic_rollback',
                               'before_reboot', 'current', 'rollback_goal', 'done')
        # a goal that activates runs at least one step; a dry one none (its
        # report is the platform's dry run)
        assert bool(row.steps) is not row.dry and isinstance(row.steps, tuple)
        # in two parts it runs something before its confirmation; a goal
        # without magic rollback is one part
        assert bool(row.window_steps) is bool(row.confirmed_steps)
        assert row.magic_rollback or (row.window_steps, row.confirmed_steps) == ((), ())
        assert row.rollback() is _platforms.GOALS[row.rollback_goal]
    assert goal('test').rollback().name == 'test'
    assert goal('dry-activate').rollback().name == 'switch'


def test_an_unknown_goal_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown goal 'reload' \(known: boot, dry-activate, "
                                         r"switch, test\)"):
        _platforms.goal_row('reload')


def test_a_goal_row_is_immutable():
    with pytest.raises(AttributeError):
        _platforms.goal_row('switch').dry = True


def test_a_reboot_needs_a_goal_that_moves_the_profile():
    assert check_params(params(path='/nix/store/x', reboot='always'), 'nixos') is None
    assert check_params(params(path='/nix/store/x', goal='test', reboot='always'),
                        'nixos') == \
        'reboot=always needs goal switch or boot: a reboot undoes goal test'
    # a dry goal reboots nothing: it only says whether it would
    assert check_params(params(path='/nix/store/x', goal='dry-activate', reboot='always'),
                        'nixos') is None
    assert check_params(params(path='/nix/store/x', reboot='always'), 'darwin') == \
        'reboot=always: darwin has no boot goal to reboot into (only NixOS reboots)'


def test_path_is_required_and_absolute():
    assert 'path' in check_params(params(), 'nixos')
    assert 'absolute' in check_params(params(path='nix/store/x'), 'nixos')
    assert check_params(params(state='rolled_back'), 'nixos') is None
    assert 'generation' in check_params(params(state='rolled_back', generation=0), 'nixos')


def test_keys_options_are_nix_keys_options():
    spec = _specs.ACTIVATE_SPEC
    assert spec['keys'] == _specs.KEYS_SPEC['keys'] == {'type': 'dict', 'default': {},
                                                        'no_log': True}
    assert spec['keys_prune'] == _specs.KEYS_SPEC['prune'] == {'type': 'bool', 'default': False}


def test_keys_go_with_state_activated_only():
    keys = {'db': {'text': 'x'}}
    assert check_params(params(path='/nix/store/x', keys=keys, keys_prune=True),
                        'nixos') is None
    for state in ('confirmed', 'rolled_back'):
        assert check_params(params(state=state), 'nixos') is None
        for given in ({'keys': keys}, {'keys_prune': True}):
            problem = check_params(params(state=state, **given), 'nixos')
            assert problem.startswith('keys and keys_prune go with state=activated only'), problem


def test_nix_activate_and_nix_keys_document_keys_from_one_fragment():
    import yaml
    from ansible_collections.nixdeploy.fleet.plugins.doc_fragments import keys as fragment
    from ansible_collections.nixdeploy.fleet.plugins.modules import nix_activate, nix_keys
    option = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)['options']['keys']
    assert (option['type'], option['default']) == ('dict', {})
    for module in (nix_activate, nix_keys):
        doc = yaml.safe_load(module.DOCUMENTATION)
        assert 'nixdeploy.fleet.keys' in doc['extends_documentation_fragment']
        assert 'keys' not in doc['options']
    prune = yaml.safe_load(nix_activate.DOCUMENTATION)['options']['keys_prune']
    assert (prune['type'], prune['default']) == ('bool', False)


def test_magic_rollback_only_for_switch_and_test():
    goal = _platforms.goal_row
    assert _activation_result.magic_applies(params(), goal('switch'))
    assert _activation_result.magic_applies(params(), goal('test'))
    assert not _activation_result.magic_applies(params(), goal('boot'))
    assert not _activation_result.magic_applies(params(magic_rollback=False), goal('switch'))


STORE_A = '/nix/store/%s-a' % ('a' * 32)
STORE_B = '/nix/store/%s-b' % ('b' * 32)


def status(**values):
    """A run's status as the poll reports it, read into its types as the
    controller reads it (plugin_utils/host/_program_fields.py)."""
    base = {'state': 'done', 'prev_gen': '3', 'prev_path': STORE_A, 'new_gen': '4',
            'new_path': STORE_B, 'activated': '1', 'rolled_back': '0', 'confirmed': '1',
            'profile': '/nix/var/nix/profiles/system', 'reason': ''}
    base.update(values)
    fields = _program_fields.fields_of(['lib.sh', 'activate-poll.sh'], _activation_fields.FIELDS)
    read = _program_fields.read(base, fields)
    assert not read.dropped, read.dropped
    return read


def test_result_done():
    res = _activation_result.result_from_status(status(), 'line1\n\nline2', 'nixos', 'switch', 1.234)
    assert res['changed'] and not res.get('failed')
    assert res['previous'] == {'generation': 3, 'path': STORE_A}
    assert res['new'] == {'generation': 4, 'path': STORE_B}
    assert res['log_tail'] == ['line1', 'line2'] and res['duration'] == 1.23


def test_rolled_back_host_is_a_failed_host():
    res = _activation_result.result_from_status(
        status(state='rolled_back', rolled_back='1', reason='no confirmation within 5s'),
        '', 'nixos', 'switch', 1)
    assert res['failed'] and res['rolled_back']
    assert res['msg'] == 'rolled back: no confirmation within 5s'
    assert res['rollback_reason'] == 'no confirmation within 5s'


def test_unchanged_and_lock_failure_report_no_change():
    assert _activation_result.result_from_status(status(state='unchanged', activated='0'), '', 'nixos',
                                                 'switch', 0)['changed'] is False
    res = _activation_result.result_from_status(status(state='failed', activated='0', reason='timed out'),
                                                '', 'nixos', 'switch', 0)
    assert res['failed'] and res['changed'] is False and res['msg'] == 'timed out'


def test_finished():
    assert _activation_result.finished({'state': 'awaiting_confirmation'}, magic_rollback=True)
    assert not _activation_result.finished({'state': 'awaiting_confirmation'}, magic_rollback=False)
    assert not _activation_result.finished({'state': 'running'}, magic_rollback=True)
    assert _activation_result.finished({'state': 'rolled_back'}, magic_rollback=False)


def test_check_mode_result():
    fields = _program_fields.fields_of(['lib.sh', 'activate-inspect.sh'],
                                       _activation_fields.FIELDS)
    values = _program_fields.read({'prev_gen': '3', 'prev_path': STORE_A, 'active': STORE_A,
                                   'present': '1'}, fields)
    switch = _platforms.goal_row('switch')
    res = _activation_result.check_mode_result(values, '', 'darwin', switch, STORE_B, False, 0)
    assert res['changed'] and 'no dry activation' in res['msg']
    # the result names the goal (its word, never its row)
    assert res['goal'] == 'switch'
    res = _activation_result.check_mode_result(values, '', 'nixos', switch, STORE_A, False, 0)
    assert res['changed'] is False
    res = _activation_result.check_mode_result(dict(values, dry_rc=1), '', 'nixos', switch,
                                               STORE_B, True, 0)
    assert res['failed']


HOSTILE = "/nix/store/x'; touch pwned; echo '$(id)`id`\n"


@pytest.mark.parametrize('platform', sorted(_platforms.PLATFORMS))
def test_programs_are_valid_sh_and_quote_every_value(platform, tmp_path):
    programs = [
        _programs.launch_script(platform, 'r1', 'activate', path=HOSTILE, profile=HOSTILE,
                                remote_nix_dir=HOSTILE, why=HOSTILE),
        _programs.launch_script(platform, 'r1', 'rollback', generation=3),
        _programs.confirm_script(platform, profile=HOSTILE, run=HOSTILE, wait=5),
        _programs.reject_script(platform, HOSTILE, HOSTILE, profile=HOSTILE),
        _programs.inspect_script(platform, path=HOSTILE, dry=True),
        _programs.poll_script(platform, HOSTILE, profile=HOSTILE, wait=5),
    ]
    for program in programs:
        assert subprocess.run(['sh', '-n'], input=program, universal_newlines=True,
                              check=False).returncode == 0
    # two levels: the runner's own values travel inside the value RUNNER
    runner = _programs.runner_program(platform, 'r1', 'activate', path=HOSTILE)
    values = _script.render([], {'RUNNER': runner})
    out = subprocess.run(['sh', '-c', values + 'printf %s "$RUNNER"'], cwd=str(tmp_path),
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert out == runner
    assert not (tmp_path / 'pwned').exists()


def _command(program, system, goal, invoker=''):
    return subprocess.run(['sh', '-c', program, 'activate', str(system), goal, invoker],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout


SHOW = ('#!/bin/sh\necho "%s $* DRY_RUN=${DRY_RUN:-} check=${checkActivation:-}'
        ' boot=${NIXOS_INSTALL_BOOTLOADER:-} nocheck=${NIXOS_NO_CHECK:-} by=$(id -un)"\n')


def test_activation_commands_from_the_table(tmp_path):
    """activate-command.sh runs the table's command below the system, with
    the goal, the dry run's environment, NixOS's variables and home-manager's
    driver args."""
    system = tmp_path / 'system'
    for name in ('bin/switch-to-configuration', 'activate'):
        (system / name).parent.mkdir(parents=True, exist_ok=True)
        (system / name).write_text(SHOW % name)
        (system / name).chmod(0o755)
    me = subprocess.run(['id', '-un'], stdout=subprocess.PIPE, universal_newlines=True,
                        check=True).stdout.strip()
    nixos, nixos_dry = _programs.activation_programs(_platforms.PLATFORMS['nixos'])
    # NIXOS_INSTALL_BOOTLOADER is always passed, 0 unless asked
    assert _command(nixos, system, 'boot') == \
        'bin/switch-to-configuration boot DRY_RUN= check= boot=0 nocheck= by=%s\n' % me
    nixos, nixos_dry = _programs.activation_programs(_platforms.PLATFORMS['nixos'],
                                                     install_bootloader=True, no_check=True)
    assert _command(nixos, system, 'switch') == \
        'bin/switch-to-configuration switch DRY_RUN= check= boot=1 nocheck=1 by=%s\n' % me
    # the dry run honours pre_switch_checks=false too
    assert _command(nixos_dry, system, 'dry-activate') == \
        'bin/switch-to-configuration dry-activate DRY_RUN= check= boot=1 nocheck=1 by=%s\n' % me
    droid, droid_dry = _programs.activation_programs(_platforms.PLATFORMS['nix-on-droid'])
    assert _command(droid, system, 'switch') == 'activate  DRY_RUN= check= boot= nocheck= by=%s\n' % me
    assert _command(droid_dry, system, 'dry-activate') == \
        'activate  DRY_RUN=1 check= boot= nocheck= by=%s\n' % me
    # darwin-rebuild check
    _darwin, darwin_dry = _programs.activation_programs(_platforms.PLATFORMS['darwin'])
    assert _command(darwin_dry, system, 'dry-activate') == \
        'activate  DRY_RUN= check=1 boot= nocheck= by=%s\n' % me
    home, home_dry = _programs.activation_programs(_platforms.PLATFORMS['home-manager'])
    assert _command(home, system, 'switch') == 'activate  DRY_RUN= check= boot= nocheck= by=%s\n' % me
    (system / 'gen-version').write_text('1\n')
    assert _command(home, system, 'switch') == \
        'activate --driver-version 1 DRY_RUN= check= boot= nocheck= by=%s\n' % me
    assert _command(home_dry, system, 'dry-activate') == \
        'activate --driver-version 1 DRY_RUN=1 check= boot= nocheck= by=%s\n' % me


def test_darwin_runs_activate_user_first_unless_deprecated(tmp_path):
    """nix-darwin before 2025: activate-user, as the invoking user, then
    activate; a file marked '# nix-darwin: deprecated' is not run."""
    system = tmp_path / 'system'
    system.mkdir()
    (system / 'activate').write_text('#!/bin/sh\necho "activate by $(id -un)"\n')
    (system / 'activate-user').write_text('#!/bin/sh\necho "activate-user by $(id -un)"\n')
    for name in ('activate', 'activate-user'):
        (system / name).chmod(0o755)
    me = subprocess.run(['id', '-un'], stdout=subprocess.PIPE, universal_newlines=True,
                        check=True).stdout.strip()
    darwin, darwin_dry = _programs.activation_programs(_platforms.PLATFORMS['darwin'])
    out = _command(darwin, system, 'switch', me)
    assert out.splitlines() == ['nixdeploy: running activate-user as %s' % me,
                                'activate-user by %s' % me, 'activate by %s' % me]
    # the dry run is activate's own (checkActivation=1)
    assert _command(darwin_dry, system, 'dry-activate', me) == 'activate by %s\n' % me
    (system / 'activate-user').write_text('#!/bin/sh\n# nix-darwin: deprecated\nexit 1\n')
    assert _command(darwin, system, 'switch', me) == 'activate by %s\n' % me
    (system / 'activate-user').write_text('#!/bin/sh\necho failing >&2; exit 3\n')
    proc = subprocess.run(['sh', '-c', darwin, 'activate', str(system), 'switch', me],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 3 and 'activate by' not in proc.stdout


def test_table_words_with_blanks_are_refused():
    with pytest.raises(ValueError):
        _programs.command_program(['bin/x', 'two words'])


def test_home_manager_profile_resolution(tmp_path):
    """The XDG folder when it exists; else `nix-env -q` first (Nix 2.14+
    creates it), then it or the per-user folder; neither: a clear error."""
    values = _programs._session('home-manager', None, None)
    calls = tmp_path / 'calls'
    nix_env = tmp_path / 'nix-env'
    # a fake nix-env -q that creates the XDG folder when asked to
    nix_env.write_text('#!/bin/sh\necho "$*" >>%s\n[ -n "$MAKE_XDG" ] && mkdir -p '
                       '"$HOME/.local/state/nix/profiles"\nexit 0\n' % calls)
    nix_env.chmod(0o755)
    program = _script.render(['activate-lib.sh'], values)
    script = program + 'NIX_ENV=%s; resolve_profile; echo "$PROFILE"' % nix_env
    home = tmp_path / 'home'
    home.mkdir()
    per_user = tmp_path / 'per-user'
    script = script.replace('/nix/var/nix/profiles/per-user/$USER', str(per_user) + '/$USER')
    env = {'HOME': str(home), 'USER': 'alice', 'PATH': '/usr/bin:/bin'}

    def resolve(**more):
        return subprocess.run(['sh', '-c', script], env=dict(env, **more), stdout=subprocess.PIPE,
                              universal_newlines=True, check=False)

    proc = resolve()
    values, _log = _script.parse(proc.stdout, program.mark)
    assert proc.returncode == 3 and 'no profile folder for home-manager' in values['error']
    assert calls.read_text() == '-q\n'
    (per_user / 'alice').mkdir(parents=True)
    assert resolve().stdout.strip() == '%s/alice/home-manager' % per_user
    # Nix creates its XDG folder on `nix-env -q`: that one wins
    assert resolve(MAKE_XDG='1').stdout.strip() == \
        '%s/.local/state/nix/profiles/home-manager' % home
    calls.write_text('')
    assert resolve().stdout.strip() == '%s/.local/state/nix/profiles/home-manager' % home
    assert calls.read_text() == ''  # it existed: no nix-env needed


@pytest.mark.parametrize('msg,lead', [
    # the launch could not write (dash says "I/O error"): the runner's df note
    ("cannot write /nix/var/nixdeploy/x/runs/1/runner.sh (/bin/sh: 1: printf: printf: I/O error)"
     "; no space left on /nix (0 KB free): the activation keeps 1024 KB for its state and a "
     "rollback; nothing was changed", 'no space left on /nix on web3 during the activation'),
    ("rolled back: the activation failed with exit code 1; no space left on /home (3 KB free)",
     'no space left on /home on web3 during the activation'),
    ("nix-env --set /nix/var/nix/profiles/system failed: error: writing to file: No space left on "
     "device (nothing was activated)", 'no space left on /nix on web3 during the activation'),
    ('sudo: unknown user nosuch\nsudo: error initializing audit plugin sudoers_audit',
     'the become_user nosuch does not exist on the target'),
    ('the activation failed with exit code 4 (some units failed)', None),
])
def test_with_fault_leads_with_the_cause(msg, lead):
    said = _activation_result.with_fault('web3', msg)
    if lead is None:
        assert said == msg
    else:
        assert said.startswith(lead) and said.endswith(msg), said


# ---------------------------------------------------------------- the activation's own words
# a NixOS switch whose unit failed, rolled back: the runner's log (the
# failed activation's output, then the rollback's re-activation)
FAILED_SWITCH_LOG = '\n'.join([
    'nixdeploy: 21:00:01 activating /nix/store/bbb-system (switch)',
    'activating the configuration...',
    'setting up /etc...',
    'starting the following units: foo.service',
    'warning: the following units failed: foo.service',
    '',
    '\u00d7 foo.service - Foo',
    '     Active: failed (Result: exit-code) since Wed 2026-11-25 21:00:02 UTC',
    'Nov 25 21:00:02 web1 foo[123]: error: cannot open /etc/foo.conf',
    'Nov 25 21:00:02 web1 systemd[1]: Failed to start Foo.',
    'warning: error(s) occurred while switching to the new configuration',
    'nixdeploy: 21:00:03 activation exited with 4',
    'nixdeploy: 21:00:03 activating /nix/store/aaa-system (switch)',
    'stopping the following units: foo.service',
    'error: a line of the rollback that is not the cause',
    'nixdeploy: 21:00:04 activation exited with 0',
])


def test_a_failed_activation_says_which_units_failed():
    res = _activation_result.result_from_status(
        status(state='rolled_back', rolled_back='1',
               reason='the activation exited with code 4 (some units failed)'),
        FAILED_SWITCH_LOG, 'nixos', 'switch', 1)
    assert res['failed'] and res['rolled_back']
    assert res['msg'] == '\n'.join([
        'rolled back: the activation exited with code 4 (some units failed):',
        '  warning: the following units failed: foo.service',
        '  Active: failed (Result: exit-code) since Wed 2026-11-25 21:00:02 UTC',
        '  Nov 25 21:00:02 web1 foo[123]: error: cannot open /etc/foo.conf',
        '  Nov 25 21:00:02 web1 systemd[1]: Failed to start Foo.'])
    # the first line stays the cause; the reason stays the runner's
    assert res['rollback_reason'] == 'the activation exited with code 4 (some units failed)'
    # the rollback's own re-activation is not the cause
    assert 'rollback that is not' not in res['msg']
    # said once: the log tail that holds the lines again is not in the result
    assert 'log_tail' not in res and 'activation_errors' not in res


def test_a_failed_activation_without_error_words_shows_its_last_lines():
    log = '\n'.join(['nixdeploy: 1 activating /nix/store/b (switch)', 'one', 'two', 'three',
                     'four', 'nixdeploy: 2 activation exited with 1'])
    res = _activation_result.result_from_status(
        status(state='rolled_back', rolled_back='1',
               reason='the activation failed with exit code 1'), log, 'nixos', 'switch', 1)
    assert res['msg'] == ('rolled back: the activation failed with exit code 1:\n'
                          '  two\n  three\n  four')


def test_a_log_tail_cut_inside_the_failed_activation_still_tells():
    # the tail begins inside the failed activation: the lines before its end
    log = '\n'.join(['error: service bar.service failed to start',
                     'nixdeploy: 2 activation exited with 4',
                     'nixdeploy: 2 activating /nix/store/a (switch)',
                     'nixdeploy: 3 activation exited with 0'])
    assert _activation_result.activation_errors(log) == [
        'error: service bar.service failed to start']


def test_no_activation_error_lines_when_the_activation_succeeded():
    # rolled back for another cause (no confirmation, a health check): the
    # activation exited 0, its lines are not a cause
    log = '\n'.join(['nixdeploy: 1 activating /nix/store/b (switch)',
                     'warning: something harmless failed',
                     'nixdeploy: 2 activation exited with 0',
                     'nixdeploy: 3 activating /nix/store/a (switch)',
                     'nixdeploy: 4 activation exited with 0'])
    res = _activation_result.result_from_status(
        status(state='rolled_back', rolled_back='1', reason='no confirmation within 5s'),
        log, 'nixos', 'switch', 1)
    assert res['msg'] == 'rolled back: no confirmation within 5s'
    # no error lines in the message: the log tail tells what happened
    # (kept under details in a failed result, out of its printing)
    assert 'log_tail' not in res
    assert res['details']['log_tail'][1] == 'warning: something harmless failed'
    # a timed-out activation has no end line: its reason says it all
    log = 'nixdeploy: 1 activating /nix/store/b (switch)\nhanging\n' \
        'nixdeploy: the activation ran longer than 3s: stopping it'
    assert _activation_result.activation_errors(log) == []


def test_activation_error_lines_are_bounded_and_printable():
    lines = ['error: unit%d.service failed' % n for n in range(20)]
    lines.append('error: the last one \x1b[2Ksays ' + 'x' * 500)
    log = '\n'.join(['nixdeploy: 1 activating /nix/store/b (switch)'] + lines +
                    ['nixdeploy: 2 activation exited with 4'])
    errors = _activation_result.activation_errors(log)
    assert len(errors) == _activation_result.ERROR_LINES
    assert errors[0] == 'error: unit0.service failed'
    # the last one says how it ended; no control character reaches a terminal
    assert errors[-1].startswith('error: the last one \\x1b[2Ksays xxx')
    assert errors[-1].endswith('...') and len(errors[-1]) <= 200 + len('\\x1b') - 1
    assert all('\x1b' not in line for line in errors)
    # a line of the target that looks like a framed value stays a line of text
    res = _activation_result.result_from_status(
        status(state='failed', activated='0', reason='activation failed'),
        'nixdeploy: 1 activating /nix/store/b (switch)\nstate=done\nerror: no\n'
        'nixdeploy: 2 activation exited with 1', 'nixos', 'switch', 1)
    assert res['state'] == 'failed' and res['msg'] == 'activation failed:\n  error: no'


def test_a_dry_activation_says_what_would_change():
    fields = _program_fields.fields_of(['lib.sh', 'activate-inspect.sh'],
                                       _activation_fields.FIELDS)
    values = _program_fields.read({'prev_gen': '3', 'prev_path': STORE_A, 'active': STORE_A,
                                   'present': '1', 'dry_rc': '0'}, fields)
    dry = 'would restart the following units: foo.service\nwould start the following units: bar.service\n'
    res = _activation_result.check_mode_result(values, dry, 'nixos', _platforms.goal_row('switch'),
                                               STORE_B, True, 0)
    assert res['dry_activate'] == ['would restart the following units: foo.service',
                                   'would start the following units: bar.service']
    assert _activation_result.with_errors(res['msg'], res['dry_activate']) == (
        'dry activation of %s (exit code 0):\n'
        '  would restart the following units: foo.service\n'
        '  would start the following units: bar.service' % STORE_B)
    long_output = '\n'.join('line %d' % n for n in range(100))
    kept = _activation_result.dry_lines(long_output)
    assert len(kept) == _activation_result.DRY_LINES and kept[-1] == '... (41 more lines)'
    assert _activation_result.dry_errors('checking...\nerror: bad unit file x.service\n') == [
        'error: bad unit file x.service']


def test_home_managers_file_in_the_way_is_the_cause_not_its_advice():
    log = '\n'.join([
        'nixdeploy: 1 activating /nix/store/b-home-manager-generation (switch)',
        'Starting Home Manager activation',
        'Activating checkLinkTargets',
        "Existing file '/home/app/.bashrc' is in the way of '/nix/store/x-home-manager-files/.bashrc'",
        'Please do one of the following:',
        '- Move or remove the above files and try again.',
        "- In standalone mode, use 'home-manager switch -b backup' to back up files automatically.",
        "- When used as a NixOS or nix-darwin module, set 'home-manager.backupFileExtension'",
        '  to, for example, \'backup\' and rebuild.',
        'nixdeploy: 2 activation exited with 1'])
    assert _activation_result.activation_errors(log) == [
        "Existing file '/home/app/.bashrc' is in the way of "
        "'/nix/store/x-home-manager-files/.bashrc'"]
