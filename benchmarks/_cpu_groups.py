# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU seconds by control group, for benchmarks whose hosts share the
controller's cores (the scale lab).

wait4 sees a run's reaped process tree only: the ssh masters a playbook
leaves detached, and everything the lab's hosts run (sshd, nix-daemon, the
activation scripts, detached activation runners), never reach it. On 2 cores
shared by both, the wall time follows the sum. Two groups make both exact:
``controller`` (a deployer joins it before exec, so every process it starts,
detached or not, stays in it) and ``targets`` (the scale lab's listener,
which starts every host's sshd). cgroup v2 (``cpu.stat`` usage_usec) or v1
(``cpuacct.usage``, ns); ``CpuGroups.open`` returns None where neither can
be made (not root, no cgroup file system), and the benchmark says so.
"""

import os
import time

V2_ROOTS = ('/sys/fs/cgroup/unified', '/sys/fs/cgroup')
V1_ROOT = '/sys/fs/cgroup/cpuacct'
GROUPS = ('controller', 'targets')


def _v2_usage(path):
    with open(os.path.join(path, 'cpu.stat')) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 2 and fields[0] == 'usage_usec':
                return int(fields[1]) / 1e6
    raise OSError('no usage_usec in %s/cpu.stat' % path)


def _v1_usage(path):
    with open(os.path.join(path, 'cpuacct.usage')) as handle:
        return int(handle.read()) / 1e9


def machine_busy():
    """(busy, idle) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open('/proc/stat') as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    tick = float(os.sysconf('SC_CLK_TCK'))
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, idle / tick


def machine_forks():
    """Processes (and threads) the whole machine has started since boot."""
    with open('/proc/stat') as handle:
        for line in handle:
            if line.startswith('processes '):
                return int(line.split()[1])
    return 0


class CpuGroups:
    """Two sibling groups under ``base`` (a folder of one cgroup hierarchy)."""

    def __init__(self, base, usage):
        self.base, self._usage = base, usage

    @classmethod
    def open(cls, name):
        """Make ``name``/controller and ``name``/targets; None when no
        hierarchy lets us (the caller falls back to wait4)."""
        candidates = [(root, _v2_usage) for root in V2_ROOTS
                      if os.path.exists(os.path.join(root, 'cgroup.controllers'))]
        if os.path.exists(os.path.join(V1_ROOT, 'cpuacct.usage')):
            candidates.append((V1_ROOT, _v1_usage))
        for root, usage in candidates:
            base = os.path.join(root, name)
            try:
                for group in GROUPS:
                    os.makedirs(os.path.join(base, group), exist_ok=True)
                    usage(os.path.join(base, group))
            except OSError:
                _remove(base)
                continue
            return cls(base, usage)
        return None

    def path(self, group):
        return os.path.join(self.base, group)

    def join(self, group, pid=0):
        """Move ``pid`` (0: the caller, as a preexec_fn does) into ``group``;
        its children are born there."""
        with open(os.path.join(self.path(group), 'cgroup.procs'), 'w') as handle:
            handle.write(str(pid or os.getpid()))

    def joiner(self, group):
        """A preexec_fn that puts the child in ``group`` before it execs."""
        return lambda: self.join(group)

    def seconds(self):
        """{group: CPU seconds so far} (of processes gone too)."""
        return dict((group, self._usage(self.path(group))) for group in GROUPS)

    def close(self, grace=5.0):
        """Move what is left to the hierarchy's root and remove the groups."""
        root = os.path.dirname(self.base)
        deadline = time.monotonic() + grace
        for group in GROUPS:
            while True:
                try:
                    with open(os.path.join(self.path(group), 'cgroup.procs')) as handle:
                        pids = handle.read().split()
                except OSError:
                    break
                for pid in pids:
                    try:
                        with open(os.path.join(root, 'cgroup.procs'), 'w') as handle:
                            handle.write(pid)
                    except OSError:
                        pass   # gone meanwhile
                if not pids or time.monotonic() > deadline:
                    break
                time.sleep(0.05)   # read again: a process may have forked meanwhile
        _remove(self.base)


def _remove(base):
    for group in GROUPS:
        try:
            os.rmdir(os.path.join(base, group))
        except OSError:
            pass
    try:
        os.rmdir(base)
    except OSError:
        pass
