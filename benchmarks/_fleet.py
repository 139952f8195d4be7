# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lab fleet to benchmark deploys on, and timed runs of the two deployers.

Shared by overhead.py (1), copy_modes.py (3) and scaling.py (5). Every
address used is the lab's (its bridge and namespaces) or loopback.

Each timed run is a child process reaped with ``os.wait4``: its wall time and
the CPU time (user + system) of the child and every descendant it waited for
(ansible-playbook, its forks, ssh and nix clients), plus, for a playbook, the
ssh masters it left running detached (polled) - the controller's side only;
what runs on a target runs under that host's sshd.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.collection import ansible_env  # noqa: E402 pylint: disable=wrong-import-position
from tests.deploy_fleet import prepare, write_inventory  # noqa: E402 pylint: disable=wrong-import-position
from tests.lab import Lab  # noqa: E402 pylint: disable=wrong-import-position

BASELINE = os.path.join(REPO, 'benchmarks', 'baseline_deploy.sh')
CALLBACKS = os.path.join(REPO, 'benchmarks', 'callback_plugins')
# Where a deploy's time goes (the task_times callback's phases).
PHASES = ('eval', 'build', 'copy', 'activate', 'confirm')
PLAYBOOK = 'nixdeploy.fleet.deploy'
# ssh settings of the repository's ansible.cfg, as users deploy from it
SSH_ARGS = '-o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15'


class RunError(Exception):
    pass


def timed(argv, env=None, cwd=None, log=None, on_start=None):
    """Run argv; {'wall', 'cpu', 'rc'}: wall seconds and CPU seconds of the
    child and its reaped descendants. ``on_start(proc)``: called once it runs."""
    out = open(log, 'w') if log else subprocess.DEVNULL
    try:
        epoch = time.time()
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
        if on_start is not None:
            on_start(proc)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log:
            out.close()
    return {'wall': wall, 'cpu': usage.ru_utime + usage.ru_stime, 'rc': proc.returncode,
            'epoch': epoch}


def phases(times_file, run):
    """{phase: seconds} of one playbook run, from the task_times callback: the
    wall time during which at least one host was in the phase; 'startup' is
    what passed before the play (Python, inventory plugin), 'other' what no
    phase covers. Also 'first_activated' (seconds from the start until the
    first host's activation was done) and 'done' ({host: seconds until its
    activate task ended})."""
    try:
        with open(times_file) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    out = dict((name, data['phases'].get(name, 0.0)) for name in PHASES)
    out['startup'] = max(0.0, data['play_started'] - run['epoch'])
    out['other'] = max(0.0, run['wall'] - out['startup'] - data.get('busy', 0.0))
    out = dict((k, round(v, 2)) for k, v in out.items())
    if data.get('activated'):
        out['first_activated'] = round(min(data['activated'].values()) - run['epoch'], 2)
    out['done'] = dict((host, round(end - run['epoch'], 2)) for host, end in data['done'].items())
    return out


# What starts each step of baseline_deploy.sh in its execution trace.
BASELINE_STEPS = (('eval', re.compile(r' nx eval ')), ('build', re.compile(r' nx build ')),
                  ('copy', re.compile(r' xargs .*/copy$')),
                  ('activate', re.compile(r' xargs .*/activate$')),
                  ('confirm', re.compile(r' xargs .*/confirm$')))
TRACE_LINE = re.compile(r'^\++ (\d+\.\d+) (.*)$')


def baseline_phases(log, run):
    """{phase: seconds} of a traced baseline run (``BenchFleet.baseline(...,
    trace=True)``): each step from its first traced command to the next
    step's (the last one to the end of the run), 'startup' before the first."""
    starts = {}
    with open(log) as handle:
        for line in handle:
            match = TRACE_LINE.match(line.rstrip('\n'))
            if not match:
                continue
            for name, pattern in BASELINE_STEPS:
                if name not in starts and pattern.search(' ' + match.group(2)):
                    starts[name] = float(match.group(1))
    order = [name for name, _pattern in BASELINE_STEPS if name in starts]
    end = run['epoch'] + run['wall']
    out = {}
    for name, following in zip(order, order[1:] + [None]):
        out[name] = round((starts[following] if following else end) - starts[name], 2)
    if order:
        out['startup'] = round(starts[order[0]] - run['epoch'], 2)
    return out


def load():
    """The 1-minute load average (2 cores here; other work shares them)."""
    return round(os.getloadavg()[0], 2)


def ssh_masters(folder):
    """{pid: CPU seconds} of the ssh ControlPersist masters whose sockets are
    in ``folder`` (Ansible's control_path_dir of one run): they run detached,
    so the run's own CPU figure (wait4) misses them, yet ``nix copy`` rides
    them and they encrypt its bytes."""
    prefix = ('ssh: %s/' % folder).encode()
    tick = os.sysconf('SC_CLK_TCK')
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                if not handle.read().startswith(prefix):
                    continue
            with open('/proc/%s/stat' % entry) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        found[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def stop_masters(folder, grace=5.0):
    """Stop the ssh masters whose sockets are in ``folder``, by their pids."""
    pids = list(ssh_masters(folder))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if os.path.exists('/proc/%d' % pid)]
        time.sleep(0.05)


class MasterWatch:
    """Polls ``ssh_masters(folder)`` until stopped: {pid: highest CPU seconds}."""

    def __init__(self, folder, every=0.5):
        self.folder, self.every, self.seen = folder, every, {}
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            for pid, cpu in ssh_masters(self.folder).items():
                self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
            time.sleep(self.every)

    def stop(self):
        self.running = False
        self.thread.join()
        for pid, cpu in ssh_masters(self.folder).items():
            self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
        return self.seen


class BenchFleet:
    """``hosts`` NixOS lab hosts (h1..hN) with a fleet flake, an inventory and
    a signing key; ``select(n)`` picks the first n for the next runs."""

    def __init__(self, name, hosts, workdir, configurations=None, personas=None):
        self.workdir = workdir
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        self.lab = Lab(name).up(hosts, personas=personas or ['nixos'])
        try:
            self.flake, self.secret = prepare(self.lab, os.path.join(workdir, 'flake'),
                                              configurations=configurations)
            self.inventory = write_inventory(os.path.join(workdir, 'inventory'), self.lab,
                                             self.flake, self.secret)
        except Exception:
            self.lab.down()
            raise
        self.names = sorted(self.lab.hosts, key=lambda n: int(n[1:]))
        self.selected = list(self.names)
        self.runs = 0
        self.version = 0
        # a trace of the next runs (_process_trace.Tracer), or None
        self.tracer = None

    def down(self):
        self.lab.down()

    def select(self, count):
        self.selected = self.names[:count]
        return self.selected

    def new_version(self, **knobs):
        """A new system for every host: the next deploy builds, copies and
        activates it."""
        self.version += 1
        self.flake.set_all(version='b%d' % self.version, **knobs)

    def active(self):
        return dict((name, self.lab.active(name)) for name in self.selected)

    def _log(self, what):
        self.runs += 1
        return os.path.join(self.workdir, 'run%02d-%s.log' % (self.runs, what))

    def playbook(self, forks, args=(), env=None, record=None, playbook=PLAYBOOK):
        """ansible-playbook nixdeploy.fleet.deploy (or ``playbook``) on the
        selected hosts; ``record``: a file for the task results (the tests'
        recording callback)."""
        extra = {'ANSIBLE_CONFIG': os.path.join(REPO, 'ansible.cfg'),
                 'ANSIBLE_FORKS': str(forks), 'ANSIBLE_SSH_ARGS': SSH_ARGS,
                 'ANSIBLE_PIPELINING': 'True'}
        extra.update(env or {})
        run_env = ansible_env(extra)
        # the tests' recorder only when asked for; the task timer always
        times = os.path.join(self.workdir, 'times-%d.json' % (self.runs + 1))
        run_env.update(NIXDEPLOY_BENCH_TIMES=times,
                       ANSIBLE_CALLBACK_PLUGINS=CALLBACKS + os.pathsep
                       + run_env['ANSIBLE_CALLBACK_PLUGINS'],
                       ANSIBLE_CALLBACKS_ENABLED='task_times,record' if record else 'task_times')
        if record:
            run_env['NIXDEPLOY_TEST_RECORD'] = record
        argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                '-i', self.inventory, playbook, '-l', ','.join(self.selected)] + list(args)
        number = self.runs + 1
        log = self._log('playbook')
        # A control path folder of the run's own, as AWX gives each job
        # (private_data_dir/cp): a run never rides the masters of the one
        # before (a no-op would log in to no host), and they are stopped
        # after it. The masters run detached: wait4 never counts them, yet
        # they make the logins and carry every command and `nix copy`.
        folder = run_env.setdefault('ANSIBLE_SSH_CONTROL_PATH_DIR',
                                    os.path.join(self.workdir, 'cp-%d' % number))
        os.makedirs(folder, exist_ok=True)
        watch = MasterWatch(folder)
        on_start = None
        if self.tracer is not None:
            argv = self.tracer.wrap(argv)

            def on_start(proc):
                # the tracer follows the masters too: they end with the run
                self.tracer.stop_after(proc, lambda: stop_masters(folder))
        try:
            result = timed(argv, env=run_env, cwd=self.workdir, log=log, on_start=on_start)
        finally:
            seen = watch.stop()
            stop_masters(folder)
        result['ssh_masters_cpu'] = sum(seen.values())
        result['cpu'] += result['ssh_masters_cpu']
        if result['rc'] != 0:
            raise RunError('the deploy playbook failed (rc %s), see %s' % (result['rc'], log))
        result['phases'] = phases(times, result)
        return result

    def baseline(self, parallel, trace=False):
        """benchmarks/baseline_deploy.sh on the selected hosts. ``trace``: run
        it under bash's execution trace with a clock, and add its
        ``phases`` (see ``baseline_phases``)."""
        plan = os.path.join(self.workdir, 'baseline-hosts')
        with open(plan, 'w') as handle:
            for name in self.selected:
                host = self.lab.host(name)
                handle.write('%s %s %s %s\n' % (name, host['address'], host['ssh_user'],
                                                self.flake.attr(name)))
        log = self._log('baseline')
        args = [BASELINE, self.flake.ref, plan, str(parallel), self.lab.key, self.lab.known_hosts]
        if trace:
            # bash ignores PS4 from the environment when run as root: set it
            # inside, then source the (POSIX) script with its arguments
            argv = ['bash', '-c', "PS4='+ ${EPOCHREALTIME} '; set -x; . \"$0\" \"$@\""] + args
        else:
            argv = ['sh'] + args
        if self.tracer is not None:
            argv = self.tracer.wrap(argv)
        result = timed(argv, log=log)
        if result['rc'] != 0:
            raise RunError('the baseline deploy failed (rc %s), see %s' % (result['rc'], log))
        if trace:
            result['phases'] = baseline_phases(log, result)
        return result

    def deployed(self, before):
        """Check that every selected host now runs a new system."""
        now = self.active()
        stale = [n for n in self.selected if not now[n] or now[n] == before.get(n)]
        if stale:
            raise RunError('hosts still on their old system: %s' % ', '.join(stale))
        return now


def full_deploy(fleet, deployer, parallel):
    """A new version deployed by ``deployer`` ('playbook' | 'baseline'), then a
    no-op redeploy of the same. Returns {'deploy': run, 'noop': run}."""
    fleet.new_version()
    before = fleet.active()
    run = getattr(fleet, deployer)
    first = run(parallel)
    fleet.deployed(before)
    after = fleet.active()
    second = run(parallel)
    if fleet.active() != after:
        raise RunError('a no-op %s redeploy changed what is active' % deployer)
    return {'deploy': first, 'noop': second}
