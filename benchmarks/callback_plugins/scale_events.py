# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: how many job events a run makes, per kind.

AWX stores one job event per callback call of ansible-runner's display
callback (ansible-runner's ``awx_display``, which turns every v2 method
below into an event), plus one ``verbose`` event per line printed outside a
callback (warnings, deprecations), which this count leaves out. Per host:
the events whose call carries a host (runner_on_*, runner_item_on_*,
runner_retry). Written as JSON to E(NIXDEPLOY_BENCH_EVENTS).
"""

DOCUMENTATION = '''
name: scale_events
type: aggregate
short_description: count the job events a run would make under ansible-runner (benchmarks only)
description: [Writes the counts to the file named by E(NIXDEPLOY_BENCH_EVENTS).]
requirements: [enable via ANSIBLE_CALLBACKS_ENABLED]
'''

import json
import os

from ansible.plugins.callback import CallbackBase

# the playbook-level events ansible-runner's display callback emits
PLAYBOOK_EVENTS = ('playbook_on_start', 'playbook_on_play_start', 'playbook_on_task_start',
                   'playbook_on_handler_task_start', 'playbook_on_include',
                   'playbook_on_no_hosts_matched', 'playbook_on_no_hosts_remaining',
                   'playbook_on_notify', 'playbook_on_stats')
HOST_EVENTS = ('runner_on_start', 'runner_on_ok', 'runner_on_failed', 'runner_on_skipped',
               'runner_on_unreachable', 'runner_item_on_ok', 'runner_item_on_failed',
               'runner_item_on_skipped', 'runner_retry', 'runner_on_async_poll',
               'runner_on_async_ok', 'runner_on_async_failed')


def _counter(kind, write=False):
    def method(self, *args, **kwargs):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if write:
            self._write()
    method.__name__ = 'v2_' + kind
    return method


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'scale_events'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.counts = {}

    def _write(self):
        path = os.environ.get('NIXDEPLOY_BENCH_EVENTS')
        if not path:
            return
        host = sum(v for k, v in self.counts.items() if k in HOST_EVENTS)
        with open(path, 'w') as handle:
            json.dump({'events': sum(self.counts.values()), 'host_events': host,
                       'by_kind': self.counts}, handle, indent=1, sort_keys=True)


for _kind in PLAYBOOK_EVENTS + HOST_EVENTS:
    setattr(CallbackModule, 'v2_' + _kind, _counter(_kind, write=_kind == 'playbook_on_stats'))
