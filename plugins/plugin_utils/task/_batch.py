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
equal for two hosts to share one computation.

A host waits for the lock as long as the computing host takes, unless the
phase gives the wait a bound (``lock_wait``): past it the host gets
``LockWaitTimeout`` and fails or falls back on its own.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import fact_or_var
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    play_of, task_uuid)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder


def batch_key(*parts):
    """A short stable file name for ``parts`` (any JSON-serialisable data)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]


def _folder(base_dir):
    """The batch files' folder under ``base_dir`` (made when missing)."""
    return private_folder(os.path.join(base_dir, 'nixdeploy-batch'))


class LockWaitTimeout(NixdeployError):
    """A host waited ``seconds`` for the lock of a batch's work (another
    host computing it) and gave up: the bound of ``lock_wait``."""

    def __init__(self, message, seconds):
        super(LockWaitTimeout, self).__init__(message)
        self.seconds = seconds


# the bound ``lock_wait`` sets for this thread's lock waits (None: no bound)
_WAIT = threading.local()
# seconds between two tries of a bounded lock wait, growing to the last:
# a host notices a released lock within half a second, and a thousand
# waiting hosts make a few thousand flock calls a second between them
_LOCK_POLLS = (0.01, 0.05, 0.1, 0.2, 0.5)


@contextlib.contextmanager
def lock_wait(seconds):
    """Within it, ``Batch.results`` (and ``task_batch``, recording the play
    batch) waits at most ``seconds`` for a lock of the batch files
    (``LockWaitTimeout`` after); outside, as long as its holder takes.
    The phase that calls it says why its value (the holder's own bound)."""
    before = getattr(_WAIT, 'seconds', None)
    _WAIT.seconds = seconds
    try:
        yield
    finally:
        _WAIT.seconds = before


def _lock(handle, seconds):
    """An exclusive flock on ``handle``, waited for at most ``seconds`` (None:
    as long as it takes); ``LockWaitTimeout`` past it."""
    if seconds is None:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + seconds
    tries = 0
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockWaitTimeout('another host held the lock of the batch\'s work (%s) for '
                                  'more than %ss' % (handle.name, seconds), seconds)
        time.sleep(min(left, _LOCK_POLLS[min(tries, len(_LOCK_POLLS) - 1)]))
        tries += 1


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
            self._names = (_read_json(self._names_path) or []) if self._names_path else []
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
            found = _read_json(_entry_path(self._folder, name), _MISSING)
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


def _read_json(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return default


def _entry_path(folder, name):
    # inventory names come from the flake: a digest, never a path of theirs
    return os.path.join(folder, hashlib.sha256(name.encode('utf-8')).hexdigest()[:32] + '.json')


class Batch:
    """Results of one computation shared by the hosts of one play batch.

    Stored as one file of what the batch shares, one file per host entry
    (``data['hosts']``) and one of the hosts' names, so that a host reads
    its own entry only (and the count of entries, in the shared file); the
    shared file is written last and is the sign that the batch is done."""

    def __init__(self, base_dir, kind, key):
        self.dir = _folder(base_dir)
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

    def results(self, compute):
        """The batch's results: read them, or ``compute()`` them (a dict
        host -> JSON data) while holding the lock, and store them.

        Returns (results, computed_here). If ``compute`` raises, nothing is
        stored: the next host tries again (and most likely reports the
        same error for itself). Within ``lock_wait``, ``LockWaitTimeout``
        when another host holds the lock past its bound.
        """
        found = self._read()
        if found is not None:
            return found, False
        with open(self.lock_path, 'a') as lock:
            _lock(lock, getattr(_WAIT, 'seconds', None))
            try:
                found = self._read()
                if found is not None:
                    return found, False
                data = compute()
                self._write(data)
                return data, True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# ------------------------------------------------------------ facts in flight
# Ansible hands a worker the variables of the moment it was forked: the first
# host to reach a batch task may not see the facts another host's previous
# task set (that host's result still on its way to the main process), and
# would leave that host out of the batch (it then computes apart, later). A
# batch task that computes facts for its play batch keeps them here; a later
# batch reads them for a host that has neither the fact nor a variable of that
# name, i.e. what it would otherwise compute again for that host itself.
def _facts_dir(base_dir, hosts):
    return os.path.join(_folder(base_dir), 'facts-%s.d' % batch_id(hosts))


def record_facts(base_dir, hosts, facts):
    """Keep ``facts`` ({host: {name: value}}) computed for the play batch
    ``hosts`` (merged with what is kept already; the newest wins). A host
    given None loses what was kept for it (its own computation failed).
    One file a host: recording one host's facts costs the same in a batch
    of ten hosts as in one of a thousand."""
    folder = _facts_dir(base_dir, hosts)
    try:
        os.mkdir(folder, 0o700)
    except OSError:
        if not os.path.isdir(folder):
            raise
    for host, values in facts.items():
        path = _entry_path(folder, host)
        if values is None:
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        kept = BatchHosts(folder).get(host) or {}
        kept.update(values)
        write_json(path, kept)


class FactsInFlight(BatchHosts):
    """The facts kept for a play batch: each host's read from its file when
    asked for; ``items`` lists the hosts that have some."""

    def items(self):
        return [(name, facts) for name, facts in
                ((name, self.get(name)) for name in self) if facts is not None]


def facts_in_flight(base_dir, hosts):
    """{host: {name: value}} kept by ``record_facts`` for the play batch
    ``hosts`` (a ``PlayBatch``, or its names; a ``FactsInFlight``)."""
    return FactsInFlight(_facts_dir(base_dir, hosts), names=hosts)


class _WithFacts(object):
    """A host's variables (read with ``get`` and ``[]``, as hostvars are)
    whose ``ansible_facts`` also hold the facts in flight it has neither as a
    fact nor as a variable."""

    def __init__(self, host_vars, facts):
        self._vars, self._facts = host_vars, facts

    def __getitem__(self, key):
        if key != 'ansible_facts':
            return self._vars[key]
        known_facts = self._vars.get('ansible_facts') or {}
        merged = dict(known_facts.items()) if hasattr(known_facts, 'items') else {}
        for name, value in self._facts.items():
            if merged.get(name) in (None, '') and self._vars.get(name) in (None, ''):
                merged[name] = value
        return merged

    def __contains__(self, key):
        return key == 'ansible_facts' or key in self._vars

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


def with_facts(host_vars, facts):
    """``host_vars``, with ``facts`` (a host's facts in flight) where it has
    neither the fact nor a variable of that name."""
    return _WithFacts(host_vars, facts) if facts else host_vars


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
            self._names = _read_json(self._names_path) or []
        return self._names

    def __len__(self):
        return self._size

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name):
        return name in self.names

    def __repr__(self):
        return 'PlayBatch(%s, %d hosts)' % (self.key, self._size)


def batch_id(hosts):
    """The key of the play batch ``hosts`` (a ``PlayBatch``: its own key, or
    the host names in any order: the digest of the sorted names)."""
    if isinstance(hosts, PlayBatch):
        return hosts.key
    return batch_key(sorted(hosts))


def work_key(kind, task, batch, *parts):
    """The name of ``kind``'s work for the play ``batch`` (a ``PlayBatch``)
    in ``task``: ``parts`` are everything else two hosts must have equal to
    share it. The batch counts by its key: no host hashes its names."""
    return batch_key(kind, task_uuid(task), batch_id(batch), parts)


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
    lock: the same few bytes at 10 hosts as at 1,000."""
    host = task_vars.get('inventory_hostname')
    folder = os.path.join(_folder(base_dir), 'members-%s.d' % batch_key(scope))
    own = _entry_path(folder, host)
    member = _read_json(own)
    if member is None:
        member = _record_batch(folder, own, task_vars)
    return PlayBatch(member['batch'], member['size'],
                     os.path.join(folder, 'batch-%s.json' % member['batch']))


def _record_batch(folder, own, task_vars):
    """This host's member file, written with its batch's under the play's
    lock unless another host did first (its batch then holds this one)."""
    try:
        os.mkdir(folder, 0o700)
    except OSError:
        if not os.path.isdir(folder):
            raise
    with open(folder + '.lock', 'a') as lock:
        # held while one file a host is written; within lock_wait, bounded as well
        _lock(lock, getattr(_WAIT, 'seconds', None))
        try:
            member = _read_json(own)
            if member is not None:
                return member
            current = sorted(play_batch(task_vars))
            key = batch_key(current)
            write_json(os.path.join(folder, 'batch-%s.json' % key), current)
            member = {'batch': key, 'size': len(current)}
            text = json.dumps(member)
            for name in current:
                # created whole in one write, not through a renamed temp
                # file (a thousand of them): a host that reads it half
                # written reads it again under this lock, once it is whole
                try:
                    fd = os.open(_entry_path(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o600)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
                    continue  # a host an earlier batch holds stays in that one
                with os.fdopen(fd, 'w') as handle:
                    handle.write(text)
            # play_batch holds this host: its file is the one just written
            return member
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def vars_of(task_vars, host):
    """Variables of ``host``: this host's task vars or another's hostvars."""
    if host == task_vars.get('inventory_hostname'):
        return task_vars
    return task_vars['hostvars'][host]
