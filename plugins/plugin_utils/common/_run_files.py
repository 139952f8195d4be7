# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every file one run of ansible-playbook shares between its processes
(the workers of its hosts, the batch servers, the callbacks), in one table:
where it is, what it holds, who writes it and who reads it.

They all live in Ansible's per-run temp folder (``C.DEFAULT_LOCAL_TMP``,
``~/.ansible/tmp/ansible-local-<pid>...``), which ansible-core makes for
the run and removes when it ends: nothing of one run is read by the next.
This module is the one place their names are made; docs/architecture.md,
"The run's shared files", is made from ``RUN_FILES`` (a unit test compares
the two), and a unit test finds no other file of the collection that spells
one of these names.

A host name comes from the flake: where a file is a host's, its name is a
digest of the host's name, never the name itself.
"""

import collections

# In the run's temp folder.
BATCH_FOLDER = 'nixdeploy-batch'
STEPS_FOLDER = 'nixdeploy-steps'
WINDOWS_FOLDER = 'nixdeploy-windows'
REACHED_FOLDER = 'nixdeploy-reached'
UNREACHED_FOLDER = 'nixdeploy-unreached'
SSH_CONFIG_FOLDER = 'nixdeploy-ssh-config'
FINISHING = 'nixdeploy-finishing'


# In the batch folder (``BATCH_FOLDER``, private to the run's user), each
# name a pattern whose ``%`` parts are filled with data:
# the play's record of its batches (a digest of the play), and one batch's
# record in it (the batch's number)
MEMBERS_FOLDER = 'members-%s.d'
BATCH_RECORD = 'batch-%s.json'
# the facts in flight of one play batch (its id)
FACTS_FOLDER = 'facts-%s.d'
# the stem of one batch server's files (its kind and key: ``<stem>.lock``, ...)
SERVER_STEM = '%s-%s'
# the stem of the run's one serving process's files (``<stem>.running``,
# ``<stem>.sock``, ...)
RUN_SERVER = 'run-server'
# the claim of the first host of a slot (the kind, the slot)
SLOT_CLAIM = '%s-%s.first'
# the serial gate's record of the play's batches (a digest of its task)
SERIAL_RECORD = 'serial-%s.json'
# a closure the build listed, kept for the copy (a digest of the path)
CLOSURE_LISTING = 'closure-%s.json'
# one of the job's evaluator slots (its number; a lock file)
EVALUATOR_SLOT = 'eval-slot-%d'
# a value the run computes once (a flake's pin, a Nix setting), and the
# mark of a warning the run says once
PINNED = '%s.json'
WARNED = 'warned-%s'


class RunFile(collections.namedtuple('RunFile', 'where holds writer readers')):
    """One row of the table: ``where`` (its path in the run's temp folder,
    ``<...>`` for a part made from data), what it ``holds``, the module that
    writes it (``writer``) and the ones that read it (``readers``)."""


RUN_FILES = (
    RunFile('nixdeploy-batch/members-<play>.d/, its batch-<n>.json', 'the play\'s batches: '
            'one file a host (its batch and size), one a batch (its hosts)', 'task/_play_batch.py',
            'every action (`task_batch`)'),
    RunFile('nixdeploy-batch/facts-<batch>.d/', 'the facts a phase set for a host that '
            'ansible-playbook has not yet handed to the other workers',
            'task/_facts_in_flight.py', 'copy, publish, channel'),
    RunFile('nixdeploy-batch/<kind>-<key>.requests/', 'a batch server\'s requests waiting: '
            'one file a host, one of the requests the first host foresaw',
            'task/_batch_requests.py', 'task/_batch_server.py'),
    RunFile('nixdeploy-batch/<kind>-<key>.d/', 'a batch server\'s answers, one file a host and '
            'request, and the doorbell (FIFO) a waiting host sleeps on',
            'task/_batch_answers.py', 'the host\'s action (`_batch_work.answer`)'),
    RunFile('nixdeploy-batch/<kind>-<key>.lock, .alive, .settled',
            'a batch server\'s lock, the mark that the run\'s process serves it (that '
            'process\'s token), the hosts it no longer waits for',
            'task/_batch_server.py, task/_run_server.py, task/_stem_serving.py',
            'task/_batch_server.py, task/_stem_serving.py'),
    RunFile('nixdeploy-batch/run-server.lock, .alive, .running, .log',
            'the run\'s one serving process: its lock, its token, the lock it holds while it '
            'runs, its log', 'task/_run_server.py, task/_detached.py',
            'task/_run_server.py, task/_batch_server.py'),
    RunFile('nixdeploy-batch/run-server.sock', 'the run\'s serving process\'s unix socket '
            '(mode 0600): a host registers a batch work there, its serve function\'s name and '
            'its context, which the process keeps in memory only; a host of a work it serves '
            'asks for its answer there and gets it on the same connection',
            'task/_run_server.py (the process binds it: task/_run_socket.py)',
            'task/_run_server.py (the host that registers a work), task/_run_asks.py (a host '
            'that asks)'),
    RunFile('nixdeploy-batch/<kind>-<slot>.first', 'which host was first of its slot (it '
            'foresees the batch\'s requests)', 'task/_work_keys.py', 'task/_work_keys.py'),
    RunFile('nixdeploy-batch/serial-<task>.json', 'the serial gate\'s record of the play\'s '
            'batches and their failed hosts', 'task/_serial.py', 'task/_serial.py'),
    RunFile('nixdeploy-batch/closure-<digest>.json', 'a system\'s closure the build listed',
            'builds/_closure.py', 'copy/_copy_stage.py'),
    RunFile('nixdeploy-batch/eval-slot-<n>', 'the job\'s evaluator slots (flocks: at most '
            '`eval_workers` Nix evaluators at once)', 'evaluation/pool/_slots.py',
            'evaluation/pool/_slots.py'),
    RunFile('nixdeploy-batch/<name>.json, warned-<key>', 'what the run computes once (a '
            'flake\'s pin, an impure Nix setting) and the warnings it says once',
            'evaluation/flake/_source.py', 'evaluation, the inventory plugin'),
    RunFile('nixdeploy-steps/<digest>.json', 'the step each host is at (health checks, '
            'awaiting confirmation, ...) and until when', 'task/_progress.py',
            'the summary and console callbacks'),
    RunFile('nixdeploy-windows/<digest>.json', 'the confirmation window a host\'s activation '
            'opened', 'activation/_activation_steps.py', 'activation/_activation_steps.py'),
    RunFile('nixdeploy-reached/<digest>', 'the address (and host key alias) each host was '
            'reached at', 'host/_reached.py', 'host/_host.py, copy, activation'),
    RunFile('nixdeploy-unreached/<digest>', 'the evaluation\'s result of a host the login '
            'probe reached nowhere', 'task/_stats.py', 'task/_stats.py (the custom stats)'),
    RunFile('nixdeploy-ssh-config/<digest>', 'which ssh settings the run judged already',
            'host/_host_key_rules.py', 'host/_host_key_rules.py'),
    RunFile('nixdeploy-finishing', 'a shared lock each process holds while it keeps work for '
            'the next job (an evaluator\'s record)', 'task/_job_end.py',
            'the summary callback at the job\'s end'),
)


def markdown():
    """The table of docs/architecture.md, "The run's shared files"."""
    lines = ['| file (in the run\'s temp folder) | holds | written by | read by |',
             '|---|---|---|---|']
    lines.extend('| `%s` | %s | %s | %s |' % row for row in RUN_FILES)
    return '\n'.join(lines)
