# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets to targets: the key specs of nixdeploy.fleet.nix_keys.

A key spec (colmena's ``deployment.keys.<name>`` in Ansible's spelling) is
validated here into a ``Key``: one content source (``text``, a ``src`` file
or a ``command`` argv), a plain file name, an absolute folder outside the
Nix store, owner, mode and when it is uploaded. Everything else works on
validated keys: ``_keys_content`` reads the content on the controller and
``_keys_target`` sends it to the target as the stdin of short sh scripts,
never in an argument, an environment variable, a file on the controller or
a Nix store.
"""

import posixpath
import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._options import KEYS_UPLOAD_AT
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue, NixdeployError

DEFAULTS = {'dest_dir': '/run/keys', 'user': 'root', 'group': 'root', 'mode': '0600',
            'upload_at': 'pre-activation'}
SOURCES = ('text', 'src', 'command')
FIELDS = SOURCES + ('name', 'dest_dir', 'user', 'group', 'mode', 'upload_at')


_ACCOUNT = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.$-]*\Z')
_MODE = re.compile(r'^[0-7]{3,4}\Z')


class KeysError(NixdeployError):
    """A key cannot be handled; the message names the key (the caller adds the host).

    ``detail`` is what a failed key ``command`` wrote to stderr: never in the
    message (a secret tool may echo what it was given there), shown only
    when the run is verbose (``_keys_upload``)."""

    def __init__(self, message, key=None, detail=None):
        super(KeysError, self).__init__(message)
        self.message = message
        self.key = key
        self.detail = detail


class Key:
    """One validated key spec. ``source`` says which of text/src/command holds it."""

    def __init__(self, key, name, dest_dir, user, group, mode, upload_at, source, value):
        self.key = key
        self.name = name
        self.dest_dir = dest_dir
        self.path = posixpath.join(dest_dir, name)
        self.user = user
        self.group = group
        self.mode = mode
        self.upload_at = upload_at
        self.source = source
        self.value = value

    def __repr__(self):  # never the content
        return 'Key(%r, %r, source=%s)' % (self.key, self.path, self.source)


# ------------------------------------------------------------------ specs
def _text(value):
    """A scalar inventory value as text (ints from YAML included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def normalize_mode(value):
    """'0600', '600', 0o600 (YAML's unquoted 0600) -> '0600'.

    An int is the mode itself, as Ansible's file modules take it: YAML reads
    ``0600`` as 384, which is 0o600. A string is octal digits."""
    if isinstance(value, bool):
        raise InvalidValue('mode must be octal digits such as "0600"')
    if isinstance(value, int):
        if not 0 <= value <= 0o7777:
            raise InvalidValue('mode %r is out of range' % value)
        return '%04o' % value
    text = str(value).strip()
    if text.startswith('0o'):
        text = text[2:]
    if not _MODE.match(text):
        raise InvalidValue('mode must be octal digits such as "0600", got %r' % (value,))
    return '%04o' % int(text, 8)


def _check_name(key, name):
    if not name or name in ('.', '..') or '/' in name or any(c in name for c in '\n\t\0'):
        raise KeysError("key '%s': name %r must be a plain file name (no '/', not '.' or '..', "
                        "no newline or tab)" % (key, name), key)
    if name.startswith('.') and '.nixdeploy.' in name:
        raise KeysError("key '%s': name %r looks like this module's temporary files" % (key, name), key)


def _check_dir(key, dest_dir):
    if not dest_dir or not dest_dir.startswith('/') or any(c in dest_dir for c in '\n\t\0'):
        raise KeysError("key '%s': dest_dir must be an absolute path without newline or tab, got %r"
                        % (key, dest_dir), key)
    norm = posixpath.normpath(dest_dir)
    if norm.startswith('//'):
        norm = '/' + norm.lstrip('/')
    if '..' in dest_dir.split('/'):
        raise KeysError("key '%s': dest_dir %r holds '..'" % (key, dest_dir), key)
    if norm == '/':
        raise KeysError("key '%s': dest_dir cannot be / itself" % key, key)
    if norm.startswith('/nix/store'):
        raise KeysError("key '%s': dest_dir %r is in the Nix store, where every user can read "
                        "everything: keys never go there" % (key, dest_dir), key)
    return norm


def normalize_key(key, spec):
    """Validate one spec of ``keys`` (name ``key``); returns a Key."""
    key = '%s' % (key,)
    if not isinstance(spec, dict):
        raise KeysError("key '%s': the spec must be a dict with one of text, src or command"
                        % key, key)
    unknown = sorted(str(f) for f in spec if f not in FIELDS)
    if unknown:
        raise KeysError("key '%s': unknown field(s) %s (known: %s)"
                        % (key, ', '.join(unknown), ', '.join(FIELDS)), key)
    given = [f for f in SOURCES if spec.get(f) is not None]
    if len(given) != 1:
        raise KeysError("key '%s': give exactly one of text, src or command (%s)"
                        % (key, 'got ' + ' and '.join(given) if given else 'none given'), key)
    source = given[0]
    value = spec[source]
    if source == 'src':
        value = _text(value)
        if not value:
            raise KeysError("key '%s': src must be a file name on the controller" % key, key)
    elif source == 'command':
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            raise KeysError("key '%s': command must be a non-empty list (an argv, run without a "
                            "shell), for example ['pass', 'show', 'db']" % key, key)
        words = [_text(v) for v in value]
        if any(w is None for w in words):
            raise KeysError("key '%s': every item of command must be a string" % key, key)
        value = words
    # text is checked when it is read: vaulted values decrypt only then

    name = _text(spec.get('name')) if spec.get('name') is not None else key
    if name is None:
        raise KeysError("key '%s': name must be a string" % key, key)
    _check_name(key, name)
    dest_dir = spec.get('dest_dir')
    dest_dir = DEFAULTS['dest_dir'] if dest_dir is None else _text(dest_dir)
    dest_dir = _check_dir(key, dest_dir)
    owners = {}
    for field in ('user', 'group'):
        val = spec.get(field)
        val = DEFAULTS[field] if val is None else _text(val)
        if not val or not _ACCOUNT.match(val):
            raise KeysError("key '%s': %s %r is not a valid %s name or id"
                            % (key, field, spec.get(field), field), key)
        owners[field] = val
    mode = spec.get('mode')
    try:
        mode = normalize_mode(DEFAULTS['mode'] if mode is None else mode)
    except ValueError as exc:
        raise KeysError("key '%s': %s" % (key, exc), key)
    upload_at = spec.get('upload_at')
    upload_at = DEFAULTS['upload_at'] if upload_at is None else _text(upload_at)
    if upload_at not in KEYS_UPLOAD_AT:
        raise KeysError("key '%s': upload_at must be pre-activation or post-activation, got %r"
                        % (key, spec.get('upload_at')), key)
    return Key(key, name, dest_dir, owners['user'], owners['group'], mode, upload_at, source, value)


def normalize_keys(keys):
    """All specs of ``keys``, in name order; two keys may not share a file."""
    if keys is None:
        keys = {}
    if not isinstance(keys, dict):
        raise KeysError('keys must be a dict (key name -> spec), got %s' % type(keys).__name__)
    result, paths = [], {}
    for name in sorted(keys, key=str):
        item = normalize_key(name, keys[name])
        if item.path in paths:
            raise KeysError("keys '%s' and '%s' both write %s" % (paths[item.path], item.key, item.path),
                            item.key)
        paths[item.path] = item.key
        result.append(item)
    return result


def select(keys, upload_at):
    """The keys one call handles: 'all', or those uploaded at ``upload_at``."""
    return [k for k in keys if upload_at == 'all' or k.upload_at == upload_at]
