# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets to targets: the logic of nixdeploy.fleet.nix_keys.

A key spec (colmena's ``deployment.keys.<name>`` in Ansible's spelling) is
validated here, its content read on the controller (``text``, a ``src`` file,
or the stdout of a ``command`` argv run without a shell) and sent to the
target as the stdin of a short POSIX sh script, never in an argument, an
environment variable, a file on the controller or a Nix store.

Per call, on the target:
  1. one probe: for every key this call handles, the sha256 of the file there
     (computed there, so no content comes back), its mode, owner and group;
     with prune, the manifest entries no longer wanted;
  2. one ``put`` per key that differs: the expected sha256 on the first line of
     stdin, then the content; a temporary file in the key's own folder gets
     owner and mode before the content, is checked against the hash, then
     renamed over the key (atomic);
  3. when needed, one ``finish``: prune, and record in the manifest keys that
     exist but are not listed yet.

The manifest (one absolute path per line, no content, no hash) lists the key
files this collection wrote, so prune only ever removes ours. It lives beside
nix_activate's state: /nix/var/nixdeploy/keys for root,
${XDG_STATE_HOME:-~/.local/state}/nixdeploy/keys for other users.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import posixpath
import re
import shlex
import subprocess

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _script

UPLOAD_AT = ('pre-activation', 'post-activation')
DEFAULTS = {'dest_dir': '/run/keys', 'user': 'root', 'group': 'root', 'mode': '0600',
            'upload_at': 'pre-activation'}
SOURCES = ('text', 'src', 'command')
FIELDS = SOURCES + ('name', 'dest_dir', 'user', 'group', 'mode', 'upload_at')

ARGUMENT_SPEC = dict(
    # name -> spec; holds secrets (text), never returned or displayed
    keys=dict(type='dict', default={}, no_log=True),
    upload_at=dict(type='str', default='all', choices=['all'] + list(UPLOAD_AT)),
    prune=dict(type='bool', default=False),
)

COMMAND_STDERR_CHARS = 400

_ACCOUNT = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.$-]*$')
_MODE = re.compile(r'^[0-7]{3,4}$')
_SHA = re.compile(r'^[0-9a-f]{64}$')


class KeysError(Exception):
    """A key cannot be handled; the message names the key (the caller adds the host)."""

    def __init__(self, message, key=None):
        super(KeysError, self).__init__(message)
        self.message = message
        self.key = key


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
        raise ValueError('mode must be octal digits such as "0600"')
    if isinstance(value, int):
        if not 0 <= value <= 0o7777:
            raise ValueError('mode %r is out of range' % value)
        return '%04o' % value
    text = str(value).strip()
    if text.startswith('0o'):
        text = text[2:]
    if not _MODE.match(text):
        raise ValueError('mode must be octal digits such as "0600", got %r' % (value,))
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
    if upload_at not in UPLOAD_AT:
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


# ------------------------------------------------------------------ content
def to_content(value):
    """A text value as bytes; vault-encrypted values decrypt here."""
    if isinstance(value, bytes):
        return value
    if value is None or isinstance(value, (bool, int, float, dict, list, tuple)):
        raise TypeError('text must be a string')
    # str() decrypts Ansible's vaulted strings (2.18 AnsibleVaultEncryptedUnicode,
    # 2.19 EncryptedString) without ever showing them
    return str(value).encode('utf-8', 'surrogateescape')


def run_command(argv, cwd=None):
    """stdout of ``argv`` run on the controller, no shell, no stdin."""
    try:
        # controller-only code (the nix_keys action plugin), no AnsibleModule to
        # offer run_command: ansible-test 2.21+ flags subprocess in module_utils
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              stderr=subprocess.PIPE, cwd=cwd, check=False)
    except OSError as exc:
        raise KeysError('cannot run %s: %s' % (argv[0], exc.strerror or exc))
    if proc.returncode != 0:
        err = proc.stderr.decode('utf-8', 'replace').strip()
        if len(err) > COMMAND_STDERR_CHARS:
            err = '...' + err[-COMMAND_STDERR_CHARS:]
        raise KeysError('command %s exited with %d%s' % (
            ' '.join(shlex.quote(a) for a in argv), proc.returncode, ': ' + err if err else ''))
    return proc.stdout


def load_content(key, read_src, cwd=None):
    """The content of ``key`` (bytes). ``read_src(name)`` reads a controller
    file (the action plugin's: search path and vault); KeysError names the key."""
    try:
        if key.source == 'text':
            try:
                return to_content(key.value)
            except TypeError:
                raise KeysError('text must be a string')
        if key.source == 'src':
            return read_src(key.value)
        return run_command(key.value, cwd=cwd)
    except KeysError as exc:
        raise KeysError("key '%s': %s" % (key.key, exc.message), key.key)


def sha256(content):
    return hashlib.sha256(content).hexdigest()


# ------------------------------------------------------------------ target scripts
# target/keys-lib.sh (the sha256 tool, file facts, the manifest) then the
# step; paths go in as values, one a line (normalize_keys refuses newlines).
def _render(step, values, state_dir, keep=()):
    return _script.render(['keys-lib.sh', step], dict(
        values, STATE_DIR=state_dir or None, KEEP='\n'.join(keep)))


def probe_script(paths, keep, prune, state_dir=None):
    """sh reporting the facts of ``paths`` (and, with prune, the manifest's
    entries not in ``keep``). ``state_dir``: the manifest's folder when not
    the default (tests)."""
    return _render('keys-probe.sh', {'KEY_PATHS': '\n'.join(paths), 'PRUNE': bool(prune)},
                   state_dir, keep)


def put_script(key, write, require_owner, state_dir=None):
    """sh writing (``write``) or only fixing owner and mode of one key."""
    return _render('keys-put.sh', {
        'P': key.path, 'DIR': key.dest_dir, 'NAME': key.name, 'KUSER': key.user,
        'KGROUP': key.group, 'MODE': key.mode, 'WRITE': bool(write),
        'REQUIRE_OWNER': bool(require_owner)}, state_dir)


def finish_script(remove, add, state_dir=None):
    return _render('keys-finish.sh', {'REMOVE': '\n'.join(remove), 'ADD': '\n'.join(add)},
                   state_dir)


_NUMBERED = re.compile(r'^(stat|stale|removed|remove_failed|kept)_(\d+)$')


def parse(stdout):
    """(values, stats, stale): the scripts' values, the probe's ``stat_<i>``
    by index and its ``stale_<n>`` (path, exists) entries; removed paths are
    listed in values['removed'] (a list)."""
    raw, _log = _script.parse(stdout)
    values, stats, numbered = {}, {}, {}
    for name, value in raw.items():
        match = _NUMBERED.match(name)
        if match:
            numbered.setdefault(match.group(1), []).append((int(match.group(2)), value))
        else:
            values[name] = value
    for index, item in numbered.get('stat', []):
        words = item.split()
        entry = {'kind': words[0], 'listed': words[1] == '1'}
        if words[0] == 'file' and len(words) >= 8:
            entry.update(sha256=words[2] if _SHA.match(words[2]) else None,
                         mode=None if words[3] == '-' else words[3],
                         owner=words[4], group=words[5], uid=words[6], gid=words[7])
        stats[index] = entry
    stale = []
    for _n, item in sorted(numbered.get('stale', [])):
        exists, _sep, path = item.partition(' ')
        stale.append((path, exists == '1'))
    values['removed'] = [v for _n, v in sorted(numbered.get('removed', []))]
    failed = sorted(numbered.get('remove_failed', []))
    if failed:
        values['remove_failed'] = failed[0][1]
    return values, stats, stale


# ------------------------------------------------------------------ plan
def _owner_matches(wanted, name, number):
    return wanted in (name, number)


def plan(key, content_sha, stat):
    """What one key needs: 'create', 'update' (content), 'fix' (owner or
    mode only) or 'none'; and what differs, for the diff."""
    kind = (stat or {}).get('kind', 'absent')
    if kind == 'absent':
        return 'create', ['absent']
    if kind in ('link', 'other'):
        # never written through: mv onto a link to a folder moves into it
        raise KeysError("key '%s': %s is a %s; remove it, keys are regular files"
                        % (key.key, key.path, 'symbolic link' if kind == 'link' else
                           'folder or other non-regular file'), key.key)
    why = []
    if stat.get('sha256') != content_sha:
        why.append('content')
    if not _owner_matches(key.user, stat.get('owner'), stat.get('uid')):
        why.append('user')
    if not _owner_matches(key.group, stat.get('group'), stat.get('gid')):
        why.append('group')
    if stat.get('mode') != key.mode:
        why.append('mode')
    if 'content' in why:
        return 'update', why
    return ('fix', why) if why else ('none', why)


def describe(sha, user, group, mode):
    """A diff side: hash, owner and mode only, never content."""
    return 'sha256: %s\nowner: %s:%s\nmode: %s\n' % (sha or '-', user or '-', group or '-', mode or '-')


def key_diff(key, content_sha, stat):
    stat = stat or {}
    if stat.get('kind') in (None, 'absent'):
        before = 'absent\n'
    else:
        before = describe(stat.get('sha256'), stat.get('owner'), stat.get('group'), stat.get('mode'))
    return {'before_header': '%s (key %s)' % (key.path, key.key),
            'after_header': '%s (key %s)' % (key.path, key.key),
            'before': before, 'after': describe(content_sha, key.user, key.group, key.mode)}


class Uploader:
    """Uploads the keys of one call to one target.

    ``run_sh(script, in_data)`` runs sh on the target over the host's
    connection and returns (rc, stdout, stderr). ``read_src(name)`` reads a
    controller file. Nothing here ever puts content into a result, a message
    or a script.
    """

    def __init__(self, run_sh, read_src, cwd=None, state_dir=None):
        self.run_sh = run_sh
        self.read_src = read_src
        self.cwd = cwd
        self.state_dir = state_dir
        self.warnings = []
        # what is known so far, also when a key fails half-way
        self.result = {'key_files': {}, 'removed': [], 'changed': False}

    def _run(self, script, in_data=None, what='the keys script'):
        rc, out, err = self.run_sh(script, in_data)
        values, stats, stale = parse(out)
        if rc != 0 or 'error' in values:
            detail = values.get('error') or (err or '').strip() or (out or '').strip()
            raise KeysError(detail or '%s failed with exit code %s' % (what, rc))
        return values, stats, stale

    def run(self, keys, handled, prune, check_mode=False, diff=False):
        """Returns the result dict (key_files, removed, changed[, diff])."""
        contents = {}
        for key in handled:  # every content first: a broken source uploads nothing
            contents[key.key] = load_content(key, self.read_src, cwd=self.cwd)
        shas = dict((k, sha256(c)) for k, c in contents.items())
        keep = [k.path for k in keys]
        try:
            _values, stats, stale = self._run(
                probe_script([k.path for k in handled], keep, prune, self.state_dir), what='the probe')
        except KeysError as exc:
            raise KeysError('probing the keys failed: %s' % exc.message)
        result = self.result
        diffs = []
        add = []
        plans = []
        for idx, key in enumerate(handled):  # every plan first: a blocked key uploads nothing
            stat = stats.get(idx)
            if stat is None:
                raise KeysError('the probe did not report %s' % key.path, key.key)
            plans.append((key, stat) + plan(key, shas[key.key], stat))
        for key, stat, action, why in plans:
            entry = {'path': key.path, 'changed': action != 'none', 'sha256': shas[key.key],
                     'user': key.user, 'group': key.group, 'mode': key.mode,
                     'upload_at': key.upload_at, 'action': action, 'differs': why}
            result['key_files'][key.key] = entry
            if action != 'none' and diff:
                diffs.append(key_diff(key, shas[key.key], stat))
            if action == 'none':
                if not stat.get('listed'):
                    add.append(key.path)
                continue
            result['changed'] = True
            if check_mode:
                continue
            try:
                values, _s, _st = self._run(
                    put_script(key, write=action in ('create', 'update'),
                               require_owner=key.upload_at == 'post-activation',
                               state_dir=self.state_dir),
                    in_data=(shas[key.key].encode('ascii') + b'\n' + contents[key.key]
                             if action in ('create', 'update') else b''),
                    what='uploading the key')
            except KeysError as exc:
                entry.update(changed=False, failed=True)
                result['changed'] = any(e['changed'] for e in result['key_files'].values())
                raise KeysError("key '%s' (%s): %s" % (key.key, key.path, exc.message), key.key)
            if values.get('owner_unset'):
                self.warnings.append("key '%s': %s" % (key.key, values['owner_unset']))
                entry['owner_unset'] = True
            if values.get('manifest_failed'):
                self.warnings.append(values['manifest_failed'])
            if values.get('dir_created'):
                entry['dir_created'] = values['dir_created']
        # stale entries whose file is gone already only leave the manifest
        remove = [path for path, _exists in stale]
        existing = [path for path, exists in stale if exists]
        if existing:
            result['changed'] = True
            if diff:
                diffs.extend({'before_header': path, 'after_header': path,
                              'before': 'present (pruned key)\n', 'after': 'absent\n'}
                             for path in existing)
        if check_mode:
            result['removed'] = existing
        elif remove or add:
            values, _s, _st = self._run(finish_script(remove, add, self.state_dir), what='pruning')
            result['removed'] = values['removed']
            failed = [v for k, v in values.items() if k == 'remove_failed']
            if failed:
                raise KeysError('could not remove %s' % failed[0])
        if diff:
            result['diff'] = diffs
        return result
