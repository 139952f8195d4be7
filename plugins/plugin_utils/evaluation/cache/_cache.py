# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An evaluation cache between runs that never gives a wrong answer.

This file holds ``EvalCache``, the one class callers use. Its parts live
beside it, each taking what it needs as arguments:

- ``_cache_keys``: what goes into a key, and which evaluations are
  never cached (``uncacheable``);
- ``_folder``: opening the folder safely, and reading, writing
  and removing its files relative to it;
- ``_entries``: the names and shapes of the files (plain and
  reuse entries, record chains, distrust marks, spot-check times), and
  tying a stored answer to its derivation in the store.
- ``_marks``: ``TrustMarks``, which keeps a flake's distrust
  marks (in the folder and outside it) and the spot check's times, through
  the cache's signed files (each cache holds one as ``trust``).

What it keeps: for one attribute of one pinned flake, evaluated by one Nix
with one set of evaluation options, the three fields of the answer
(``drv_path``, ``out_path``, ``system``), one small JSON file per key in a
folder of the controller's user (``default_folder``; docs/eval-cache.md).

Why it cannot be wrong:

- the key (``EvalCache.key``, made in ``_cache_keys``) is a sha256
  over everything the answer depends on: the flake's locked identity (its
  narHash, rev, lastModified and its effective lock graph,
  ``flake/_identity``, as the run pinned it: ``flake/_source``), the
  attribute path, Nix's flavour and version and every option that changes
  evaluation. Anything different is another key, so a miss;
- what cannot be pinned is not cached: a flake whose content or inputs Nix
  does not lock (``flake/_source``), and any evaluation whose options are not
  all known to be pure (``uncacheable``: ``--impure``, ``--expr``, override
  inputs, ``pure-eval = false``, ``accept-flake-config``, any argument this
  file does not know);
- the run evaluates every miss from the pinned source the key was made of
  (``flake/_source.RunSources``), so a result is never stored under the
  identity of other sources;
- a hit is given only when its derivation is in the store the task
  evaluates for (the task's own store arguments) and its ``out_path`` is an
  output of that derivation and its ``system`` the derivation's (one
  ``nix derivation show`` for all hits of a call); anything else is a miss
  and its file goes;
- the folder is opened once, without following a link at any step
  (``_folder.open_folder``; a link above it only when the user
  or root made it), and is used only when it and every folder above it are as OpenSSH wants a
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
- every file is signed (``_signing``) over its name and content with a
  key kept outside the folder, and a file is used only when signed by the
  run's key or a key it trusts: one who can write the folder as the job's
  user (a restored CI cache, a shared volume) cannot answer for it. A file
  not so signed is a miss, counted (``ignored_note``); a key that cannot be
  used keeps the cache from use (``reason``). A record that checks nothing
  (no segment, not its name's digest, no read of the flake's own
  ``flake.nix`` first) is refused whoever signed it; a distrust mark counts
  whenever its file is there, signed or not.

Why Nix's own evaluation cache does not serve here, and how this cache's
keys are made: docs/eval-cache.md.
"""

import json
import os
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (
    _folder, _signing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._entries import (
    CHAIN_PREFIX, CHECKED_PREFIX, DEGENERATE, FIELDS, MAX_CHAIN, MAX_ENTRY, MAX_MARK,
    checked as _checked, chain_name, entry_name, fields_of, is_entry_name, is_key, matches,
    reuse_entry, tied, whole_chain)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._folder import (
    MAX_AGE, PRUNE_EVERY, STAMP, SUFFIX, TMP_PREFIX, UnsafeFolder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache_keys import (
    FORMAT, PURE_FLAGS, PURE_SETTINGS, PURE_WITH_VALUE, cache_key, canonical, uncacheable)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._marks import (
    TrustMarks, marks_folder)

# what callers may import from here: EvalCache, and the names this file
# offered before its parts moved to the files beside it
__all__ = ['CHAIN_PREFIX', 'CHECKED_PREFIX', 'DEGENERATE', 'ENV', 'EvalCache', 'FIELDS',
           'FORMAT', 'MAX_AGE', 'MAX_CHAIN', 'MAX_ENTRY', 'MAX_MARK', 'PRUNE_EVERY',
           'PURE_FLAGS', 'PURE_SETTINGS', 'PURE_WITH_VALUE', 'STAMP', 'SUFFIX', 'TMP_PREFIX',
           'UnsafeFolder', 'uncacheable']

ENV = 'NIXDEPLOY_EVAL_CACHE'


class EvalCache(object):
    """The cache in ``folder`` (made 0700 when missing), signed with the key
    ``environ`` names (``_signing``; os.environ if None). A folder that
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
        # a flake's distrust and the spot checks' marks (_marks),
        # with the second home of distrust marks, outside the folder
        self.trust = TrustMarks(self, None)
        try:
            self._fd = _folder.open_folder(self.folder)
            self.signer = _signing.Signer.from_environment(environ, self.folder)
            self.trust = TrustMarks(self, marks_folder(environ, self.folder))
        except (UnsafeFolder, _signing.UnusableKey) as exc:
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
        return cache_key(fingerprint, attr, nix_version, options)

    # ----------------------------------------------------------------- read
    @staticmethod
    def _name(key):
        return entry_name(key)

    def _read(self, key):
        """The entry of ``key`` (checked shape) or None."""
        if not is_key(key):
            return None
        return _checked(self.verified(self._name(key), MAX_ENTRY))

    def verified(self, name, limit, remove=True):
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
        words = ((_signing.UNSIGNED, 'unsigned'),
                 (_signing.OTHER_KEY, 'by a key not in %s' % _signing.TRUSTED_ENV),
                 (_signing.ALTERED, 'changed or moved since they were signed'))
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
        raw = _folder.read(self._fd, name, limit, remove)
        if raw is None:
            return None
        try:
            return json.loads(raw.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            return None

    def get_many(self, runner, keys):
        """{key: result} for the keys whose entry is whole and tied to a
        derivation in the store ``runner`` evaluates for (``tied``); the
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
        shown = tied(runner, sorted(set(entry['drv_path'] for entry in found.values())))
        if shown is None:
            # a store Nix cannot open says nothing about the entries: keep them
            return {}
        hits = {}
        now = time.time()
        for key, entry in found.items():
            if not matches(shown, entry):
                self._remove(key)
                continue
            hits[key] = entry
            # a used entry stays
            _folder.touch(self._fd, self._name(key), now)
        return hits

    def get(self, runner, key):
        """One key's result, or None."""
        return self.get_many(runner, [key]).get(key)

    # ----------------------------------------------------------------- write
    def put(self, key, result):
        """Store the three fields of ``result`` under ``key`` (whole or not at
        all, 0600). False when it was not stored: a result of another shape,
        a folder not usable, a file system error. Never raises."""
        entry = fields_of(result)
        if entry is None or not is_key(key):
            return False
        return self.store(self._name(key), entry)

    def present(self, name):
        """Whether the folder holds a file ``name``, whatever it holds."""
        return _folder.present(self._fd, name)

    def store(self, name, data):
        """Sign ``data`` for ``name`` and write it whole into the folder (or
        not at all: False)."""
        if not self.usable:
            return False
        self.prune()
        data = self.signer.sign(name, data)
        return _folder.write(self._fd, name, canonical(data).encode('utf-8'))

    # ------------------------------------------------------ reuse across commits
    def put_reuse(self, key, result, chain, upto, origin, cost=None):
        """Store ``result`` under the reuse ``key`` with what its evaluation
        read: the record ``chain`` (an id from ``put_chain``) up to its
        segment ``upto``; ``origin``: the provenance of the content it was
        evaluated from (docs/eval-cache.md, "Reuse across commits");
        ``cost``: the seconds its evaluation took, where known (what the
        spot check weighs it by)."""
        entry = fields_of(result)
        if entry is None or not is_key(key) or not is_key(chain):
            return False
        entry.update(chain=chain, upto=int(upto), origin=dict(origin or {}))
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
            entry['cost'] = round(float(cost), 3)
        return self.store(self._name(key), entry)

    def get_reuse(self, key):
        """The reuse entry of ``key`` ({the three fields, chain, upto,
        origin}) or None. Not yet tied to its derivation: ``tie``."""
        if not is_key(key):
            return None
        return reuse_entry(self.verified(self._name(key), MAX_ENTRY))

    def put_chain(self, chain):
        """Keep a record chain (``record/_record.chain_of``); its id, or None."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record._record import (
            chain_id)
        found = chain_id(chain)
        return found if self.store(chain_name(found), chain) else None

    def get_chain(self, found):
        """The chain ``found`` or None: one signed by a trusted key that is
        its name's digest and reads the flake's own flake.nix first (a chain
        of no segment, or one whose first checks no flake.nix, would hold
        for any content)."""
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.record._record import (
            chain_id)
        if not is_key(found):
            return None
        chain = self.verified(chain_name(found), MAX_CHAIN)
        if chain is None:
            return None
        if not whole_chain(chain) or chain_id(chain) != found:
            self.ignored[chain_name(found)] = DEGENERATE
            return None
        # a used chain stays
        _folder.touch(self._fd, chain_name(found), time.time())
        return chain

    def tie(self, runner, results):
        """The keys of ``results`` ({key: result}) whose derivation is in the
        store ``runner`` evaluates for, with that output and system
        (``tied``); None when Nix cannot answer."""
        if not results:
            return set()
        shown = tied(runner, sorted(set(r['drv_path'] for r in results.values())))
        if shown is None:
            return None
        return set(key for key, result in results.items() if matches(shown, result))

    # ------------------------------------------------- records after a job
    def hold_records(self):
        """Called in a batch's process whose job has ended while it still
        keeps records: the next job's look-up waits for them
        (``wait_for_records``) rather than evaluating those hosts again."""
        if self.usable:
            _folder.hold(self._fd, _folder.RECORDING)

    def wait_for_records(self, bound):
        """Wait, at most ``bound`` seconds, for the records a job that has
        just ended is still keeping in this folder. False when they were
        still being kept at the bound (their hosts are then evaluated)."""
        if not self.usable:
            return True
        return _folder.wait_unheld(self._fd, _folder.RECORDING, bound)

    def _unlink(self, name):
        _folder.unlink(self._fd, name)

    def _remove(self, key):
        self._unlink(self._name(key))

    def prune(self, now=None):
        """Remove the entries not used for MAX_AGE and the temporary files a
        killed writer left, at most once every PRUNE_EVERY (the stamp's
        time); True when it looked."""
        if not self.usable:
            return False
        now = time.time() if now is None else now
        return _folder.prune(self._fd, now, is_entry_name)
