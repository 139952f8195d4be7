# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys on the target: the sh scripts of one nix_keys call and the Uploader.

Per call, on the target:
  1. one probe: for every key this call handles, the sha256 of the file there
     (computed there, so no content comes back), its mode, owner and group;
     with prune, the manifest entries no longer wanted;
  2. one ``put`` per key that differs (in content, owner or mode): the
     expected sha256 on the first line of stdin, then the content; written in
     a private folder (root's, 0700) made in the key's own folder, checked
     against the hash, given owner and mode there, then renamed over the key
     (atomic, never through a link; keys-put.sh says how);
  3. when needed, one ``finish``: prune, and record in the manifest keys that
     exist but are not listed yet.

The manifest (one absolute path per line, no content, no hash) lists the key
files this collection wrote, so prune only ever removes ours. It lives beside
nix_activate's state: /nix/var/nixdeploy/keys for root,
${XDG_STATE_HOME:-~/.local/state}/nixdeploy/keys for other users.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _script
from ansible_collections.nixdeploy.fleet.plugins.module_utils._keys import KeysError
from ansible_collections.nixdeploy.fleet.plugins.module_utils._target_data import Values
from ansible_collections.nixdeploy.fleet.plugins.module_utils._keys_content import (
    load_content, sha256)

_SHA = re.compile(r'^[0-9a-f]{64}$')


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


def put_script(key, require_owner, state_dir=None):
    """sh writing one key (its content on stdin): a key whose owner or mode
    only differ is written again, never changed in place by its name."""
    return _render('keys-put.sh', {
        'P': key.path, 'DIR': key.dest_dir, 'NAME': key.name, 'KUSER': key.user,
        'KGROUP': key.group, 'MODE': key.mode,
        'REQUIRE_OWNER': bool(require_owner)}, state_dir)


def finish_script(remove, add, state_dir=None):
    return _render('keys-finish.sh', {'REMOVE': '\n'.join(remove), 'ADD': '\n'.join(add)},
                   state_dir)


_NUMBERED = re.compile(r'^(stat|stale|removed|remove_failed|kept)_(\d+)$')


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
        values, stats, stale = parse(out, script)
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
                # a fix (owner, mode) too: chmod and chown by a name the
                # key's owner may swap for a link would follow it
                values, _s, _st = self._run(
                    put_script(key, require_owner=key.upload_at == 'post-activation',
                               state_dir=self.state_dir),
                    in_data=shas[key.key].encode('ascii') + b'\n' + contents[key.key],
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
