"""The controller's processes as the tests see them: every descendant of a
run (from /proc), and a controller that dies at once with all it started.

Ansible's workers run in sessions of their own (ansible-core's
``WorkerProcess._detach`` calls ``os.setsid()``), so killing an
ansible-playbook's process group leaves its workers and their ssh finishing
the task they hold: on the activation's side a killed controller that still
confirms.
"""

import os
import signal


def descendants(pid):
    """The pids of every living descendant of ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                # pid (comm) state ppid ...: comm may hold spaces
                ppid = int(handle.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def kill_controller(proc):
    """SIGKILL the run ``proc`` (a Popen) and every process it started, as a
    controller that dies loses them: Ansible's workers and their ssh
    included. Each is stopped first, until a look finds none new, so none
    forks a child that the kill would miss, and none is given to init (and
    lost from the tree) while its parent dies before it."""
    stopped = set()
    while True:
        new = ({proc.pid} | set(descendants(proc.pid))) - stopped
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
    proc.wait()
