# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's controller logic that needs no connection: checks of the
parameters against the platform table (its argument spec is
module_utils/_specs.py's ACTIVATE_SPEC), and turning what
the target reported (plugin_utils/activation/target/activate-*.sh) into the task result."""

import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _health_checks, _programs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import to_int
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import (
    printable, printable_lines)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis


def check_params(params, platform, goal):
    """Errors in ``params`` for ``platform`` (its table row) and ``goal``
    (the row of params' goal, a ``_platforms.Goal``), as a message, or None."""
    state = params['state']
    problem = _platforms.goal_problem(platform, goal)
    if problem:
        return problem
    if state != 'activated' and (params.get('keys') or params.get('keys_prune')):
        return 'keys and keys_prune go with state=activated only (state=%s activates nothing ' \
            'to upload them around); upload them with nixdeploy.fleet.nix_keys' % state
    if state == 'activated' and not params.get('path'):
        return 'path (the system to activate) is required with state=activated'
    path = params.get('path') or ''
    if path and (not path.startswith('/') or '\n' in path):
        return 'path must be an absolute store path, got %r' % path
    for name in ('confirm_timeout', 'activation_timeout', 'lock_timeout', 'reboot_timeout'):
        if params.get(name) is not None and params[name] < 1:
            return '%s must be at least 1 second' % name
    backup = params.get('backup_extension')
    if backup is not None and (not backup or any(c in backup for c in '/\n\0')):
        return 'backup_extension must be a file name extension (no /), got %r' % backup
    if params.get('generation') is not None and params['generation'] < 1:
        return 'generation must be a positive generation number'
    reboot = params.get('reboot') or 'never'
    if state == 'activated' and reboot != 'never' and not goal.moves_profile and not goal.dry:
        return 'reboot=%s needs goal switch or boot: a reboot undoes goal %s' % (reboot,
                                                                                 goal.name)
    if state == 'activated' and reboot == 'always' and not _platforms.reboots(platform):
        return 'reboot=always: %s has no boot goal to reboot into (only NixOS reboots)' % platform
    return _health_checks.problems(params.get('health_checks') or [])


def magic_applies(params, goal):
    """Whether the magic-rollback watchdog guards this activation (``goal``:
    its ``_platforms.Goal``)."""
    return bool(params['magic_rollback']) and goal.magic_rollback


def _generation(number, path):
    return {'generation': to_int(number), 'path': path or None}


def log_lines(log, lines=40):
    """The last ``lines`` non-blank lines of a run's log, as a list, each
    ``printable`` (the log is the target's text)."""
    return printable_lines([line for line in (log or '').split('\n') if line.strip()][-lines:])


# The runner's own lines around each activation it runs (activate-runner.sh
# run_once): the text between them is what the platform's program printed.
_RUN_START = re.compile(r'^nixdeploy: \S+ activating ')
_RUN_END = re.compile(r'^nixdeploy: \S+ activation exited with (\d+)\s*$')
# the lines of a failed activation that tell why: switch-to-configuration's
# "warning: the following units failed: ...", "error: ...", systemd's
# "Failed to start ...", a status's "Active: failed", home-manager's
# "Existing file '...' is in the way of '...'" (never read as a value: they
# are only shown)
_ERROR_LINE = re.compile(r'\b(error|errors|failed|failure|fatal|cannot|could not|not found|'
                         r'no such|denied|refused|aborting|is in the way)\b|^warning: ',
                         re.IGNORECASE)
# a line that only says that something failed: the exit code says it already
_ERROR_TRAILER = re.compile(r'^warning: error\(s\) occurred while switching')
# how many of them a message keeps, and how much of each
ERROR_LINES = 8
ERROR_LINE_CHARS = 200
# how many lines of a dry activation a result keeps (dry_activate)
DRY_LINES = 60


def _bounded(line):
    line = line.strip()
    if len(line) > ERROR_LINE_CHARS:
        line = line[:ERROR_LINE_CHARS - 3].rstrip() + '...'
    return printable(line)


def _failed_segment(lines):
    """What the first activation of a log that exited non-zero printed (the
    run's own activation; the re-activation of a rollback comes after it),
    or None. A log whose tail begins inside that activation: the lines before
    its end."""
    current = []
    for line in lines:
        if _RUN_START.match(line):
            current = []
            continue
        end = _RUN_END.match(line)
        if end:
            if end.group(1) != '0':
                return current
            current = []
            continue
        if not line.startswith('nixdeploy: '):
            current.append(line)
    return None


def _meaningful(lines):
    """Of a program's output lines, those that say error or failed (else
    its last few), at most ERROR_LINES, bounded and ``printable``."""
    said = [line for line in lines if line.strip()]
    meaningful = [line for line in said if _ERROR_LINE.search(line)
                  and not _ERROR_TRAILER.search(line.strip())] or said[-3:]
    if len(meaningful) > ERROR_LINES:
        # the first ones name the units, the last one says how it ended
        meaningful = meaningful[:ERROR_LINES - 1] + meaningful[-1:]
    return [_bounded(line) for line in meaningful]


def activation_errors(log):
    """The lines of a run's ``log`` that tell why its activation failed: of
    the output of the first activation that exited non-zero, its lines that
    say error or failed (else its last few lines), at most ERROR_LINES, each
    cut at ERROR_LINE_CHARS and ``printable`` (the log is the target's text:
    it is shown, never read as a value). [] when no activation failed."""
    return _meaningful(_failed_segment((log or '').split('\n')) or [])


def dry_errors(log):
    """The lines of a failed dry activation's output (its whole ``log``)
    that tell why, as ``activation_errors``."""
    return _meaningful((log or '').split('\n'))


def with_errors(msg, errors):
    """``msg`` (one line, the cause) followed by the activation's own error
    lines, indented, each on its own line."""
    if not errors:
        return msg
    return '%s:\n%s' % (msg, '\n'.join('  %s' % line for line in errors))


def dry_lines(log):
    """A dry activation's output (what would restart, stop, start) as its
    non-blank lines, at most DRY_LINES, each ``printable``."""
    said = [line.rstrip() for line in (log or '').split('\n') if line.strip()]
    if len(said) > DRY_LINES:
        said = said[:DRY_LINES - 1] + ['... (%d more lines)' % (len(said) - DRY_LINES + 1)]
    return printable_lines(said)


def result_from_status(values, log, platform, goal, duration, run=None):
    """The task result for what a run's status file says (``values``);
    ``goal``: the goal's name, the result's ``goal``."""
    state = values.get('state', 'starting')
    result = _status_fields(values, log, platform, goal, duration, run, state)
    reason = values.get('reason') or ''
    # what the failed activation itself printed (the units that failed):
    # in msg, once; the log tail that holds them again is left out of the
    # failed result (people read it; the whole log stays in the run's folder)
    errors = activation_errors(log) if state in ('rolled_back', 'rollback_failed',
                                                 'failed') else []
    if errors:
        del result['log_tail']
    _say_state(result, state, values, reason, errors)
    if result.get('failed') and 'log_tail' in result:
        # msg says why (with the activation's own error lines): the log
        # tail's other lines go under details, those that say it again not
        # at all (a failure is printed once; readers get details back:
        # task/_outcome.py)
        _log_tail_as_details(result, reason)
    return result


def _status_fields(values, log, platform, goal, duration, run, state):
    """The result's fields read from the status file, as if nothing changed."""
    return {
        'platform': platform,
        'goal': goal,
        'profile': values.get('profile'),
        'previous': _generation(values.get('prev_gen'), values.get('prev_path')),
        'new': _generation(values.get('new_gen'), values.get('new_path')),
        'activated': values.get('activated', False),
        'rolled_back': values.get('rolled_back', False),
        'rollback_reason': None,
        'confirmed': values.get('confirmed', False),
        'duration': round(duration, 2),
        'log_tail': log_lines(log),
        'run': run or values.get('run'),
        'state': state,
        'changed': False,
    }


def _say_state(result, state, values, reason, errors):
    """``result``'s outcome and ``msg`` for the run's end ``state``."""
    if state == 'unchanged':
        result['msg'] = reason or 'already active'
    elif state == 'done':
        result['changed'] = True
        if values.get('mode') == 'rollback':
            result['rollback_reason'] = 'requested'
        result['msg'] = reason or 'activated %s' % values.get('new_path')
    elif state == 'awaiting_confirmation':
        result['changed'] = True
        result['msg'] = ('activated %s; confirm it with state=confirmed over a new connection '
                         'or it rolls back' % values.get('new_path'))
    elif state == 'rolled_back':
        result.update(changed=True, failed=True, rollback_reason=reason,
                      msg=with_errors('rolled back: %s' % reason, errors))
    elif state == 'rollback_failed':
        result.update(changed=True, failed=True, rollback_reason=reason,
                      msg=with_errors('rollback failed: %s' % reason, errors))
    elif state == 'failed':
        result.update(changed=result['activated'], failed=True,
                      msg=with_errors(reason or 'activation failed', errors))
    elif state == _programs.REFUSED:
        # the caller names the inhibitors and the ways out (plugin_utils/activation/_reboot_rules.py)
        result.update(changed=False, failed=True, activated=False, new=_generation(None, None),
                      msg=reason or 'the switch was refused by its pre-switch checks')
    else:
        result.update(failed=True, msg='activation still in state %s: %s' % (state, reason))


def _log_tail_as_details(result, reason):
    """A failed result's log tail, but for the lines its msg says, under
    ``details``."""
    rest = [line for line in result.pop('log_tail')
            if not (reason and reason in line) and line.strip() not in result['msg']]
    if rest:
        result['details'] = {'log_tail': rest}


_FULL_NOTE = re.compile(r'no space left on (\S+) \((\d+) KB free\)')


def with_fault(host, msg, phase=None):
    """A failed activation's ``msg`` led by the cause in the user's words when
    it tells of a store fault (a full disk, a read-only file system, a
    stopped daemon: ``_diagnosis.fault_message``), else ``msg`` as it is."""
    note = _FULL_NOTE.search(msg or '')
    doing = 'during the %s' % (phase if phase in ('rollback', 'confirm') else 'activation')
    if note:
        # the runner's df note: its file system is full, whatever the programs said
        lead = _diagnosis.fault_message(host, 'No space left on device', doing, note.group(1),
                                        said='%s KB free' % note.group(2))
    else:
        lead = _diagnosis.fault_message(host, msg, doing)
    if not lead:
        if (msg or '').startswith(_diagnosis.BECOME_WORDS):
            return msg
        become = _diagnosis.become_problem(msg)
        return '%s. What failed: %s' % (become, msg) if become else msg
    return '%s. What failed: %s' % (lead, msg)


def finished(values, magic_rollback):
    """Whether the task can stop following a run."""
    state = values.get('state', 'starting')
    if state in _programs.TERMINAL_STATES:
        return True
    return magic_rollback and state == _programs.AWAITING


def diff_for(previous_path, new_path, previous_gen=None):
    before = '%s\n' % previous_path if previous_path else ''
    label = 'generation %s' % previous_gen if previous_gen else 'no generation'
    return {'before': before, 'after': '%s\n' % new_path if new_path else '',
            'before_header': label, 'after_header': 'wanted system'}


def check_mode_result(values, log, platform, goal, path, dry_ran, duration, reactivate=False):
    """What an activation would do (check mode or goal dry-activate) with
    ``goal`` (a ``_platforms.Goal``); with ``reactivate`` a current system
    would be activated again."""
    prev_path = values.get('prev_path') or None
    active = values.get('active') or None
    # what the goal needs to be the new system already (as the runner's is_current)
    current = {'active': active == path, 'profile': prev_path == path,
               'both': prev_path == path and active == path}[goal.current]
    result = {
        'platform': platform, 'goal': goal.name, 'profile': values.get('profile'),
        'previous': _generation(values.get('prev_gen'), prev_path),
        'new': _generation(None, path),
        'activated': False, 'rolled_back': False, 'rollback_reason': None,
        'confirmed': False, 'duration': round(duration, 2), 'log_tail': log_lines(log),
        'changed': not current or bool(reactivate),
        'present': values.get('present', False),
    }
    if current and reactivate:
        result['msg'] = '%s is already the current and active generation: would activate it ' \
            'again (reactivate)' % path
    elif current:
        result['msg'] = '%s is already the current and active generation' % path
    elif dry_ran:
        # what the platform's dry run says it would do (the caller adds it
        # to msg, after its own notes)
        result['dry_activate'] = dry_lines(log)
        result['msg'] = 'dry activation of %s (exit code %s)' % (path, values.get('dry_rc'))
        if values.get('dry_rc') not in (None, 0):
            result.update(failed=True, msg='dry activation of %s failed with exit code %s'
                          % (path, values.get('dry_rc')))
    elif not result['present']:
        result['msg'] = 'would activate %s (not in the target store yet)' % path
    else:
        result['msg'] = 'would activate %s (%s has no dry activation)' % (path, platform)
    return result
