# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: where a deploy's wall time goes, by phase.

Hosts move through the phases independently (the free strategy), so a
phase's share of the wall time is the time during which at least one host
was in it: the union of the hosts' intervals. The activate task's own
``phases`` (activate, confirm) split it further. Also records, per host,
when its activate task ended and when its activation was done. Written as
JSON to E(NIXDEPLOY_BENCH_TIMES).
"""

DOCUMENTATION = '''
name: task_times
type: aggregate
short_description: write the wall time of each deploy phase as JSON (benchmarks only)
description: [Writes the phases' seconds to the file named by E(NIXDEPLOY_BENCH_TIMES).]
requirements: [enable via ANSIBLE_CALLBACKS_ENABLED]
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase

PHASES = {'nix_eval': 'eval', 'nix_build': 'build', 'nix_copy_closure': 'copy',
          'nix_activate': 'activate', 'nix_keys': 'keys'}


def union(intervals):
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_times'
    CALLBACK_NEEDS_ENABLED = True
    # reads results: said for ansible-core 2.22.0b1 (ignored from 2.22.0b2)
    ANSIBLE_SUPPORTS_MASKING = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.started = time.time()
        self.play_started = None
        self.running = {}
        self.intervals = {}
        self.done = {}        # host -> when its activate task ended
        self.activated = {}   # host -> when its activation (before confirming) was done

    def v2_playbook_on_play_start(self, play):
        if self.play_started is None:
            self.play_started = time.time()

    def v2_runner_on_start(self, host, task):
        self.running[(host.get_name(), task._uuid)] = time.time()

    def _end(self, result):
        host = result._host.get_name()
        started = self.running.pop((host, result._task._uuid), None)
        if started is None:
            return
        now = time.time()
        phase = PHASES.get(str(result._task.action).rsplit('.', 1)[-1], 'other')
        steps = result._result.get('phases') if phase == 'activate' else None
        if steps:
            for step in steps:
                self.intervals.setdefault(step['name'], []).append((step['start'], step['end']))
                if step['name'] == 'activate':
                    self.activated[host] = step['end']
        else:
            self.intervals.setdefault(phase, []).append((started, now))
        if phase == 'activate':
            self.done[host] = now

    def v2_runner_on_ok(self, result):
        self._end(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._end(result)

    def v2_runner_on_unreachable(self, result):
        self._end(result)

    def v2_runner_on_skipped(self, result):
        self.running.pop((result._host.get_name(), result._task._uuid), None)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('NIXDEPLOY_BENCH_TIMES')
        if not path:
            return
        now = time.time()
        with open(path, 'w') as handle:
            json.dump({'started': self.started, 'play_started': self.play_started or now,
                       'ended': now,
                       'phases': dict((k, round(union(v), 3)) for k, v in self.intervals.items()),
                       'busy': round(union([i for v in self.intervals.values() for i in v]), 3),
                       # the hosts' seconds in each phase, summed: with F forks
                       # busy all along, a phase's wall time is this over F
                       'host_seconds': dict((k, round(sum(b - a for a, b in v), 3))
                                            for k, v in self.intervals.items()),
                       'done': self.done, 'activated': self.activated}, handle)
