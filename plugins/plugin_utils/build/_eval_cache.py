# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An evaluation cache between runs that never gives a wrong answer.

What it keeps: for one attribute of one locked flake, evaluated by one Nix
with one set of evaluation options, the three fields of the answer
(``drv_path``, ``out_path``, ``system``), one small JSON file per key in a
folder of the controller's user (``default_folder``; docs/eval-cache.md).

Why it cannot be wrong:

- the key (``key``) is a sha256 over everything the answer depends on: the
  flake's locked identity (``fingerprint``: its narHash, rev, lastModified
  and its effective lock graph, ``_flake_identity``),
  the attribute path, Nix's flavour and version and every option that changes
  evaluation. Anything different is another key, so a miss;
- what cannot be pinned is not cached: ``--impure`` (the result may read the
  environment, files, the clock), a reference Nix does not lock to a narHash,
  a lock file that Nix changes while reading it (an input added to flake.nix
  but not to flake.lock is locked anew by every process: the evaluation could
  lock it otherwise than the fingerprint did), override inputs, any Nix
  failure: ``fingerprint`` returns None and every look-up of it misses;
- between the fingerprint and the evaluation the flake may still change. The
  fingerprint carries the locked reference (``locked_flake``): an evaluation
  of it evaluates exactly what was fingerprinted, or fails on a hash
  mismatch, so a result is never stored under the identity of other sources
  (``_eval_stage`` evaluates every miss from it);
- a hit is given only when its derivation is valid in the store Nix uses now
  (one ``nix-store --check-validity --print-invalid`` for all hits of a
  call): a store that was garbage-collected, replaced (a fresh execution
  environment) or pointed elsewhere makes it a miss, and its file goes;
- a file is written whole or not at all (a temporary file in the folder, then
  ``os.replace``): concurrent jobs (AWX slices) read the old file or the new
  one, never half of one; anything unreadable, malformed or of another shape
  is a miss, never an exception;
- nothing but the three fields is stored: the option values (tokens may be
  among them) go only into the digest.

Why Nix's own evaluation cache does not serve here, and how wire keys its
cache: docs/eval-cache.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import re
import tempfile
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build._eval import SYSTEM_NAME
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build._flake_identity import (
    identity)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixError, NixFeatures, NixOptions)

# the layout of a key's parts and of an entry; another number, other keys
FORMAT = 1
FIELDS = ('drv_path', 'out_path', 'system')
# entries not read or written for this long go (at most once a day, by STAMP)
MAX_AGE = 30 * 24 * 3600
PRUNE_EVERY = 24 * 3600
STAMP = '.pruned'
TMP_PREFIX = '.tmp-'
SUFFIX = '.json'
# an entry is a few hundred bytes; anything larger is not ours
MAX_ENTRY = 4096
ENV = 'NIXDEPLOY_EVAL_CACHE'

_KEY = re.compile(r'[0-9a-f]{64}\Z')


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=True)


class EvalCache:
    """The cache in ``folder`` (made 0700 when missing). A folder that is not
    the user's own, or that others may write, is not used: every look-up
    misses and nothing is written (``usable``)."""

    def __init__(self, folder):
        self.folder = os.path.abspath(os.path.expanduser(folder))
        self.usable = self._prepare()

    @staticmethod
    def default_folder(environ=None):
        """``$NIXDEPLOY_EVAL_CACHE``, else ``$XDG_CACHE_HOME`` (or
        ``~/.cache``) + ``/nixdeploy-eval``, beside the inventory's cache
        (``~/.cache/nixdeploy-inventory``); ``environ``: os.environ if None."""
        environ = os.environ if environ is None else environ
        own = environ.get(ENV)
        if own:
            return os.path.expanduser(own)
        base = environ.get('XDG_CACHE_HOME') or os.path.join(
            environ.get('HOME') or os.path.expanduser('~'), '.cache')
        return os.path.join(base, 'nixdeploy-eval')

    def _prepare(self):
        try:
            os.makedirs(self.folder, 0o700)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                return False
        try:
            info = os.stat(self.folder)
        except OSError:
            return False
        # an entry here is trusted as far as its store path is valid; a folder
        # others can write could hand this user another user's answers
        return info.st_uid == os.geteuid() and not info.st_mode & 0o022

    # ------------------------------------------------------------ fingerprint
    def fingerprint(self, runner, flake):
        """The locked identity of ``flake`` as ``runner`` evaluates it, a
        dict (``_flake_identity``); None when it cannot be cached (impure,
        override inputs, not locked to a narHash, a lock file Nix changes, a
        Nix failure). Its ``url`` is the locked reference to evaluate
        (``locked_flake``)."""
        opts = runner.opts
        # overridden inputs: their identity is not the flake's (not cached)
        if opts.impure or opts.override_inputs:
            return None
        try:
            data = runner.json('flake metadata', ['--json', flake],
                               'reading the flake\'s locked reference', flake_command=True)
            return identity(data)
        except NixError:
            return None
        except (ValueError, TypeError, KeyError, AttributeError, OSError):
            return None

    @staticmethod
    def locked_flake(fingerprint):
        """The locked reference to evaluate: exactly what was fingerprinted."""
        return fingerprint['url']

    # -------------------------------------------------------------------- key
    def key(self, fingerprint, attr, nix_version, options):
        """The hex sha256 of everything an answer depends on.

        ``attr``: the attribute path (a list, or a dotted string: one name);
        ``nix_version``: a ``NixFeatures``, a (flavour, version) pair or the
        text of ``nix --version``; ``options``: the evaluation's options as
        given, a dict (setting -> value: nix_options with the IFD setting and
        system as the evaluation uses them) or a ``NixOptions`` (its
        ``config_lines`` and nix_args; show-trace changes no answer and is
        left out). None for a None fingerprint: not
        cacheable, every look-up of it misses."""
        if fingerprint is None:
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
    def _file(self, key):
        return os.path.join(self.folder, key + SUFFIX)

    def _read(self, key):
        """The entry of ``key`` (checked shape) or None."""
        if not _KEY.match(str(key)):
            return None
        try:
            with open(self._file(key), 'rb') as handle:
                raw = handle.read(MAX_ENTRY + 1)
        except (OSError, IOError):
            return None
        if len(raw) > MAX_ENTRY:
            return None
        try:
            entry = json.loads(raw.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            return None
        return _checked(entry)

    def get_many(self, runner, keys):
        """{key: result} for the keys whose entry is whole and whose
        derivation is valid in the store ``runner``'s Nix uses now (one
        ``nix-store --check-validity``); the rest miss. Never raises."""
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
        drvs = sorted(set(entry['drv_path'] for entry in found.values()))
        try:
            _argv, rc, out, _err = runner.run(None, ['--check-validity', '--print-invalid'] + drvs,
                                              tool='nix-store')
        except (OSError, ValueError):
            return {}
        if rc != 0:
            # a store Nix cannot open says nothing about the entries: keep them
            return {}
        invalid = _nix_output.listed_paths(out)
        hits = {}
        now = time.time()
        for key, entry in found.items():
            if entry['drv_path'] in invalid:
                self._remove(key)
                continue
            hits[key] = entry
            try:  # a used entry stays
                os.utime(self._file(key), (now, now))
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
        if entry is None or not _KEY.match(str(key)) or not self.usable:
            return False
        self.prune()
        tmp = None
        try:
            handle, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=SUFFIX, dir=self.folder)
            with os.fdopen(handle, 'wb') as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(_canonical(entry).encode('utf-8'))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._file(key))
            return True
        except (OSError, IOError):
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            return False

    def _remove(self, key):
        try:
            os.unlink(self._file(key))
        except OSError:
            pass

    def prune(self, now=None):
        """Remove the entries not used for MAX_AGE and the temporary files a
        killed writer left, at most once every PRUNE_EVERY (the stamp's
        time); True when it looked."""
        now = time.time() if now is None else now
        stamp = os.path.join(self.folder, STAMP)
        try:
            if now - os.stat(stamp).st_mtime < PRUNE_EVERY:
                return False
        except OSError:
            pass
        try:
            with open(stamp, 'a'):
                pass
            os.utime(stamp, (now, now))
            names = os.listdir(self.folder)
        except OSError:
            return False
        for name in names:
            path = os.path.join(self.folder, name)
            if name.startswith(TMP_PREFIX):
                limit = PRUNE_EVERY
            elif name.endswith(SUFFIX) and _KEY.match(name[:-len(SUFFIX)]):
                limit = MAX_AGE
            else:
                continue
            try:
                if now - os.stat(path).st_mtime > limit:
                    os.unlink(path)
            except OSError:
                pass
        return True


# ------------------------------------------------------------------ helpers
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
