# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health checks: is a host fine on its new system? (nix_activate runs them
after the activation and before the confirmation.)

A check has a ``name``, exactly one of ``command`` (POSIX sh run on the
target), ``http`` (a request made from the controller) or ``unit`` (a
systemd unit that must be active: ``systemctl is-active`` on the target),
and ``retries`` (tries after the first, as Ansible's ``until``), ``interval``
and ``timeout`` (seconds). Checks run in order; the first that fails all its
tries fails the host and the rest are not run.

This module needs no connection: what runs on the target goes through a
``run_sh(script, timeout) -> (rc, stdout, stderr)`` callable its caller
passes in (``_health_run.HealthChecks``: the task's session, over a fresh
login); it may raise when the host cannot be reached: that try failed.
"""

import re
import shlex
import time
from urllib.error import HTTPError
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.common.text.converters import to_text
from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import (
    HEALTH_CHECK_SPEC, HEALTH_KINDS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._redact import text as redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._script import render

# redirects one try follows at most (urllib's own limit)
MAX_REDIRECTS = 10
_DEFAULT_PORTS = {'http': 80, 'https': 443}


# What of a check's last output a result keeps (its end: where errors are).
OUTPUT_LINES = 20
OUTPUT_CHARS = 2000
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
        for kind in ('command', 'unit'):
            if check.get(kind) is not None and not check[kind].strip():
                return '%s: %s must not be empty' % (label, kind)
        if check.get('unit') is not None and re.search(r'\s', check['unit'].strip()):
            return '%s: unit must be one unit name, got %r' % (label, check['unit'])
        http = check.get('http')
        if http is not None:
            if not re.match(r'(?i)https?://[^/\s]', http['url']):
                return '%s: http.url must be an http:// or https:// URL, got %r' % (label, http['url'])
            if not 100 <= http['status'] <= 599:
                return '%s: http.status must be an HTTP status code' % label
            if http.get('body') is not None:
                try:
                    re.compile(http['body'])
                except re.error as exc:
                    return '%s: http.body is not a valid regular expression: %s' % (label, exc)
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
    """The program a ``command`` check sends (target/health-check.sh):
    ``command`` run by ``sh -c`` in its own process group, stopped after
    ``timeout`` seconds."""
    ticks = max(1, int(float(timeout) * 5 + 0.999))
    return render('health-check.sh', {'CHECK': command, 'TICKS': ticks})


def unit_command(unit):
    """The command a ``unit`` check runs: is the unit active?"""
    return 'systemctl is-active -- %s' % shlex.quote(unit.strip())


def parse_try(program, rc, stdout, stderr):
    """(rc of the check, timed_out, output) from what ``program`` (a
    ``command_script``) printed; rc None when it did not report (the session
    failed). Only the program's own lines before its log are values: the
    check's output, printed after them, never is one."""
    values, output = program.parse(stdout)
    if 'rc' in values:
        return values['rc'], values.get('timed_out', False), output
    return None, False, '\n'.join(part for part in (stdout, stderr) if part).strip() or (
        'the check script gave no answer (exit code %s)' % rc)


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


def _target_try(check, command, run_sh):
    timeout = check['timeout']
    program = command_script(command, timeout)
    try:
        rc, stdout, stderr = run_sh(program, timeout + SESSION_GRACE)
    except Exception as exc:  # pylint: disable=broad-except
        # whatever kept the answer away (a lost connection), this try failed
        return False, 'no answer from the host: %s' % exc, ''
    check_rc, timed_out, output = parse_try(program, rc, stdout, stderr)
    if check_rc is None:
        return False, 'the check did not run (exit code %s)' % rc, output
    if timed_out:
        return False, 'timed out after %ss' % _seconds(timeout), output
    if check_rc != 0:
        return False, 'exit code %d' % check_rc, output
    return True, None, output


def _origin(url):
    """(scheme, host, port) of ``url``, the default port filled in; None when
    it has no host or a port that is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _origin_text(origin):
    if origin is None:
        return "the check's own host"
    scheme, host, port = origin
    return '%s://%s:%d' % (scheme, '[%s]' % host if ':' in host else host, port)


def _shown(url):
    """A URL from the target's answer, as a message shows it: credentials
    masked, every control character escaped, quoted."""
    return "'%s'" % redact(printable(url))


def _ask(url, http, timeout, opener):
    """One GET of ``url``, never following a redirect (follow_redirects
    'none': urllib raises a 3xx as an HTTPError, which is the answer here).
    (status, headers, body), or raises what kept the answer away."""
    try:
        # use_netrc off: the controller's own netrc logins are not the target's to receive
        answer = opener(url, method='GET', timeout=timeout, validate_certs=http['validate_certs'],
                        http_agent='nixdeploy.fleet', follow_redirects='none', use_netrc=False)
        return answer.getcode(), answer.headers, answer.read()
    except HTTPError as exc:
        try:
            body = exc.read()
        except Exception:  # pylint: disable=broad-except
            body = b''
        return exc.code, exc.headers, body


def _http_try(check, opener):
    """One try of an http check. A redirect is an answer of the target, and
    following it would make the controller (an AWX pod, a CI runner inside a
    network the target is not in) fetch an address the target chose and put
    what it says into results and reports. So a 3xx is never followed
    unless the check says ``follow_redirects: same_host``, and then only to
    the same scheme, host and port as the check's own URL; otherwise it is
    the answer, compared with ``status`` as any other (a check that wants a
    302 gets it), and a failure says where it was sent."""
    http = check['http']
    wanted, allowed = http['status'], http.get('follow_redirects') or 'none'
    origin = _origin(http['url'])
    url, followed = http['url'], 0
    while True:
        try:
            status, headers, body = _ask(url, http, check['timeout'], opener)
        except Exception as exc:  # pylint: disable=broad-except
            # refused, timed out, bad certificate, name not found: no answer
            return False, 'no answer from %s: %s' % (
                url if not followed else _shown(url), printable(exc)), ''
        location = headers.get('Location') if headers is not None and 300 <= status < 400 else None
        if location is None or status == wanted:
            break
        target = urljoin(url, location.strip())
        if allowed != 'same_host':
            why = 'not followed (follow_redirects: none)'
        elif origin is None or _origin(target) != origin:
            why = 'not followed: not %s (follow_redirects: same_host)' % _origin_text(origin)
        elif followed >= MAX_REDIRECTS:
            why = 'not followed: more than %d redirects' % MAX_REDIRECTS
        else:
            url, followed = target, followed + 1
            continue
        text = to_text(body or b'', errors='surrogate_or_replace')
        return False, 'HTTP %s (wanted %s): redirected to %s, %s' % (
            status, wanted, _shown(target), why), text
    text = to_text(body or b'', errors='surrogate_or_replace')
    if status != wanted:
        return False, 'HTTP %s (wanted %s)' % (status, wanted), text
    if http.get('body') is not None and not re.search(http['body'], text):
        return False, 'HTTP %s but the body does not match %r' % (status, http['body']), text
    return True, None, text


def open_url(url, **kwargs):
    """ansible.module_utils.urls.open_url, imported on first use: importing it
    (ssl, http.client, email) is a cost the controller's main process would
    pay for every deploy when it loads nix_activate, with HTTP checks or not
    (docs/benchmarks.md, "Overhead")."""
    from ansible.module_utils.urls import open_url as _open_url
    return _open_url(url, **kwargs)


def _seconds(value):
    return int(value) if float(value).is_integer() else value


def run_check(check, run_sh, opener=open_url, sleep=time.sleep, clock=time.time,
              on_try=None):
    """Try one check until it passes or its tries are spent. Returns
    {name, kind, ok, tries, detail (why the last try failed), output (the
    end of the last try's output), duration}."""
    kind = kind_of(check)
    started = clock()
    tries, ok, detail, output = 0, False, None, ''
    for attempt in range(check['retries'] + 1):
        if attempt:
            sleep(check['interval'])
        tries += 1
        if kind == 'http':
            ok, detail, output = _http_try(check, opener)
        else:
            command = check['command'] if kind == 'command' else unit_command(check['unit'])
            ok, detail, output = _target_try(check, command, run_sh)
        if on_try is not None:
            on_try(check, tries, ok, detail)
        if ok:
            break
    return {'name': check['name'], 'kind': kind, 'ok': ok, 'tries': tries,
            'detail': None if ok else detail, 'output': truncate(output),
            'duration': round(clock() - started, 2)}


def run_checks(checks, run_sh, opener=open_url, sleep=time.sleep, clock=time.time,
               on_try=None):
    """Run ``checks`` in order, stopping at the first that fails. Returns
    {ok, checks (one result per check run), failed (the failed result or
    None), not_run (names after a failure), duration, msg}."""
    started = clock()
    results, failed = [], None
    for check in checks:
        result = run_check(check, run_sh, opener=opener, sleep=sleep, clock=clock,
                           on_try=on_try)
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
    last = [line for line in failed['output'].splitlines() if line.strip()]
    if last:
        msg += ' (last output: %s)' % ' | '.join(last[-3:])
    return msg


def skipped(checks, why):
    """The summary when checks are not run (check mode, no checks)."""
    names = [check['name'] for check in checks]
    plural = '' if len(names) == 1 else 's'
    return {'ok': True, 'skipped': True, 'checks': [], 'failed': None, 'not_run': names,
            'duration': 0.0, 'msg': '%d health check%s not run: %s' % (len(names), plural, why)}
