# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names a phase uses of its play batch, importable from one place:
its hosts (``task_batch``, ``play_batch``, ``vars_of``), the facts in flight,
the batch's files, and ``unlink_host_args``. A phase's work for its batch
is a ``_batch_work.BatchWork``.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import fact_or_var
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    BatchHosts, _entry_path, batch_folder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._facts_in_flight import (
    _facts_dir, facts_in_flight, record_facts, with_facts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import (
    PlayBatch, batch_id, play_batch, play_uuid, task_batch, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import LockWaitTimeout
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import work_key

# what callers may import from here: unlink_host_args, and the names of the
# batch's files and hosts beside it
__all__ = ['BatchHosts', 'LockWaitTimeout', 'PlayBatch', '_entry_path', '_facts_dir',
           'batch_folder', 'batch_id', 'short_digest', 'facts_in_flight', 'play_batch',
           'play_uuid', 'record_facts', 'task_batch', 'unlink_host_args', 'vars_of',
           'with_facts', 'work_key']


def unlink_host_args(args, own_vars, per_host):
    """Drop explicit arguments that merely repeat this host's own host vars.

    A task like ``attr: "{{ nix_attr }}"`` reaches each worker already
    templated for its own host; the worker computing the batch cannot
    foresee it for the others. When the value equals this host's host var
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
