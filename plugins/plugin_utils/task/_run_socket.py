# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's serving process's unix socket: where it is, who may talk to
it, and one framed JSON message each way (``_run_server`` says what they
hold).

The socket is a file of the run's batch folder (mode 0700, the run's
user's), itself mode 0600; the process also checks that a peer runs as
its own user where the system tells (``SO_PEERCRED``). A unix socket's
path has a limit of about 100 bytes and Ansible's temp folder may be
deeper: a path past it is bound and reached through a descriptor of its
folder (``/proc/self/fd/N/<name>``), or where there is no /proc by its name
alone, with the process's working folder set there for the one call
(under a lock, and set back after it).

A message is its length (4 bytes, big-endian) and that many bytes of
JSON text (UTF-8): data only, read by ``json.loads``, never run. A
connection's messages are read by a ``Reader``: a read takes what the
socket holds, so a message whose length and text come together (the usual
case) costs one read, and what came behind it waits for the next message.
"""

import contextlib
import json
import os
import re
import socket
import struct
import threading
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (
    InvalidValue, NixdeployError)

# a message's length, before its JSON
_HEADER = struct.Struct('>I')
# the largest message either side reads: a context of a large batch fits
# (a cascade hands a few hundred bytes a peer), and a message of nested
# empty lists, which json.loads makes some 16 times larger in memory, stays
# a few hundred MB in the process
MAX_MESSAGE = 16 * 1024 * 1024
# the most a read takes when little is missing: a message of a few hundred
# bytes and whatever came behind it in one call (a larger buffer costs a
# fresh allocation a read: 1 MB is a mapping of its own)
_READ_SIZE = 64 * 1024
# the most one read of a large message takes
_READ_MOST = 1 << 20
# the longest path bound as it is (AF_UNIX: 108 bytes on Linux, 104 on
# macOS, with its NUL), with a margin
PATH_MAX = 100
# what a stem's kind and key may be (they name its files)
_PLAIN_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}\Z')
# the working folder is the process's: one relative call at a time
_WORKING_FOLDER = threading.Lock()
# a folder opened only to come back to it
_FOLDER_FLAGS = getattr(os, 'O_PATH', os.O_RDONLY) | getattr(os, 'O_DIRECTORY', 0)


def plain_name(text):
    """Whether ``text`` (a stem's kind or key from a message) may name a
    file of the run's batch folder."""
    return bool(_PLAIN_NAME.match(text))


class SocketGone(NixdeployError):
    """Nothing listens at the socket, or the process closed the
    connection before it answered (it ended, or died)."""


@contextlib.contextmanager
def _address(path):
    """What ``path`` is bound or reached by: itself where it fits, else
    its name through a descriptor of its folder (``/proc/self/fd/N/name``),
    or, on a system without /proc, its name with the working folder its
    folder for the call. The working folder is the whole process's: a
    thread beside (a login probe's ssh, whose options may name a relative
    ``UserKnownHostsFile``) would start its program in the wrong folder,
    so it is changed only where nothing else works."""
    if len(os.fsencode(path)) <= PATH_MAX:
        yield path
        return
    folder, name = os.path.split(path)
    if os.path.isdir('/proc/self/fd'):
        handle = os.open(folder, _FOLDER_FLAGS)
        try:
            yield '/proc/self/fd/%d/%s' % (handle, name)
        finally:
            os.close(handle)
        return
    with _WORKING_FOLDER:
        back = os.open('.', _FOLDER_FLAGS)
        try:
            os.chdir(folder)
            yield name
        finally:
            os.fchdir(back)
            os.close(back)


def listen(path):
    """A socket listening at ``path`` (mode 0600); a socket file a dead
    process left there is removed first (the caller holds the run's lock,
    and no process of the run listens)."""
    # bind() makes the socket file with the umask's mode (often 0755); the
    # path must never show a wider mode than 0600 (the folder is 0700 too).
    # Linux makes it with the socket's own mode, which fchmod() sets before
    # bind(); elsewhere (fchmod refused) it is bound under a name of its
    # own, made 0600 and only then renamed to its path
    binding = '%s.%d.binding' % (path, os.getpid())
    for stale in (path, binding):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.fchmod(sock.fileno(), 0o600)
            binding = path
        except OSError:
            pass
        with _address(binding) as address:
            sock.bind(address)
        os.chmod(binding, 0o600)
        if binding != path:
            os.rename(binding, path)
        sock.listen(64)
    except BaseException:
        sock.close()
        try:
            os.unlink(binding)
        except OSError:
            pass
        raise
    return sock


def connect(path, seconds):
    """A connection to the socket at ``path``, each later wait on it
    bounded by ``seconds`` (socket.timeout past it); SocketGone when
    nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(seconds)
    try:
        with _address(path) as address:
            sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise SocketGone('nothing listens at its socket (%s)' % exc.strerror)
    except BaseException:
        sock.close()
        raise
    return sock


def send(sock, *texts):
    """Send each of ``texts`` (JSON, a str) as one message, all in one
    write: a reader that comes to them after the last was sent finds them
    all in one read."""
    frames = []
    for text in texts:
        data = text.encode('utf-8')
        if len(data) > MAX_MESSAGE:
            raise InvalidValue('a message of %d bytes, past the %d the other side reads'
                               % (len(data), MAX_MESSAGE))
        frames.append(_HEADER.pack(len(data)))
        frames.append(data)
    sock.sendall(b''.join(frames))


def receive(sock, seconds=None):
    """The next message's data on a connection that carries one message
    this way (``Reader.message``: what may come behind it is dropped)."""
    return Reader(sock).message(seconds)


class Reader(object):
    """The messages that come on one connection (``sock``), in order. A
    read takes what the socket holds (up to ``_READ_SIZE``, or what is
    left of a larger message): the bytes past the message it reads are
    held for the next one, never lost, even when a message's wait ends
    with ``socket.timeout`` before the message is whole."""

    def __init__(self, sock):
        self.sock = sock
        self._held = bytearray()

    def message(self, seconds=None):
        """The next message's data (``json.loads``); SocketGone when the
        other side closed first, ValueError for a message that is no JSON,
        nested too deep or too long; socket.timeout when the whole message
        has not come within ``seconds`` (None: each read bounded by the
        socket's own timeout), however slowly its bytes trickle in."""
        deadline = None if seconds is None else time.monotonic() + seconds
        self._fill(_HEADER.size, deadline)
        (size,) = _HEADER.unpack_from(self._held)
        if size > MAX_MESSAGE:
            raise InvalidValue('a message of %d bytes, past the %d read' % (size, MAX_MESSAGE))
        end = _HEADER.size + size
        self._fill(end, deadline)
        data = self._held[_HEADER.size:end]
        # the message is taken whatever it holds: the next one starts here
        del self._held[:end]
        try:
            return json.loads(data.decode('utf-8'))
        except RecursionError:
            # json.loads of a deeply nested text raises this, not a ValueError
            raise InvalidValue('a message nested too deep')

    def _fill(self, size, deadline):
        """Read until ``size`` bytes are held, each read bounded by what is
        left until ``deadline`` (a message whose bytes came with the last
        one's needs no read, and sets no timeout)."""
        while len(self._held) < size:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout('the whole message did not come in time')
                self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(max(size - len(self._held), _READ_SIZE), _READ_MOST))
            except ConnectionResetError:
                chunk = b''
            if not chunk:
                raise SocketGone('the connection was closed before the whole message came')
            self._held += chunk


def same_user(sock):
    """Whether the peer of ``sock`` runs as this process's user (True
    where the system does not tell: the folder's mode keeps others out)."""
    option = getattr(socket, 'SO_PEERCRED', None)
    if option is None:
        return True
    credentials = struct.Struct('3i')
    _pid, uid, _gid = credentials.unpack(
        sock.getsockopt(socket.SOL_SOCKET, option, credentials.size))
    return uid == os.geteuid()
