# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``max_fail_percentage`` per serial batch, on the builtin ``host_pinned``/``free`` strategies.

Ansible checks a play's ``max_fail_percentage`` only in the ``linear``
strategy; ``free`` (where each host advances on its own, as a deploy needs)
ignores it, and the playbook executor itself stops the serial batches only
when EVERY host of a batch failed. So the deploy checks it at the one point
where a batch is known to be over: the start of the next one.

The first task of the deploy (``nix_eval``) calls ``gate`` once per play
batch (under its batch server's lock, plugin_utils/task/_batch_server.py). It records the
batch's hosts in the run's temp dir and looks at the batch before: its hosts
that Ansible no longer counts as active (``ansible_play_hosts`` leaves out
every host that failed or became unreachable in an earlier batch) are its
failures. Over the percentage, the answer says why, the task returns
``stopped`` and the role ends the play (``meta: end_play``) before anything
of this batch is touched.
"""

import json

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_serve import serves
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import PlayBatch


def _load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, IOError, ValueError):
        return []


def over_limit(failed, size, max_fail_percentage):
    """Whether ``failed`` of ``size`` hosts is more than the percentage allows
    (the linear strategy's rule: strictly more than)."""
    if max_fail_percentage is None or not size:
        return False
    return failed * 100.0 / size > float(max_fail_percentage)


def gate(path, hosts, active_hosts, max_fail_percentage):
    """Record this batch (``hosts``) in the file ``path`` (one per play) and
    judge the previous one. ``active_hosts``: ``ansible_play_hosts``.

    Returns {'batch': number of this batch (1 = first), 'stop': None or the
    reason this batch must not start, 'failed': the previous batch's failed
    hosts}.
    """
    batches = _load(path)
    hosts = sorted(hosts)
    if hosts in batches:
        # asked again for a batch already recorded (another nix_eval task of
        # the same play batch)
        number = batches.index(hosts) + 1
        previous = batches[number - 2] if number > 1 else []
    else:
        previous = batches[-1] if batches else []
        batches.append(hosts)
        write_json(path, batches)
        number = len(batches)
    active = set(active_hosts or ())
    failed = [h for h in previous if h not in active]
    verdict = {'batch': number, 'stop': None, 'failed': failed}
    if previous and over_limit(len(failed), len(previous), max_fail_percentage):
        verdict['stop'] = (
            '%d of %d hosts of batch %d failed (%s), more than max_fail_percentage %s%%: '
            'no further batch starts' % (len(failed), len(previous), number - 1,
                                         ', '.join(failed), max_fail_percentage))
    return verdict


@serves
def judge(context, requests, put):
    """The serial gate's batch work (``JUDGE``): one verdict, put to every
    host asking. ``context``: {record: the play's file, batch: its
    ``PlayBatch.data()``, active: ``ansible_play_hosts``,
    max_fail_percentage}."""
    verdict = gate(context['record'], PlayBatch.from_data(context['batch']), context['active'],
                   context['max_fail_percentage'])
    for name in requests:
        put(name, verdict)


# the name the gate's BatchWork gives its serve function
JUDGE = '%s:judge' % __name__
