# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Do a piece of work once per play batch, answer per host.

Ansible runs an action plugin once per host, in parallel worker processes.
Evaluating or building a whole fleet should happen in as few Nix processes as
possible, so the first worker of a batch takes a file lock, computes the
results of every host of the batch and writes them as JSON; the workers of
the other hosts wait on the same lock and then only read their own entry.

The files live in a folder under the controller's per-run Ansible temp dir
(removed when ansible-playbook exits), keyed by everything that must be
equal for two hosts to share one computation (``_work_keys.work_key``).

A host waits for the lock at most ``_waits.BATCH_LOCK_WAIT``, or the bound
its phase gives (``lock_wait``): past it the host gets ``LockWaitTimeout``
and fails or falls back on its own. The first host of a batch to ask for a
task's work names the batch's key (``first_key``): a host that comes with
other key parts computes for itself only.

The names the batch's other files define are importable from here too, as
the phases have always imported them.
"""

import errno
import fcntl
import os

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import fact_or_var
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    BatchHosts, _entry_path, batch_folder, _read_json)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._facts_in_flight import (
    _facts_dir, facts_in_flight, record_facts, with_facts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import (
    PlayBatch, batch_id, play_batch, play_uuid, task_batch, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import (
    LockWaitTimeout, batch_lock_wait, batch_work, hold, lock_wait)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import work_key

# what callers may import from here: Batch, first_key, unlink_host_args, and
# the names of the batch's files beside it
__all__ = ['Batch', 'BatchHosts', 'LockWaitTimeout', 'PlayBatch', '_entry_path', '_facts_dir',
           'batch_folder', 'batch_id', 'short_digest', 'facts_in_flight', 'first_key', 'lock_wait',
           'play_batch', 'play_uuid', 'record_facts', 'task_batch', 'unlink_host_args',
           'vars_of', 'with_facts', 'work_key']


class Batch:
    """Results of one computation shared by the hosts of one play batch.

    Stored as one file of what the batch shares, one file per host entry
    (``data['hosts']``) and one of the hosts' names, so that a host reads
    its own entry only (and the count of entries, in the shared file); the
    shared file is written last and is the sign that the batch is done."""

    def __init__(self, base_dir, kind, key):
        self.kind = kind
        self.dir = batch_folder(base_dir)
        self.path = os.path.join(self.dir, '%s-%s.json' % (kind, key))
        self.lock_path = self.path + '.lock'
        self.entries_dir = self.path[:-len('.json')] + '.d'
        self.names_path = self.path[:-len('.json')] + '.names.json'

    def _read(self):
        found = _read_json(self.path)
        if found is None:
            return None
        count = found.pop('_count', None)
        if count is not None:
            found['hosts'] = BatchHosts(self.entries_dir, count=count,
                                        names_path=self.names_path)
        return found

    def _write(self, data):
        hosts = data.get('hosts')
        if not isinstance(hosts, dict):
            write_json(self.path, data)
            return
        if not os.path.isdir(self.entries_dir):
            os.mkdir(self.entries_dir, 0o700)
        for name, entry in hosts.items():
            write_json(_entry_path(self.entries_dir, name), entry)
        write_json(self.names_path, sorted(hosts))
        shared = dict((k, v) for k, v in data.items() if k != 'hosts')
        shared['_count'] = len(hosts)
        write_json(self.path, shared)

    def results(self, compute, host=None):
        """The batch's results: read them, or ``compute()`` them (a dict
        host -> JSON data) while holding the lock, and store them.

        Returns (results, computed_here). If ``compute`` raises, nothing is
        stored: the next host tries again (and most likely reports the
        same error for itself). ``LockWaitTimeout`` (its message naming
        ``host``, the host that waits) when another host holds the lock past
        the bound (``lock_wait``'s, or ``BATCH_LOCK_WAIT``).
        """
        found = self._read()
        if found is not None:
            return found, False
        with open(self.lock_path, 'a') as lock:
            hold(lock, batch_lock_wait(), batch_work(host, self.kind))
            try:
                found = self._read()
                if found is not None:
                    return found, False
                data = compute()
                self._write(data)
                return data, True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def first_key(base_dir, kind, slot, key):
    """The key of the first host to ask for ``kind``'s work in ``slot`` (the
    task, its play batch and loop item: ``_work_keys.slot_name``); ``key``
    when this host is the first. A host whose key differs computes for
    itself only: its key parts (its arguments) are not the batch's."""
    path = os.path.join(batch_folder(base_dir), '%s-%s.first' % (kind, slot))
    found = _read_json(path)
    if found is not None:
        return found
    # written whole, then linked to its name: a reader never sees it half
    # written, and of two first hosts the one whose link comes first wins
    temp = '%s.%d' % (path, os.getpid())
    write_json(temp, key)
    try:
        os.link(temp, path)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    finally:
        os.unlink(temp)
    return _read_json(path)


def unlink_host_args(args, own_vars, per_host):
    """Drop explicit arguments that merely repeat this host's own host vars.

    A task like ``attr: "{{ nix_attr }}"`` reaches each worker already
    templated for its own host; the worker computing the batch cannot
    template it for the others. When the value equals this host's host var
    (``per_host``: argument -> host var name) it is taken to mean "each
    host's own", so the argument is dropped and the host var used for every
    host. Any other explicit value is the same for the whole batch.
    Callers still check that the batch answered their own request.
    """
    out = dict(args)
    for arg, var in per_host.items():
        value = out.get(arg)
        if value not in (None, '') and value == fact_or_var(own_vars, var):
            out[arg] = None
    return out
