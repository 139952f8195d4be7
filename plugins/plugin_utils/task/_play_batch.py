# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The play batch a host belongs to, as the first of its hosts recorded it.

``task_batch`` gives each host its batch (a ``PlayBatch``: its key, its
size, its names only when asked for), the same for every host of the batch
even after some of them failed; ``play_batch`` is Ansible's view of it at
this moment, ``vars_of`` a host's variables as a worker sees them.
"""

import errno
import json
import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    play_of, task_uuid)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    entry_path, batch_folder, read_json)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import (
    RECORD_LOCK_WAIT, held, record_work)


def play_batch(task_vars):
    """The hosts of the current play batch (honours -l and serial)."""
    host = task_vars.get('inventory_hostname')
    hosts = [u'%s' % h for h in (task_vars.get('ansible_play_batch') or [])]
    return hosts if host in hosts else [host]


def play_uuid(task):
    """The uuid of the play ``task`` belongs to (its own uuid if none is
    found): every phase of a play keys its batches by the same members."""
    play = play_of(task)
    return task_uuid(play if play is not None else task)


class PlayBatch(object):
    """A play batch as its hosts' workers know it: ``key``, the digest of its
    sorted host names, made once by the host that recorded the batch;
    ``len``, its size; its names (iteration, ``in``), read from the batch's
    file only when asked for. A host that reads its batch's work needs the
    key and the size; only the host (or process) that computes for the
    batch walks its names, so a reader's cost does not grow with the
    batch."""

    def __init__(self, key, size, names_path):
        self.key = key
        self._size = size
        self._names_path = names_path
        self._names = None

    @property
    def names(self):
        """The batch's host names, sorted (read once)."""
        if self._names is None:
            self._names = read_json(self._names_path) or []
        return self._names

    def __len__(self):
        return self._size

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name):
        return name in self.names

    def __repr__(self):
        return 'PlayBatch(%s, %d hosts)' % (self.key, self._size)

    def data(self):
        """The batch as JSON data (its key, size and names' file, not its
        names), for a batch server's context: ``from_data`` reads it back."""
        return {'key': self.key, 'size': self._size, 'names': self._names_path}

    @classmethod
    def from_data(cls, data):
        """The batch ``data()`` gave."""
        return cls(data['key'], data['size'], data['names'])


def batch_id(hosts):
    """The key of the play batch ``hosts`` (a ``PlayBatch``: its own key, or
    the host names in any order: the digest of the sorted names)."""
    if isinstance(hosts, PlayBatch):
        return hosts.key
    return short_digest(sorted(hosts))


def task_batch(base_dir, scope, task_vars):
    """The play batch of this host (a ``PlayBatch``) as the first of its
    hosts to run a batch task of the play (``scope``: the play's uuid) saw
    it, before any of them failed.

    ``ansible_play_batch`` leaves out the batch's hosts that have failed so
    far. On the ``host_pinned`` strategy hosts reach a task at different
    times, a host after another one of its batch failed, and would key the
    batch's work by a smaller set: evaluate it a second time, and take it for
    a new serial batch. Serial batches never share a host, so the batch that
    holds this host, once recorded, is the batch.

    The host that records a batch writes one small file for each of its
    hosts that no earlier batch holds (``members-<scope>.d/<digest>.json``:
    the batch's key and size) and the batch's names
    (``batch-<key>.json``); every host then reads its own file, without the
    lock: the same few bytes at 10 hosts as at 1,000. The lock is waited
    for at most ``RECORD_LOCK_WAIT``."""
    host = task_vars.get('inventory_hostname')
    folder = os.path.join(batch_folder(base_dir),
                          _run_files.MEMBERS_FOLDER % short_digest(scope))
    own = entry_path(folder, host)
    member = read_json(own)
    if member is None:
        member = _record_batch(folder, own, task_vars)
    return PlayBatch(member['batch'], member['size'],
                     os.path.join(folder, _run_files.BATCH_RECORD % member['batch']))


def _record_batch(folder, own, task_vars):
    """This host's member file, written with its batch's under the play's
    lock unless another host did first (its batch then holds this one)."""
    try:
        os.mkdir(folder, 0o700)
    except OSError:
        if not os.path.isdir(folder):
            raise
    # held while one small file a host is written
    with held(folder + '.lock', RECORD_LOCK_WAIT, record_work(task_vars.get('inventory_hostname'))):
        member = read_json(own)
        if member is not None:
            return member
        current = sorted(play_batch(task_vars))
        key = short_digest(current)
        write_json(os.path.join(folder, _run_files.BATCH_RECORD % key), current)
        member = {'batch': key, 'size': len(current)}
        text = json.dumps(member)
        for name in current:
            # created whole in one write, not through a renamed temp
            # file (a thousand of them): a host that reads it half
            # written reads it again under this lock, once it is whole
            try:
                fd = os.open(entry_path(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                continue  # a host an earlier batch holds stays in that one
            with os.fdopen(fd, 'w') as handle:
                handle.write(text)
        # play_batch holds this host: its file is the one just written
        return member


def vars_of(task_vars, host):
    """Variables of ``host``: this host's task vars or another's hostvars."""
    if host == task_vars.get('inventory_hostname'):
        return task_vars
    return task_vars['hostvars'][host]
