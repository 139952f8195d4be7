# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluation cache's marks: a flake's distrust, and when a spot check
last found a reused answer right.

``TrustMarks``, which each ``EvalCache`` holds as ``trust``, writes and
reads them through the cache's signed files. A distrust mark (a spot check found a reused answer that Nix does
not give) turns reuse across commits off for its flake: it is written in
the cache folder and copied outside it (``marks_folder``: beside the
user's own key, where a writer of the cache folder cannot delete it), and
it counts whenever either file is there, whatever it holds. A spot
check's time and the batches that gave a host unchecked since
(``check_marks``, ``mark_checked``, ``mark_waited``), under a key of the
host's own that no commit or lock changes (``host_key``), order the next
check: the least recently checked first, and a host that waited its turn
out whatever it costs (``reuse/_spot_check``). The files' names and
shapes: ``_entries``.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import (
    _folder, _signing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._entries import (
    MAX_ENTRY, MAX_MARK, checked_name, distrust_name, is_key)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache._cache_keys import (
    canonical)

# files written side by side when a batch marks many hosts at once: each is
# synced before its rename (_folder.write), and syncs made
# together share the file system's journal commits instead of waiting for
# one each (a batch of 250 reused hosts writes 249 marks)
WRITERS = 8


class TrustMarks(object):
    """The marks of one ``EvalCache`` (``cache``: its signed files are
    where they are kept), and ``outside``, the second home of distrust
    marks (``marks_folder``; None: none)."""

    def __init__(self, cache, outside):
        self.cache = cache
        self.outside = outside

    def distrust(self, flake, data):
        """Turn reuse off for ``flake`` (a spot check found a reused answer
        that Nix does not give): a file in the folder, and its copy in the
        user's own configuration folder (``outside``) when it can be written
        there, until both are removed."""
        if not self.cache.usable:
            return False
        name, data = distrust_name(flake), dict(data or {})
        if self.outside is not None:
            try:
                os.makedirs(self.outside, mode=0o700, exist_ok=True)
                fd = os.open(self.outside, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC)
            except OSError:
                fd = None
            if fd is not None:
                try:
                    _folder.write(fd, name, canonical(
                        self.cache.signer.sign(name, data)).encode('utf-8'))
                finally:
                    os.close(fd)
        return self.cache.store(name, data)

    def distrusted(self, flake):
        """The path of ``flake``'s distrust file when there is one (in the
        folder first, else its copy outside it), else None. Its presence is
        enough, whatever it holds and whoever signed it: a mark only turns
        reuse off, and one that cannot be looked at counts."""
        found = self.distrust_marks(flake)
        return found[0] if found else None

    def distrust_said(self, flake):
        """``flake``'s distrust marks as the run names them ("X", or "X (and
        its copy Y)"), or None."""
        found = self.distrust_marks(flake)
        if len(found) > 1:
            return u'%s (and its copy %s)' % (found[0], ', '.join(found[1:]))
        return found[0] if found else None

    def distrust_marks(self, flake):
        """The paths of ``flake``'s distrust marks: in the folder, and outside
        it (``outside``); a mark in either counts."""
        if not self.cache.usable:
            return []
        name = distrust_name(flake)
        found = []
        if self.cache.present(name):
            found.append(os.path.join(self.cache.folder, name))
        if self.outside is not None:
            outside = os.path.join(self.outside, name)
            try:
                os.lstat(outside)
                found.append(outside)
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError:
                found.append(outside)
        return found

    def distrust_record(self, flake):
        """What ``flake``'s distrust mark says (signed by a trusted key), or None."""
        return self.cache.verified(distrust_name(flake), MAX_MARK, remove=False)

    def last_checked(self, keys):
        """{key: when (epoch seconds) a spot check last found its answer
        right} of ``keys`` (a host's ``host_key``, or a recorder's); a key
        never checked, or whose mark is not signed by a trusted key, is not
        in it (checked first)."""
        return dict((key, mark['when']) for key, mark in self.check_marks(keys).items()
                    if mark['when'])

    def check_marks(self, keys):
        """{key: {'when': when a spot check last found its answer right
        (0: never), 'waited': how many batches have given it since,
        unchecked}} of ``keys`` whose mark a trusted key signed; a key
        without one is not in it (never checked, waited none)."""
        found = {}
        for key in keys:
            if not is_key(key):
                continue
            mark = self.cache.verified(checked_name(key), MAX_ENTRY) or {}
            when, waited = mark.get('when'), mark.get('waited', 0)
            if _count(when) and _count(waited):
                found[key] = {'when': when, 'waited': waited}
        return found

    def mark_checked(self, keys, now=None):
        """Note that a spot check found the answers of ``keys`` right."""
        when = int(time.time() if now is None else now)
        self._store_all((checked_name(key), {'when': when, 'waited': 0})
                        for key in keys if is_key(key))

    def mark_waited(self, marks):
        """Note another batch that gave each key of ``marks`` ({key: its
        mark as ``check_marks`` gives it, or None}) without checking it."""
        files = []
        for key, mark in marks.items():
            if is_key(key):
                mark = mark or {'when': 0, 'waited': 0}
                files.append((checked_name(key), {'when': mark['when'],
                                                  'waited': mark['waited'] + 1}))
        self._store_all(files)

    def _store_all(self, files):
        """Store each (name, data) of ``files``, ``WRITERS`` side by side.
        Each file is still written whole or not at all, as the cache's
        ``store`` writes one; the folder is pruned first, so that the
        writers do not each find it due."""
        files = list(files)
        if len(files) < 2:
            for name, data in files:
                self.cache.store(name, data)
            return
        self.cache.prune()
        with ThreadPoolExecutor(max_workers=min(WRITERS, len(files)),
                                thread_name_prefix='nixdeploy-marks') as pool:
            for _stored in pool.map(lambda item: self.cache.store(*item), files):
                pass


def _count(value):
    """Whether ``value`` is a whole number of zero or more (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def marks_folder(environ, folder):
    """Where distrust marks are kept besides the cache ``folder``: the
    ``distrust`` folder beside the user's own key
    (``~/.config/nixdeploy/distrust``), whoever's key the run signs with;
    None when that lies inside ``folder`` (its writer could delete them)."""
    path = os.path.join(os.path.dirname(_signing.default_key_file(environ)), 'distrust')
    return None if _signing.inside(path, folder) else path
