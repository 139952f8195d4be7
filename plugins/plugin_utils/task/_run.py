# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's shared state, as a phase sees it: the one module of task/ a
phase reads besides its action base (``_action``) and its batch work
(``_batch_work``). Every name here is the run's, shared by its processes
through files in Ansible's per-run temp folder (docs/architecture.md, "The
run's shared files"):

- the play batch: ``task_batch``, ``play_batch``, ``play_uuid``, ``vars_of``,
  ``batch_folder`` (the run's private folder), ``unlink_host_args``;
- the facts in flight: ``record_facts``, ``facts_in_flight``, ``with_facts``;
- the progress steps the console shows: ``set_step``, ``clear_step``,
  ``in_step`` and the steps' names;
- the job's end: ``owe`` (answers a detached process still owes),
  ``finishing`` (work kept for the next job), ``when_job_ends``, ``forget``,
  ``job_ended``, ``temporary_folder``, ``remove_folder``, ``AFTER_JOB_WAIT``;
- the Nix processes a detached process started (``CHILD_GROUPS``, stopped
  with it), the bounds (``ANSWER_WAIT``, ``held``: a lock waited for within
  a bound) and the error of a batch server that could not answer
  (``BatchError``).

A phase's work for its batch is a ``_batch_work.BatchWork``.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._role_vars import fact_or_var
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._digest import short_digest
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    BatchHosts, entry_path, batch_folder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._facts_in_flight import (
    facts_dir, facts_in_flight, record_facts, with_facts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import (
    PlayBatch, batch_id, play_batch, play_uuid, task_batch, vars_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (
    CHILD_GROUPS, BatchError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._job_end import (
    finishing, forget, job_ended, owe, remove_folder, temporary_folder, when_job_ends)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import with_details
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._progress import (
    ACTIVATING, AWAITING_CONFIRMATION, CONFIRMED, HEALTH_CHECKS, STEP_FILE_MAX, STEP_SLACK,
    WAITING_ACTIVATION, WAITING_CONFIRMATION, WAITING_ROLLBACK, WAITING_SWITCH, clear_step,
    in_step, set_step)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import (
    AFTER_JOB_WAIT, ANSWER_WAIT, LockWaitTimeout, held)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import work_key

# what callers may import from here
__all__ = ['ACTIVATING', 'AFTER_JOB_WAIT', 'ANSWER_WAIT', 'AWAITING_CONFIRMATION', 'BatchError',
           'BatchHosts', 'CHILD_GROUPS', 'CONFIRMED', 'HEALTH_CHECKS', 'LockWaitTimeout',
           'PlayBatch', 'STEP_FILE_MAX', 'STEP_SLACK', 'WAITING_ACTIVATION',
           'WAITING_CONFIRMATION', 'WAITING_ROLLBACK', 'WAITING_SWITCH', 'entry_path',
           'facts_dir', 'batch_folder', 'batch_id', 'clear_step', 'facts_in_flight',
           'finishing', 'forget', 'held', 'in_step', 'job_ended', 'owe', 'play_batch',
           'play_uuid', 'record_facts', 'remove_folder', 'set_step', 'short_digest',
           'task_batch', 'temporary_folder', 'unlink_host_args', 'vars_of', 'when_job_ends',
           'with_details', 'with_facts', 'work_key']


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
