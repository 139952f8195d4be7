# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The batch's files: their folder, the digest that names them, one file a
host and the reader of a batch's per-host entries.

The files live in a folder under the controller's per-run Ansible temp dir
(removed when ansible-playbook exits). A host's entry is a file of its own,
named by the digest of its name, so that a host reads its own only.
"""

import hashlib
import json
import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder


def batch_folder(base_dir):
    """The batch files' folder under ``base_dir`` (made when missing)."""
    return private_folder(os.path.join(base_dir, _run_files.BATCH_FOLDER))


def read_json(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return default


def entry_path(folder, name):
    # inventory names come from the flake: a digest, never a path of theirs
    return os.path.join(folder, hashlib.sha256(name.encode('utf-8')).hexdigest()[:32] + '.json')


# what BatchHosts.get answers for a host without an entry (None is an entry's value)
_MISSING = object()


class BatchHosts(object):
    """A batch's per-host entries, each read from its own file when asked
    for. Every host of a batch reads the batch's answer: whole, that is
    megabytes at 1,000 hosts, read 1,000 times per phase; one entry is a few
    hundred bytes. Reads as the dict it stands for (``len``, ``in``,
    ``get``, ``[]``, iteration over the names).

    A host is in it when its entry file is there: ``in``, ``get`` and
    ``[]`` read that one file, and ``len`` is the count the computing host
    kept (``count``), so a reader's cost does not grow with the batch. Only
    iteration reads the names: ``names`` (a list, or any iterable such as a
    ``PlayBatch``) or the file ``names_path``, the computing host's work."""

    def __init__(self, folder, names=None, count=None, names_path=None):
        self._folder = folder
        self._names = names
        self._count = count
        self._names_path = names_path
        self._read = {}

    def _all_names(self):
        if self._names is None:
            self._names = (read_json(self._names_path) or []) if self._names_path else []
        return self._names

    def __len__(self):
        if self._count is None:
            self._count = len(self._all_names())
        return self._count

    def __contains__(self, name):
        return self.get(name, _MISSING) is not _MISSING

    def __iter__(self):
        return iter(sorted(self._all_names()))

    def keys(self):
        return list(self)

    def get(self, name, default=None):
        if name not in self._read:
            found = read_json(entry_path(self._folder, name), _MISSING)
            if found is _MISSING:
                return default
            self._read[name] = found
        return self._read[name]

    def __getitem__(self, name):
        found = self.get(name, _MISSING)
        if found is _MISSING:
            raise KeyError(name)
        return found

    def items(self):
        return [(name, self.get(name)) for name in self]

    def values(self):
        return [self.get(name) for name in self]
