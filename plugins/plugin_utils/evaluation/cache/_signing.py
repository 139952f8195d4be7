# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who can answer for the evaluation cache: the signatures on its files
(docs/eval-cache.md, "Who can answer for the cache: its key").

Every file the cache writes (an entry, a reuse entry, a record chain, a
distrust mark) carries an ed25519 signature over its own name and its
content: a file moved under another name, or changed by one byte, no longer
verifies. The secret key is kept outside the cache folder, in Nix's own
format (``name:base64`` of the 64 bytes libsodium keeps: the seed, then the
public key; what ``nix key generate-secret`` writes):

- ``$NIXDEPLOY_EVAL_CACHE_KEY_FILE`` when set (a CI secret file, an AWX
  credential's file): it must exist;
- else ``$XDG_CONFIG_HOME/nixdeploy/eval-cache.key`` (``~/.config`` when
  unset), made on first use (0600, its folder 0700).

A run reads the files signed by its own key or by a public key in
``$NIXDEPLOY_EVAL_CACHE_TRUSTED_KEYS`` (space-separated ``name:base64``, as
Nix's ``trusted-public-keys``). A key file that cannot be used (missing where
named, unreadable, readable by others, ill-formed) raises ``UnusableKey``:
the cache is then not used at all. So does a key file reached through the
cache folder (``inside``: the file, or a link met on the way to it, lies in
the folder's real path), since whoever writes the folder could swap it.
Trusted keys are given as text only, never as files. Nothing here ever puts
the secret, or anything made of it but signatures, in a message.
"""

import base64
import binascii
import json
import os
import re
import secrets
import socket
import stat

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey, Ed25519PublicKey)
    from cryptography.hazmat.primitives.serialization import (
        Encoding, NoEncryption, PrivateFormat, PublicFormat)
except ImportError as exc:
    # ansible-core 2.19 brings cryptography; later releases may not: then
    # nothing can be signed, and the cache is not used (said once)
    MISSING = exc
else:
    MISSING = None

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

KEY_FILE_ENV = 'NIXDEPLOY_EVAL_CACHE_KEY_FILE'
TRUSTED_ENV = 'NIXDEPLOY_EVAL_CACHE_TRUSTED_KEYS'
# the field of a stored file that holds its signature: "name:base64"
FIELD = 'signature'
# what a signature covers, before the file's name and content: a signature
# made for anything else (a Nix store path's) never verifies here
DOMAIN = b'nixdeploy-eval-cache-1\0'
MAX_KEY_FILE = 4096
# links followed while a key file's way is walked (Linux's limit)
MAX_HOPS = 40
_NAME = re.compile(r'[A-Za-z0-9._@+-]{1,128}')

# why a file was not used (EvalCache.ignored_note)
UNSIGNED = 'unsigned'
OTHER_KEY = 'other key'
ALTERED = 'altered'


class UnusableKey(NixdeployError):
    """The cache's key cannot be used; the message says why, never what the
    key holds."""


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True)


def default_key_file(environ=None):
    """Where the key is kept when ``$NIXDEPLOY_EVAL_CACHE_KEY_FILE`` is not set."""
    environ = os.environ if environ is None else environ
    base = environ.get('XDG_CONFIG_HOME') or os.path.join(
        environ.get('HOME') or os.path.expanduser('~'), '.config')
    return os.path.join(base, 'nixdeploy', 'eval-cache.key')


def locations(path):
    """Every entry the kernel looks at while opening ``path`` (absolute):
    each one named on the way, as a real path (the folder it is in holds no
    link), every link followed (at most MAX_HOPS), the last one the file
    itself."""
    seen, current, hops = [], '/', 0
    pending = list(reversed(path.split('/')))
    while pending:
        part = pending.pop()
        if part in ('', '.'):
            continue
        if part == '..':
            current = os.path.dirname(current)
            continue
        here = os.path.join(current, part)
        seen.append(here)
        try:
            target = os.readlink(here) if hops < MAX_HOPS else None
        except OSError:
            target = None
        if target is None:
            current = here
            continue
        hops += 1
        if target.startswith('/'):
            current = '/'
        pending.extend(reversed(target.split('/')))
    return seen


def inside(path, folder):
    """The first entry met on the way to ``path`` (``locations``) that lies
    in ``folder``'s real path, or None."""
    real = os.path.realpath(folder)
    for here in locations(path) + [os.path.realpath(path)]:
        if here == real or here.startswith(real.rstrip('/') + '/'):
            return here
    return None


def _b64(data):
    return base64.b64encode(data).decode('ascii')


def _unb64(text, size):
    try:
        raw = base64.b64decode(text.encode('ascii'), validate=True)
    except (binascii.Error, ValueError, UnicodeError):
        return None
    return raw if len(raw) == size else None


def public_key_text(name, private):
    """``name:base64`` of ``private``'s public key (what others put in
    ``$NIXDEPLOY_EVAL_CACHE_TRUSTED_KEYS``; ``nix key convert-secret-to-public``
    gives the same)."""
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return '%s:%s' % (name, _b64(raw))


def parse_secret(text):
    """(name, Ed25519PrivateKey) of a key file's text, or None when it is not
    ``name:base64`` of a seed followed by its own public key."""
    name, _sep, data = text.strip().partition(':')
    raw = _unb64(data, 64) if _NAME.fullmatch(name) else None
    if raw is None:
        return None
    private = Ed25519PrivateKey.from_private_bytes(raw[:32])
    if private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != raw[32:]:
        return None
    return name, private


def parse_trusted(text):
    """{name: [Ed25519PublicKey]} of a space-separated list of
    ``name:base64`` public keys; raises UnusableKey naming the first that is
    not one (a public key is no secret)."""
    trusted = {}
    for number, word in enumerate((text or '').split(), 1):
        name, _sep, data = word.partition(':')
        raw = _unb64(data, 32) if _NAME.fullmatch(name) else None
        if raw is None:
            raise UnusableKey('%s: its entry %d (%s) is not name:base64 of an ed25519 public key'
                              % (TRUSTED_ENV, number, word[:80]))
        trusted.setdefault(name, []).append(Ed25519PublicKey.from_public_bytes(raw))
    return trusted


def _generate(path):
    """Make a new key at ``path`` (0600, its folder 0700), whole or not at
    all: written to a temporary file, then linked to its name, so two jobs
    starting at once end up with one key (the second reads the first's)."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise UnusableKey('no key could be made for it: %s: %s (set %s to a key file)'
                          % (folder, exc.strerror or exc, KEY_FILE_ENV))
    private = Ed25519PrivateKey.generate()
    host = re.sub(r'[^A-Za-z0-9.-]', '-', socket.gethostname() or 'host')[:40]
    name = 'nixdeploy-eval-%s-%s' % (host, secrets.token_hex(4))
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()) + \
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    tmp = os.path.join(folder, '.eval-cache.key-%s' % secrets.token_hex(8))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, ('%s:%s\n' % (name, _b64(raw))).encode('ascii'))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    except OSError as exc:
        raise UnusableKey('no key could be made for it: %s: %s (set %s to a key file)'
                          % (path, exc.strerror or exc, KEY_FILE_ENV))
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def refuse_inside(path, folder):
    """Raise UnusableKey when the key file ``path`` (or a link on the way to
    it) lies inside the cache ``folder``: whoever writes the folder could put
    a key of its own there and sign what it plants."""
    found = inside(path, folder)
    if found is None:
        return
    via = '' if found in (path, os.path.realpath(path)) else ' (through %s)' % found
    raise UnusableKey(
        'its key file %s lies inside the cache folder %s%s: whoever can write the folder could '
        'swap the key and sign what it plants; keep the key outside the folder (a CI secret '
        'file or an AWX credential\'s file named by %s, or %s)'
        % (path, os.path.realpath(folder), via, KEY_FILE_ENV, '~/.config/nixdeploy/eval-cache.key'))


def _read_key(path):
    """(name, Ed25519PrivateKey) of the key file ``path``: a regular file of
    this user (or root), which no one else may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, 'O_NONBLOCK', 0))
    except OSError as exc:
        raise UnusableKey('its key file %s cannot be read: %s' % (path, exc.strerror or exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableKey('its key file %s is not a file' % path)
        if info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o077:
            raise UnusableKey('its key file %s is not private: it must be this user\'s, '
                              'mode 0600 (chmod 600 %s)' % (path, path))
        raw = os.read(fd, MAX_KEY_FILE + 1)
    except OSError as exc:
        raise UnusableKey('its key file %s cannot be read: %s' % (path, exc.strerror or exc))
    finally:
        os.close(fd)
    try:
        found = None if len(raw) > MAX_KEY_FILE else parse_secret(raw.decode('ascii'))
    except (UnicodeError, ValueError):
        found = None
    if found is None:
        raise UnusableKey('its key file %s is not a key (name:base64 of an ed25519 secret key, '
                          'as `nix key generate-secret` writes)' % path)
    return found


class Signer(object):
    """Signs with the run's key and verifies with it and the trusted ones."""

    def __init__(self, name, private, trusted=None):
        self.name = name
        self._private = private
        self._trusted = dict((k, list(v)) for k, v in (trusted or {}).items())
        self._trusted.setdefault(name, []).insert(0, private.public_key())

    def __repr__(self):
        return 'Signer(%s)' % self.name

    @classmethod
    def from_environment(cls, environ=None, cache_folder=None):
        """The run's Signer from its key file and trusted keys (module
        docstring); raises UnusableKey, also when the key file is reached
        through ``cache_folder`` (the folder it signs for)."""
        environ = os.environ if environ is None else environ
        if MISSING is not None:
            raise UnusableKey('signing its entries needs the Python package cryptography on the '
                              'controller (%s): install it beside Ansible' % MISSING)
        trusted = parse_trusted(environ.get(TRUSTED_ENV))
        given = environ.get(KEY_FILE_ENV)
        if given:
            path = os.path.abspath(os.path.expanduser(given))
        else:
            path = default_key_file(environ)
        if cache_folder is not None:
            refuse_inside(path, cache_folder)
        if not given and not os.path.lexists(path):
            _generate(path)
        name, private = _read_key(path)
        return cls(name, private, trusted)

    def public_key(self):
        return public_key_text(self.name, self._private)

    @staticmethod
    def _message(file_name, data):
        return DOMAIN + file_name.encode('utf-8') + b'\0' + canonical(data).encode('utf-8')

    def sign(self, file_name, data):
        """``data`` (a dict) with its signature for the file ``file_name``."""
        data = dict((k, v) for k, v in data.items() if k != FIELD)
        signature = self._private.sign(self._message(file_name, data))
        return dict(data, **{FIELD: '%s:%s' % (self.name, _b64(signature))})

    def verify(self, file_name, stored):
        """(the data without its signature, None) when ``stored`` is signed
        for ``file_name`` by a key this run trusts, else (None, why)."""
        if not isinstance(stored, dict) or not isinstance(stored.get(FIELD), str):
            return None, UNSIGNED
        name, _sep, text = stored[FIELD].partition(':')
        keys = self._trusted.get(name)
        if not keys:
            return None, OTHER_KEY
        signature = _unb64(text, 64)
        data = dict((k, v) for k, v in stored.items() if k != FIELD)
        if signature is not None:
            message = self._message(file_name, data)
            for key in keys:
                try:
                    key.verify(signature, message)
                    return data, None
                except InvalidSignature:
                    continue
        return None, ALTERED
