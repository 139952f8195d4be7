# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The name of a batch's work, and a retry's own name.

Two hosts share a piece of work when its name is the same: ``work_key`` of
the kind, the task's uuid, the play batch's key and everything else the two
must have equal (the key parts). Ansible runs a host's task in a worker
process of its own, and a retry of the task (``until``/``retries``) runs
the action again in that same worker; the action base tells this file of
each run (``new_run``). A name that a later run of the same host's task
asks for again is a retry's: its answer must be computed again, not read
from what the first run stored, so ``work_name`` gives it a name of its
own, which no other host asks for, and says that it is a retry. Each item
of a loop (run in the same worker too) is a work of its own: the item is
part of the name.
"""

import errno
import os

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import task_uuid
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    read_json, batch_folder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import batch_id

# this worker's runs of its task: the host, the loop item and how many runs
# so far (0: no action base ran, as in a benchmark that plays many hosts in
# one process)
_RUNS = {'host': None, 'item': None, 'number': 0}
# (the run's temp folder, a work's name, the host) -> the runs that asked
# for it (the folder: a run's own, as the batch's files are)
_ASKED = {}


def new_run(host, task_vars):
    """The action base runs again in this worker, for ``host`` (its
    ``task_vars`` say the loop item, if any): a work this run asks for that
    an earlier run asked for is asked again."""
    loop_var = task_vars.get('ansible_loop_var')
    _RUNS.update(host=host, item=task_vars.get(loop_var) if loop_var else None,
                 number=_RUNS['number'] + 1)


def _item():
    """The loop item of this run, as part of a name (none outside a loop)."""
    return () if _RUNS['item'] is None else ('loop item', _RUNS['item'])


def work_name(kind, task, batch, *parts):
    """(the name of ``kind``'s work for the play ``batch`` in ``task``,
    whether this host asks for it again). ``parts`` are everything else two
    hosts must have equal to share it; the batch counts by its key: no host
    hashes its names. Asked again (a retry), the name is this host's and
    this attempt's alone."""
    name = short_digest(kind, task_uuid(task), batch_id(batch), parts, *_item())
    asked = _ASKED.setdefault((C.DEFAULT_LOCAL_TMP, name, _RUNS['host']), [])
    if _RUNS['number'] not in asked:
        asked.append(_RUNS['number'])
    if len(asked) == 1:
        return name, False
    return short_digest(name, 'again', _RUNS['host'], len(asked)), True


def work_key(kind, task, batch, *parts):
    """The name of ``kind``'s work for the play ``batch`` (a ``PlayBatch``)
    in ``task`` (``work_name``: a retry's is its own)."""
    return work_name(kind, task, batch, *parts)[0]


def slot_name(kind, task, batch):
    """Where ``kind``'s work of ``task`` for the play ``batch`` is asked for,
    whatever the key parts: the task, the batch and this run's loop item.
    The first host there claims it (``claim_slot``)."""
    return short_digest(kind, 'slot', task_uuid(task), batch_id(batch), *_item())


def claim_slot(base_dir, kind, slot, key):
    """(the key of the first host to ask for ``kind``'s work in ``slot``,
    whether this call is that host's). The first host's key parts are the
    batch's: it foresees the batch's requests (``_batch_server``); a host
    with other key parts asks a server that foresees nothing. One file a slot, made whole and linked to its name:
    of two first hosts, the one whose link comes first wins."""
    path = os.path.join(batch_folder(base_dir), _run_files.SLOT_CLAIM % (kind, slot))
    found = read_json(path)
    if found is not None:
        return found, False
    temp = '%s.%d' % (path, os.getpid())
    write_json(temp, key)
    try:
        os.link(temp, path)
        claimed = True
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        claimed = False
    finally:
        os.unlink(temp)
    return read_json(path), claimed
