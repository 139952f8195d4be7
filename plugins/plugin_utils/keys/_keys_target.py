# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys on the target: the sh scripts of one nix_keys call and the Uploader.

Per call, on the target:
  1. one probe: for every key this call handles, a salted digest of the file
     there (computed there, so no content comes back), its mode, owner and
     group; with prune, the manifest entries no longer wanted;
  2. one ``put`` per key that differs (in content, owner or mode): the nonce
     and the expected digest on the first line of stdin, then the content;
     written in a private folder (root's, 0700) made in the key's own folder,
     checked against the digest, given owner and mode there, then renamed
     over the key (atomic, never through a link; keys-put.sh says how);
  3. when needed, one ``finish``: prune, and record in the manifest keys that
     exist but are not listed yet.

Digests are never a plain sha256 of a key, which results, diffs and logs
would carry and from which a short secret is guessed offline: each call
makes a fresh 256-bit nonce, sent on the scripts' stdin only (never in a
program, which ps and -vvv show), and both sides compute sha256(nonce ||
content) (target/keys-lib.sh says why not an HMAC). The digests are only
compared, here, and never leave this module: a result says whether a key
changed and what differed, nothing more.

The manifest (one absolute path per line, no content, no hash) lists the key
files this collection wrote, so prune only ever removes ours. It lives beside
nix_activate's state: /nix/var/nixdeploy/keys for root,
${XDG_STATE_HOME:-~/.local/state}/nixdeploy/keys for other users.
"""

import re
import secrets

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    FLAG, INT, PATH, TEXT, Values, matching)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys._keys import KeysError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys._keys_content import (
    load_content, salted_digest)

_SHA = re.compile(r'^[0-9a-f]{64}\Z')
# what each program reports, each key's kind (plugin_utils/host/_program_fields.py);
# a key ending in '_*' stands for its numbered family (stat_0, removed_3).
# stat_<i>: 'KIND LISTED', a file's with its salted digest (never a plain
# hash: keys-lib.sh) or '-', then 'MODE OWNER GROUP UID GID' ('-' each unread)
FIELDS = {
    'keys-probe.sh': {'uid': INT, 'hash': TEXT, 'probed': FLAG, 'stale_*': TEXT,
                      'stat_*': matching(
                          r'\A(?:(?:absent|link|other|changed) [01]|file [01] (?:[0-9a-f]{64}|-)'
                          r'(?: [^\s\x00-\x1f\x7f-\x9f]+){5})\Z', "a key's facts")},
    'keys-put.sh': {'done': FLAG, 'dir_created': PATH, 'manifest_failed': TEXT,
                    'owner_unset': TEXT},
    'keys-finish.sh': {'finished': FLAG, 'removed_*': PATH, 'kept_*': TEXT,
                       'remove_failed_*': TEXT},
}


# target/keys-lib.sh (the sha256 tool, file facts, the manifest) then the
# step; paths go in as values, one a line (normalize_keys refuses newlines).
def _render(step, values, state_dir, keep=()):
    return _script.render(['keys-lib.sh', step], dict(
        values, STATE_DIR=state_dir or None, KEEP='\n'.join(keep)), FIELDS)


def new_nonce():
    """A call's salt: 256 bits from the OS's random source, as 64 hex digits."""
    return secrets.token_hex(32)


def probe_input(nonce):
    """The probe's stdin: the nonce (never a program value: see above)."""
    return nonce.encode('ascii') + b'\n'


def put_input(nonce, content):
    """A put's stdin: the nonce and the content's digest, then the content."""
    return ('%s %s\n' % (nonce, salted_digest(nonce, content))).encode('ascii') + content


def probe_script(paths, keep, prune, state_dir=None, test_pause=None):
    """sh reporting the facts of ``paths`` (and, with prune, the manifest's
    entries not in ``keep``); its stdin is ``probe_input``. ``state_dir``:
    the manifest's folder when not the default (tests); ``test_pause``
    (tests only): the probe reads a line from the FIFO ``<test_pause>.<n>``
    at its n-th pause (before it opens a key, after, before it hashes it)."""
    return _render('keys-probe.sh', {'KEY_PATHS': '\n'.join(paths), 'PRUNE': bool(prune),
                                     'TEST_PAUSE': test_pause}, state_dir, keep)


def put_script(key, require_owner, state_dir=None):
    """sh writing one key (stdin: ``put_input``): a key whose owner or mode
    only differ is written again, never changed in place by its name."""
    return _render('keys-put.sh', {
        'P': key.path, 'DIR': key.dest_dir, 'NAME': key.name, 'KUSER': key.user,
        'KGROUP': key.group, 'MODE': key.mode,
        'REQUIRE_OWNER': bool(require_owner)}, state_dir)


def finish_script(remove, add, state_dir=None):
    return _render('keys-finish.sh', {'REMOVE': '\n'.join(remove), 'ADD': '\n'.join(add)},
                   state_dir)


_NUMBERED = re.compile(r'^(stat|stale|removed|remove_failed|kept)_(\d+)\Z')


def parse(stdout, program):
    """(values, stats, stale): the values ``program`` (one of the scripts
    above) printed, the probe's ``stat_<i>`` by index and its ``stale_<n>``
    (path, exists) entries; removed paths are listed in values['removed'] (a
    list)."""
    raw, _log = program.parse(stdout)
    values, stats, numbered = Values(), {}, {}
    values.dropped = raw.dropped
    for name, value in raw.items():
        match = _NUMBERED.match(name)
        if match:
            numbered.setdefault(match.group(1), []).append((int(match.group(2)), value))
        else:
            values[name] = value
    for index, item in numbered.get('stat', []):
        words = item.split()
        if len(words) < 2:
            continue  # not reported: the plan says so
        stat = {'kind': words[0], 'listed': words[1] == '1'}
        if words[0] == 'file' and len(words) >= 8:
            # the salted digest (keys-lib.sh), compared only, never returned
            stat.update(digest=words[2] if _SHA.match(words[2]) else None,
                        mode=None if words[3] == '-' else words[3],
                        owner=words[4], group=words[5], uid=words[6], gid=words[7])
        stats[index] = stat
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


def plan(key, digest, stat):
    """What one key needs: 'create', 'update' (content), 'fix' (owner or
    mode only) or 'none'; and what differs, for the diff. ``digest``: the
    wanted content's, salted with the nonce the probe had."""
    kind = (stat or {}).get('kind', 'absent')
    if kind == 'absent':
        return 'create', ['absent']
    if kind == 'changed':
        # the file at the key's name was swapped while the probe looked at
        # it (keys-probe.sh): another account is at work in that folder
        raise KeysError("key '%s': %s changed while it was probed (replaced by another "
                        "file or a link); nothing was written, run again" % (key.key, key.path),
                        key.key)
    if kind in ('link', 'other'):
        # never written through: mv onto a link to a folder moves into it
        raise KeysError("key '%s': %s is a %s; remove it, keys are regular files"
                        % (key.key, key.path, 'symbolic link' if kind == 'link' else
                           'folder or other non-regular file'), key.key)
    why = []
    if stat.get('digest') is None or stat.get('digest') != digest:
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


def describe(content, user, group, mode):
    """A diff side: whether the content changes, owner and mode; never the
    content, nor any hash of it (a short secret is guessed from one)."""
    return 'content: %s\nowner: %s:%s\nmode: %s\n' % (
        content, user or '-', group or '-', mode or '-')


def key_diff(key, why, stat):
    stat = stat or {}
    changes = 'content' in why
    if stat.get('kind') in (None, 'absent'):
        before = 'absent\n'
    else:
        before = describe('old' if changes else 'unchanged', stat.get('owner'),
                          stat.get('group'), stat.get('mode'))
    after = describe('new' if changes or 'absent' in why else 'unchanged', key.user, key.group,
                     key.mode)
    return {'before_header': '%s (key %s)' % (key.path, key.key),
            'after_header': '%s (key %s)' % (key.path, key.key),
            'before': before, 'after': after}


class Uploader:
    """Uploads the keys of one call to one target.

    ``target`` (plugin_utils/host/_host.py ``Host``) runs each program there:
    its ``sh``, over the host's connection with the task's become and a time
    limit, a key's content on its stdin (never an argument, so never in ps
    or -vvv). ``read_src(name)`` reads a controller file. Nothing here ever
    puts content into a result, a message or a script.
    """

    def __init__(self, target, read_src, cwd=None, state_dir=None):
        self.target = target
        self.read_src = read_src
        self.cwd = cwd
        self.state_dir = state_dir
        self.warnings = []
        # what is known so far, also when a key fails half-way
        self.result = {'key_files': {}, 'removed': [], 'changed': False}

    def _run(self, script, in_data=None, what='the keys script'):
        rc, out, err = self.target.sh(script, in_data=in_data, sudoable=True)
        values, stats, stale = parse(out, script)
        if rc != 0 or 'error' in values:
            # the target's own words: shown escaped, never obeyed by a terminal
            detail = values.get('error') or printable((err or '').strip() or (out or '').strip())
            raise KeysError(detail or '%s failed with exit code %s' % (what, rc))
        return values, stats, stale

    def run(self, keys, handled, prune, check_mode=False, diff=False):
        """Returns the result dict (key_files, removed, changed[, diff])."""
        contents = {}
        for key in handled:  # every content first: a broken source uploads nothing
            contents[key.key] = load_content(key, self.read_src, cwd=self.cwd)
        # fresh for every call: a digest of one call says nothing in another
        nonce = new_nonce()
        stats, stale = self._probe(keys, handled, prune, nonce)
        plans = self._plans(handled, stats, nonce, contents)
        diffs, add = [], []
        for key, stat, action, why in plans:
            self._apply(key, stat, action, why, (nonce, contents[key.key]), check_mode,
                        diffs if diff else None, add)
        self._prune(stale, add, check_mode, diffs if diff else None)
        if diff:
            self.result['diff'] = diffs
        return self.result

    def _probe(self, keys, handled, prune, nonce):
        """(what the probe found of each handled key by its index, the
        manifest's stale entries): one program that only looks."""
        keep = [k.path for k in keys]
        try:
            _values, stats, stale = self._run(
                probe_script([k.path for k in handled], keep, prune, self.state_dir),
                in_data=probe_input(nonce), what='the probe')
        except KeysError as exc:
            raise KeysError('probing the keys failed: %s' % exc.message)
        return stats, stale

    @staticmethod
    def _plans(handled, stats, nonce, contents):
        """(key, what the probe found, action, why) of every handled key:
        every plan first, so that a blocked key uploads nothing."""
        plans = []
        for idx, key in enumerate(handled):
            stat = stats.get(idx)
            if stat is None:
                raise KeysError('the probe did not report %s' % key.path, key.key)
            digest = salted_digest(nonce, contents[key.key])
            plans.append((key, stat) + plan(key, digest, stat))
        return plans

    def _apply(self, key, stat, action, why, sealed, check_mode, diffs, add):
        """One key's plan: its entry in the result, its diff (``diffs``:
        None without --diff), its upload unless in check mode (``sealed``:
        the call's nonce and the key's content); a key already right but
        missing from the manifest is added to it at the end (``add``)."""
        # no digest here: a result, a diff or a log never carries one
        key_file = {'path': key.path, 'changed': action != 'none',
                    'user': key.user, 'group': key.group, 'mode': key.mode,
                    'upload_at': key.upload_at, 'action': action, 'differs': why}
        result = self.result
        result['key_files'][key.key] = key_file
        if action != 'none' and diffs is not None:
            diffs.append(key_diff(key, why, stat))
        if action == 'none':
            if not stat.get('listed'):
                add.append(key.path)
            return
        result['changed'] = True
        if not check_mode:
            self._upload(key, key_file, sealed)

    def _upload(self, key, key_file, sealed):
        nonce, content = sealed
        result = self.result
        try:
            # a fix (owner, mode) too: chmod and chown by a name the
            # key's owner may swap for a link would follow it
            values, _s, _st = self._run(
                put_script(key, require_owner=key.upload_at == 'post-activation',
                           state_dir=self.state_dir),
                in_data=put_input(nonce, content),
                what='uploading the key')
        except KeysError as exc:
            key_file.update(changed=False, failed=True)
            result['changed'] = any(e['changed'] for e in result['key_files'].values())
            raise KeysError("key '%s' (%s): %s" % (key.key, key.path, exc.message), key.key)
        if values.get('owner_unset'):
            self.warnings.append("key '%s': %s" % (key.key, values['owner_unset']))
            key_file['owner_unset'] = True
        if values.get('manifest_failed'):
            self.warnings.append(values['manifest_failed'])
        if values.get('dir_created'):
            key_file['dir_created'] = values['dir_created']

    def _prune(self, stale, add, check_mode, diffs):
        """The manifest's stale entries removed (their files where they
        still exist) and the listed-but-right keys added, in one program;
        in check mode only said."""
        result = self.result
        # stale entries whose file is gone already only leave the manifest
        remove = [path for path, _exists in stale]
        existing = [path for path, exists in stale if exists]
        if existing:
            result['changed'] = True
            if diffs is not None:
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
