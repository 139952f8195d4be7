# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host that asks the run's serving process for its answer over the
process's socket (``_run_socket``), both sides of it.

Most hosts of a batch come after the host that registered its work: their
requests were foreseen for them, or they are one more request of a stem
that is served already. Such a host sends one message, ``ask`` (the stem's
kind and key, its name, its request, how long it waits), and the process
answers on the same connection:

- ``{"served": false}`` at once when it does not serve the stem (never
  registered, ended, or its serving failed): the host asks through the
  files (``_batch_server.BatchServer.request``), which register the stem;
- ``{"taken": true}`` once the request is taken (at once for one foreseen
  and taken before): from then on the process owes this host its answer,
  and a host whose process dies after this fails by name, as it would
  through the files, instead of asking again;
- then one of ``{"answer": ...}`` (what the answer's file holds),
  ``{"ended": true}`` (the stem ended without answering it: the host
  looks at the files), or ``{"waited": true}`` (the host's own bound
  passed).

One round trip where the files take the stem's lock, write a request,
look at the process and make a doorbell. The answer is written to its
file as well: a host that comes later reads it there.
"""

import json
import select
import socket
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run_socket, _waits

# how often a process waiting for an answer looks whether its host is
# still connected (a host that gave up, or whose worker was killed)
LOOK_FOR_HOST = 1.0


class Told(object):
    """What the process told a host that asked: ``answer`` (the answer's
    data, or None), ``taken`` (its request is taken: the process owes it),
    ``waited`` (its bound passed)."""

    def __init__(self):
        self.answer = None
        self.taken = False
        self.waited = False


def ask(socket_path, kind, key, host, request, deadline):
    """Ask the run's process at ``socket_path`` for ``host``'s answer to
    ``request`` of the stem ``kind``-``key``, waiting until ``deadline``
    (``time.monotonic()``): a ``Told``. A process that does not serve the
    stem, is not there, or goes away leaves ``answer`` None: the caller
    goes on through the files."""
    told = Told()
    left = deadline - time.monotonic()
    if left <= 0:
        told.waited = True
        return told
    try:
        sock = _run_socket.connect(socket_path, min(left, _waits.REGISTER_WAIT))
    except (_run_socket.SocketGone, OSError):
        return told
    try:
        _run_socket.send(sock, json.dumps({'ask': {
            'kind': kind, 'key': key, 'host': host, 'request': request,
            'seconds': left}}))
        while True:
            reply = _run_socket.receive(sock, max(0.0, deadline - time.monotonic()))
            if not isinstance(reply, dict) or reply.get('served') is False or reply.get('ended'):
                return told
            if reply.get('taken') is True:
                told.taken = True
                continue
            if reply.get('waited'):
                told.waited = True
                return told
            answer = reply.get('answer')
            if isinstance(answer, dict) and 'answer' in answer:
                told.answer = answer
            return told
    except socket.timeout:
        told.waited = True
        return told
    except (_run_socket.SocketGone, OSError, ValueError):
        # the process ended or died as the host waited: the files say what
        # is left (an answer written, or a request to ask again)
        return told
    finally:
        sock.close()


def checked(entry):
    """An ask as the process takes it (InvalidValue for anything else):
    its kind and key name files, so they are plain names; its host a
    name; its request JSON data; its seconds a positive number."""
    if not isinstance(entry, dict):
        raise InvalidValue('an ask is a mapping')
    for part in ('kind', 'key'):
        if not isinstance(entry.get(part), str) or not _run_socket.plain_name(entry[part]):
            raise InvalidValue('its %s is no plain name' % part)
    if not isinstance(entry.get('host'), str) or not entry['host']:
        raise InvalidValue('its host is no name')
    seconds = entry.get('seconds')
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise InvalidValue('its seconds is no positive number')
    return {'kind': entry['kind'], 'key': entry['key'], 'host': entry['host'],
            'request': entry.get('request'), 'seconds': min(seconds, _waits.ANSWER_WAIT)}


class Waiter(object):
    """What the process knows of one host's ask, as the stem's threads
    tell it (``StemServing.ask``): taken, and the answer (None: the stem
    ended without one)."""

    def __init__(self):
        self._changed = threading.Condition()
        self._taken = False
        self._done = False
        self._answer = None

    def taken(self):
        with self._changed:
            self._taken = True
            self._changed.notify_all()

    def tell(self, answer):
        with self._changed:
            if not self._done:
                self._done, self._answer = True, answer
                self._changed.notify_all()

    def wait(self, seconds, said_taken):
        """(taken, done, answer) at once when there is news (the answer,
        or taken where ``said_taken`` is False), else once something is
        told or after ``seconds``."""
        with self._changed:
            if not self._done and (said_taken or not self._taken):
                self._changed.wait(seconds)
            return self._taken, self._done, self._answer


def serve(connection, entry, stem):
    """Answer one host's ask (``checked``'s ``entry``) on ``connection``,
    from the stem's serving ``stem`` (None: the process does not serve
    it), within the host's own bound."""
    waiter = Waiter()
    if stem is None or not stem.ask(entry['host'], entry['request'], waiter):
        _run_socket.send(connection, json.dumps({'served': False}))
        return
    # an answer put before the waiter was kept is in its file
    found = stem.files.answers.read(stem.files.answer_path(entry['host'], entry['request']))
    if found is not None:
        waiter.tell(found)
    deadline = time.monotonic() + entry['seconds']
    said_taken = False
    while True:
        left = deadline - time.monotonic()
        taken, done, answer = waiter.wait(max(0.0, min(LOOK_FOR_HOST, left)), said_taken)
        if taken and not said_taken:
            _run_socket.send(connection, json.dumps({'taken': True}))
            said_taken = True
        if done:
            reply = {'answer': answer} if answer is not None else {'ended': True}
            _run_socket.send(connection, json.dumps(reply))
            return
        if left <= 0:
            _run_socket.send(connection, json.dumps({'waited': True}))
            return
        if _hung_up(connection):
            return  # the host gave up or its worker died: nobody reads it


def _hung_up(connection):
    """Whether the host closed its side (it sends nothing after its ask)."""
    if hasattr(select, 'poll'):
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _w, _x = select.select([connection], [], [], 0)
    return bool(readable)
