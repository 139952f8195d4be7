# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a deploy's seconds go, by process: one run under strace.

The phase split (task_times) says which task a host was in; this says what
ran meanwhile on the controller: each Ansible worker, each detached process
the collection starts (the evaluation's and the build's batch processes), each
Nix call and each ssh. strace follows every process the deployer starts,
detached ones too (``-f``), and stops only at the process system calls
(``--seccomp-bpf``): a fork costs it about a tenth of a millisecond, so the
traced run is a little slower than the timed ones and is run apart from them.

Every process gets a kind from what it ran (``nix build``, ``ssh``, ``sh``)
or, for a fork that runs no new program, from its place: the deployer's main
process, a worker (a child of the main process), a detached batch process
(a worker's fork that left its session), a fork of a worker's module code.
A kind's figures: how many, their summed lifetime, and the wall time during
which at least one ran (the union; kinds overlap in time).
"""

import os
import re
import shutil
import threading
import time

# the union of intervals, as the phase split (task_times) counts a phase's time
from benchmarks.callback_plugins.task_times import union

# a line: PID TIME call(...) = result | PID TIME +++ exited with N +++
_LINE = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+(.*)$')
_CALL = re.compile(r'^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)')
_EXEC = re.compile(r'^"([^"]*)", \[(.*?)\](?:, | \.\.\.)')
_RESUMED = re.compile(r'^<\.\.\. (\w+) resumed>(.*)$')
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
# Nix's subcommands that name what a call does (its first word that is one)
_NIX_WORDS = ('eval', 'build', 'copy', 'path-info', 'derivation', 'show-derivation',
              'flake', 'store', 'config', 'show-config', 'log', 'realisation')


def available():
    """Whether strace is here (and can follow forks with a seccomp filter)."""
    return shutil.which('strace') is not None


class Tracer:
    """Wraps a deployer's argv in strace, its trace into ``path``."""

    def __init__(self, path):
        self.path, self.program = path, None

    def wrap(self, argv):
        self.program = argv[0]
        return ['strace', '-f', '-q', '--seccomp-bpf', '-ttt', '-s', '200',
                '-e', 'trace=%process,setsid', '-e', 'signal=none', '-o', self.path,
                '--'] + list(argv)

    def stop_after(self, proc, stop):
        """Call ``stop`` once the traced program (strace's child running the
        wrapped argv) has ended: strace waits for every process it follows,
        the ssh masters that outlive a playbook too."""
        def watch():
            children = '/proc/%d/task/%d/children' % (proc.pid, proc.pid)
            child = None
            while proc.poll() is None:
                try:
                    with open(children) as handle:
                        found = handle.read().split()
                except OSError:
                    return
                if child is None:
                    child = next((pid for pid in found if self._runs_program(pid)), None)
                elif child not in found:
                    stop()
                    return
                time.sleep(0.02)
        threading.Thread(target=watch, daemon=True).start()

    def _runs_program(self, pid):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                args = handle.read().split(b'\0')
        except OSError:
            return False
        return os.fsencode(self.program) in args[:2]


class _Proc:
    __slots__ = ('pid', 'parent', 'start', 'end', 'argv', 'setsid', 'kind')

    def __init__(self, pid, parent, start):
        self.pid, self.parent, self.start = pid, parent, start
        self.end, self.argv, self.setsid, self.kind = None, None, False, None


def _lines(path):
    """(pid, time, call text) of each system call or exit in the trace, a
    call split by another process's (``<unfinished ...>`` ... ``<... resumed>``)
    put back together."""
    pending = {}
    with open(path, errors='replace') as handle:
        for line in handle:
            match = _LINE.match(line.rstrip('\n'))
            if not match:
                continue
            pid, when, rest = int(match.group(1)), float(match.group(2)), match.group(3)
            if rest.endswith('<unfinished ...>'):
                pending[pid] = rest[:-len('<unfinished ...>')].rstrip()
                continue
            resumed = _RESUMED.match(rest)
            if resumed:
                rest = pending.pop(pid, resumed.group(1) + '(') + resumed.group(2)
            yield pid, when, rest


def read(path):
    """({pid: _Proc}, the root's pid) of a strace file written by ``traced``."""
    procs, root, threads, tried = {}, None, set(), {}
    for pid, when, rest in _lines(path):
        if pid in threads:
            continue
        proc = procs.get(pid)
        if proc is None:
            proc = procs[pid] = _Proc(pid, None, when)
            if root is None:
                root = pid
        if rest.startswith('+++'):
            proc.end = when
            continue
        call = _CALL.match(rest)
        if not call:
            continue
        name, args, result = call.groups()
        if name in ('clone', 'clone3', 'fork', 'vfork') and result not in ('?', '-1'):
            child = int(result)
            if 'CLONE_THREAD' in args:
                threads.add(child)
                procs.pop(child, None)
                continue
            known = procs.get(child)
            if known is None:
                procs[child] = _Proc(child, pid, when)
            else:
                known.parent, known.start = pid, min(known.start, when)
        elif name == 'execve':
            found = _EXEC.match(args)
            if found:
                tried[pid] = [a.encode().decode('unicode_escape')
                              for a in _ARG.findall(found.group(2))]
            if result == '0' and pid in tried:
                proc.argv = tried.pop(pid)
        elif name == 'setsid' and result != '-1':
            proc.setsid = True
    _kinds(procs, root)
    return procs, root


def _kind_of_program(argv):
    prog = os.path.basename(argv[0])
    if prog.startswith('python') and len(argv) > 1:
        prog = os.path.basename(argv[1])
    if prog == 'nix':
        words = [a for a in argv[1:] if a in _NIX_WORDS]
        return 'nix ' + words[0] if words else 'nix'
    if prog in ('nix-store', 'nix-instantiate', 'nix-env', 'nix-build'):
        return prog
    if prog == 'ssh':
        if '-O' in argv:
            return 'ssh -O (master control)'
        return 'ssh'
    return prog


def _kinds(procs, root):
    """Each process's kind; ``root`` is the deployer (ansible-playbook, or the
    script's sh), whose forks are Ansible's workers."""
    procs[root].kind = 'deployer (main process)'
    for proc in procs.values():
        if proc.argv and proc.pid != root:
            proc.kind = _kind_of_program(proc.argv)
    # the forks that run no program: by place
    for proc in sorted(procs.values(), key=lambda p: p.start):
        if proc.kind:
            continue
        parent = procs.get(proc.parent)
        if parent is not None and parent.argv and parent.pid != root:
            # ssh's ControlPersist master is the fork of the first ssh
            proc.kind = 'ssh master' if parent.kind == 'ssh' else parent.kind + ' (fork)'
        elif proc.parent == root:
            proc.kind = 'ansible worker'
        elif proc.setsid or (parent is not None and parent.kind == 'detached batch process'):
            proc.kind = 'detached batch process'
        elif parent is not None and parent.kind == 'ansible worker':
            proc.kind = 'worker fork'
        else:
            proc.kind = 'other fork'
    # a detached process's first fork only makes the second and exits
    for proc in procs.values():
        if proc.kind == 'detached batch process' and any(
                child.parent == proc.pid and child.kind == 'detached batch process'
                for child in procs.values()):
            proc.kind = 'detaching fork'


def split(path):
    """{kind: {'count', 'sum', 'union'}} of a trace, plus 'total': the run's
    wall time in the trace."""
    procs, root = read(path)
    first = procs[root].start
    last = procs[root].end or max(p.end or p.start for p in procs.values())
    groups = {}
    for proc in procs.values():
        end = proc.end if proc.end is not None else last
        groups.setdefault(proc.kind, []).append((proc.start, end))
    out = dict((kind, {'count': len(spans), 'sum': round(sum(b - a for a, b in spans), 3),
                       'union': round(union(spans), 3)}) for kind, spans in groups.items())
    out['total'] = round(last - first, 3)
    return out


def table(title, splits):
    """Lines: a kind a row, a column a run (``splits``: [(label, split)])."""
    kinds = sorted(set(k for _l, s in splits for k in s if k != 'total'),
                   key=lambda k: -max(s.get(k, {}).get('union', 0) for _l, s in splits))
    head = '%-26s' % title + ''.join(' %22s' % label for label, _s in splits)
    lines = [head, '%-26s' % 'kind' + ' %22s' % 'n  union s  sum s' * len(splits),
             '-' * len(head)]
    for kind in kinds:
        cells = []
        for _label, found in splits:
            cell = found.get(kind)
            cells.append(' %22s' % ('%3d %8.2f %6.2f' % (cell['count'], cell['union'], cell['sum'])
                                    if cell else '-'))
        lines.append('%-26s' % kind + ''.join(cells))
    lines.append('%-26s' % 'wall (traced)' + ''.join(' %22s' % ('%.2f' % s['total'])
                                                     for _l, s in splits))
    return lines


def run_traced(fleet, deployer, parallel, trace_file):
    """One ``deployer`` run ('playbook' | 'baseline') of the fleet's
    selection under strace; the fleet's result, with its ``split``."""
    fleet.tracer = Tracer(trace_file)
    try:
        result = getattr(fleet, deployer)(parallel)
    finally:
        fleet.tracer = None
    result['split'] = split(trace_file)
    return result


def timeline(path, shortest=0.0):
    """Lines: every process of a trace by its start, from the deployer's start."""
    procs, root = read(path)
    first = procs[root].start
    lines = []
    for proc in sorted(procs.values(), key=lambda p: p.start):
        length = (proc.end or proc.start) - proc.start
        if length < shortest:
            continue
        lines.append('%7.3f %7.3f  %-24s %s' % (proc.start - first, length, proc.kind,
                                                ' '.join(proc.argv or [])[:110]))
    return lines
