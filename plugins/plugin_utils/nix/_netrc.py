# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cache address's credential, kept out of every command line.

``https://user:PASSWORD@cache.example.org`` given as a cache would put the
password in the argv of every Nix process that opens the cache (``nix
path-info --store``, ``nix copy --to`` / ``--from``, ``nix store sign``) and
of the ssh and ``sh -c`` that carry a target program: ``ps`` shows argv to
every account of the machine. Nix's HTTP binary cache client (libcurl, Nix
2.8 to 2.34) logs in with what it finds for the cache's host in the netrc
file of its ``netrc-file`` setting. So ``split`` takes the user name and
password out of the address (Nix gets the address without them), and the
netrc that holds them is written to a private file (a ``mkdtemp`` folder,
mode 0600) whose name reaches Nix through ``NIX_CONFIG`` in its
environment, and is removed after the call (controller: ``nix_options``
here; target: copy-fetch.sh, which gets the netrc on its stdin).

Query parameters are no way to give Nix a credential: Nix reads a store
address's parameters as store settings (it warns about one it does not know)
and sends none of them to the cache, in every version in use; none of the
store settings is a secret. A secret-named parameter (``?access_token=``,
the names ``_redact`` masks) is refused rather than put in argv for nothing.
"""

import contextlib
import os
import re
import shutil
import tempfile

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact

try:
    from urllib.parse import unquote
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import unquote

# the stores whose client is libcurl, which reads the netrc file
NETRC_SCHEMES = ('http', 'https')
# what a netrc word may hold: libcurl before 7.84 knows no quoting, so no
# whitespace, no quote or backslash (newer ones read them as quoting), no
# control character; a leading '#' starts a comment in some versions
_WORD = re.compile(r'[^\s"\\#\x00-\x1f\x7f][^\s"\\\x00-\x1f\x7f]*\Z')
# what a private file's path may hold to be one NIX_CONFIG value as it is
_PLAIN_PATH = re.compile(r'[A-Za-z0-9_./+-]+\Z')


class CacheAddressError(NixdeployError, ValueError):
    """A cache address the collection cannot give Nix without exposing its
    credential; the message names the address masked, never the secret."""


class Cache(object):
    """One cache address, split: ``uri`` (what Nix and every message get: no
    credential in it), and the login for the netrc: ``host``, ``login``,
    ``password`` (None when the address had none)."""

    def __init__(self, uri, host=None, login=None, password=None):
        self.uri = uri
        self.host = host
        self.login = login
        self.password = password

    @property
    def has_credential(self):
        return self.login is not None

    def netrc_entry(self):
        """The netrc line of this cache's login ('' without one). A bare
        token (``https://TOKEN@host``) is a login with no password, which
        libcurl sends as the address would (``TOKEN:``)."""
        if not self.has_credential:
            return ''
        line = 'machine %s login %s' % (self.host, self.login)
        if self.password is not None:
            line += ' password %s' % self.password
        return line + '\n'

    def __repr__(self):  # never the password
        return 'Cache(%r, login=%r)' % (self.uri, self.login)


def split(address):
    """``address`` (a cache or store URI) as a ``Cache``; CacheAddressError
    for a credential Nix cannot take from a netrc, or a secret-named query
    parameter."""
    address = u'%s' % (address,)
    shown = _redact.url(address)
    scheme, sep, rest = address.partition('://')
    if not sep:
        return Cache(address)  # a local store path, `daemon`, `auto`
    query = rest.partition('#')[0].partition('?')[2]
    for item in query.split('&') if query else []:
        name, equals, value = item.partition('=')
        if equals and value and _redact.secret_name(name):
            raise CacheAddressError(
                'the cache %s carries the query parameter %s, which looks like a credential: '
                'Nix reads the parameters of a cache address as store settings and sends none '
                'of them to the cache. Give an HTTP cache its login as https://USER:PASSWORD@host '
                '(the collection hands it to Nix in a private netrc file), or put it in the '
                "netrc file of the machine that opens the cache (Nix's netrc-file setting)"
                % (shown, name))
    end = len(rest)
    for char in '/?#':
        if char in rest:
            end = min(end, rest.index(char))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition('@')
    if not at:
        return Cache(address)
    lowered = scheme.lower()
    if 'ssh' in lowered and ':' not in userinfo:
        return Cache(address)  # an ssh login: a user name, no secret
    if lowered not in NETRC_SCHEMES:
        raise CacheAddressError(
            'the cache %s carries a credential, which Nix takes from no %s:// address '
            '(s3: the AWS profile or environment of the machine that opens it; ssh: keys)'
            % (shown, scheme))
    user, colon, password = userinfo.partition(':')
    login, password = unquote(user), unquote(password) if colon else None
    host = _host_of(hostport)
    for what, word in (('host', host), ('user name', login), ('password', password)):
        if word is not None and not _WORD.match(word):
            raise CacheAddressError(
                'the %s in the cache address %s holds a space, a quote, a backslash, a control '
                "character or a leading '#', which a netrc file cannot carry: put that login in "
                "the netrc file of the machine that opens the cache (Nix's netrc-file setting)"
                % (what, shown))
    return Cache('%s://%s%s' % (scheme, hostport, tail), host, login, password)


def _host_of(hostport):
    """The host a netrc's ``machine`` names (libcurl matches the host, not
    the port): ``cache:8080`` -> ``cache``, ``[fe80::1]:80`` -> ``fe80::1``."""
    if hostport.startswith('['):
        return hostport[1:].partition(']')[0]
    return hostport.rpartition(':')[0] if ':' in hostport else hostport


def netrc_text(caches):
    """The netrc of ``caches`` (``Cache``s): one entry per host;
    CacheAddressError when two caches on one host log in differently (libcurl
    takes a host's first entry)."""
    entries = {}
    for cache in caches:
        if not cache.has_credential:
            continue
        known = entries.setdefault(cache.host, cache)
        if (known.login, known.password) != (cache.login, cache.password):
            raise CacheAddressError('the caches %s and %s are on one host with two different '
                                    'logins: a netrc file holds one per host'
                                    % (known.uri, cache.uri))
    return ''.join(entries[host].netrc_entry() for host in sorted(entries))


@contextlib.contextmanager
def private_netrc(text):
    """The path of a file holding ``text``, readable by this account alone
    (a fresh ``mkdtemp`` folder, 0700, the file 0600), removed on leaving."""
    folder = tempfile.mkdtemp(prefix='nixdeploy-netrc.')
    if not _PLAIN_PATH.match(folder):
        # TMPDIR holds what NIX_CONFIG would read as more than the path
        os.rmdir(folder)
        folder = tempfile.mkdtemp(prefix='nixdeploy-netrc.', dir='/tmp')
    try:
        path = os.path.join(folder, 'netrc')
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, 'w') as out:
            out.write(text)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def nix_options(opts, caches):
    """``opts`` (``_nix.NixOptions``) for Nix calls that open ``caches``:
    with ``netrc-file`` pointing at a private netrc of their logins while the
    block runs, or ``opts`` itself when none has a login (Nix's own netrc
    file then serves, as before)."""
    text = netrc_text(caches)
    if not text:
        yield opts
        return
    with private_netrc(text) as path:
        yield opts.with_options({'netrc-file': path})
