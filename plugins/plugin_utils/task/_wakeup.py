# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A waiting host's doorbell: a FIFO beside its entry, rung when the entry
is written.

Every host of a batch waits in its own Ansible worker process for its own
entry. Looking for the file by the clock costs each waiting worker CPU that
the evaluators and builders the hosts wait on need (docs/benchmarks.md,
"The pipeline in time"), so a host sleeps in ``poll`` on its doorbell and
wakes when the batch's process rings it (right after the entry is written),
or after ``SAFETY`` seconds to see whether that process is still alive.

The worker opens the FIFO for reading and writing (Linux and macOS allow it
though POSIX leaves it open): it is then its own writer, so the FIFO never
reports end-of-file, only a ring. Opened before the host looks for its
entry, it catches a ring that comes after that look. Whatever cannot make
or open a FIFO (a file system without them, anything but a FIFO at the
path) leaves the bell without a descriptor: the caller then looks by the
clock.
"""

import errno
import os
import select
import stat

# how long a host sleeps on its doorbell before it looks anyway: the time
# in which it learns that the batch's process died without ringing
SAFETY = 2.0


def bell_path(entry_path):
    """The doorbell of an entry ``<digest>.json``: ``<digest>.wake``."""
    return os.path.splitext(entry_path)[0] + '.wake'


def ring(entry_path):
    """Wake the host waiting for ``entry_path`` (nobody waiting: nothing)."""
    _ring(bell_path(entry_path))


def ring_all(folder):
    """Ring every doorbell in ``folder`` (the batch ended: hosts without an
    entry learn it at once)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.endswith('.wake'):
            _ring(os.path.join(folder, name))


def _ring(bell):
    try:
        fd = os.open(bell, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return  # no bell (nobody waits) or no reader left (ENXIO)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, b'\0')
    except OSError:
        pass  # full of unheard rings (EAGAIN): the host wakes anyway
    finally:
        os.close(fd)


class Wakeup(object):
    """The bell of one entry, for the one host that waits for it; use as a
    context manager (the FIFO is removed at the end)."""

    def __init__(self, entry_path):
        self.path = bell_path(entry_path)
        self.fd = None
        made = False
        try:
            os.mkfifo(self.path, 0o600)
            made = True
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                return
        try:
            # O_NONBLOCK: never block on open; the read end drains with it
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            if made:
                _unlink(self.path)
            return
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            return
        self.fd = fd

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def wait(self, seconds):
        """Sleep until a ring or ``seconds``; True when it rang. Without a
        descriptor: False at once (the caller looks by the clock)."""
        if self.fd is None:
            return False
        try:
            rang = _readable(self.fd, max(0.0, seconds))
        except (OSError, ValueError):
            # a bell that cannot be waited on must not make its caller spin
            self.close()
            return False
        if rang:
            self._drain()
        return rang

    def _drain(self):
        while True:
            try:
                if not os.read(self.fd, 4096):
                    return
            except OSError:
                return  # EAGAIN: nothing more

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:
                pass
            _unlink(self.path)


def _readable(fd, seconds):
    # poll where there is one: select refuses descriptors past FD_SETSIZE
    # (1024), and a worker forked by an ansible-playbook of a thousand forks
    # inherits that many
    if hasattr(select, 'poll'):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        events = 0
        for _fd, event in poller.poll(int(seconds * 1000)):
            events |= event
        if events & (select.POLLERR | select.POLLNVAL):
            raise OSError('the doorbell cannot be waited on')
        return bool(events & select.POLLIN)
    readable, _w, _x = select.select([fd], [], [], seconds)
    return bool(readable)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
