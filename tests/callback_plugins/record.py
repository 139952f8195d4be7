# -*- coding: utf-8 -*-
"""Test-only callback: records every task result as one JSON line.

Tests read what each task returned on each host from the file named by
NIXDEPLOY_TEST_RECORD instead of scraping the human output. Each result also
says when its task started on that host (``started``: when the strategy
handed it to a worker) and when its result came (``ended``), in time.time()
seconds: whether tasks on several hosts overlapped, whatever the machine's
speed.
"""

DOCUMENTATION = '''
name: record
type: aggregate
short_description: write task results as JSON lines (tests only)
description: [Writes each task result to the file named by E(NIXDEPLOY_TEST_RECORD).]
requirements: [enable in tests via ANSIBLE_CALLBACKS_ENABLED]
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'record'
    CALLBACK_NEEDS_ENABLED = True
    # reads results: said for ansible-core 2.22.0b1 (ignored from 2.22.0b2)
    ANSIBLE_SUPPORTS_MASKING = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._started = {}  # (host, task uuid): when the task started there

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), getattr(task, '_uuid', None))] = time.time()

    def _write(self, status, result):
        path = os.environ.get('NIXDEPLOY_TEST_RECORD')
        if not path:
            return
        ended = time.time()
        try:
            data = dict(result._result)
        except Exception:  # pylint: disable=broad-except
            data = {}
        entry = {'host': result._host.get_name(), 'task': result._task.get_name(),
                 'action': result._task.action, 'status': status}
        entry['result'] = json.loads(json.dumps(data, default=str))
        entry['started'] = self._started.pop(
            (entry['host'], getattr(result._task, '_uuid', None)), None)
        entry['ended'] = ended
        with open(path, 'a') as handle:
            handle.write(json.dumps(entry) + '\n')

    def v2_runner_on_ok(self, result):
        self._write('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write('failed', result)

    def v2_runner_on_unreachable(self, result):
        self._write('unreachable', result)

    def v2_runner_on_skipped(self, result):
        self._write('skipped', result)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('NIXDEPLOY_TEST_RECORD')
        if not path:
            return
        custom = json.loads(json.dumps(getattr(stats, 'custom', {}) or {}, default=str))
        with open(path, 'a') as handle:
            handle.write(json.dumps({'host': None, 'task': None, 'action': None,
                                     'status': 'stats', 'result': custom}) + '\n')
