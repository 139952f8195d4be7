# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials taken out of whatever the collection shows.

A flake reference, a cache or store URI, or a message of Nix or git that
echoes one, may carry a credential: ``git+https://oauth2:TOKEN@host/...``,
``https://TOKEN@github.com/...``, ``https://user:pass@cache``,
``...?access_token=TOKEN``. ``text`` masks every one of them in a text
(wherever it appears in it), ``data`` in every string of a result or a
report. What stays is what a reader needs to recognise the reference: the
scheme, the host, the path, the user name of ``user:password@``, an ssh
login (``ssh-ng://root@web1``: a user name is no secret there) and the names
of the masked query parameters.

Standard library only: the report's merge script imports it as a plain file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MASK = '***'

# `scheme://userinfo@`: userinfo runs to the last `@` before the host's end
# (a `/`, `?`, `#`, a space, a quote or an escape sequence of Nix's colours)
_USERINFO = re.compile(r'(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://'
                       r'(?P<userinfo>[^/?#\s\'"<>`\x1b]*)@')
# `?name=value` / `&name=value` anywhere in a text
_PARAM = re.compile(r'(?P<lead>[?&](?P<name>[A-Za-z0-9_.-]+)=)(?P<value>[^&#\s\'"<>`\x1b]*)')
# query parameters that carry a secret: tokens (`access_token`, `private_token`,
# `token`, `X-Amz-Security-Token`), passwords, signatures, API keys, ...
_SECRET_PARAM = re.compile(r'token|passw(?:or)?d|secret|signature|credential|api[-_]?key'
                           r'|^(?:key|sig|auth|pass|pwd)$', re.IGNORECASE)
# ... except a store's `secret-key=`, the PATH of a signing key file
_NOT_SECRET = ('secret-key', 'secret-keys')
# Nix's own setting for tokens, should a text ever show it
_ACCESS_TOKENS = re.compile(r'(?P<lead>\baccess-tokens\s*=\s*)(?P<value>[^\n]*)')


def _userinfo(match):
    scheme, userinfo = match.group('scheme'), match.group('userinfo')
    user, colon, _password = userinfo.partition(':')
    if colon:
        # user:password -> user:***
        return '%s://%s:%s@' % (scheme, user, MASK)
    if 'ssh' in scheme.lower() or not userinfo:
        # an ssh login (ssh://, ssh-ng://, git+ssh://): a user name
        return match.group(0)
    # https://TOKEN@github.com: a bare token in the user's place
    return '%s://%s@' % (scheme, MASK)


def _param(match):
    name = match.group('name')
    if name.lower() in _NOT_SECRET or not _SECRET_PARAM.search(name) or not match.group('value'):
        return match.group(0)
    return match.group('lead') + MASK


def text(value):
    """``value`` with every credential of a URL in it masked; a non-text
    value is returned as it is."""
    if not isinstance(value, str):
        return value
    if '@' in value and '://' in value:
        value = _USERINFO.sub(_userinfo, value)
    if '=' in value:
        value = _PARAM.sub(_param, value)
        if 'access-tokens' in value:
            value = _ACCESS_TOKENS.sub(lambda m: m.group('lead') + MASK, value)
    return value


# one flake reference or URI is a text like any other
url = text


def data(value):
    """``value`` (a result, a report: dicts, lists, strings) with ``text``
    applied to every string in it; keys stay (host and option names)."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return dict((key, data(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [data(item) for item in value]
    return value
