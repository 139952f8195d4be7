# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's health checks: the option (``HEALTH_CHECKS``) and THE table
of their kinds (``KINDS``), one row each.

A row is everything a kind is: its option's spec (nix_activate's argument
spec and the deploy role's take it from here), what is wrong with a value
the spec let through (``problem``) and how one try goes, either

- on the target (``command``: the sh command a try runs there; the
  controller runs it in its own process group, stopped after the check's
  timeout, with the task's connection and become: exit code 0 is healthy), or
- from the controller (``attempt``: the try itself, given the check's value,
  its timeout and the host's address, as Ansible's connection reaches it).

plugin_utils/activation/_health_checks.py runs the checks from these rows
and names no kind: a new kind is a row here (and its documentation). What a
try says (its detail) reaches a person through that file, escaped and with
credentials masked: part of it is the target's own words.
"""

import re
import shlex
import socket
from urllib.error import HTTPError
from urllib.parse import urljoin, urlsplit

from ansible.module_utils.common.text.converters import to_text

# redirects one try follows at most (urllib's own limit)
MAX_REDIRECTS = 10
_DEFAULT_PORTS = {'http': 80, 'https': 443}
# what an http check's follow_redirects may say
HEALTH_REDIRECTS = ('none', 'same_host')


class Kind:
    """One kind of health check: ``name`` (its option), ``option`` (the
    option's spec), ``problem(value)`` (what is wrong with a value, in words
    that follow the check's name; None when nothing is) and one of
    ``command(value)`` (the sh command of a try on the target) and
    ``attempt(value, timeout, address)`` (a try from the controller:
    (ok, detail, output))."""

    def __init__(self, name, option, problem, command=None, attempt=None):
        self.name = name
        self.option = option
        self.problem = problem
        self.command = command
        self.attempt = attempt


def seconds(value):
    """``value`` seconds as a message shows them: 5, 0.4."""
    return int(value) if float(value).is_integer() else value


# ------------------------------------------------------------------ command
def _command_problem(command):
    return 'command must not be empty' if not command.strip() else None


# ------------------------------------------------------------------ unit
def _unit_problem(unit):
    if not unit.strip():
        return 'unit must not be empty'
    if re.search(r'\s', unit.strip()):
        return 'unit must be one unit name, got %r' % unit
    return None


def unit_command(unit):
    """The command a ``unit`` check runs: is the unit active?"""
    return 'systemctl is-active -- %s' % shlex.quote(unit.strip())


# ------------------------------------------------------------------ http
HTTP_SPEC = dict(
    url=dict(type='str', required=True),
    status=dict(type='int', default=200),
    body=dict(type='str'),
    validate_certs=dict(type='bool', default=True),
    # a redirect is the target's answer, not an address the controller goes
    # to: 'none' (default) or 'same_host' (same scheme, host and port only)
    follow_redirects=dict(type='str', default='none', choices=list(HEALTH_REDIRECTS)),
)


def _http_problem(http):
    if not re.match(r'(?i)https?://[^/\s]', http['url']):
        return 'http.url must be an http:// or https:// URL, got %r' % http['url']
    if not 100 <= http['status'] <= 599:
        return 'http.status must be an HTTP status code'
    if http.get('body') is not None:
        try:
            re.compile(http['body'])
        except re.error as exc:
            return 'http.body is not a valid regular expression: %s' % exc
    return None


def open_url(url, **kwargs):
    """ansible.module_utils.urls.open_url, imported on first use: importing it
    (ssl, http.client, email) is a cost the controller's main process would
    pay for every deploy when it loads nix_activate, with http checks or not
    (docs/benchmarks.md, "Overhead")."""
    from ansible.module_utils.urls import open_url as _open_url
    return _open_url(url, **kwargs)


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


def _get(url, http, timeout):
    """One GET of ``url``, never following a redirect (follow_redirects
    'none': urllib raises a 3xx as an HTTPError, which is the answer here).
    (status, headers, body), or raises what kept the answer away."""
    try:
        # use_netrc off: the controller's own netrc logins are not the target's to receive
        response = open_url(url, method='GET', timeout=timeout,
                            validate_certs=http['validate_certs'], http_agent='nixdeploy.fleet',
                            follow_redirects='none', use_netrc=False)
        return response.getcode(), response.headers, response.read()
    except HTTPError as exc:
        try:
            body = exc.read()
        except Exception:  # pylint: disable=broad-except
            body = b''
        return exc.code, exc.headers, body


def _http_attempt(http, timeout, _address):
    """One try of an http check. A redirect is an answer of the target, and
    following it would make the controller (an AWX pod, a CI runner inside a
    network the target is not in) fetch an address the target chose and put
    what it says into results and reports. So a 3xx is never followed
    unless the check says ``follow_redirects: same_host``, and then only to
    the same scheme, host and port as the check's own URL; otherwise it is
    the answer, compared with ``status`` as any other (a check that wants a
    302 gets it), and a failure says where it was sent."""
    wanted, allowed = http['status'], http.get('follow_redirects') or 'none'
    origin = _origin(http['url'])
    url, followed = http['url'], 0
    while True:
        try:
            status, headers, body = _get(url, http, timeout)
        except Exception as exc:  # pylint: disable=broad-except
            # refused, timed out, bad certificate, name not found: no answer
            return False, 'no answer from %s: %s' % (url if not followed else "'%s'" % url,
                                                     exc), ''
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
        return False, "HTTP %s (wanted %s): redirected to '%s', %s" % (
            status, wanted, target, why), text
    text = to_text(body or b'', errors='surrogate_or_replace')
    if status != wanted:
        return False, 'HTTP %s (wanted %s)' % (status, wanted), text
    if http.get('body') is not None and not re.search(http['body'], text):
        return False, 'HTTP %s but the body does not match %r' % (status, http['body']), text
    return True, None, text


# ------------------------------------------------------------------ tcp
TCP_SPEC = dict(
    port=dict(type='int', required=True),
    # none: the host's address, where Ansible's connection reaches it
    host=dict(type='str'),
)


def _tcp_problem(tcp):
    if not 1 <= tcp['port'] <= 65535:
        return 'tcp.port must be a port number (1 to 65535), got %r' % tcp['port']
    host = tcp.get('host')
    if host is not None and not re.match(r'^[A-Za-z0-9_.:%\-\[\]]+\Z', host.strip()):
        return 'tcp.host must be a host name or an address, got %r' % host
    return None


def _tcp_attempt(tcp, timeout, address):
    """One try of a tcp check: a connection to the port, accepted within
    ``timeout`` seconds, then closed (nothing is sent)."""
    host = (tcp.get('host') or address).strip().strip('[]')
    where = '%s:%d' % ('[%s]' % host if ':' in host else host, tcp['port'])
    try:
        connection = socket.create_connection((host, tcp['port']), timeout=timeout)
    except socket.timeout:
        return False, 'no connection to %s within %ss' % (where, seconds(timeout)), ''
    except (OSError, UnicodeError) as exc:
        # refused, no route, name not found
        return False, 'no connection to %s: %s' % (where, exc), ''
    connection.close()
    return True, None, ''


# ------------------------------------------------------------------ the table
KINDS = dict((kind.name, kind) for kind in (
    Kind('command', dict(type='str'), _command_problem, command=lambda command: command),
    Kind('http', dict(type='dict', options=HTTP_SPEC), _http_problem, attempt=_http_attempt),
    Kind('tcp', dict(type='dict', options=TCP_SPEC), _tcp_problem, attempt=_tcp_attempt),
    Kind('unit', dict(type='str'), _unit_problem, command=unit_command),
))
# the kinds' names, in the table's order: a check has exactly one of them
HEALTH_KINDS = tuple(KINDS)

HEALTH_CHECK_SPEC = dict(
    dict((name, kind.option) for name, kind in KINDS.items()),
    name=dict(type='str', required=True),
    retries=dict(type='int', default=3),
    interval=dict(type='float', default=2),
    timeout=dict(type='float', default=10),
)

# The option nix_activate takes (and the role passes nix_health_checks to).
HEALTH_CHECKS = dict(type='list', elements='dict', default=[], options=HEALTH_CHECK_SPEC,
                     mutually_exclusive=[HEALTH_KINDS], required_one_of=[HEALTH_KINDS])
