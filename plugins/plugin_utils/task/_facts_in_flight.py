# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts in flight: facts a phase set for a host that Ansible's main
process has not yet handed to the other workers.

Ansible hands a worker the variables of the moment it was forked: the first
host to reach a batch task may not see the facts another host's previous
task set (that host's result still on its way to the main process), and
would leave that host out of the batch (it then computes apart, later). A
batch task that computes facts for its play batch keeps them here; a later
batch reads them for a host that has neither the fact nor a variable of that
name, i.e. what it would otherwise compute again for that host itself.
"""

import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    BatchHosts, entry_path, batch_folder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import batch_id


def facts_dir(base_dir, hosts):
    return os.path.join(batch_folder(base_dir), _run_files.FACTS_FOLDER % batch_id(hosts))


def record_facts(base_dir, hosts, facts):
    """Keep ``facts`` ({host: {name: value}}) computed for the play batch
    ``hosts`` (merged with what is kept already; the newest wins). A host
    given None loses what was kept for it (its own computation failed).
    One file a host: recording one host's facts costs the same in a batch
    of ten hosts as in one of a thousand."""
    folder = facts_dir(base_dir, hosts)
    try:
        os.mkdir(folder, 0o700)
    except OSError:
        if not os.path.isdir(folder):
            raise
    for host, values in facts.items():
        path = entry_path(folder, host)
        if values is None:
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        kept = BatchHosts(folder).get(host) or {}
        kept.update(values)
        write_json(path, kept)


class FactsInFlight(object):
    """The facts kept for a play batch: each host's read from its file when
    asked for (through ``entries``, the batch's ``BatchHosts``); ``items``
    lists the hosts that have some."""

    def __init__(self, entries):
        self._entries = entries

    def get(self, name, default=None):
        return self._entries.get(name, default)

    def __getitem__(self, name):
        return self._entries[name]

    def __contains__(self, name):
        return name in self._entries

    def items(self):
        return [(name, facts) for name, facts in
                ((name, self._entries.get(name)) for name in self._entries)
                if facts is not None]


def facts_in_flight(base_dir, hosts):
    """{host: {name: value}} kept by ``record_facts`` for the play batch
    ``hosts`` (a ``PlayBatch``, or its names; a ``FactsInFlight``)."""
    return FactsInFlight(BatchHosts(facts_dir(base_dir, hosts), names=hosts))


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
