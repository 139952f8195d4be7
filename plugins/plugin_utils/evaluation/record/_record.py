# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host's evaluation read of its flake, so a later commit may reuse
its answer while none of it changed (docs/eval-cache.md, "Reuse across
commits").

How reads are seen: the evaluator runs under ``strace`` (``_trace``)
and calls the flake through ``record.nix``, which calls it as Nix does and
watches ``self``'s own attributes. A host's record is everything its process
did up to its answer (``segments`` 0..k), since Nix shares what one host
parsed or forced with the hosts after it. A host first in its process has
an exact record.

What a record holds per path of the flake's own source (relative to its
store copy): how the path looks now (``describe``): each link on the way
and its target, then absent, a folder (with its listing's digest where it
was listed), or a file with its executable bit (and its content's digest
where it was read). A reuse compares each recorded path's description in
the new content with the recorded one, and each forced attribute of
``self`` with its new value.

Why the evaluator gets a cache folder of its own (``private_cache``): Nix
2.20+ remembers the hash of a path it copied to the store by the source's
fingerprint (``sourcePathToHash``), and does not read the path again; an
evaluation answered from there would read nothing of that path.
"""

import hashlib
import json
import os
import sqlite3
import stat
import unicodedata

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record._trace import (
    LIST, RANK, READ)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import nix_string

# 2: the whole evaluation recorded from the process's start (record.nix
# calls the flake itself); records of format 1 missed what getFlake read.
# 3: every node ends with the names Nix's call adds, whatever its outputs
# define; a record of format 2 may hold the answer of a `self` whose
# outputs' `inputs` won over Nix's
# 4: relative `path:` and `?dir=` non-flake inputs are where Nix 2.25+'s
# call puts them; a record of format 3 may hold an answer that read
# `<src>//./child` or the top of a `?dir=` input's source
FORMAT = 4
RECORD_NIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'record.nix')

# the fetcher cache's rows that let Nix skip reading a source path
SKIPPING_DOMAINS = ('sourcePathToHash', 'fetchToStore')


# ------------------------------------------------------------------ the call
def record_text():
    """The text of ``record.nix`` (an expression is passed to Nix whole: a
    pure evaluation may not import a file outside the store)."""
    with open(RECORD_NIX) as handle:
        return handle.read()


def expression(apply_text, call, marker):
    """The ``--expr`` that calls a flake through ``record.nix`` with
    ``call`` (its arguments: root, narHash, sub, info, lock, layout, adds) and
    applies ``apply_text`` (``_eval.apply_expression``) to its outputs."""
    args = dict(call, marker=marker)
    return u'(%s) ((%s) (builtins.fromJSON %s))' % (
        apply_text, record_text(), nix_string(json.dumps(args)))


def nix_cache_home(environ=None):
    """The folder of Nix's own caches (fetcher cache, tarball cache)."""
    environ = os.environ if environ is None else environ
    if environ.get('NIX_CACHE_HOME'):
        return environ['NIX_CACHE_HOME']
    base = environ.get('XDG_CACHE_HOME') or os.path.join(
        environ.get('HOME') or os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'nix')


def private_cache(folder, environ=None, warm=None):
    """The environment of an evaluator whose reads are recorded: Nix's
    caches in ``folder`` (made 0700), a copy of the user's fetcher cache
    without the rows that skip reading a source path, links to the rest
    (a git or tarball cache names content by its hash: safe to share).
    ``warm``: the rows ``warm_rows`` found, added back (the pinned copy's
    root only)."""
    env = _private_cache(folder, environ)
    if warm and warm.get('rows'):
        _add_rows(env['NIX_CACHE_HOME'], warm)
    return env


def warm_rows(folder, fetch, environ=None):
    """The fetcher cache rows that let a recorded evaluator take the pinned
    store copy without hashing all of it again: ``fetch(env)`` runs one Nix
    process in a private cache made in ``folder`` that only fetches the
    pinned copy's root; the rows it added for the root ("path": "/") are
    kept. Nix 2.20-2.33 otherwise copy the whole source to find its store
    path, which the evaluator's record would then hold as reads of every
    file (sound, but no host would ever be reused). These rows only say
    what the root's store path is: that path is the pin, fixed by its
    narHash, and a host whose system holds it is never reused. {'home':
    the folder, 'rows': [[file, domain, key, value, timestamp]]}."""
    env = _private_cache(folder, environ)
    home = env['NIX_CACHE_HOME']
    before = _rows(home)
    fetch(env)
    rows = []
    for row in sorted(_rows(home) - before):
        try:
            key = json.loads(row[2])
        except ValueError:
            continue
        if row[1] in SKIPPING_DOMAINS and isinstance(key, dict) and key.get('path') == '/':
            rows.append(list(row))
    return {'home': home, 'rows': rows}


def _rows(home):
    found = set()
    try:
        names = os.listdir(home)
    except OSError:
        return found
    for name in names:
        if not (name.startswith('fetcher-cache') and name.endswith('.sqlite')):
            continue
        try:
            db = sqlite3.connect('file:%s?mode=ro' % os.path.join(home, name), uri=True,
                                 timeout=5)
            try:
                columns = [row[1] for row in db.execute('PRAGMA table_info(Cache)')]
                if 'domain' in columns:
                    found.update((name,) + tuple(row) for row in db.execute(
                        'SELECT domain, key, value, timestamp FROM Cache'))
            finally:
                db.close()
        except sqlite3.Error:
            continue
    return found


def _add_rows(target, warm):
    for name in sorted(set(row[0] for row in warm['rows'])):
        path = os.path.join(target, name)
        if not os.path.exists(path):
            # the user has no fetcher cache of this version: the warm-up's
            # own, stripped as any copy is
            _copy_fetcher_cache(os.path.join(warm['home'], name), path)
        try:
            db = sqlite3.connect(path, timeout=5)
            try:
                db.executemany('INSERT OR REPLACE INTO Cache (domain, key, value, timestamp) '
                               'VALUES (?, ?, ?, ?)',
                               [row[1:] for row in warm['rows'] if row[0] == name])
                db.commit()
            finally:
                db.close()
        except sqlite3.Error:
            # without them the evaluator reads the whole source: sound
            continue


def _private_cache(folder, environ=None):
    own = nix_cache_home(environ)
    target = os.path.join(folder, 'nix')
    os.makedirs(target, 0o700, exist_ok=True)
    try:
        names = os.listdir(own)
    except OSError:
        names = []
    for name in names:
        if name.startswith('eval-cache-') or name.endswith(('-journal', '-wal', '-shm')):
            continue
        path = os.path.join(own, name)
        if name.startswith('fetcher-cache') and name.endswith('.sqlite'):
            _copy_fetcher_cache(path, os.path.join(target, name))
        elif not os.path.exists(os.path.join(target, name)):
            os.symlink(path, os.path.join(target, name))
    return {'XDG_CACHE_HOME': folder, 'NIX_CACHE_HOME': target}


def _copy_fetcher_cache(source, target):
    try:
        src = sqlite3.connect('file:%s?mode=ro' % source, uri=True, timeout=5)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            columns = [row[1] for row in dst.execute('PRAGMA table_info(Cache)')]
            if 'domain' in columns:
                dst.execute('DELETE FROM Cache WHERE domain IN (%s)'
                            % ','.join('?' * len(SKIPPING_DOMAINS)), SKIPPING_DOMAINS)
                dst.commit()
        finally:
            src.close()
            dst.close()
    except sqlite3.Error:
        # no copy: Nix makes an empty cache, and fetches what it needs
        try:
            os.unlink(target)
        except OSError:
            pass


# ------------------------------------------------------------------ the content
class Describer(object):
    """``describe(rel, kind)`` of paths in one store copy ``root``, each
    path described once (a digest read once however many hosts read it)."""

    def __init__(self, root):
        self.root = root.rstrip('/')
        self._seen = {}

    def describe(self, rel, kind):
        key = (rel, kind)
        if key not in self._seen:
            self._seen[key] = describe(self.root, rel, kind)
        return self._seen[key]


def describe(root, rel, kind):
    """How ``rel`` looks in the source at ``root``, as far as a call of
    ``kind`` sees it: each link on the way (name and target), then
    ``absent``, ``dir`` (``dir:<digest>`` of its listing where listed),
    ``file:x`` / ``file:-`` (``file:x:<digest>`` where read), ``other``; a
    link that leaves the source is ``outside:<target>``."""
    parts = [p for p in rel.split('/') if p]
    done, chain, hops = [], [], 0
    while parts:
        part = parts.pop(0)
        here = os.path.join(root, *(done + [part]))
        try:
            info = os.lstat(here)
        except OSError:
            return '|'.join(chain + ['absent'])
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            target = os.readlink(here)
            chain.append('link:%s->%s' % ('/'.join(done + [part]), target))
            if hops > 40:
                return '|'.join(chain + ['loop'])
            if target.startswith('/'):
                if target != root and not target.startswith(root + '/'):
                    return '|'.join(chain + ['outside:%s' % target])
                base = []
                target = target[len(root):]
            else:
                base = list(done)
            for step in [p for p in target.split('/') if p not in ('', '.')][::-1]:
                parts.insert(0, step)
            done = base
            # a ".." steps out of the folder the link is in
            while parts and parts[0] == '..':
                parts.pop(0)
                if not done:
                    return '|'.join(chain + ['outside:..'])
                done.pop()
            continue
        if parts and not stat.S_ISDIR(info.st_mode):
            return '|'.join(chain + ['absent'])
        done.append(part)
    here = os.path.join(root, *done) if done else root
    try:
        info = os.stat(here)
    except OSError:
        return '|'.join(chain + ['absent'])
    if stat.S_ISDIR(info.st_mode):
        final = 'dir:%s' % _listing(here) if kind == LIST else 'dir'
    elif stat.S_ISREG(info.st_mode):
        executable = 'x' if info.st_mode & 0o111 else '-'
        final = 'file:%s:%s' % (executable, _digest(here)) if kind == READ \
            else 'file:%s' % executable
    else:
        final = 'other'
    return '|'.join(chain + [final])


def _listing(path):
    entries = []
    for name in sorted(os.listdir(path)):
        try:
            mode = os.lstat(os.path.join(path, name)).st_mode
        except OSError:
            continue
        kind = 'd' if stat.S_ISDIR(mode) else 'l' if stat.S_ISLNK(mode) else \
            'f' if stat.S_ISREG(mode) else 'o'
        entries.append([name, kind])
    return hashlib.sha256(json.dumps(entries).encode('utf-8', 'surrogateescape')).hexdigest()


def _digest(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ chains
def chain_of(log, describer, values):
    """The data of one evaluator's record (``log``'s segments described in
    its source, ``values``: the source's attributes as the evaluator's
    ``self`` had them, outPath included), or None when it cannot be kept:
    the log broke, or a forced attribute has no known value."""
    if log.broken or not log.segments:
        return None
    segments = []
    for segment in log.segments:
        reads = dict((rel, [kind, describer.describe(rel, kind)])
                     for rel, kind in sorted(segment['reads'].items()))
        if any(seen.endswith('absent') and misnamed(describer.root, rel)
               for rel, (_kind, seen) in reads.items()):
            return None
        forced = {}
        for name in sorted(segment['self']):
            if name not in values:
                return None
            forced[name] = values[name]
        segments.append({'reads': reads, 'self': forced})
    return {'format': FORMAT, 'segments': segments}


def misnamed(root, rel):
    """Whether ``rel``, found absent, has a neighbour in its folder whose
    name differs from its own only in encoding (the same text as NFC, or
    its UTF-8 bytes read as Latin-1): then the name was most likely taken
    down wrong, and a record that calls the real file absent would be
    reused while that file changes. Such a record is not kept."""
    folder, _sep, name = rel.rpartition('/')
    try:
        names = os.listdir(os.path.join(root, folder) if folder else root)
    except OSError:
        return False
    wanted = _folded(name)
    return any(other != name and _folded(other) & wanted for other in names)


def _folded(name):
    """The forms a name may take when its bytes are read the wrong way."""
    forms = set([unicodedata.normalize('NFC', name)])
    raw = os.fsencode(name)
    forms.add(unicodedata.normalize('NFC', raw.decode('latin-1')))
    try:
        forms.add(unicodedata.normalize('NFC', name.encode('latin-1').decode('utf-8')))
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return forms


def reads_are_visible(log):
    """Whether the evaluator was seen reading the flake's own flake.nix
    before its first answer. Where not, its reads may not be visible here
    (a Nix that reads its source another way) and nothing of it is kept."""
    return bool(log.segments) and log.segments[0]['reads'].get(log.flake_nix) == READ


def valid_upto(chain, describer, values):
    """(the number of leading segments of ``chain`` that hold in the
    content ``describer`` reads, with the source's attributes ``values``;
    the number of paths checked)."""
    checked = 0
    for index, segment in enumerate(chain.get('segments') or []):
        for name, value in (segment.get('self') or {}).items():
            if name not in values or values[name] != value:
                return index, checked
        for rel, (kind, seen) in (segment.get('reads') or {}).items():
            checked += 1
            if kind not in RANK or describer.describe(rel, kind) != seen:
                return index, checked
    return len(chain.get('segments') or []), checked


def changed_paths(chain, describer, upto):
    """The paths of ``chain``'s segments up to ``upto`` (included) that no
    longer look as recorded, whatever the kind of call that saw them."""
    changed = set()
    for segment in (chain.get('segments') or [])[:upto + 1]:
        for rel, (kind, seen) in (segment.get('reads') or {}).items():
            if kind not in RANK or describer.describe(rel, kind) != seen:
                changed.add(rel)
    return changed


def chain_id(chain):
    """The name a chain is kept under: the digest of its content."""
    return hashlib.sha256(json.dumps(chain, sort_keys=True).encode('utf-8')).hexdigest()
