# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: how long each task took across all hosts.

With the linear strategy a task starts when every host finished the one
before, so the time from one task's start to the next's is that task's share
of the play's wall time. Written as JSON to E(NIXDEPLOY_BENCH_TIMES).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = '''
name: task_times
type: aggregate
short_description: write each task's wall time as JSON (benchmarks only)
description: [Writes the task names and seconds to the file named by E(NIXDEPLOY_BENCH_TIMES).]
requirements: [enable via ANSIBLE_CALLBACKS_ENABLED]
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_times'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.times = []
        self.current = None
        self.started = time.monotonic()

    def _close(self):
        if self.current:
            name, started = self.current
            self.times.append([name, round(time.monotonic() - started, 3)])
            self.current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self.current = (task.get_name(), time.monotonic())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get('NIXDEPLOY_BENCH_TIMES')
        if path:
            with open(path, 'w') as handle:
                json.dump({'tasks': self.times,
                           'play': round(time.monotonic() - self.started, 3)}, handle)
