"""The sshd of every host of a scale lab: one process, no resident sshd.

A host of a scale lab (lab.py beside this file) has no process of its own
while nobody is logged in. This listener holds one listening socket per host,
each made inside that host's network namespace (``setns`` into it, then
``socket``/``bind``/``listen``: a socket keeps the namespace it was made in),
on the host's own address, port 22. For each connection it starts, inside the
host's network and mount namespaces, ``sshd -i`` (inetd mode) with the host's
own sshd_config and host key, the connection as its stdin and stdout: the
same sshd binary and configuration a resident ``sshd -D`` would run for that
connection (OpenSSH 9.2's listener re-executes itself per connection anyway),
without 1,000 listeners idling.

Usage: python listener.py LABDIR. It reads LABDIR/state.json once, writes
LABDIR/listener.ready (the number of sockets) once every socket listens, and
ends on SIGTERM or when state.json goes. The sessions it started are not its
to stop: they run in the hosts' namespaces, where the lab's ``down`` stops
every process by its pid.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
NSENTER = '/usr/bin/nsenter'
SSHD = '/usr/sbin/sshd'
BACKLOG = 128

_libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)


def setns(fd, nstype):
    """setns(2) (os.setns is Python 3.12+)."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def log(text):
    sys.stdout.write('%s %s\n' % (time.strftime('%H:%M:%S'), text))
    sys.stdout.flush()


def listen_in(netns, address, port=22):
    """A listening TCP socket on ``address``:``port`` inside the named
    network namespace (this thread goes back to its own afterwards)."""
    home = os.open('/proc/self/ns/net', os.O_RDONLY)
    target = os.open('/run/netns/%s' % netns, os.O_RDONLY)
    try:
        setns(target, CLONE_NEWNET)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        finally:
            setns(home, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(home)
    return sock


class Listener:
    def __init__(self, labdir):
        self.labdir = labdir
        self.state_path = os.path.join(labdir, 'state.json')
        with open(self.state_path) as handle:
            self.hosts = json.load(handle)['hosts']
        self.selector = selectors.DefaultSelector()
        self.running = True
        self.started = 0

    def stop(self, _signum=None, _frame=None):
        self.running = False

    def bind_all(self):
        # one descriptor per host, plus those of the sessions being started
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, max(soft, 2 * len(self.hosts) + 256))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        for host in self.hosts.values():
            sock = listen_in(host['netns'], host['address'])
            self.selector.register(sock, selectors.EVENT_READ, host)
        with open(os.path.join(self.labdir, 'listener.ready.tmp'), 'w') as handle:
            handle.write('%d\n' % len(self.hosts))
        os.rename(os.path.join(self.labdir, 'listener.ready.tmp'),
                  os.path.join(self.labdir, 'listener.ready'))
        log('listening on %d hosts' % len(self.hosts))

    def spawn(self, host, conn):
        """sshd -i for one connection, inside the host's namespaces, in a
        session of its own (it must outlive neither more nor less than its
        client: the host's down stops it by pid)."""
        argv = [NSENTER, '--net=/run/netns/%s' % host['netns'], '--mount=%s' % host['mntns'],
                '--', SSHD, '-i', '-e', '-f', os.path.join(host['dir'], 'sshd_config')]
        fd = conn.fileno()
        actions = [(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, fd, 1),
                   (os.POSIX_SPAWN_OPEN, 2, os.path.join(host['dir'], 'log', 'sshd.log'),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)]
        try:
            os.posix_spawn(NSENTER, argv, {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'},
                           file_actions=actions, setsid=True)
            self.started += 1
        except OSError as exc:
            log('%s: could not start sshd: %s' % (host['name'], exc))
        finally:
            conn.close()

    def reap(self):
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return

    def run(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.bind_all()
        checked = time.monotonic()
        while self.running:
            for key, _mask in self.selector.select(timeout=0.5):
                while True:
                    try:
                        conn, _peer = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE):
                            time.sleep(0.05)
                        break
                    self.spawn(key.data, conn)
            self.reap()
            if time.monotonic() - checked > 2:
                checked = time.monotonic()
                if not os.path.exists(self.state_path):
                    break
        log('stopping after %d sessions' % self.started)


if __name__ == '__main__':
    Listener(sys.argv[1]).run()
