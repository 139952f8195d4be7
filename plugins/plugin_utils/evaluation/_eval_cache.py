# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An evaluation cache between runs that never gives a wrong answer.

What it keeps: for one attribute of one pinned flake, evaluated by one Nix
with one set of evaluation options, the three fields of the answer
(``drv_path``, ``out_path``, ``system``), one small JSON file per key in a
folder of the controller's user (``default_folder``; docs/eval-cache.md).

Why it cannot be wrong:

- the key (``key``) is a sha256 over everything the answer depends on: the
  flake's locked identity (its narHash, rev, lastModified and its effective
  lock graph, ``_flake_identity``, as the run pinned it: ``_flake_source``),
  the attribute path, Nix's flavour and version and every option that changes
  evaluation. Anything different is another key, so a miss;
- what cannot be pinned is not cached: a flake whose content or inputs Nix
  does not lock (``_flake_source``), and any evaluation whose options are not
  all known to be pure (``uncacheable``: ``--impure``, ``--expr``, override
  inputs, ``pure-eval = false``, ``accept-flake-config``, any argument this
  file does not know);
- the run evaluates every miss from the pinned source the key was made of
  (``_flake_source.RunSources``), so a result is never stored under the
  identity of other sources;
- a hit is given only when its derivation is in the store the task
  evaluates for (the task's own store arguments) and its ``out_path`` is an
  output of that derivation and its ``system`` the derivation's (one
  ``nix derivation show`` for all hits of a call); anything else is a miss
  and its file goes;
- the folder is opened once, without following a link at any step
  (``_open_folder``; a link above it only when the user or root made it),
  and is used only when it and every folder above it are as OpenSSH wants a
  secure path (the user's or root's, writable by no one else; a sticky
  folder such as /tmp is allowed above it, where no one else can rename or
  replace what the user made); an entry is read only when it is a file the
  user wrote there (owner, mode, one link); every read, write, rename,
  time update, listing and removal after that is relative to the open
  folder, so swapping a name on the way cannot hand the job another folder;
- a file is written whole or not at all (a temporary file, then a rename):
  concurrent jobs (AWX slices) read the old file or the new one, never half
  of one; anything unreadable, malformed or of another shape is a miss,
  never an exception;
- nothing but the three fields is stored: the option values (tokens may be
  among them) go only into the digest;
- every file is signed (``_eval_signing``) over its name and content with a
  key kept outside the folder, and a file is used only when signed by the
  run's key or a key it trusts: one who can write the folder as the job's
  user (a restored CI cache, a shared volume) cannot answer for it. A file
  not so signed is a miss, counted (``ignored_note``); a key that cannot be
  used keeps the cache from use (``reason``). A record that checks nothing
  (no segment, not its name's digest, no read of the flake's own
  ``flake.nix`` first) is refused whoever signed it; a distrust mark counts
  whenever its file is there, signed or not.

Why Nix's own evaluation cache does not serve here, and how wire keys its
cache: docs/eval-cache.md.
"""

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval_signing
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import SYSTEM_NAME
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixFeatures, NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    accepts_flake_config)

# the layout of a key's parts and of an entry; another number, other keys
FORMAT = 1
FIELDS = ('drv_path', 'out_path', 'system')
# entries not read or written for this long go (at most once a day, by STAMP)
MAX_AGE = 30 * 24 * 3600
PRUNE_EVERY = 24 * 3600
STAMP = '.pruned'
TMP_PREFIX = '.tmp-'
SUFFIX = '.json'
# an entry is a few hundred bytes (a reuse entry with its origin and
# signature, under a kilobyte); anything larger is not ours
MAX_ENTRY = 64 * 1024
# a distrust mark holds what Nix answered (its error text too)
MAX_MARK = 2 ** 20
# a record chain (what one evaluator read, _eval_record): its paths and digests
CHAIN_PREFIX = 'chain-'
# when a spot check last found a reused answer right (last_checked)
CHECKED_PREFIX = 'checked-'
MAX_CHAIN = 64 * 2 ** 20
# why a signed chain is refused (ignored_note): it would hold for any content
DEGENERATE = 'degenerate'
ENV = 'NIXDEPLOY_EVAL_CACHE'

_KEY = re.compile(r'[0-9a-f]{64}')
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# nix_args an evaluation may carry and still be cached: flags that change
# how Nix reports or fetches, never what it evaluates (the key holds them
# all the same). Anything else (--impure, --expr, --file, -I, --arg,
# --override-input, --option pure-eval false, ...) is never cached.
PURE_FLAGS = frozenset(['--show-trace', '--offline', '--refresh', '--no-write-lock-file',
                        '--no-update-lock-file', '-L', '--print-build-logs', '-v',
                        '--verbose', '--quiet', '--keep-going', '-k', '--no-registries'])
PURE_WITH_VALUE = frozenset(['--store', '--max-jobs', '-j', '--cores', '--log-format',
                             '--builders'])
# settings ``--option NAME VALUE`` may set and still be cached
PURE_SETTINGS = frozenset(['substituters', 'extra-substituters', 'trusted-public-keys',
                           'extra-trusted-public-keys', 'max-jobs', 'cores', 'builders',
                           'connect-timeout', 'warn-dirty', 'eval-cache', 'show-trace',
                           'narinfo-cache-negative-ttl', 'narinfo-cache-positive-ttl',
                           'allow-import-from-derivation'])
_FALSE = ('false', '0', 'no', 'off', '')


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True)


def uncacheable(opts):
    """Why an evaluation with ``opts`` (NixOptions) may not be cached: a
    reason, or None when every argument and setting is known to be pure."""
    if opts.impure:
        return '--impure reads the environment'
    if opts.override_inputs:
        return 'overridden inputs are not the flake\'s own'
    if accepts_flake_config(opts.options, opts.extra_args):
        # the flake's nixConfig then sets what it likes (pure-eval = false,
        # import-from-derivation), and `nix config show` cannot see it
        return 'accept-flake-config lets the flake\'s nixConfig set pure-eval'
    pure_eval = opts.options.get('pure-eval')
    if pure_eval is not None and (pure_eval is False or u'%s' % pure_eval in _FALSE):
        return 'pure-eval = false in nix_options'
    args = list(opts.extra_args)
    idx = 0
    while idx < len(args):
        arg = u'%s' % args[idx]
        if arg in PURE_FLAGS:
            idx += 1
        elif arg in PURE_WITH_VALUE and idx + 1 < len(args):
            idx += 2
        elif arg == '--option' and idx + 2 < len(args) and \
                u'%s' % args[idx + 1] in PURE_SETTINGS:
            idx += 3
        else:
            return 'nix_args holds %s, not known to be pure' % arg
    return None


class UnsafeFolder(NixdeployError):
    """The cache folder, or a folder above it, could be swapped by another
    account."""


def _open_folder(folder):
    """An open descriptor of ``folder`` (made 0700 where missing), reached
    without following a link at any step, each folder above it checked as
    OpenSSH checks a secure path (owned by the user or root, writable by no
    one else, except a sticky folder: there no one else can rename or
    replace what the user made), and ``folder`` itself the user's own and
    writable by no one else. The folders above it are resolved once first
    (a home behind a link); a link swapped in after that fails the walk."""
    folder = os.path.abspath(folder)
    parent = _resolved(os.path.dirname(folder))
    parts = [p for p in parent.split('/') if p] + [os.path.basename(folder)]
    uid = os.geteuid()
    fd = os.open('/', _DIR_FLAGS)
    where, part = '/', ''
    try:
        for part in parts:
            info = os.fstat(fd)
            if info.st_uid not in (0, uid) or (
                    info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
                raise UnsafeFolder('%s is writable by another account (a shared folder above '
                                   'the cache needs the sticky bit, as /tmp has: chmod +t %s)'
                                   % (where, where))
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            where = os.path.join(where, part)
        info = os.fstat(fd)
        if info.st_uid != uid or info.st_mode & 0o022:
            raise UnsafeFolder('%s is not this user\'s own, or others may write it' % where)
        if info.st_mode & 0o077:
            # the user's own: nobody else reads its keys either
            os.fchmod(fd, 0o700)
        return fd
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFolder('%s is a link or no folder (a link is never followed)'
                               % os.path.join(where, part))
        raise UnsafeFolder('%s: %s' % (os.path.join(where, part), exc.strerror or exc))
    except UnsafeFolder:
        os.close(fd)
        raise


def _resolved(path):
    """``path`` with its links resolved one by one, each link owned by the
    user or root (a link another account made is not followed: the kernel's
    protected_symlinks does not guard a readlink)."""
    uid = os.geteuid()
    done, todo, hops = '/', [p for p in path.split('/') if p], 0
    while todo:
        part = todo.pop(0)
        if part in ('', '.'):
            continue
        if part == '..':
            done = os.path.dirname(done)
            continue
        here = os.path.join(done, part)
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            return os.path.join(here, *todo)
        except OSError as exc:
            raise UnsafeFolder('%s: %s' % (here, exc.strerror or exc))
        if not stat.S_ISLNK(info.st_mode):
            done = here
            continue
        hops += 1
        if info.st_uid not in (0, uid) or hops > 40:
            raise UnsafeFolder('%s is a link another account made' % here)
        target = os.readlink(here)
        if target.startswith('/'):
            done = '/'
        todo = [p for p in target.split('/') if p] + todo
    return done


class EvalCache:
    """The cache in ``folder`` (made 0700 when missing), signed with the key
    ``environ`` names (``_eval_signing``; os.environ if None). A folder that
    others could swap or write, or a key that cannot be used, keeps it from
    use: every look-up misses and nothing is written (``usable`` False,
    ``reason`` says why)."""

    def __init__(self, folder, environ=None):
        self.folder = os.path.abspath(os.path.expanduser(folder))
        self.reason = None
        self.signer = None
        # {file name: why it was not used} (ignored_note)
        self.ignored = {}
        self._fd = None
        try:
            self._fd = _open_folder(self.folder)
            self.signer = _eval_signing.Signer.from_environment(environ)
        except (UnsafeFolder, _eval_signing.UnusableKey) as exc:
            self.reason = u'%s' % exc
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self.usable = self._fd is not None

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.usable = False

    def __del__(self):
        self.close()

    @staticmethod
    def default_folder(environ=None):
        """``$NIXDEPLOY_EVAL_CACHE``, else ``$XDG_CACHE_HOME`` (or
        ``~/.cache``) + ``/nixdeploy-eval``, beside the inventory's cache
        (``~/.cache/nixdeploy-inventory``); ``environ``: os.environ if None."""
        environ = os.environ if environ is None else environ
        configured = environ.get(ENV)
        if configured:
            return os.path.expanduser(configured)
        base = environ.get('XDG_CACHE_HOME') or os.path.join(
            environ.get('HOME') or os.path.expanduser('~'), '.cache')
        return os.path.join(base, 'nixdeploy-eval')

    # -------------------------------------------------------------------- key
    def key(self, fingerprint, attr, nix_version, options):
        """The hex sha256 of everything an answer depends on.

        ``fingerprint``: the flake's pinned identity (``FlakeSource.identity``);
        ``attr``: the attribute path (a list, or a dotted string: one name);
        ``nix_version``: a ``NixFeatures``, a (flavour, version) pair or the
        text of ``nix --version``; ``options``: the evaluation's options as
        given, a dict (setting -> value: nix_options with the IFD setting and
        system as the evaluation uses them) or a ``NixOptions`` (its
        ``config_lines`` and nix_args; show-trace changes no answer and is
        left out). None for a None fingerprint or options that are not
        pure (``uncacheable``): every look-up of it misses."""
        if fingerprint is None:
            return None
        if isinstance(options, NixOptions) and uncacheable(options):
            return None
        if isinstance(attr, (list, tuple)):
            path = [u'%s' % part for part in attr]
        else:
            path = [u'%s' % attr]
        if isinstance(nix_version, NixFeatures):
            version = [nix_version.flavour, list(nix_version.version)]
        elif isinstance(nix_version, (list, tuple)):
            version = [u'%s' % nix_version[0], [u'%s' % v for v in nix_version[1]]] \
                if len(nix_version) == 2 and isinstance(nix_version[1], (list, tuple)) \
                else [u'%s' % v for v in nix_version]
        else:
            version = u'%s' % (nix_version,)
        if isinstance(options, NixOptions):
            settings = {'config': options.config_lines(), 'args': list(options.extra_args),
                        'impure': bool(options.impure)}
        else:
            settings = {'config': sorted([u'%s' % k, _value(v)]
                                         for k, v in (options or {}).items())}
        parts = [FORMAT, fingerprint, path, version, settings]
        return hashlib.sha256(_canonical(parts).encode('utf-8')).hexdigest()

    # ----------------------------------------------------------------- read
    @staticmethod
    def _name(key):
        return key + SUFFIX

    def _read(self, key):
        """The entry of ``key`` (checked shape) or None."""
        if not _KEY.fullmatch(str(key)):
            return None
        return _checked(self._verified(self._name(key), MAX_ENTRY))

    def _verified(self, name, limit, remove=True):
        """The data of file ``name`` (``_load``) when it is signed for that
        name by a key this run trusts, else None (counted in ``ignored``)."""
        stored = self._load(name, limit, remove)
        if stored is None:
            return None
        data, why = self.signer.verify(name, stored)
        if why is not None:
            self.ignored[name] = why
        return data

    def ignored_note(self):
        """One line saying how many files of the folder were not used for
        their signature (or a record that checks nothing), or None."""
        if not self.ignored:
            return None
        counts = {}
        for why in self.ignored.values():
            counts[why] = counts.get(why, 0) + 1
        words = ((_eval_signing.UNSIGNED, 'unsigned'),
                 (_eval_signing.OTHER_KEY, 'by a key not in %s' % _eval_signing.TRUSTED_ENV),
                 (_eval_signing.ALTERED, 'changed or moved since they were signed'))
        unsigned = sum(counts.get(why, 0) for why, _word in words)
        said = []
        if unsigned:
            said.append(u'%d not signed by this run\'s key or a trusted one (%s)' % (
                unsigned, ', '.join('%d %s' % (counts[why], word) for why, word in words
                                    if why in counts)))
        if counts.get(DEGENERATE):
            said.append(u'%d records that check nothing' % counts[DEGENERATE])
        return u'%d evaluation cache entries in %s were ignored (evaluated anew): %s' % (
            len(self.ignored), self.folder, '; '.join(said))

    def _load(self, name, limit, remove=True):
        """The JSON of file ``name`` in the folder, or None: only a regular
        file this user wrote there (owner, mode, one link) of at most
        ``limit`` bytes; a file of another kind goes (``remove``)."""
        if not self.usable:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() \
                    or info.st_mode & 0o022 or info.st_nlink > 1:
                # not a file this user wrote here (planted while the folder
                # was not safe, or hard-linked in; a file replaced since it
                # was opened has no link left and is read as it was): gone, a miss
                if remove:
                    self._unlink(name)
                return None
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            raw = b''.join(chunks)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(raw) > limit:
            return None
        try:
            return json.loads(raw.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            return None

    def get_many(self, runner, keys):
        """{key: result} for the keys whose entry is whole and tied to a
        derivation in the store ``runner`` evaluates for (``_tied``); the
        rest miss, and the files of entries that are not tied go. Never
        raises."""
        if not self.usable:
            return {}
        found = {}
        for key in keys:
            if key is None or key in found:
                continue
            entry = self._read(key)
            if entry is not None:
                found[key] = entry
        if not found:
            return {}
        tied = _tied(runner, sorted(set(entry['drv_path'] for entry in found.values())))
        if tied is None:
            # a store Nix cannot open says nothing about the entries: keep them
            return {}
        hits = {}
        now = time.time()
        for key, entry in found.items():
            drv = tied.get(entry['drv_path'])
            if drv is None or entry['out_path'] not in drv['outputs'] \
                    or entry['system'] != drv['system']:
                self._remove(key)
                continue
            hits[key] = entry
            try:  # a used entry stays
                os.utime(self._name(key), (now, now), dir_fd=self._fd, follow_symlinks=False)
            except OSError:
                pass
        return hits

    def get(self, runner, key):
        """One key's result, or None."""
        return self.get_many(runner, [key]).get(key)

    # ----------------------------------------------------------------- write
    def put(self, key, result):
        """Store the three fields of ``result`` under ``key`` (whole or not at
        all, 0600). False when it was not stored: a result of another shape,
        a folder not usable, a file system error. Never raises."""
        entry = _checked(dict((field, (result or {}).get(field)) for field in FIELDS)
                         if isinstance(result, dict) else None)
        if entry is None or not _KEY.fullmatch(str(key)):
            return False
        return self._store(self._name(key), entry)

    def _store(self, name, data):
        if not self.usable:
            return False
        self.prune()
        data = self.signer.sign(name, data)
        tmp = '%s%s%s' % (TMP_PREFIX, secrets.token_hex(8), SUFFIX)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=self._fd)
        except OSError:
            return False
        try:
            with os.fdopen(fd, 'wb') as out:
                out.write(_canonical(data).encode('utf-8'))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)
            return True
        except OSError:
            self._unlink(tmp)
            return False

    # ------------------------------------------------------ reuse across commits
    def put_reuse(self, key, result, chain, upto, origin):
        """Store ``result`` under the reuse ``key`` with what its evaluation
        read: the record ``chain`` (an id from ``put_chain``) up to its
        segment ``upto``; ``origin``: the provenance of the content it was
        evaluated from (docs/eval-cache.md, "Reuse across commits")."""
        entry = _checked(dict((field, (result or {}).get(field)) for field in FIELDS)
                         if isinstance(result, dict) else None)
        if entry is None or not _KEY.fullmatch(str(key)) or not _KEY.fullmatch(str(chain)):
            return False
        entry.update(chain=chain, upto=int(upto), origin=dict(origin or {}))
        return self._store(self._name(key), entry)

    def get_reuse(self, key):
        """The reuse entry of ``key`` ({the three fields, chain, upto,
        origin}) or None. Not yet tied to its derivation: ``tie``."""
        if not _KEY.fullmatch(str(key)):
            return None
        entry = self._verified(self._name(key), MAX_ENTRY)
        if not isinstance(entry, dict):
            return None
        fields = _checked(dict((field, entry.get(field)) for field in FIELDS))
        chain, upto, origin = entry.get('chain'), entry.get('upto'), entry.get('origin')
        if fields is None or not _KEY.fullmatch(str(chain)) or not isinstance(upto, int) \
                or isinstance(upto, bool) or upto < 0 or not isinstance(origin, dict):
            return None
        return dict(fields, chain=chain, upto=upto, origin=origin)

    def put_chain(self, chain):
        """Keep a record chain (``_eval_record.chain_of``); its id, or None."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_record import (
            chain_id)
        found = chain_id(chain)
        return found if self._store(CHAIN_PREFIX + found + SUFFIX, chain) else None

    def get_chain(self, found):
        """The chain ``found`` or None: one signed by a trusted key that is
        its name's digest and reads the flake's own flake.nix first (a chain
        of no segment, or one whose first checks no flake.nix, would hold
        for any content)."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval_record import (
            chain_id)
        if not _KEY.fullmatch(str(found)):
            return None
        chain = self._verified(CHAIN_PREFIX + found + SUFFIX, MAX_CHAIN)
        if chain is None:
            return None
        if not _whole_chain(chain) or chain_id(chain) != found:
            self.ignored[CHAIN_PREFIX + found + SUFFIX] = DEGENERATE
            return None
        try:
            # a used chain stays
            now = time.time()
            os.utime(CHAIN_PREFIX + found + SUFFIX, (now, now), dir_fd=self._fd,
                     follow_symlinks=False)
        except OSError:
            pass
        return chain

    def distrust(self, flake, data):
        """Turn reuse off for ``flake`` (a spot check found a reused answer
        that Nix does not give): a file in the folder, until it is removed."""
        return self._store(_distrust_name(flake), dict(data or {}))

    def distrusted(self, flake):
        """The path of ``flake``'s distrust file when there is one, else None.
        Its presence is enough, whatever it holds and whoever signed it: a
        mark only turns reuse off, and one that cannot be looked at counts."""
        if not self.usable:
            return None
        try:
            os.lstat(_distrust_name(flake), dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except OSError:
            pass
        return os.path.join(self.folder, _distrust_name(flake))

    def distrust_record(self, flake):
        """What ``flake``'s distrust mark says (signed by a trusted key), or None."""
        return self._verified(_distrust_name(flake), MAX_MARK, remove=False)

    def last_checked(self, keys):
        """{reuse key: when (epoch seconds) a spot check last found its
        answer right} of ``keys``; a key never checked, or whose mark is not
        signed by a trusted key, is not in it (checked first)."""
        found = {}
        for key in keys:
            if not _KEY.fullmatch(str(key)):
                continue
            mark = self._verified(CHECKED_PREFIX + key + SUFFIX, MAX_ENTRY)
            when = (mark or {}).get('when')
            if isinstance(when, int) and not isinstance(when, bool):
                found[key] = when
        return found

    def mark_checked(self, keys, now=None):
        """Note that a spot check found the reused answers of ``keys`` right."""
        when = int(time.time() if now is None else now)
        for key in keys:
            if _KEY.fullmatch(str(key)):
                self._store(CHECKED_PREFIX + key + SUFFIX, {'when': when})

    def tie(self, runner, results):
        """The keys of ``results`` ({key: result}) whose derivation is in the
        store ``runner`` evaluates for, with that output and system
        (``_tied``); None when Nix cannot answer."""
        if not results:
            return set()
        tied = _tied(runner, sorted(set(r['drv_path'] for r in results.values())))
        if tied is None:
            return None
        return set(key for key, result in results.items()
                   if tied.get(result['drv_path']) is not None
                   and result['out_path'] in tied[result['drv_path']]['outputs']
                   and result['system'] == tied[result['drv_path']]['system'])

    def _unlink(self, name):
        try:
            os.unlink(name, dir_fd=self._fd)
        except OSError:
            pass

    def _remove(self, key):
        self._unlink(self._name(key))

    def prune(self, now=None):
        """Remove the entries not used for MAX_AGE and the temporary files a
        killed writer left, at most once every PRUNE_EVERY (the stamp's
        time); True when it looked."""
        if not self.usable:
            return False
        now = time.time() if now is None else now
        try:
            if now - os.stat(STAMP, dir_fd=self._fd, follow_symlinks=False).st_mtime \
                    < PRUNE_EVERY:
                return False
        except OSError:
            pass
        try:
            os.close(os.open(STAMP, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600, dir_fd=self._fd))
            os.utime(STAMP, (now, now), dir_fd=self._fd, follow_symlinks=False)
            names = os.listdir(self._fd)
        except OSError:
            return False
        for name in names:
            if name.startswith(TMP_PREFIX):
                limit = PRUNE_EVERY
            elif name.endswith(SUFFIX) and _KEY.fullmatch(re.sub(
                    '^(%s|%s)' % (CHAIN_PREFIX, CHECKED_PREFIX), '', name)[:-len(SUFFIX)]):
                limit = MAX_AGE
            else:
                continue
            try:
                if now - os.stat(name, dir_fd=self._fd, follow_symlinks=False).st_mtime > limit:
                    self._unlink(name)
            except OSError:
                pass
        return True


def _tied(runner, drvs):
    """{drv: {'outputs': set of its output paths, 'system'}} of the ``drvs``
    that are derivations in the store ``runner`` evaluates for (its own
    store arguments), from one ``nix derivation show`` (one per drv when a
    drv of them is gone); None when Nix cannot answer at all."""
    sub = 'derivation show' if runner.features().derivation_show else 'show-derivation'

    def show(paths):
        data = runner.json(sub, list(paths), 'reading cached derivations')
        outputs = _nix_output.derivations(data)
        needs = _nix_output.derivation_needs(data)
        return dict((drv, {'outputs': set(p for p in info['outputs'].values() if p),
                           'system': (needs.get(drv) or {}).get('system')})
                    for drv, info in outputs.items())

    try:
        try:
            return show(drvs)
        except NixError:
            pass
        tied = {}
        for drv in drvs:
            try:
                tied.update(show([drv]))
            except NixError:
                continue
        # not one shown: the store may not open at all (keep the entries)
        return tied or None
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


# ------------------------------------------------------------------ helpers
def _whole_chain(chain):
    """Whether ``chain`` has segments, its first holding a read of the
    flake's own flake.nix (``dir/flake.nix`` for a ``?dir=`` subflake)."""
    segments = chain.get('segments') if isinstance(chain, dict) else None
    if not isinstance(segments, list) or not segments or not isinstance(segments[0], dict):
        return False
    reads = segments[0].get('reads')
    return isinstance(reads, dict) and any(
        (rel == 'flake.nix' or rel.endswith('/flake.nix')) and isinstance(value, list)
        and value[:1] == ['read'] for rel, value in reads.items())


def _distrust_name(flake):
    return 'distrust-%s%s' % (hashlib.sha256((u'%s' % flake).encode('utf-8')).hexdigest(), SUFFIX)


def _value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value]
    return u'' if value is None else u'%s' % (value,)


def _checked(entry):
    """``entry`` when it is exactly the three fields of a good shape."""
    if not isinstance(entry, dict) or set(entry) != set(FIELDS):
        return None
    drv, out, system = entry['drv_path'], entry['out_path'], entry['system']
    if not all(isinstance(v, str) for v in (drv, out, system)):
        return None
    if not (is_store_path(drv) and drv.endswith('.drv') and is_store_path(out)
            and not out.endswith('.drv') and SYSTEM_NAME.match(system)):
        return None
    return {'drv_path': drv, 'out_path': out, 'system': system}
