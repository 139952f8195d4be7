# -*- coding: utf-8 -*-
"""Test-only callback: pulls lab hosts' cables when a task starts.

When the task named by NIXDEPLOY_TEST_CUT_BEFORE starts (for every host, as
the linear strategy hands it out), the links named by NIXDEPLOY_TEST_CUT_LINKS
(the lab's bridge-side veth names, comma-separated) go down: a host that goes
off between one task and the next, at the same point of every run.
"""

DOCUMENTATION = '''
name: cut_link
type: aggregate
short_description: cut lab links when a named task starts (tests only)
description: [Sets the links named by E(NIXDEPLOY_TEST_CUT_LINKS) down when the task E(NIXDEPLOY_TEST_CUT_BEFORE) starts.]
requirements: [enable in tests via ANSIBLE_CALLBACKS_ENABLED]
'''

import os
import subprocess

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'cut_link'
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task, is_conditional):
        if task.get_name() != os.environ.get('NIXDEPLOY_TEST_CUT_BEFORE'):
            return
        for link in filter(None, os.environ.get('NIXDEPLOY_TEST_CUT_LINKS', '').split(',')):
            subprocess.run(['ip', 'link', 'set', link, 'down'], check=True)
