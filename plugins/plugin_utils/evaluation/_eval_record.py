# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host's evaluation read of its flake, so a later commit may reuse
its answer while none of it changed (docs/eval-cache.md, "Reuse across
commits").

How reads are seen: the evaluator runs under ``strace`` (a seccomp filter,
so only file system calls stop it), and calls the flake through
``record.nix``, which watches ``self``'s own attributes. One log holds, in
the order the evaluator made them, every file it opened, every folder it
listed, every path it looked at or found absent, and the trace line of each
host's answer: a host's record is everything its process did up to its
answer (``segments`` 0..k), since Nix shares what one host parsed or forced
with the hosts after it. A host first in its process has an exact record.

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
import re
import shutil
import sqlite3
import stat
import subprocess
import unicodedata

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import nix_string

# 2: the whole evaluation recorded from the process's start (record.nix
# calls the flake itself); records of format 1 missed what getFlake read
FORMAT = 2
RECORD_NIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'record.nix')

# the strongest way a path was touched wins: a read or a listing says more
# than a look at its type
STAT, READ, LIST = 'stat', 'read', 'list'
_RANK = {STAT: 0, READ: 1, LIST: 1}

# the fetcher cache's rows that let Nix skip reading a source path
SKIPPING_DOMAINS = ('sourcePathToHash', 'fetchToStore')


class Unrecordable(NixdeployError):
    """The log holds a read this module cannot place (a path cut short, a
    ``..``): no record is kept from it."""


# ------------------------------------------------------------------ the call
def record_text():
    """The text of ``record.nix`` (an expression is passed to Nix whole: a
    pure evaluation may not import a file outside the store)."""
    with open(RECORD_NIX) as handle:
        return handle.read()


def expression(apply_text, call, marker):
    """The ``--expr`` that calls a flake through ``record.nix`` with
    ``call`` (its arguments: root, narHash, sub, info, lock, layout) and
    applies ``apply_text`` (``_eval.apply_expression``) to its outputs."""
    args = dict(call, marker=marker)
    return u'(%s) ((%s) (builtins.fromJSON %s))' % (
        apply_text, record_text(), nix_string(json.dumps(args)))


def strace_argv(strace, log, argv):
    """``argv`` under strace, its log in ``log``: file system calls, folder
    listings and writes (the answers' trace lines), every thread."""
    return [strace, '-f', '-qq', '-e', 'signal=none', '-y', '-s', '4096', '--seccomp-bpf',
            '-e', 'trace=%file,?getdents,getdents64,write', '-o', log, '--'] + list(argv)


def probe(strace, nix_bin, timeout=60):
    """None when ``strace`` can trace ``nix_bin`` here, else why not (a
    container that refuses ptrace or seccomp, no strace)."""
    if not strace:
        return 'strace is not installed on the controller'
    try:
        # controller-only code: there is no AnsibleModule.run_command here
        proc = subprocess.run(  # pylint: disable=ansible-bad-function
            strace_argv(strace, os.devnull, [nix_bin, '--version']), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return u'strace could not run: %s' % exc
    if proc.returncode != 0:
        said = proc.stderr.decode('utf-8', 'replace').strip().split('\n')[0][:200]
        return u'tracing is refused here (%s)' % (said or 'strace exit %d' % proc.returncode)
    return None


def nix_cache_home(environ=None):
    """The folder of Nix's own caches (fetcher cache, tarball cache)."""
    environ = os.environ if environ is None else environ
    if environ.get('NIX_CACHE_HOME'):
        return environ['NIX_CACHE_HOME']
    base = environ.get('XDG_CACHE_HOME') or os.path.join(
        environ.get('HOME') or os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'nix')


def private_cache(folder, environ=None):
    """The environment of an evaluator whose reads are recorded: Nix's
    caches in ``folder`` (made 0700), a copy of the user's fetcher cache
    without the rows that skip reading a source path, links to the rest
    (a git or tarball cache names content by its hash: safe to share)."""
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


# ------------------------------------------------------------------ the log
_LINE = re.compile(r'^(\d+)\s+(.*)$')
_RESUMED = re.compile(r'^<\.\.\. (\w+) resumed>(.*)$')
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?')
_FD = re.compile(r'^(?:AT_FDCWD|\d+)<((?:[^>\\]|\\.)*)>')
_UNFINISHED = ' <unfinished ...>'
_DIRFD_FIRST = frozenset(['openat', 'openat2', 'newfstatat', 'fstatat64', 'statx', 'faccessat',
                          'faccessat2', 'readlinkat', 'mkdirat', 'unlinkat', 'fchmodat',
                          'fchownat', 'utimensat', 'name_to_handle_at', 'mknodat', 'execveat',
                          'futimesat', 'fchmodat2', 'getxattrat', 'listxattrat'])
_OPENS = frozenset(['open', 'openat', 'openat2', 'creat'])


def _unescape(text):
    """A string as strace printed it, back to the bytes the call was given
    (a name is bytes: ``caf\\303\\251`` is the two bytes of an e-acute,
    not two characters), decoded as the file system names are
    (``os.fsdecode``: invalid UTF-8 kept as surrogates)."""
    out, idx = bytearray(), 0
    simple = {'n': 10, 't': 9, 'r': 13, 'v': 11, 'f': 12, '\\': 92, '"': 34}
    while idx < len(text):
        char = text[idx]
        if char != '\\' or idx + 1 >= len(text):
            out += char.encode('utf-8', 'surrogateescape')
            idx += 1
            continue
        nxt = text[idx + 1]
        if nxt in simple:
            out.append(simple[nxt])
            idx += 2
        elif nxt == 'x':
            out.append(int(text[idx + 2:idx + 4], 16))
            idx += 4
        elif nxt.isdigit():
            digits = re.match(r'[0-7]{1,3}', text[idx + 1:]).group(0)
            out.append(int(digits, 8) & 0xff)
            idx += 1 + len(digits)
        else:
            out += nxt.encode('utf-8', 'surrogateescape')
            idx += 2
    return os.fsdecode(bytes(out))


class Log(object):
    """One evaluator's strace log read against its source's store copy
    ``root``: ``segments`` (a list of {'reads': {rel: kind}, 'self': set of
    names}), the k-th ending where the k-th answer was traced, and
    ``answered`` (the trace index of each answer, in order)."""

    def __init__(self, root, marker, self_marker, sub=''):
        self.root = root.rstrip('/')
        # the flake's own flake.nix, which record.nix imports before any
        # host's answer: the proof that this Nix's reads are visible here
        self.flake_nix = ((sub.strip('/') + '/') if sub else '') + 'flake.nix'
        self.marker = marker
        self.self_marker = self_marker
        self.segments = []
        self.answered = []
        self._current = {'reads': {}, 'self': set()}
        self._pending = {}
        # a read that could not be placed: nothing from here on is kept
        self.broken = None

    def feed(self, line):
        found = _LINE.match(line.rstrip('\n'))
        if not found:
            return
        pid, body = found.group(1), found.group(2)
        if body.endswith(_UNFINISHED):
            self._pending[pid] = body[:-len(_UNFINISHED)]
            return
        resumed = _RESUMED.match(body)
        if resumed:
            body = self._pending.pop(pid, resumed.group(1) + '(') + resumed.group(2)
        name, _sep, rest = body.partition('(')
        args, _sep, ret = rest.rpartition(') = ')
        try:
            self._syscall(name, args, ret)
        except Unrecordable as exc:
            if self.broken is None:
                self.broken = u'%s' % exc

    def _syscall(self, name, args, ret):
        if name in ('write', 'pwrite64', 'writev'):
            self._write(args)
            return
        if name in ('getdents', 'getdents64'):
            fd_path = _FD.match(args)
            if fd_path:
                self._touch(_unescape(fd_path.group(1)), LIST)
            return
        strings = _STRING.findall(args)
        if not strings:
            return
        if name in _DIRFD_FIRST:
            fd_path = _FD.match(args)
            text, cut = strings[0]
            path = _unescape(text)
            if not path.startswith('/'):
                if not fd_path:
                    # relative to a folder strace did not name: not ours
                    return
                base = _unescape(fd_path.group(1))
                path = os.path.join(base, path) if path else base
            self._check_cut(path, cut)
            self._touch(path, self._kind(name, args, ret))
            return
        for text, cut in strings:
            path = _unescape(text)
            if path.startswith('/'):
                self._check_cut(path, cut)
                self._touch(path, self._kind(name, args, ret))

    @staticmethod
    def _kind(name, args, ret):
        if name in _OPENS and not ret.startswith('-') and 'O_DIRECTORY' not in args \
                and 'O_PATH' not in args:
            return READ
        return STAT

    def _check_cut(self, path, cut):
        """A path strace cut short (longer than its -s) that may be under the
        source cannot be placed."""
        if cut and (path.startswith(self.root) or self.root.startswith(path)):
            raise Unrecordable('a path strace cut short: %s' % path[:200])

    def _touch(self, path, kind):
        if path != self.root and not path.startswith(self.root + '/'):
            return
        parts = [p for p in path[len(self.root) + 1:].split('/') if p not in ('', '.')]
        if '..' in parts:
            raise Unrecordable('a read through "..": %s' % path[:200])
        rel = '/'.join(parts)
        reads = self._current['reads']
        if reads.get(rel) in (None, STAT):
            reads[rel] = kind

    def _write(self, args):
        for text, _cut in _STRING.findall(args):
            line = _unescape(text)
            at = line.find(self.marker)
            if at >= 0:
                index = re.match(r'\d+', line[at + len(self.marker):])
                if index:
                    self.answered.append(int(index.group(0)))
                    self.segments.append(self._current)
                    self._current = {'reads': {}, 'self': set()}
                continue
            at = line.find(self.self_marker)
            if at >= 0:
                name = re.match(r"[A-Za-z_][A-Za-z0-9_'-]*", line[at + len(self.self_marker):])
                if name:
                    self._current['self'].add(name.group(0))

    @classmethod
    def read(cls, path, root, marker, self_marker, sub=''):
        log = cls(root, marker, self_marker, sub)
        with open(path, 'rb') as handle:
            for raw in handle:
                log.feed(raw.decode('utf-8', 'surrogateescape'))
        return log


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
            if kind not in _RANK or describer.describe(rel, kind) != seen:
                return index, checked
    return len(chain.get('segments') or []), checked


def chain_id(chain):
    """The name a chain is kept under: the digest of its content."""
    return hashlib.sha256(json.dumps(chain, sort_keys=True).encode('utf-8')).hexdigest()


def which_strace():
    return shutil.which('strace')


# ------------------------------------------------------------------ the path itself
_DRV = re.compile(r'/nix/store/[0-9a-z]{32}-[^"/\\]*\.drv')
MAX_DRV = 64 * 2 ** 20
# a source (all its files together) read past this is taken to name the
# flake's content: nothing is kept of a host that takes one
MAX_SOURCE = 64 * 2 ** 20
_STORE_PATH = re.compile(r'/nix/store/[0-9a-z]{32}-[^"/\\]*')
# the shortest part of the source's hash that counts as naming it: 32^8
# values, so no other text of a derivation matches it by chance
WINDOW = 8


def mentions(drv, needle, memo):
    """Whether the derivation ``drv``, one it needs, or a source it takes
    (``builtins.toFile``, a copied path) holds ``needle`` (the hash part of
    the flake's store copy), or any WINDOW characters of it, in its text: a
    host that made a string of the source's own path without reading it
    (``toString ./.``, ``self.outPath`` with its context discarded, a
    substring of either, a file written from one) has an answer that
    changes with every content, whatever its reads. ``memo``: {path: bool}
    shared by the hosts of a run (a nixpkgs' derivations are read once).
    True too where a derivation or source cannot be read: nothing is kept
    then."""
    pieces = [needle[at:at + WINDOW] for at in range(max(1, len(needle) - WINDOW + 1))]
    todo, order = [drv], []
    while todo:
        path = todo.pop()
        if path in memo:
            continue
        try:
            with open(path, 'rb') as handle:
                text = handle.read(MAX_DRV + 1).decode('utf-8', 'replace')
        except OSError:
            memo[path] = True
            continue
        if len(text) > MAX_DRV or any(piece in text for piece in pieces):
            memo[path] = True
            continue
        needs = [p for p in set(_DRV.findall(text)) if p != path]
        sources = input_sources(text)
        memo[path] = None  # being decided: its inputs first
        order.append((path, needs + sources))
        todo.extend(p for p in needs if p not in memo)
        for source in sources:
            if source not in memo:
                memo[source] = _source_holds(source, pieces)
    # a derivation holds it when one it needs does: until nothing changes
    changed = True
    while changed:
        changed = False
        for path, needs in order:
            if memo[path] is not True and any(memo.get(p) is True for p in needs):
                memo[path] = True
                changed = True
    for path, _needs in order:
        if memo[path] is None:
            memo[path] = False
    return memo.get(drv) is True


def input_sources(text):
    """The store paths a derivation's text lists as its input sources (the
    third list of ``Derive(...)``)."""
    depth, start, fields = 0, None, []
    idx, size = text.find('('), len(text)
    if idx < 0:
        return []
    while idx < size and len(fields) < 3:
        char = text[idx]
        if char == '"':
            # a string: skip to its closing quote, past escaped ones
            idx += 1
            while idx < size and text[idx] != '"':
                idx += 2 if text[idx] == '\\' else 1
        elif char in '([':
            depth += 1
            if depth == 2 and char == '[':
                start = idx
        elif char in ')]':
            if depth == 2 and char == ']' and start is not None:
                fields.append(text[start:idx + 1])
                start = None
            depth -= 1
        idx += 1
    if len(fields) < 3:
        return []
    return [p for p in _STORE_PATH.findall(fields[2]) if not p.endswith('.drv')]


def _source_holds(path, pieces):
    """Whether a source in the store holds one of ``pieces`` in a file's
    content, a link's target or a name; True past MAX_SOURCE bytes or
    where it cannot be read (nothing is kept then)."""
    left = [MAX_SOURCE]

    def holds(data):
        left[0] -= len(data)
        text = data.decode('utf-8', 'replace')
        return left[0] < 0 or any(piece in text for piece in pieces)

    try:
        if os.path.islink(path):
            return holds(os.fsencode(os.readlink(path)))
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                return holds(handle.read(MAX_SOURCE + 1))
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                here = os.path.join(top, name)
                if holds(os.fsencode(name)):
                    return True
                if os.path.islink(here):
                    if holds(os.fsencode(os.readlink(here))):
                        return True
                elif name in files:
                    with open(here, 'rb') as handle:
                        if holds(handle.read(MAX_SOURCE + 1)):
                            return True
        return False
    except OSError:
        return True


def hash_part(store_path):
    """The 32 characters that name a store path's content."""
    return os.path.basename(store_path)[:32]
