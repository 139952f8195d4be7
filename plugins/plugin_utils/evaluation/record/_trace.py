# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An evaluator's reads as strace saw them (docs/eval-cache.md, "What is
recorded").

The evaluator runs under ``strace`` (a seccomp filter, so only file system
calls, folder listings and writes stop it). Its log holds, in the order the
evaluator made them, every file it opened, every folder it listed, every
path it looked at or found absent, and the trace line of each host's
answer. ``Log`` reads it against the source's store copy: the k-th segment
holds what the process touched of the source between the (k-1)-th answer
and the k-th. Names are bytes: strace prints a byte over 0x7f as an octal
escape, decoded here as one byte of the name (``_unescape``).
"""

import os
import re
import shutil
import subprocess

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

# how a path was touched; the strongest way wins (a read or a listing says
# more than a look at its type)
STAT, READ, LIST = 'stat', 'read', 'list'
RANK = {STAT: 0, READ: 1, LIST: 1}


class Unrecordable(NixdeployError):
    """The log holds a read this module cannot place (a path cut short, a
    ``..``): no record is kept from it."""


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


# ------------------------------------------------------------------ the log
_LINE = re.compile(r'^(\d+)\s+(.*)$')
_RESUMED = re.compile(r'^<\.\.\. (\w+) resumed>(.*)$')
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?')
_FD = re.compile(r'^(?:AT_FDCWD|\d+)<((?:[^>\\]|\\.)*)>')
# what of a line is a name, not strace's own words: quoted strings and the
# paths it shows in <...> beside a file descriptor (-y)
_NAMES = re.compile(r'"(?:[^"\\]|\\.)*"|<(?:[^>\\]|\\.)*>')
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


def _opaque(text):
    """``text`` with every name blanked out, each character kept in place:
    strace's own words (flags, ") = ") are then found only where strace
    wrote them."""
    return _NAMES.sub(lambda found: '_' * len(found.group(0)), text)


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
        # the return value follows the last ") = " outside a quoted string or
        # a path strace shows in <...>: a file name may hold ") = -1" too
        at = _opaque(rest).rfind(') = ')
        args, ret = (rest[:at], rest[at + 4:]) if at >= 0 else ('', rest)
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
        # the flags, never a name: a file called O_PATH.txt is read all the same
        flags = _opaque(args)
        if name in _OPENS and not ret.startswith('-') and 'O_DIRECTORY' not in flags \
                and 'O_PATH' not in flags:
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


def which_strace():
    return shutil.which('strace')
