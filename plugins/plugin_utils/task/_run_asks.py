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

# how often the process looks whether a host it owes an answer is still
# connected (a host that gave up, or whose worker was killed: its thread
# ends then, not at the host's bound); every waiting host's thread wakes
# this often, a thousand of them with a thousand forks
LOOK_FOR_HOST = 5.0
# the longest single wait of a host on the socket
DAY = 24 * 3600.0


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
        _hear(_run_socket.Reader(sock), deadline, told)
    except (_run_socket.SocketGone, OSError, ValueError):
        # the process ended or died as the host waited: the files say what
        # is left (an answer written, or a request to ask again)
        pass
    finally:
        sock.close()
    return told


def _hear(reader, deadline, told):
    """What the process tells on the connection of ``reader``, into
    ``told``, until its last word or ``deadline``."""
    while True:
        reply = _receive(reader, deadline)
        if reply is None:
            told.waited = True
            return
        if not isinstance(reply, dict) or reply.get('served') is False or reply.get('ended'):
            return
        if reply.get('taken') is True:
            told.taken = True
            continue
        if reply.get('waited'):
            told.waited = True
            return
        answer = reply.get('answer')
        if isinstance(answer, dict) and 'answer' in answer:
            told.answer = answer
        return


def _receive(reader, deadline):
    """The process's next message, or None at ``deadline``: waited for a
    day at most at a time (a socket's timeout has a largest value; a
    phase's bound may be longer). The bytes of a message that did not come
    whole within a day stay with ``reader``, read on after it."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return reader.message(min(left, DAY))
        except socket.timeout:
            continue


def checked(entry):
    """An ask as the process takes it (InvalidValue for anything else):
    its kind and key name files, so they are plain names; its host a
    name; its request JSON data; its seconds a positive number (the
    host's own bound, whatever it is: a phase's may be past
    ``ANSWER_WAIT``)."""
    if not isinstance(entry, dict):
        raise InvalidValue('an ask is a mapping')
    for part in ('kind', 'key'):
        if not isinstance(entry.get(part), str) or not _run_socket.plain_name(entry[part]):
            raise InvalidValue('its %s is no plain name' % part)
    if not isinstance(entry.get('host'), str) or not entry['host']:
        raise InvalidValue('its host is no name')
    seconds = entry.get('seconds')
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            not 0 < seconds < float('inf'):
        raise InvalidValue('its seconds is no positive number')
    request = entry.get('request')
    try:
        # what names its answer's file: a request too deep to write back
        # is refused here, not met by the work's thread
        json.dumps(request)
    except (RecursionError, TypeError, ValueError):
        raise InvalidValue('its request is nested too deep to be written')
    return {'kind': entry['kind'], 'key': entry['key'], 'host': entry['host'],
            'request': request, 'seconds': seconds}


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
        replies = []
        if taken and not said_taken:
            replies.append(json.dumps({'taken': True}))
            said_taken = True
        if done:
            replies.append(json.dumps({'answer': answer} if answer is not None
                                      else {'ended': True}))
        elif left <= 0:
            replies.append(json.dumps({'waited': True}))
        if replies:
            # taken and the last word in one write where both are known:
            # the host wakes once for them
            _run_socket.send(connection, *replies)
        if done or left <= 0:
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
