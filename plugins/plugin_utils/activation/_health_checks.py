# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks: is a host fine on its new system? (nix_activate runs them
after the activation and before the confirmation.)

A check has a ``name``, exactly one kind (the table of kinds, with each
kind's spec and its try: module_utils/_health_kinds.py) and ``retries``
(tries after the first, as Ansible's ``until``), ``interval`` and
``timeout`` (seconds). Checks run in order; the first that fails all its
tries fails the host and the rest are not run.

A kind tried on the target gives its command; this file runs it there in
target/health-check.sh with the host's ``sh`` (plugin_utils/host/_host.py
``Host.sh``: the task's connection and become, with a time limit): a try
that gets no answer within it fails. A kind tried from the controller makes its try
itself, given the host's ``address``.
"""

import time

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.common.text.converters import to_text
from ansible_collections.nixdeploy.fleet.plugins.module_utils._health_kinds import (
    HEALTH_CHECK_SPEC, HEALTH_KINDS, KINDS, seconds)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_fields import (
    FIELDS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._redact import text as redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import NoAnswer
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._script import render

# What of a check's last output a result keeps (its end: where errors are).
OUTPUT_LINES = 20
OUTPUT_CHARS = 2000
# What of it a failure's one-line message shows: its last lines, each cut.
SHOWN_LINES = 3
SHOWN_CHARS = 160
# Seconds a try on the target may take beyond its own timeout (the session,
# stopping the command) before the controller gives up on the answer.
SESSION_GRACE = 10


class CheckError(NixdeployError, ValueError):
    """The health checks are not valid (the message says which and why)."""


def _label(check, index):
    name = check.get('name') if isinstance(check, dict) else None
    return "health check '%s'" % name if name else 'health check #%d' % (index + 1)


def problems(checks):
    """What is wrong with (already spec-validated) ``checks``, or None."""
    seen = set()
    for index, check in enumerate(checks):
        label = _label(check, index)
        if not check['name'].strip():
            return 'health check #%d: name must not be empty' % (index + 1)
        if check['name'] in seen:
            return '%s: names must be unique' % label
        seen.add(check['name'])
        if check['retries'] < 0:
            return '%s: retries must be 0 or more' % label
        if check['interval'] < 0:
            return '%s: interval must be 0 or more seconds' % label
        if check['timeout'] <= 0:
            return '%s: timeout must be more than 0 seconds' % label
        kind = kind_of(check)
        problem = KINDS[kind].problem(check[kind])
        if problem:
            return '%s: %s' % (label, problem)
    return None


def validate(checks):
    """``checks`` (a list of dicts, as the inventory gives them) with defaults
    filled in; CheckError names the first check that is not valid."""
    if checks is None:
        return []
    if not isinstance(checks, list):
        raise CheckError('health checks must be a list, got %s' % type(checks).__name__)
    for index, check in enumerate(checks):
        if not isinstance(check, dict):
            raise CheckError('health check #%d must be a dict with a name and one of %s'
                             % (index + 1, ', '.join(HEALTH_KINDS)))
    # one item at a time, so that a message can name the check
    validator = ArgumentSpecValidator(HEALTH_CHECK_SPEC, mutually_exclusive=[HEALTH_KINDS],
                                      required_one_of=[HEALTH_KINDS])
    valid = []
    for index, check in enumerate(checks):
        result = validator.validate(check)
        if result.error_messages:
            words = []
            for error in result.errors.errors:
                text = to_text(error.msg)
                if isinstance(error, UnsupportedError):
                    text = 'unknown option %s' % text
                words.append(text)
            raise CheckError('%s: %s' % (_label(check, index), '; '.join(words)))
        valid.append(result.validated_parameters)
    problem = problems(valid)
    if problem:
        raise CheckError(problem)
    return valid


def kind_of(check):
    return next(kind for kind in HEALTH_KINDS if check.get(kind) is not None)


def budget(checks):
    """The longest all ``checks`` can take (seconds): what a confirmation
    window must leave them."""
    total = 0.0
    for check in checks:
        tries = check['retries'] + 1
        total += tries * (check['timeout'] + SESSION_GRACE) + check['retries'] * check['interval']
    return int(total + 0.999)


def command_script(command, timeout):
    """The program a try on the target sends (target/health-check.sh):
    ``command`` run by ``sh -c`` in its own process group, stopped after
    ``timeout`` seconds."""
    ticks = max(1, int(float(timeout) * 5 + 0.999))
    return render('health-check.sh', {'CHECK': command, 'TICKS': ticks}, FIELDS)


def parse_try(program, rc, stdout, stderr):
    """(rc of the check, timed_out, output, dropped) from what ``program``
    (a ``command_script``) printed; rc None when it did not report (the
    session failed); ``dropped``: the notes of values it reported that were
    not what they must be. Only the program's own lines before its log are
    values: the check's output, printed after them, never is one."""
    values, output = program.parse(stdout)
    if 'rc' in values:
        return values['rc'], values.get('timed_out', False), output, list(values.dropped)
    return None, False, '\n'.join(part for part in (stdout, stderr) if part).strip() or (
        'the check script gave no answer (exit code %s)' % rc), list(values.dropped)


def truncate(output):
    """The end of ``output``: its last OUTPUT_LINES lines, OUTPUT_CHARS chars,
    each line ``printable`` (a check's output is the target's text: a
    terminal sequence in it is shown, never obeyed)."""
    lines = [printable(line.rstrip()) for line in to_text(
        output or '', errors='surrogate_or_replace').strip('\n').split('\n')]
    text = '\n'.join(lines[-OUTPUT_LINES:])
    if len(text) > OUTPUT_CHARS:
        text = '...' + text[-OUTPUT_CHARS:]
    return text


def shown(detail):
    """Why a try failed, as results and messages show it: part of it may be
    the target's words (a redirect's address, an error it caused), so every
    control character is escaped and every credential masked."""
    return None if detail is None else redact(printable(detail))


class Watch:
    """What the caller of ``run_checks`` is told: each try (``tried``), a
    try on the target whose host gave no answer (``lost``: a lost
    connection), and the notes of values a try's program reported that
    were not what they must be (``dropped``). This one is told nothing."""

    def tried(self, check, number, ok, detail):
        pass

    def lost(self, exc):
        pass

    def dropped(self, notes):
        pass


def _target_try(check, command, target, watch):
    timeout = check['timeout']
    program = command_script(command, timeout)
    try:
        rc, stdout, stderr = target.sh(program, sudoable=True, timeout=timeout + SESSION_GRACE)
    except (NoAnswer, AnsibleConnectionFailure) as exc:
        watch.lost(exc)
        return False, 'no answer from the host: %s' % exc, ''
    except Exception as exc:  # pylint: disable=broad-except
        # whatever else kept the answer away, this try failed
        return False, 'no answer from the host: %s' % exc, ''
    check_rc, timed_out, output, dropped = parse_try(program, rc, stdout, stderr)
    if dropped:
        watch.dropped(dropped)
    if check_rc is None:
        return False, 'the check did not run (exit code %s)' % rc, output
    if timed_out:
        return False, 'timed out after %ss' % seconds(timeout), output
    if check_rc != 0:
        return False, 'exit code %d' % check_rc, output
    return True, None, output


def _try(check, kind, target, watch):
    """One try of ``check`` (of ``kind``, its row): (ok, detail, output)."""
    row, value = KINDS[kind], check[kind]
    if row.command is not None:
        return _target_try(check, row.command(value), target, watch)
    return row.attempt(value, check['timeout'], target.address)


def run_check(check, target, watch=None, sleep=time.sleep, clock=time.time):
    """Try one check on ``target`` (a ``Host``: its ``sh`` and ``address``)
    until it passes or its tries are spent, telling ``watch`` (a ``Watch``).
    Returns {name, kind, ok, tries, detail (why the last try failed), output
    (the end of the last try's output), duration}."""
    watch = watch or Watch()
    kind = kind_of(check)
    started = clock()
    tries, ok, detail, output = 0, False, None, ''
    for attempt in range(check['retries'] + 1):
        if attempt:
            sleep(check['interval'])
        tries += 1
        ok, detail, output = _try(check, kind, target, watch)
        detail = shown(detail)
        watch.tried(check, tries, ok, detail)
        if ok:
            break
    return {'name': check['name'], 'kind': kind, 'ok': ok, 'tries': tries,
            'detail': None if ok else detail, 'output': truncate(output),
            'duration': round(clock() - started, 2)}


def run_checks(checks, target, watch=None, sleep=time.sleep, clock=time.time):
    """Run ``checks`` in order on ``target`` (a ``Host``), stopping at the
    first that fails.
    Returns {ok, checks (one result per check run), failed (the failed
    result or None), not_run (names after a failure), duration, msg}."""
    started = clock()
    results, failed = [], None
    for check in checks:
        result = run_check(check, target, watch=watch, sleep=sleep, clock=clock)
        results.append(result)
        if not result['ok']:
            failed = result
            break
    not_run = [check['name'] for check in checks[len(results):]]
    summary = {'ok': failed is None, 'skipped': False, 'checks': results, 'failed': failed,
               'not_run': not_run, 'duration': round(clock() - started, 2)}
    summary['msg'] = failure_message(summary) if failed else (
        '%d health check%s passed' % (len(results), '' if len(results) == 1 else 's'))
    return summary


def failure_message(summary):
    """One line naming the failed check, why, and the end of its output."""
    failed = summary['failed']
    msg = "health check '%s' failed after %d %s: %s" % (
        failed['name'], failed['tries'], 'try' if failed['tries'] == 1 else 'tries',
        failed['detail'])
    last = [shorter(line.strip()) for line in failed['output'].splitlines() if line.strip()]
    if last:
        msg += ' (last output: %s)' % ' | '.join(last[-SHOWN_LINES:])
    return msg


def shorter(line):
    """``line`` (already printable) cut to SHOWN_CHARS: a message shows
    a few lines of a check's output, never a page of it on one line."""
    return line if len(line) <= SHOWN_CHARS else line[:SHOWN_CHARS - 3].rstrip() + '...'


def skipped(checks, why):
    """The summary when checks are not run (check mode, no checks)."""
    names = [check['name'] for check in checks]
    plural = '' if len(names) == 1 else 's'
    return {'ok': True, 'skipped': True, 'checks': [], 'failed': None, 'not_run': names,
            'duration': 0.0, 'msg': '%d health check%s not run: %s' % (len(names), plural, why)}
