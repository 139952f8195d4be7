# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: pipeline
short_description: Each host advances through its deploy on its own; a summary ends each batch
version_added: 0.2.0
description:
  - The strategy of the C(nixdeploy.fleet.deploy) play. Ansible's C(free) strategy, so a host
    whose copy is done activates while others still copy, and a slow host never delays another
    host's activation or confirmation. Evaluation and build stay one Nix process per play batch;
    the first host's task does the work for the batch and the others read its answer.
  - Adds what C(free) lacks for deploys. C(max_fail_percentage) is honoured per play batch (the
    C(serial) batches, canary first); when more hosts of a batch failed than it allows, no further
    batch starts. Within a batch, hosts are independent.
  - Prints one summary line per host at the end of each batch (platform, generation before and
    after, outcome), read from the results of the collection's actions, and publishes the same
    records as the custom stat C(nixdeploy) (what M(ansible.builtin.set_stats) would give;
    AWX and ansible-runner keep it as the job's artifacts), and again as C(nixdeploy_job_<id>)
    (the AWX job id, else an id of the run), so the sliced jobs of one AWX job keep their
    records apart when AWX merges their artifacts.
  - While a task of the collection runs longer than 10 seconds on some hosts, prints every 10
    seconds which hosts are in which phase.
author:
  - nixdeploy.fleet contributors (@nixdeploy)
notes:
  - C(any_errors_fatal) and C(run_once) are not supported, as with C(free).
'''

import time
import uuid

from ansible.plugins.strategy.free import StrategyModule as FreeStrategyModule
from ansible.utils.display import Display

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._outcome import (
    HostOutcome, action_phase, summary_line)

display = Display()

# seconds between progress lines, and how long a task runs before it shows
PROGRESS_EVERY = 10.0
# names this ansible-playbook run's records when AWX gives no job id
RUN_ID = uuid.uuid4().hex[:12]


def _result_data(task_result):
    """The result dict of a task result (ansible-core 2.19 and 2.18)."""
    data = getattr(task_result, '_return_data', None)
    if data is None:
        data = getattr(task_result, '_result', None)
    return data if isinstance(data, dict) else {}


class StrategyModule(FreeStrategyModule):

    def __init__(self, tqm):
        super(StrategyModule, self).__init__(tqm)
        self._outcomes = {}
        self._running = {}   # host -> (phase, started)
        self._last_progress = time.time()

    # -------------------------------------------------------------- batch
    def run(self, iterator, play_context):
        self._outcomes, self._running = {}, {}
        self._check_mode = bool(getattr(play_context, 'check_mode', False))
        play = iterator._play
        max_fail = play.max_fail_percentage
        # free would only warn that it ignores it: it is checked per batch below
        play.max_fail_percentage = None
        try:
            result = super(StrategyModule, self).run(iterator, play_context)
        finally:
            play.max_fail_percentage = max_fail
        # the hosts of this batch (-l and serial applied), as free saw them
        batch = list(getattr(self, '_hosts_cache', None) or [])
        self._summarise(batch)
        if max_fail is not None and batch:
            failed = [h for h in batch
                      if h in self._tqm._failed_hosts or h in self._tqm._unreachable_hosts]
            if len(failed) / float(len(batch)) > max_fail / 100.0:
                display.display('nixdeploy: %d of %d hosts of this batch failed, more than '
                                'max_fail_percentage %s%%: no further batch starts'
                                % (len(failed), len(batch), max_fail))
                result |= self._tqm.RUN_FAILED_BREAK_PLAY
        return result

    def _summarise(self, batch):
        # -e nix_summary=false silences the lines; the stats are still kept
        shown = self._variable_manager.extra_vars.get('nix_summary', True)
        shown = str(shown).lower() not in ('false', 'no', '0', 'off')
        records = {}
        for name in batch:
            outcome = self._outcomes.get(name)
            if outcome is None:
                continue
            records[name] = outcome.record(self._check_mode)
        if not records:
            return
        self._tqm._stats.update_custom_stats('nixdeploy', records)
        # AWX merges the artifacts of a sliced job's jobs key by key: a key
        # per job keeps every slice's hosts for the next workflow node
        job = self._variable_manager.extra_vars.get('awx_job_id') or RUN_ID
        self._tqm._stats.update_custom_stats('nixdeploy_job_%s' % job, records)
        if not shown:
            return
        display.banner('NIXDEPLOY SUMMARY')
        for name in batch:
            if name in records:
                display.display(summary_line(records[name]),
                                color='red' if records[name]['failed'] else None)

    # -------------------------------------------------------------- results
    def _queue_task(self, host, task, task_vars, play_context):
        phase = action_phase(task.action)
        if phase:
            self._running[host.get_name()] = (phase, time.time())
        return super(StrategyModule, self)._queue_task(host, task, task_vars, play_context)

    def _process_pending_results(self, iterator, one_pass=False, max_passes=None):
        results = super(StrategyModule, self)._process_pending_results(
            iterator, one_pass=one_pass, max_passes=max_passes)
        for task_result in results:
            self._keep(task_result)
        self._progress()
        return results

    def _keep(self, task_result):
        host = task_result._host.get_name()
        phase = action_phase(task_result._task.action)
        if not phase:
            return
        self._running.pop(host, None)
        if task_result.is_unreachable():
            status = 'unreachable'
        elif task_result.is_skipped():
            status = 'skipped'
        elif task_result.is_failed():
            status = 'failed'
        else:
            status = 'ok'
        data = dict(_result_data(task_result))
        self._outcomes.setdefault(host, HostOutcome(host)).add(phase, data, status)

    def _progress(self):
        now = time.time()
        if now - self._last_progress < PROGRESS_EVERY:
            return
        long_running = {}
        for host, (phase, started) in self._running.items():
            if now - started >= PROGRESS_EVERY:
                long_running.setdefault(phase, []).append((host, now - started))
        if not long_running:
            return
        self._last_progress = now
        parts = []
        for phase in ('eval', 'build', 'copy', 'keys', 'activate'):
            if phase in long_running:
                hosts = sorted(long_running[phase])
                parts.append('%s: %s' % (phase, ', '.join(
                    '%s (%ds)' % (host, seconds) for host, seconds in hosts)))
        display.display('nixdeploy: still running: %s' % '; '.join(parts))
