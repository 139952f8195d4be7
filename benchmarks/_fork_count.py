# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes started by control group (issue 45): how many processes the
controller and the lab's hosts each start during a run.

/proc/stat counts the whole machine's forks, threads included. The kernel's
process events connector (netlink, root) reports every fork with its
parent: a new process (not a thread) is counted in its parent's group of
``_cpu_groups.CpuGroups`` (``controller`` or ``targets``), which a fork
inherits; the parent's group is known from the fork that made it, else read
from /proc/PID/cgroup. ``ForkCounter.open(groups)`` returns None where the
connector is not there (not root, a kernel without it); events the socket
had to drop are counted in ``lost``.
"""

import errno
import os
import socket
import struct
import threading

NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE = 1, 2
PROC_EVENT_FORK, PROC_EVENT_EXIT = 0x00000001, 0x80000000
NLMSG_DONE = 3
# nlmsghdr (16 bytes), cn_msg (20), then proc_event: what, cpu, timestamp (16)
EVENT = 16 + 20
DATA = EVENT + 16


def listen_message(pid, filtered=True):
    """The netlink message that subscribes to process events; ``filtered``:
    forks and exits only (kernel 6.6 and later read the event mask; older
    ones want the 4-byte operation alone)."""
    payload = struct.pack('=I', PROC_CN_MCAST_LISTEN)
    if filtered:
        payload += struct.pack('=I', PROC_EVENT_FORK | PROC_EVENT_EXIT)
    cn_msg = struct.pack('=IIIIHH', CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return struct.pack('=IHHII', 16 + len(cn_msg), NLMSG_DONE, 0, 0, pid) + cn_msg


def parse(data):
    """[(kind, a, b)] of one datagram: ('fork', parent tgid, child pid) for
    a new process (threads are left out), ('exit', pid, 0) for a process's
    end; other events are left out."""
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length = struct.unpack_from('=I', data, offset)[0]
        if length < DATA or offset + length > len(data):
            break
        what = struct.unpack_from('=I', data, offset + EVENT)[0]
        if what == PROC_EVENT_FORK:
            _ppid, ptgid, cpid, ctgid = struct.unpack_from('=IIII', data, offset + DATA)
            if cpid == ctgid:
                out.append(('fork', ptgid, cpid))
        elif what == PROC_EVENT_EXIT:
            pid, tgid = struct.unpack_from('=II', data, offset + DATA)
            if pid == tgid:
                out.append(('exit', pid, 0))
        offset += (length + 3) & ~3
    return out


def group_of(cgroup_text, base):
    """The group name (last part of the path) of a /proc/PID/cgroup text
    whose path lies under ``base`` (the CpuGroups folder, relative to the
    hierarchy's root: '/nixdeploy-bench-1'), else None."""
    for line in cgroup_text.splitlines():
        path = line.split(':', 2)[-1]
        if path.startswith(base + '/'):
            return path[len(base) + 1:].split('/')[0]
    return None


class ForkCounter:
    """Counts the processes each group starts; ``counts()`` so far."""

    def __init__(self, sock, base):
        self.sock, self.base = sock, base
        self.members = {}
        self.started = {}
        self.lost = 0
        self.running = True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @classmethod
    def open(cls, groups):
        """A counter for ``groups`` (CpuGroups), or None."""
        if groups is None:
            return None
        root = next((r for r in ('/sys/fs/cgroup/unified', '/sys/fs/cgroup/cpuacct',
                                 '/sys/fs/cgroup') if groups.base.startswith(r + '/')), None)
        if root is None:
            return None
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)   # SO_RCVBUFFORCE
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
            sock.bind((0, CN_IDX_PROC))
            release = tuple(int(p) for p in os.uname().release.split('.')[:2]
                            if p.isdigit())
            sock.send(listen_message(sock.getsockname()[0], filtered=release >= (6, 6)))
            sock.settimeout(0.5)
        except OSError:
            return None
        return cls(sock, groups.base[len(root):])

    def _group(self, pid):
        group = self.members.get(pid)
        if group is None:
            try:
                with open('/proc/%d/cgroup' % pid) as handle:
                    group = group_of(handle.read(), self.base)
            except OSError:
                group = None
        return group

    def _loop(self):
        while self.running:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                return
            with self.lock:
                for kind, first, second in parse(data):
                    if kind == 'exit':
                        self.members.pop(first, None)
                        continue
                    group = self._group(first)
                    if group is None:
                        continue
                    self.members[second] = group
                    self.started[group] = self.started.get(group, 0) + 1

    def counts(self):
        with self.lock:
            return dict(self.started)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()
