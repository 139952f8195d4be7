# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way a phase does its work once for a play batch: read this file
first.

Ansible runs a task's action once per host, each in a worker process of its
own. Evaluating, building, copying or publishing a fleet should take as few
Nix processes as possible, so a phase that works for the whole batch says
what that work is in a ``BatchWork`` and asks ``answer`` for its host's
part. Every such phase comes through here: eval, build, the copy's closure
listing and cascade, publish, channel and the serial gate.

A ``BatchWork`` says:

- ``kind``: the phase's name (it names the work's files and messages);
- ``key_parts``: what two hosts must have equal to share one computation
  (their options, the arguments the batch shares); the task, the play
  batch and the loop item are added here;
- ``request``: what this host asks, as JSON data; the entry the batch
  computed for it says which request it answers, and a host whose own
  request differs gets its answer from ``alone``;
- ``how``: who computes, and when a host can read its answer:

  ======  ==========================================================  =========================
  how     who computes                                                a host reads its entry
  ======  ==========================================================  =========================
  ONCE    the first host to ask, in its worker, under the batch's      when the whole batch is
          lock: ``compute(hosts)`` gives every host's entry            computed (``_batch``)
  STREAM  one detached process, started by the first host to ask:     as soon as its own entry
          ``compute(hosts, put)`` puts each entry when it is known     is put (``_stream_entries``)
  WAVES   one detached process answers the requests the hosts write,   as soon as its wave has
          a wave at a time: ``compute(requests, put)``                 answered it (``_service``)
  ======  ==========================================================  =========================

- ``alone(hosts, batch_entry)``: this host's own work, in the same shape as
  ``compute``'s (``{'hosts': {host: entry}, ...}``), for a host that cannot
  use the batch's: a retry of the task (``until``/``retries``), which
  computes again; a host whose key parts differ from those of the first host
  of its batch to ask (its arguments are not the batch's); a host whose
  entry answers another request. ``hosts`` is the play batch,
  ``batch_entry`` the batch's entry for this host, if it read one. Without
  ``alone`` such a host's entry is None.
- the bounds: ``lock_wait`` (ONCE: how long a host waits for the host that
  computes), ``answer_wait`` (STREAM, WAVES: how long a host waits for its
  entry), ``slots`` and ``expected`` (WAVES: waves at once, the hosts the
  first wave waits for).

Under WAVES every request is its own: hosts whose key parts differ are
simply served by another process, none computes for the others, so the
first-host rule does not apply.

The files live in the run's Ansible temp folder (removed when
ansible-playbook ends); nothing here reads ansible-core's private
attributes (``common/_ansible_core`` does).
"""

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch import (
    Batch, first_key)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import (
    play_batch, play_uuid, task_batch)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._service import Service
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stream_entries import Stream
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import lock_wait
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import (
    slot_name, work_name)

ONCE = 'once'
STREAM = 'stream'
WAVES = 'waves'
_HOWS = (ONCE, STREAM, WAVES)


class BatchWork(object):
    """What a phase computes for its play batch (see the file's docstring).

    ``whole``: ONCE only; the batch's data is every host's answer (the
    serial gate's verdict), not a per-host entry, so no request is compared;
    a retry, or a host whose key parts differ, runs ``compute`` itself."""

    def __init__(self, kind, key_parts, request, compute, how=ONCE, alone=None,
                 lock_wait=None, answer_wait=None, slots=2, expected=None, whole=False):
        if how not in _HOWS:
            raise NixdeployError('internal error: a batch work is done %s, not %r'
                                 % (' or '.join(_HOWS), how))
        self.kind = kind
        self.key_parts = list(key_parts)
        self.request = request
        self.compute = compute
        self.how = how
        self.alone = alone
        self.lock_wait = lock_wait
        self.answer_wait = answer_wait
        self.slots = slots
        # None under WAVES: the play batch (every host that may ask)
        self.expected = expected
        self.whole = whole


class Place(object):
    """Where a work is asked for: the host, its task and its task variables
    (what an action plugin has for the host it runs for)."""

    def __init__(self, host, task, task_vars):
        self.host = host
        self.task = task
        self.task_vars = task_vars


class Answer(object):
    """This host's part of a batch's work: ``entry`` (None when it had to be
    computed alone and the work has no ``alone``), ``data`` (what the batch,
    or this host alone, computed: its ``hosts`` and what they share; empty
    for STREAM and WAVES, whose shared part comes after the last host),
    ``here`` (this host computed it, or started the process that did),
    ``hosts`` (the play batch), ``alone`` (answered by ``alone``) and
    ``batch_here`` (this host computed the batch's work, or started its
    process, whether or not it then answered alone)."""

    def __init__(self, entry, data, here, hosts, alone=False, batch_here=None):
        self.entry = entry
        self.data = data
        self.here = here
        self.hosts = hosts
        self.alone = alone
        self.batch_here = here if batch_here is None else batch_here


def answer(place, work):
    """This host's ``Answer`` of ``work``: read from its batch's, computed
    for the batch if it is the first to ask, or computed alone."""
    hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(place.task), place.task_vars)
    key, again = work_name(work.kind, place.task, hosts, *work.key_parts)
    if work.how == WAVES:
        return _from_waves(place, work, hosts, key, again)
    if again or first_key(C.DEFAULT_LOCAL_TMP, work.kind,
                          slot_name(work.kind, place.task, hosts), key) != key:
        return _alone(place, work, hosts, None, ({}, False))
    if work.how == ONCE:
        with lock_wait(work.lock_wait):
            data, here = Batch(C.DEFAULT_LOCAL_TMP, work.kind, key).results(
                lambda: work.compute(hosts), place.host)
        if work.whole:
            return Answer(data, data, here, hosts)
        entry = (data.get('hosts') or {}).get(place.host)
    else:
        stream = Stream(C.DEFAULT_LOCAL_TMP, work.kind, key)
        here = stream.start(lambda put: work.compute(hosts, put), place.host)
        data = {}
        entry = stream.entry(place.host, timeout=work.answer_wait)
    if entry is None or entry.get('request') != work.request:
        return _alone(place, work, hosts, entry, (data, here))
    return Answer(entry, data, here, hosts)


def decline(place, work):
    """This host will not ask ``work`` (WAVES) this time: no wave waits for it."""
    hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(place.task), place.task_vars)
    key, _again = work_name(work.kind, place.task, hosts, *work.key_parts)
    Service(C.DEFAULT_LOCAL_TMP, work.kind, key).decline(place.host)


def _from_waves(place, work, hosts, key, again):
    service = Service(C.DEFAULT_LOCAL_TMP, work.kind, key)
    if again:
        # a retry's service is its own: its first wave waits for no other host
        expected = [place.host]
    elif work.expected is not None:
        expected = work.expected
    else:
        # the names only if this host starts the service: not in every worker
        def expected():
            return play_batch(place.task_vars)
    here = service.request(place.host, work.request, work.compute, slots=work.slots,
                           expected=expected)
    entry = service.answer(place.host, work.compute, slots=work.slots, timeout=work.answer_wait)
    return Answer(entry, {}, here, hosts)


def _alone(place, work, hosts, batch_entry, batch):
    """This host's own work, or no entry when the phase has none (``batch``:
    the batch's data and whether it was computed here, kept then)."""
    if work.whole:
        data = work.compute(hosts)
        return Answer(data, data, True, hosts, alone=True, batch_here=batch[1])
    if work.alone is None:
        return Answer(None, batch[0], batch[1], hosts)
    data = work.alone(hosts, batch_entry)
    return Answer(data['hosts'][place.host], data, True, hosts, alone=True,
                  batch_here=batch[1])
