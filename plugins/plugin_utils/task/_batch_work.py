# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way a phase does its work once for a play batch: read this file
first.

Ansible runs a task's action once per host, each in a worker process of its
own. Evaluating, building, copying or publishing a fleet should take as few
Nix processes as possible, so a phase that works for the whole batch says
what that work is in a ``BatchWork`` and asks ``answer`` for its host's
part. Every such phase comes through here, to the same server: eval,
build, the copy's closure listing and cascade, publish, channel, the
serial gate and the status's closure difference.

A ``BatchWork`` says:

- ``kind``: the phase's name (it names the work's files and messages);
- ``key_parts``: what two hosts must have equal to share one server (their
  options, the arguments the batch shares); the task, the play batch and
  the loop item are added here;
- ``request``: what this host asks, as JSON data;
- ``serve``: the name of the work's function, ``'<module>:<function>'``, a
  module-level ``serve(context, requests, put)`` of the collection, run by
  the batch server (``_batch_server``) in the run's serving process
  (``_run_server``), for a wave of requests ({host: request}); ``put(host, entry)`` answers one host, as
  soon as its answer is known. A host reads its entry as soon as it is put.
  A name, never a function: the serving process imports it itself
  (``_batch_serve``: it refuses any name outside the collection), so
  nothing of this worker crosses into it;
- ``context``: the JSON data the function needs besides the requests (the
  task's options, check mode, ...), rebuilt into its objects there; or a
  function that gives it, called only by the host that registers the work
  with the run's process, after its foresight (what it saw of the batch).
  The host sends it over the process's socket and the process keeps it in
  memory only. One context a server, its registrant's: the key holds
  everything two hosts must share.

and what the work is like, each a property of it, not another engine:

- ``foresee(hosts)``: the requests ({host: request}) the first host to ask
  foresees for the play batch ``hosts``, from their variables. The first
  host of a slot (the task, its play batch and loop item) hands them to
  the server with its own, so the first wave serves the whole batch and the
  hosts still to come (forks fewer than the batch) find their answers
  ready. A host whose own request is the one foreseen reads that answer; a
  host whose request differs (its arguments templated otherwise) asks its
  own and is served in a later wave; a retry of the task
  (``until``/``retries``) is a request of its own, to a server of its own.
  Without ``foresee`` the server waits for the hosts ``expected`` (None:
  the play batch; a wave starts once all of them asked or declined), so
  the hosts that ask together share a wave (the build).
- the bounds: ``answer_wait`` (how long a host waits for its answer, its
  phase's own work bound and a margin), ``waves_at_once`` (how many waves the
  server runs at once).

An ``Answer`` has the host's ``entry``, ``here`` (the wave that answered it
was opened for this host: it reports the wave's shared figures, which the
phase puts in the entries) and the play batch ``hosts``.

The files live in the run's Ansible temp folder (removed when
ansible-playbook ends); nothing here reads ansible-core's private
attributes (``common/_ansible_core`` does).
"""

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_serve import (
    check_name, serves)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_server import (
    BatchServer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._play_batch import (
    play_batch, play_uuid, task_batch)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import (
    claim_slot, slot_name, work_name)

# what a phase takes from here; ``serves`` marks its serve function (a
# phase reads task/ through this module, _action and _run only)
__all__ = ['Answer', 'BatchWork', 'Place', 'answer', 'decline', 'server_key', 'serves']


class BatchWork(object):
    """What a phase does for its play batch (see the file's docstring)."""

    def __init__(self, kind, key_parts, request, serve, context=None, foresee=None,
                 answer_wait=None, waves_at_once=2, expected=None):
        self.kind = kind
        self.key_parts = list(key_parts)
        self.request = request
        # refused when a function: the server finds it by its name
        self.serve = check_name(kind, serve)
        self.context = context
        self.foresee = foresee
        self.answer_wait = answer_wait
        self.waves_at_once = waves_at_once
        # None: the play batch (every host that may ask)
        self.expected = expected


class Place(object):
    """Where a work is asked for: the host, its task and its task variables
    (what an action plugin has for the host it runs for)."""

    def __init__(self, host, task, task_vars):
        self.host = host
        self.task = task
        self.task_vars = task_vars


class Answer(object):
    """This host's part of a batch's work: ``entry``, ``here`` (the wave that
    answered it was opened for this host), ``hosts`` (the play batch)."""

    def __init__(self, entry, here, hosts):
        self.entry = entry
        self.here = here
        self.hosts = hosts


def answer(place, work):
    """This host's ``Answer`` of ``work``, from its batch's server."""
    hosts, key, again = server_key(place, work)
    server = BatchServer(C.DEFAULT_LOCAL_TMP, work.kind, key)
    foresee = None
    if work.foresee is not None and not again:
        def foresee():
            # only the first host of the slot foresees: a host with other
            # key parts does not make a second server serve the batch
            slot = slot_name(work.kind, place.task, hosts)
            if claim_slot(C.DEFAULT_LOCAL_TMP, work.kind, slot, key)[1]:
                return work.foresee(hosts)
            return None
    entry, here = server.ask(place.host, work.request, work.serve,
                             waves_at_once=work.waves_at_once,
                             expected=_expected(place, work, again), foresee=foresee,
                             context=work.context, timeout=work.answer_wait)
    return Answer(entry, here, hosts)


def _expected(place, work, again):
    """The hosts the server's first wave waits for."""
    if again or work.foresee is not None:
        # a retry's server is its own; a foreseen batch is in the first wave
        return [place.host]
    if work.expected is not None:
        return work.expected

    # the names only if this host registers the work: not in every worker
    def expected():
        return play_batch(place.task_vars)
    return expected


def decline(place, work):
    """This host will not ask ``work`` this time: no wave waits for it."""
    _hosts, key, _again = server_key(place, work)
    BatchServer(C.DEFAULT_LOCAL_TMP, work.kind, key).decline(place.host)


def server_key(place, work):
    """(the play batch, the key of ``work``'s server, whether it is a retry's
    own). The key holds the work's key parts and, where it is data, its
    context: two hosts share a server only where the context it serves
    with is the same for both (a host whose task templated another timeout
    gets its own). A context given as a function is what the first host
    saw of the batch (its foresight), the batch's own."""
    hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(place.task), place.task_vars)
    parts = list(work.key_parts)
    if not callable(work.context):
        parts.append({'context': work.context})
    key, again = work_name(work.kind, place.task, hosts, *parts)
    return hosts, key, again
