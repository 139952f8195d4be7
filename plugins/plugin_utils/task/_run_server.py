# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's one serving process: every batch work of one ansible-playbook
run (each stem: a kind and a key, ``_batch_server.BatchServer``) is served
by one detached process, started by the first host of the run that asks.

A host registers a stem the process does not serve yet over the
process's unix socket (``_run_socket``): one message with the stem's kind
and key, its serve function's name, its context, how many waves it runs
at once, the hosts its first wave waits for and the host that registers
it. The process marks the stem served, starts a thread for it
(``_stem_serving.StemServing``) that holds the context in memory, and
answers ``{"ok": true}``: no file holds a context (it may carry a cache's
login or an access token). A host of a stem it serves may also ask it for
its answer on the socket (``_run_asks``). The process ends when the job
ends, or when it has served nothing for ``_waits.IDLE_WAIT`` seconds: the
run's batch phases, each a few moments after the last, share it.

Whether a stem is served: its mark (``<stem>.alive``) holds the current
process's token (``run-server.alive``). A process that died (a kill -9)
leaves both behind, and its socket refuses: the next host that waits for
such a stem starts another process and registers the stem again, with its
own context (the same wherever the context is data: the stem's key holds
it). Every wait here is bounded: the run's lock, the connection, the
message, the acknowledgement.
"""

import binascii
import json
import os
import socket
import threading
import time
import traceback

from ansible.module_utils.common.json import AnsibleJSONEncoder

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import InvalidValue
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import (
    _job_end, _run_asks, _run_socket, _waits, _wakeup)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_answers import LOOKS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_files import (
    batch_folder)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import (
    BatchError, DetachedProcess)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stem_serving import (
    StemServing)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import held, server_lock

# the kind the process's own lock and messages name
KIND = 'batch'
# processes a host starts for one registration before it gives up: more
# than one only when the one it found ended (or died) as it registered
REGISTER_TRIES = 3


class RunServer(object):
    """The run's serving process, as a host and the process itself see it
    (``base_dir``: the run's temp folder)."""

    def __init__(self, base_dir):
        self.dir = batch_folder(base_dir)
        stem = os.path.join(self.dir, _run_files.RUN_SERVER)
        self.lock_path = stem + '.lock'
        self.alive_path = stem + '.alive'
        self.socket_path = stem + '.sock'
        self.process = DetachedProcess(stem, KIND, self._answer_folders)

    def token(self):
        """The token of the process that runs now, or None when none runs."""
        if not self.process.running():
            return None
        try:
            with open(self.alive_path) as handle:
                return handle.read() or None
        except (OSError, IOError):
            return None

    def serves(self, files):
        """Whether the process serves the stem ``files`` (a ``BatchServer``):
        it runs, and the stem's mark holds its token."""
        token = self.token()
        if token is None:
            return False
        try:
            with open(files.alive_path) as handle:
                return handle.read() == token
        except (OSError, IOError):
            return False

    def register(self, host, kind, message, files_of):
        """Hand the stem ``message`` (``registration``'s text) to the run's
        process, started first unless it runs, and wait for its
        acknowledgement (``host``, ``kind``: who registers what, for the
        messages; ``files_of(kind, key)``: a registered stem's files, for a
        process this call starts). BatchError when none acknowledges it."""
        why = None
        for _try in range(REGISTER_TRIES):
            self.ensure(host, files_of)
            try:
                reply = self._send(message)
            except _run_socket.SocketGone as exc:
                # it ended (or died) as this host came: start another
                why = u'%s' % exc
                continue
            except (socket.timeout, OSError, ValueError) as exc:
                raise BatchError(_register_failed(host, kind, u'%s' % (exc or 'timed out'),
                                                  self.process))
            if reply.get('ok') is True:
                return
            raise BatchError(_register_failed(host, kind, u'%s' % reply.get('error'),
                                              self.process))
        raise BatchError(_register_failed(host, kind, why, self.process))

    def _send(self, message):
        """The process's reply to ``message``; each wait bounded by
        ``_waits.REGISTER_WAIT``."""
        sock = _run_socket.connect(self.socket_path, _waits.REGISTER_WAIT)
        try:
            _run_socket.send(sock, message)
            reply = _run_socket.receive(sock, _waits.REGISTER_WAIT)
        finally:
            sock.close()
        return reply if isinstance(reply, dict) else {}

    def ensure(self, host, files_of):
        """The process's token, the process started first unless it runs
        (``host``: who starts it, for a lock's message): (token, started).
        The socket is bound here, before the fork: a host that connects as
        soon as this returns finds it listening."""
        with held(self.lock_path, _waits.SERVER_LOCK_WAIT, server_lock(host, KIND)):
            found = self.token()
            if found is not None:
                return found, False
            token = binascii.hexlify(os.urandom(8)).decode('ascii')
            listening = _run_socket.listen(self.socket_path)
            try:
                with open(self.alive_path, 'w') as handle:
                    handle.write(token)
                serving = _Serving(self, token, listening, files_of)
                self.process.fork(serving.serve, keep=(listening.fileno(),))
            finally:
                # the process's own now: this worker does not listen
                listening.close()
            return token, True

    def _answer_folders(self):
        """Every stem's answers' folder (whose doorbells the process rings
        when it ends)."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        return [os.path.join(self.dir, n) for n in names if n.endswith('.d')]


class _Serving(object):
    """The run's process at work: it takes registrations on its socket and
    serves each stem in a thread of its own, until the job ends or, once the
    host that started it registered (or ``REGISTER_WAIT`` after its start),
    none has been served for ``IDLE_WAIT`` and no host is connecting (decided
    under the run's lock, which a host takes to see whether the process runs).

    Each connection is read in a thread of its own, its whole message
    bounded by ``REGISTER_WAIT``: a peer that never sends, or sends a byte
    at a time, holds only itself, never the hosts that register beside it."""

    def __init__(self, run, token, listening, files_of):
        self.run = run
        self.token = token
        self.listening = listening
        self.files_of = files_of
        self.threads = []
        # the serving of each stem registered, by (kind, key): where an ask goes
        self.stems = {}
        # the connections being read now (a registration may still come)
        self.taking = []
        self._lock = threading.Lock()
        # it waits for the host that started it (its worker may be slow to connect)
        self.registered = False
        self.started = time.monotonic()
        # since when it serves nothing (None: it serves, or a host connects)
        self.idle_since = None

    def serve(self):
        self.listening.settimeout(LOOKS[1])
        while True:
            with self._lock:
                self.threads = [thread for thread in self.threads if thread.is_alive()]
                self.taking = [thread for thread in self.taking if thread.is_alive()]
                # an ended stem's serving, its context with it (a cache's login), is not
                # kept for the rest of the run: an ask for it is "not served" either way
                self.stems = dict(item for item in self.stems.items() if not item[1].ended())
            try:
                connection, _address = self.listening.accept()
            except socket.timeout:
                if self._ended():
                    return
                continue
            self._take_beside(connection)

    def _take_beside(self, connection):
        """``_take`` in a thread of its own."""
        thread = threading.Thread(target=self._take, args=(connection,),
                                  name='nixdeploy-register')
        thread.daemon = True
        with self._lock:
            self.taking.append(thread)
        thread.start()

    def _ended(self):
        """Whether the process is done: the job ended (its folder gone), or
        no stem has been served for ``IDLE_WAIT`` and no host is connecting."""
        if not os.path.isdir(self.run.dir) and _job_end.job_ended(self.run.dir):
            # no request comes any more (_stem_serving)
            with self._lock:
                threads = list(self.threads)
            for thread in threads:
                thread.join()
            return True
        with self._lock:
            if self.threads or any(thread.is_alive() for thread in self.taking):
                self.idle_since = None
                return False
        now = time.monotonic()
        if not self.registered and now - self.started < _waits.REGISTER_WAIT:
            return False
        self.idle_since = self.idle_since or now
        if now - self.idle_since < _waits.IDLE_WAIT:
            return False
        try:
            return self._end_unless_asked()
        except OSError:
            # the job's folder went as the process looked: nobody asks
            if not _job_end.job_ended(self.run.dir):
                raise
            return True

    def _end_unless_asked(self):
        """End (True) unless a host connects, under the run's lock."""
        with held(self.run.lock_path, _waits.SERVER_LOCK_WAIT, server_lock(None, KIND)):
            # a host that connected meanwhile is served, not refused
            self.listening.setblocking(False)
            try:
                connection, _address = self.listening.accept()
            except (BlockingIOError, socket.timeout):
                connection = None
            self.listening.settimeout(LOOKS[1])
            if connection is not None:
                self._take_beside(connection)
                return False
            # closed before the token goes: a host that finds no token
            # binds a socket of its own at the same path
            self.listening.close()
            for path in (self.run.socket_path, self.run.alive_path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return True

    def _take(self, connection):
        """One host's registration: read, checked, served, acknowledged. A
        peer of another user, or a message that is not one, is answered
        with an error (or nothing) and changes nothing."""
        connection.settimeout(_waits.REGISTER_WAIT)
        try:
            if not _run_socket.same_user(connection):
                return
            try:
                message = _run_socket.receive(connection, _waits.REGISTER_WAIT)
                if isinstance(message, dict) and 'ask' in message:
                    asked = _run_asks.checked(message['ask'])
                    with self._lock:
                        stem = self.stems.get((asked['kind'], asked['key']))
                    connection.settimeout(_waits.REGISTER_WAIT)
                    _run_asks.serve(connection, asked, stem)
                    return
                entry = _checked(message)
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                connection.settimeout(_waits.REGISTER_WAIT)
                _run_socket.send(connection, json.dumps({'error': u'refused: %s' % exc}))
                return
            # the answer's own bound, whatever the message's read left
            connection.settimeout(_waits.REGISTER_WAIT)
            with self._lock:
                self._start(entry)
            self.registered, self.idle_since = True, None
            _run_socket.send(connection, json.dumps({'ok': True}))
        except (OSError, _run_socket.SocketGone):
            # the host gave up or died as it registered: its next look
            # registers again if its stem is not served
            pass
        finally:
            connection.close()

    def _start(self, entry):
        files = self.files_of(entry['kind'], entry['key'])
        # the mark first: a host that looks sees the stem served
        with open(files.alive_path, 'w') as handle:
            handle.write(self.token)
        serving = StemServing(files, (entry['serve'], entry['context']),
                              entry['waves_at_once'], entry['waiting'], entry['starter'],
                              self.run.process.log_tail)
        thread = threading.Thread(target=_serve_stem, args=(serving,),
                                  name='nixdeploy-stem-%s' % entry['kind'])
        thread.daemon = True
        thread.start()
        self.threads.append(thread)
        self.stems[(entry['kind'], entry['key'])] = serving


def _checked(entry):
    """A registration as the process takes it: its kind and key name
    files, so they are plain names; the serve name is checked by the wave
    (``serve_function``), the context is the serve function's data."""
    if not isinstance(entry, dict):
        raise InvalidValue('a registration is a mapping')
    for part in ('kind', 'key'):
        if not isinstance(entry[part], str) or not _run_socket.plain_name(entry[part]):
            raise InvalidValue('its %s is no plain name' % part)
    waves = entry['waves_at_once']
    if not isinstance(waves, int) or isinstance(waves, bool) or waves < 1:
        raise InvalidValue('waves_at_once is no positive number')
    if not isinstance(entry['waiting'], list) or \
            not all(isinstance(host, str) for host in entry['waiting']):
        raise InvalidValue('waiting is no list of host names')
    if entry['starter'] is not None and not isinstance(entry['starter'], str):
        raise InvalidValue('its starter is no host name')
    return dict((part, entry[part]) for part in
                ('kind', 'key', 'serve', 'context', 'waves_at_once', 'waiting', 'starter'))


def registration(host, kind, key, serve, context, waves_at_once, waiting):
    """The message that registers the stem ``kind``-``key`` (JSON text).
    The context is converted as ansible-core's JSON encoder converts
    (a date to its ISO text, a set to a list); a value it cannot carry
    fails the host with a BatchError naming where in the context it is."""
    entry = {'kind': kind, 'key': key, 'serve': serve, 'context': context,
             'waves_at_once': waves_at_once, 'waiting': sorted(waiting), 'starter': host}
    try:
        return json.dumps(entry, cls=AnsibleJSONEncoder)
    except RecursionError:
        raise BatchError(u'%s: the %s batch: context is nested too deep to be handed to the '
                         u'run\'s serving process as JSON; give it fewer levels'
                         % (host, kind.split('-')[0]))
    except (TypeError, ValueError) as exc:
        where = _unencodable(context, 'context') or 'context'
        raise BatchError(u'%s: the %s batch: %s cannot be handed to the run\'s serving '
                         u'process as JSON (%s); give it as a string, a number, a list or a '
                         u'mapping' % (host, kind.split('-')[0], where, exc))


def _unencodable(value, where):
    """Where in ``value`` (reached as ``where``) the first value is that
    ansible-core's JSON encoder cannot write (None: nowhere)."""
    if isinstance(value, dict):
        for name, item in value.items():
            found = _unencodable(item, u'%s[%r]' % (where, u'%s' % name))
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for number, item in enumerate(value):
            found = _unencodable(item, u'%s[%d]' % (where, number))
            if found:
                return found
        return None
    try:
        json.dumps(value, cls=AnsibleJSONEncoder)
    except (TypeError, ValueError):
        return u'%s (a %s)' % (where, type(value).__name__)
    return None


def _register_failed(host, kind, why, process):
    """What a host says whose stem no process acknowledged."""
    return (u'%s: the %s batch: the run\'s serving process did not take its registration '
            u'within %ss (%s); its log, %s, says what it does%s'
            % (host, kind.split('-')[0], _waits.REGISTER_WAIT, why, process.log_path,
               process.log_tail() or ' (it is empty)'))


def _serve_stem(serving):
    """A stem's thread: its serving, then word to the hosts still waiting
    for it, on the socket and at their doorbells (a host learns at once
    that nothing serves it). A stem whose serving raised is no longer
    marked served: its hosts start it again, or fail by name."""
    try:
        serving.serve()
    except Exception:  # pylint: disable=broad-except
        os.write(2, traceback.format_exc().encode('utf-8', 'replace'))
        try:
            os.unlink(serving.files.alive_path)
        except OSError:
            pass
    serving.close()
    _wakeup.ring_all(serving.files.answers.folder)
