# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials taken out of whatever the collection shows.

A flake reference, a cache or store URI, or a message of Nix or git that
echoes one, may carry a credential: ``git+https://oauth2:TOKEN@host/...``,
``https://TOKEN@github.com/...``, ``https://user:pass@cache``,
``...?access_token=TOKEN``, Nix's ``access-tokens`` (``github.com=TOKEN``).
``text`` masks every one of them in a text
(wherever it appears in it), ``data`` in every string of a result or a
report. What stays is what a reader needs to recognise the reference: the
scheme, the host, the path, the user name of ``user:password@``, an ssh
login (``ssh-ng://root@web1``: a user name is no secret there) and the names
of the masked query parameters.

Standard library only: the report's merge script imports it as a plain file.
"""

import re

MASK = '***'

# `scheme://userinfo@`: userinfo runs to the last `@` before the host's end
# (a `/`, `?`, `#`, a space, a quote or an escape sequence of Nix's colours)
_USERINFO = re.compile(r'(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://'
                       r'(?P<userinfo>[^/?#\s\'"<>`\x1b]*)@')
# `?name=value` / `&name=value` anywhere in a text
_PARAM = re.compile(r'(?P<lead>[?&](?P<name>[A-Za-z0-9_.-]+)=)(?P<value>[^&#\s\'"<>`\x1b]*)')
# query parameters that carry a secret: tokens (`access_token`, `private_token`,
# `token`, `X-Amz-Security-Token`), passwords, signatures, API keys, private
# and access keys (`private_key`, `AWSAccessKeyId`), JWTs, session ids, an
# OAuth `code`, ... (a name that only holds `code` or `key` inside another
# word, `zipcode`, `ssl-key`, is no secret)
_SECRET_PARAM = re.compile(r'token|passw(?:or)?d|secret|signature|credential|api[-_]?key'
                           r'|private[-_]?key|access[-_]?key|jwt|session'
                           r'|^(?:key|sig|auth|pass|pwd|code)$', re.IGNORECASE)
# ... except a store's `secret-key=`, the PATH of a signing key file
_NOT_SECRET = ('secret-key', 'secret-keys')
# Nix's own setting for tokens, should a text ever show it: `access-tokens =
# ...` (nix.conf, NIX_CONFIG), `access-tokens: ...` (YAML), `"access-tokens":
# "..."` (JSON); the value runs to the line's (or the quoted string's) end
_ACCESS_TOKENS = re.compile(r'(?P<lead>\baccess[-_]tokens\b["\']?\s*[=:]\s*["\']?)'
                            r'(?P<value>[^\n"\']*)')
# its value's own form, `host=TOKEN` pairs (`github.com=ghp_x gitlab.com=PAT:y`):
# a text that is nothing but such pairs (a setting's value alone, an argv
# item) or such pairs right after the setting's name (`--option access-tokens
# github.com=ghp_x`). The host has a dot, so `a=b` stays.
_TOKEN_PAIR = (r'[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+(?::[0-9]+)?'
               r'(?:/[^\s=]*)?=[^\s"\'<>`\x1b]+')
_TOKEN_PAIRS = re.compile(r'(?:%s)(?:\s+(?:%s))*' % (_TOKEN_PAIR, _TOKEN_PAIR))
_ONLY_PAIRS = re.compile(r'\s*(?:%s)\s*\Z' % _TOKEN_PAIRS.pattern)
_PAIRS_AFTER_NAME = re.compile(r'(?P<lead>\baccess[-_]tokens\b["\']?\s+["\']?)(?P<value>%s)'
                               % _TOKEN_PAIRS.pattern)
_PAIR_TOKEN = re.compile(r'(?P<lead>=)[^\s"\'<>`\x1b]+')


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


def secret_name(name):
    """Whether a query parameter called ``name`` carries a secret."""
    return name.lower() not in _NOT_SECRET and bool(_SECRET_PARAM.search(name))


def _param(match):
    if not secret_name(match.group('name')) or not match.group('value'):
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
        if 'access' in value and 'tokens' in value:
            value = _ACCESS_TOKENS.sub(lambda m: m.group('lead') + MASK, value)
            value = _PAIRS_AFTER_NAME.sub(lambda m: m.group('lead') + _pair_tokens(
                m.group('value')), value)
        if '=' in value and _ONLY_PAIRS.match(value):
            value = _pair_tokens(value)
    return value


def _pair_tokens(pairs):
    """``host=TOKEN host=TOKEN`` -> ``host=*** host=***``."""
    return _PAIR_TOKEN.sub(lambda m: m.group('lead') + MASK, pairs)


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
