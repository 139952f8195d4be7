# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's target programs: which files of ``plugin_utils/activation/target/``
make each one, and the values they get (``_script.render`` quotes them).

A target needs only sh and Nix: every program is sent over the Ansible
connection as one command (as ``ansible.builtin.raw`` does). The state
folder the programs keep on the target is described in
``target/activate-lib.sh``; what each file does, at its top.
"""

import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    goal_row, moves_profile, platform_spec, reboots, root_refusal)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import BY_OPTION
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _activation_fields
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (
    FIELDS, TERMINAL_STATES)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_rules import (
    BOOTED, REFUSAL_MARK, RUNNING_NEEDS_BOOT)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._runner_values import (
    RunnerValues)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._script import (
    ROOT_STATE_DIR, render)

# where activate-session.sh puts the user it runs as into ROOT_REFUSAL
USER_MARK = '@ME@'
# The run's words the stage compares with (their home is the table of what
# the programs report, _activation_fields.py)
REFUSED = _activation_fields.REFUSED
AWAITING = _activation_fields.AWAITING
# the states a run ends in, as the runner and the poll get them
_TERMINAL = ' '.join(TERMINAL_STATES)

# Where systemd runs (as sd_booted() tells), and the name of a run's unit:
# UNIT_PREFIX<run>, e.g. `systemctl status nixdeploy-activate-1732140000-1a2b3c4d`.
SYSTEMD_DIR = '/run/systemd/system'
UNIT_PREFIX = 'nixdeploy-activate-'
# Room a run keeps in its state folder (D/reserve, activate-lib.sh) and gives
# back to itself when the file system fills while it runs: its status files
# (rewritten some 20 times, a block each), the lock, the canary, the log
# lines of a rollback and the profile links of the switch back all fit in it
# many times over. A launch that cannot make it fails before anything changes.
RESERVE_KB = 1024

_LIB = 'activate-lib.sh'
_SESSION = [_LIB, 'activate-session.sh']
_POLL = 'activate-poll.sh'


def _words(words):
    """Table words for activate-command.sh, which splits them on blanks."""
    words = [str(w) for w in words]
    for word in words:
        if not word or any(c.isspace() for c in word):
            raise InvalidValue('platform table word %r: one word, no blanks' % (word,))
    return ' '.join(words)


# the word of a platform's command that stands for the goal's step
STEP = '{step}'
# a step word: the runner splits STEPS on blanks and passes each on as data
_STEP = re.compile(r'\A[a-z][a-z0-9-]*\Z')


def _steps(goal, steps=None):
    """STEPS: the words of ``goal``'s steps (a ``_platforms.Goal``), or of
    ``steps``, a part of them."""
    steps = goal.steps if steps is None else steps
    for step in steps:
        if not _STEP.match(step):
            raise InvalidValue('goal %s: step %r is not a word of a-z, 0-9 and -'
                               % (goal.name, step))
    return ' '.join(steps)


def command_program(command, env=None, driver=None, pre=None):
    """activate-command.sh with ``command`` (argv below the system's store
    path; '{step}' is the step), ``env``, home-manager's ``driver`` and a
    ``pre`` command (nix-darwin's activate-user)."""
    driver, pre = driver or {}, pre or {}
    return render('activate-command.sh', {
        'COMMAND': _words(command),
        'COMMAND_ENV': _words('%s=%s' % item for item in sorted((env or {}).items())),
        'DRIVER_FILE': driver.get('file'),
        'DRIVER_MIN': int(driver.get('min') or 0),
        'DRIVER_ARGS': _words(driver.get('args') or []),
        'PRE_FILE': pre.get('file'),
        'PRE_AS_INVOKER': pre.get('as') == 'invoker',
        'PRE_SKIP_MARK': pre.get('skip_mark'),
    })


def activation_env(spec, install_bootloader=False, no_check=False):
    """The variables the platform's activation gets from the task's options
    (constants 0/1 only: task text never goes into these words)."""
    activation = spec['activation']
    env = {}
    if activation.get('install_bootloader_env'):
        env[activation['install_bootloader_env']] = '1' if install_bootloader else '0'
    if no_check and activation.get('no_check_env'):
        env[activation['no_check_env']] = '1'
    return env


def activation_programs(spec, install_bootloader=False, no_check=False):
    """(activation, dry run or '') programs of a platform's table row."""
    activation = spec['activation']
    env = activation_env(spec, install_bootloader, no_check)
    activate = command_program(activation['command'], env=env, driver=activation.get('driver'),
                               pre=activation.get('pre_command'))
    dry = activation.get('dry_run')
    if not dry:
        return activate, ''
    # a dry run is the platform's, whatever the goal: it is given no step
    if STEP in dry['command']:
        raise InvalidValue('a dry run has no step: %r' % (dry['command'],))
    dry_env = dict(env, **(dry.get('env') or {}))
    return activate, command_program(dry['command'], dry_env, driver=activation.get('driver'))


def _candidates(spec):
    """PROFILE_CANDIDATES: "FOLDER NAME" lines (see activate-lib.sh)."""
    if spec.get('profile'):
        return ''
    return '\n'.join('%s %s' % (folder, name) for folder, name
                     in spec['activation'].get('profile_candidates') or [])


def _session(platform, profile, remote_nix_dir):
    spec = platform_spec(platform)
    activation = spec['activation']
    return {
        'PLATFORM': platform,
        'PROFILE': profile or spec.get('profile'),
        'PROFILE_CANDIDATES': _candidates(spec),
        'PROFILE_PROBE': _words(activation.get('profile_probe') or []),
        'NIX_DIR': remote_nix_dir,
        # the platform table's rule, in its own words, with the target's
        # user put in there (activate-session.sh)
        'ROOT_REFUSAL': root_refusal(platform, USER_MARK) or '',
        'CURRENT_LINK': activation.get('current_link'),
        'SETS_OWN_PROFILE': bool(activation.get('sets_own_profile')),
        'ROOT_STATE': ROOT_STATE_DIR,
        'RESERVE_KB': RESERVE_KB,
    }


def _poll(wait, stop_awaiting, seen_waiting=None, log_lines=40):
    """A wait's values. The wait also ends when the run waits for a lock
    for another reason than ``seen_waiting`` (the waiting_for the
    controller last saw, None: none), so that the progress lines say at
    once what a host waits for, not at the end of the wait."""
    if seen_waiting not in _activation_fields.WAITING_FOR:
        seen_waiting = ''
    return {'WAIT': int(wait), 'STOP_AWAITING': bool(stop_awaiting),
            'SEEN_WAITING': seen_waiting, 'TERMINAL': _TERMINAL, 'LOG_LINES': int(log_lines)}


def _number(value):
    return None if value is None else int(value)


def _backup(spec, backup_extension):
    """(variable, value) of the backup extension, where the platform has one."""
    name = spec['activation'].get('backup_env')
    return (name, backup_extension) if name and backup_extension else ('', '')


def runner_values(platform, run, mode, path='', goal=None, magic_rollback=None,
                  auto_rollback=None, confirm_timeout=None, activation_timeout=None,
                  lock_timeout=None, generation=None, no_check=False, drop_generation=None,
                  why=None, install_bootloader=None, backup_extension=None, reactivate=None,
                  root_key=None):
    """The runner's ``RunnerValues`` (_runner_values.py says what each
    holds). An option left None is the option table's default
    (module_utils/_role_vars.py); ``goal`` is a row of the goal table
    (``_platforms.Goal``). ``root_key``: the file name of the copy's GC root
    of ``path`` (``_copy.root_key_of``), released once the profile holds
    ``path``."""
    goal = goal_row(_option('goal', None)) if goal is None else goal
    if mode == 'activate' and not goal.steps:
        # a dry goal's report is the platform's dry run (inspect_script)
        raise InvalidValue('goal %s runs no step: the runner has nothing to activate'
                           % goal.name)
    spec = platform_spec(platform)
    activation = spec['activation']
    lock = activation.get('switch_lock') or {}
    rollback_goal = goal.rollback()
    backup_env, backup_ext = _backup(spec, backup_extension)
    magic = _option('magic_rollback', magic_rollback)
    window, confirmed = goal.steps_on(platform, magic)
    return RunnerValues(
        run=run, mode=mode, new=path, steps=_steps(goal, window),
        confirmed_steps=_steps(goal, confirmed), rollback_steps=_steps(rollback_goal),
        # a rollback with a goal that leaves the profile alone (test) does too
        rollback_moves=moves_profile(platform, rollback_goal),
        current_when=goal.current,
        records_active=goal.records_active, rollback_records_active=rollback_goal.records_active,
        magic=magic,
        auto=_option('auto_rollback', auto_rollback),
        confirm_timeout=int(_option('confirm_timeout', confirm_timeout)),
        activation_timeout=int(_option('activation_timeout', activation_timeout)),
        lock_timeout=int(_option('lock_timeout', lock_timeout)),
        generation=_number(generation),
        set_profile=moves_profile(platform, goal),
        sets_own_profile=bool(activation.get('sets_own_profile')),
        through_link=bool(activation.get('rollback_through_link')),
        current_link=activation.get('current_link'),
        activate_program=activation_programs(
            spec, _option('install_bootloader', install_bootloader), no_check)[0],
        switch_lock=lock.get('path'), busy_mark=lock.get('busy_mark'),
        backup_env=backup_env, backup_ext=backup_ext,
        reactivate=_option('reactivate', reactivate),
        refusal_mark=REFUSAL_MARK,
        drop_gen=_number(drop_generation),
        why=why,
        terminal=_TERMINAL,
        root_key=root_key, root_state=ROOT_STATE_DIR, reserve_kb=RESERVE_KB)


def runner_program(platform, run, mode, **values):
    """activate-runner.sh with its values (``runner_values``'s parameters):
    the detached run itself."""
    return render([_LIB, 'activate-runner.sh', 'activate-lock.sh', 'activate-modes.sh'],
                  runner_values(platform, run, mode, **values).shell(), FIELDS)


def _option(name, value):
    """``value``, or the option table's default of the option ``name``."""
    return BY_OPTION[name].default if value is None else value


def launch_script(platform, run, mode, profile=None, remote_nix_dir=None, wait=0, **runner):
    """Start a detached activation (mode 'activate') or rollback (mode
    'rollback'); then, like ``poll_script``, wait up to ``wait`` seconds for
    it to end (or to await its confirmation, or to wait for a lock) and
    report it.

    The runner is written to the run's folder and started from there: as a
    systemd unit (``nixdeploy-activate-<run>``) where systemd runs and the
    program is root, else in its own session (setsid, else nohup). Nothing of
    it passes through a unit's command line, where systemd expands ``$``.

    ``runner``: the parameters of ``runner_values`` (``no_check`` sets
    NIXOS_NO_CHECK=1, NixOS's override of its pre-switch checks; a rollback
    deletes ``drop_generation`` once it succeeded and records ``why``)."""
    values = _session(platform, profile, remote_nix_dir)
    values.update(_poll(wait, _option('magic_rollback', runner.get('magic_rollback'))))
    values.update(RUN=run, RUNNER=runner_program(platform, run, mode, **runner),
                  SYSTEMD_DIR=SYSTEMD_DIR, UNIT_PREFIX=UNIT_PREFIX)
    return render(_SESSION + ['activate-launch.sh', _POLL], values, FIELDS)


def poll_script(platform, run, profile=None, remote_nix_dir=None, wait=0, stop_awaiting=True,
                seen_waiting=None):
    """Wait up to ``wait`` seconds for run ``run`` to end (or to wait for a
    lock for another reason than ``seen_waiting``), then report it.
    The state folder is found again on the target, so a task that lost the
    launch's answer (a host whose network went down) can follow its run."""
    values = _session(platform, profile, remote_nix_dir)
    values.update(_poll(wait, stop_awaiting, seen_waiting), RUN=run)
    return render(_SESSION + [_POLL], values, FIELDS)


def confirm_script(platform, profile=None, remote_nix_dir=None, claim=True, run=None, wait=0):
    """Claim the canary (the confirmation), then wait up to ``wait`` seconds
    for the run (``run``, or the one that was claimed) to record its end."""
    values = _session(platform, profile, remote_nix_dir)
    values.update(_poll(wait, False), CLAIM=claim, RUN=run)
    return render(_SESSION + ['activate-confirm.sh', _POLL], values, FIELDS)


def reject_script(platform, run, why, profile=None, remote_nix_dir=None, wait=0):
    """Reject run ``run`` (its health checks failed): its watchdog rolls it
    back at once with ``why``; then wait up to ``wait`` seconds for the run
    to record its end, and report it."""
    values = _session(platform, profile, remote_nix_dir)
    values.update(_poll(wait, False), RUN=run, WHY=why.replace('\n', ' '))
    return render(_SESSION + ['activate-reject.sh', _POLL], values, FIELDS)


def inspect_script(platform, path='', profile=None, remote_nix_dir=None, dry=False,
                   generation=None, no_check=False, install_bootloader=False,
                   backup_extension=None):
    """Read-only: the profile's generations, what is active, whether ``path``
    is present; with ``dry``, the platform's dry activation of ``path``
    (with the task's pre-switch checks, boot loader and backup options)."""
    spec = platform_spec(platform)
    backup_env, backup_ext = _backup(spec, backup_extension)
    values = _session(platform, profile, remote_nix_dir)
    values.update(NEW=path, DRY=dry,
                  DRY_PROGRAM=activation_programs(spec, install_bootloader, no_check)[1],
                  BACKUP_ENV=backup_env, BACKUP_EXT=backup_ext,
                  GENERATION=_number(generation))
    return render(_SESSION + ['activate-inspect.sh'], values, FIELDS)


def status_script(platform, profile=None):
    """Read-only, for nix_status: what runs, what booted (where the platform
    boots a system of its own: NixOS), the profile's current generation and
    the runs kept in the state folder (target/status-read.sh). It writes
    nothing, takes no lock and runs no nix command. ``profile``: the task's
    own, else the platform's."""
    spec = platform_spec(platform)
    booted = BOOTED if reboots(platform) else ''
    return render([_LIB, 'status-read.sh'], {
        'PROFILE': profile or spec.get('profile'),
        'PROFILE_CANDIDATES': _candidates(spec),
        'CURRENT_LINK': spec['activation'].get('current_link'),
        'BOOTED_LINK': booted,
        'BOOT_PARTS': ' '.join(RUNNING_NEEDS_BOOT) if booted else '',
        'ROOT_STATE': ROOT_STATE_DIR,
        # its activation runs as root: the runs are in root's state folder,
        # whoever reads them
        'ROOT_OWNED': bool(spec['needs_root']),
    }, FIELDS)
