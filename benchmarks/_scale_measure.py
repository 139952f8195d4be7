# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What benchmarks/scale.py measures beside wall and CPU: the peak memory of a
run's process tree (sampled), the summary lines of its log, and the shares of
a py-spy profile by whose code ran (ansible-core, the collection, ...)."""

import os
import subprocess
import threading
import time

from benchmarks._cpu_groups import machine_busy, machine_forks
from benchmarks._fleet import REPO, ssh_masters, stop_masters
from tests.controller import descendants

PROFILE_RATE = 50
SAMPLE_SECONDS = 2.0


def _memory_kb(pid):
    """(PSS, RSS) of one process in KiB, or (0, 0) once it is gone."""
    pss = rss = 0
    try:
        with open('/proc/%d/smaps_rollup' % pid) as handle:
            for line in handle:
                if line.startswith('Pss:'):
                    pss = int(line.split()[1])
                elif line.startswith('Rss:'):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


class MemorySampler:
    """Samples the memory of a run's process tree (and of the ssh masters
    whose sockets are in ``folder``) every SAMPLE_SECONDS: the peaks of the
    summed PSS and RSS, and of the process count."""

    def __init__(self, pid, folder=None):
        self.pid, self.folder = pid, folder
        self.peak = {'pss_mb': 0.0, 'rss_mb': 0.0, 'processes': 0}
        # the main process's own CPU seconds at the last sample (ansible-playbook's
        # strategy loop: the run's bottleneck at scale)
        self.main_cpu = 0.0
        self.tick = float(os.sysconf('SC_CLK_TCK'))
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def read_main_cpu(self):
        """The main process's own CPU seconds now; kept when it cannot be read.
        Called once more on its zombie, before it is reaped (``timed``): a
        sample every SAMPLE_SECONDS missed up to its last two seconds, which
        made small fleets look cheaper a host than large ones."""
        try:
            with open('/proc/%d/stat' % self.pid) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
            self.main_cpu = (int(fields[11]) + int(fields[12])) / self.tick
        except (OSError, ValueError, IndexError):
            pass

    def _loop(self):
        while not self.stopped.is_set():
            self.read_main_cpu()
            pids = {self.pid} | set(descendants(self.pid))
            if self.folder:
                pids |= set(ssh_masters(self.folder))
            pss = rss = 0
            for pid in pids:
                one = _memory_kb(pid)
                pss += one[0]
                rss += one[1]
            self.peak['pss_mb'] = max(self.peak['pss_mb'], pss / 1024.0)
            self.peak['rss_mb'] = max(self.peak['rss_mb'], rss / 1024.0)
            self.peak['processes'] = max(self.peak['processes'], len(pids))
            # woken at once by stop(): a sleep here made every run's wall
            # time end at the next sample, up to SAMPLE_SECONDS late
            self.stopped.wait(SAMPLE_SECONDS)

    def stop(self):
        self.stopped.set()
        self.thread.join()
        out = dict((k, round(v, 1)) for k, v in self.peak.items())
        out['main_cpu'] = round(self.main_cpu, 1)
        return out


def timed(argv, env=None, cwd=None, log=None, folder=None, groups=None, counter=None):
    """As _fleet.timed, and the run's peak memory (``memory``). With
    ``folder`` (the run's own ssh control path folder), the ssh masters the
    run leaves are counted and then stopped. With ``groups``
    (_cpu_groups.CpuGroups), the run joins its controller group: 'cpu' is
    then that group's CPU over the run (every process it started, detached
    ones included), else the reaped tree's and the masters'; 'cpu_wait4' the
    reaped tree's alone, 'targets_cpu' what the lab's hosts spent meanwhile;
    'idle' the machine's idle CPU seconds over the run, 'processes' how
    many processes the machine started meanwhile (controller and hosts).
    With ``counter`` (_fork_count.ForkCounter), 'started': {group: processes
    it started over the run} (the controller's and the hosts' apart)."""
    before = groups.seconds() if groups else None
    started_before = counter.counts() if counter else None
    lost_before = counter.lost if counter else 0
    busy_idle, forks = machine_busy(), machine_forks()
    with open(log, 'w') as out:
        epoch = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=groups.joiner('controller') if groups else None)
        sampler = MemorySampler(proc.pid, folder)
        try:
            # exited but not reaped: its /proc entry still holds its CPU times
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            sampler.read_main_cpu()
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
            idle_end = machine_busy()[1]
        finally:
            memory = sampler.stop()
    result = {'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime, 'epoch': epoch,
              'rc': os.waitstatus_to_exitcode(status), 'memory': memory,
              'idle': idle_end - busy_idle[1],
              # every process started on the machine meanwhile, the hosts' too
              'processes': machine_forks() - forks}
    result['cpu_wait4'] = result['cpu']
    if folder:
        # the ssh masters the run left (a folder of its own: none were there
        # before): their CPU so far, then stopped by pid, as an AWX job's
        # go with its container, so that the next run logs in again
        result['ssh_masters_cpu'] = sum(ssh_masters(folder).values())
        stop_masters(folder)
    if counter:
        # the last events of the run's exits, read before counting
        time.sleep(0.3)
        now = counter.counts()
        result['started'] = dict((group, now.get(group, 0) - started_before.get(group, 0))
                                 for group in ('controller', 'targets'))
        result['started_lost'] = counter.lost - lost_before
    if groups:
        after = groups.seconds()
        result['cpu'] = after['controller'] - before['controller']
        result['targets_cpu'] = after['targets'] - before['targets']
    else:
        result['cpu'] += result.get('ssh_masters_cpu', 0.0)
    return result


def summary_lines(log):
    """Lines of the NIXDEPLOY SUMMARY blocks the summary callback printed."""
    count, inside = 0, False
    with open(log, errors='replace') as handle:
        for line in handle:
            if 'NIXDEPLOY SUMMARY' in line:
                inside = True
                continue
            # the block ends at an empty line or the next message
            if inside and (not line.strip() or line.startswith(('nixdeploy', 'PLAY', 'TASK'))):
                inside = False
            elif inside:
                count += 1
    return count


# where a sampled frame's code lives, by its file's path
OWNERS = (('collection', ('/ansible_collections/nixdeploy/fleet/', REPO + '/plugins/')),
          ('benchmark callbacks', (REPO + '/benchmarks/', REPO + '/tests/')),
          ('ansible-core', ('/site-packages/ansible/', '/site-packages/ansible_test/')),
          ('jinja2, yaml, markupsafe', ('/site-packages/jinja2/', '/site-packages/yaml/',
                                        '/site-packages/markupsafe/')),
          ('python stdlib', ('/lib/python3', '<frozen ')))


def _owner(frame):
    if frame.startswith('process ') and ' (' not in frame:
        return 'no Python frame'
    path = frame.rsplit('(', 1)[-1]
    for owner, parts in OWNERS:
        if any(part in path for part in parts):
            return owner
    return 'other'


def _label(frame):
    """'function (file.py)' of a sampled frame."""
    return '%s (%s)' % (frame.split(' (')[0], frame.rsplit('/', 1)[-1].split(':')[0])


def profile_shares(raw, rate=PROFILE_RATE):
    """From py-spy's raw output (``frame;frame;... count`` lines, a fork's
    stack under its parent's ``process`` frame): samples and seconds of the
    main process and of the forks; the share of samples by the owner of the
    innermost frame ('self'); the hot spots: the innermost frame that is not
    the standard library's (a fork's os.fork counts to WorkerProcess.start);
    the share of samples with a collection frame anywhere on the stack."""
    own, hot, counts, inclusive, total = {}, {}, {'main': 0, 'forks': 0}, 0, 0
    with open(raw) as handle:
        for line in handle:
            stack, _sep, count = line.rstrip('\n').rpartition(' ')
            if not stack or not count.isdigit():
                continue
            count = int(count)
            frames = stack.split(';')
            total += count
            fork = len(frames) > 1 and _owner(frames[1]) == 'no Python frame'
            counts['forks' if fork else 'main'] += count
            leaf = _owner(frames[-1])
            own[leaf] = own.get(leaf, 0) + count
            owners = [_owner(f) for f in frames]
            if 'collection' in owners:
                inclusive += count
            for frame, owner in zip(reversed(frames), reversed(owners)):
                if owner not in ('python stdlib', 'no Python frame'):
                    key = '%s: %s' % (owner, _label(frame))
                    hot[key] = hot.get(key, 0) + count
                    break
    if not total:
        return None
    top = sorted(hot.items(), key=lambda item: -item[1])[:10]
    return {'samples': total, 'rate': rate,
            'seconds': dict((k, round(float(v) / rate, 1)) for k, v in counts.items()),
            'self': dict((k, round(100.0 * v / total, 1)) for k, v in own.items()),
            'collection_inclusive': round(100.0 * inclusive / total, 1),
            'hot': [(name, round(100.0 * count / total, 1)) for name, count in top]}


def profile_table(data):
    lines = ['', "where the playbook's controller CPU goes (py-spy, N=%d; samples of Python "
             'holding the GIL):' % data['n']]
    for phase in ('deploy', 'noop'):
        shares = data[phase]['shares'] or {}
        seconds = shares.get('seconds', {})
        lines.append('  %s, %.1f s wall: main process %.1f s, forks %.1f s (short-lived forks '
                     'are mostly missed); by the innermost frame: %s; a collection frame on the '
                     'stack: %.1f%%' % (
                         'no-op' if phase == 'noop' else phase, data[phase]['wall'],
                         seconds.get('main', 0), seconds.get('forks', 0),
                         ', '.join('%s %.1f%%' % (k, v) for k, v in sorted(
                             shares.get('self', {}).items(), key=lambda item: -item[1])),
                         shares.get('collection_inclusive', 0)))
        for name, share in shares.get('hot', [])[:8]:
            lines.append('      %5.1f%%  %s' % (share, name))
    return '\n'.join(lines)
