"""pytest plugin: what each test module costs, in CPU and wall seconds.

A lab test's wall time says little on a busy 2-core machine (the suite's
own modules wait for each other's cores: one EE test took 216 s in a full
`make test` and 13 s beside one other module). What the suite's time is
made of is CPU. For each module this counts, around each of its tests
(setup, call and teardown, so a module's lab coming down is its own):

- ``wall``: seconds from its first test's setup to its last teardown, summed
  per test (a module runs on one worker, one test after the other);
- ``cpu``: user and system seconds of the test process itself (os.times);
- ``children``: those of the processes it started and waited for
  (ansible-playbook, nix, ssh; os.times' children fields, what
  getrusage(RUSAGE_CHILDREN) counts);
- ``playbooks``: the ``ansible-playbook`` runs the test process started
  (Python's audit events; not those another program it ran started);
- ``cgroup``: as root with cgroup v2, or v1's cpuacct, the CPU of every
  process the module started, detached ones too (its labs' sshd and
  nix-daemon), from a cgroup of the module's own that every child inherits;
  None elsewhere. Processes started in containers (podman gives them cgroups
  of their own) are not counted.

Collection and start-up, which belong to no module, are one row of their own.

    make unit MODULE_CPU=tests/output/cost-here.json
    python -m pytest -p tests.module_cpu ... (NIXDEPLOY_MODULE_CPU=FILE)

The JSON FILE is written at the end of the session (one file for all of
pytest-xdist's workers); ``python -m tests.suite_cost FILE...`` prints it
as a table, one column group a file (`make test`: one a stack).
"""

import json
import os
import platform
import sys
import time

import pytest

REPORT_ENV = 'NIXDEPLOY_MODULE_CPU'
RUN_ENV = 'NIXDEPLOY_MODULE_CPU_RUN'
V1 = '/sys/fs/cgroup/cpuacct'
V2 = '/sys/fs/cgroup'
# the row of what runs outside any test: start-up, collection, xdist
OUTSIDE = '(start-up and collection)'
FORMAT = 1


def cgroup_root():
    """The cgroup hierarchy that counts CPU (v1's cpuacct, else v2), or None."""
    if os.path.isfile(os.path.join(V1, 'cpuacct.usage')):
        return V1
    if os.path.isfile(os.path.join(V2, 'cgroup.controllers')):
        return V2
    return None


def _seconds(group):
    """CPU seconds of one module's cgroup (v1 counts ns, v2 us)."""
    usage = os.path.join(group, 'cpuacct.usage')
    if os.path.isfile(usage):
        with open(usage) as f:
            return int(f.read()) / 1e9
    with open(os.path.join(group, 'cpu.stat')) as f:
        for line in f:
            key, value = line.split()
            if key == 'usage_usec':
                return int(value) / 1e6
    return 0.0


def _clock():
    """Wall, own CPU and waited-for children's CPU seconds so far, and the
    ansible-playbook runs started."""
    t = os.times()
    return (time.monotonic(), t.user + t.system, t.children_user + t.children_system,
            _PLAYBOOKS.started)


class PlaybookCount:
    """Counts the ansible-playbook runs this process starts, from Python's
    audit events (each run costs about a CPU-second of ansible-core's
    start-up: the table says where they are). A run started by another
    program (make, ansible-runner, Molecule) is not seen."""

    def __init__(self):
        self.started = 0
        self.hooked = False

    def hook(self):
        if not self.hooked:
            # a hook once added stays for the process
            sys.addaudithook(self._audit)
            self.hooked = True

    def _audit(self, event, args):
        if event != 'subprocess.Popen':
            return
        executable, argv = args[0], args[1]
        words = [executable] + ([argv] if isinstance(argv, (str, bytes)) else list(argv or ()))
        # the program, or a wrapper's argument (run_playbook's CONTAINED)
        if any(os.path.basename(os.fsdecode(w)) == 'ansible-playbook'
               for w in words if isinstance(w, (str, bytes, os.PathLike))):
            self.started += 1


_PLAYBOOKS = PlaybookCount()


class CgroupCount:
    """Each module's processes in a cgroup of its own, while root can make
    them; `seconds()` reads them all at the end of the run."""

    def __init__(self):
        root = cgroup_root()
        self.base = root and os.path.join(root, 'nixdeploy-module-cpu', os.environ[RUN_ENV])

    def enter(self, module):
        """From now on this process, and what it starts, counts for module.
        What the previous module left running still counts for that one."""
        if self.base is None:
            return
        group = os.path.join(self.base, module)
        try:
            os.makedirs(group, exist_ok=True)
            with open(os.path.join(group, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))
        except OSError:
            # not root, or a hierarchy this mount namespace may not write:
            # the other figures stand without it
            self.base = None

    def seconds(self):
        """{module: CPU seconds} of this run's cgroups, or {}."""
        if self.base is None or not os.path.isdir(self.base):
            return {}
        return dict((m, _seconds(os.path.join(self.base, m))) for m in os.listdir(self.base)
                    if os.path.isdir(os.path.join(self.base, m)))

    def remove(self):
        """Leave this run's cgroups and remove them (a cgroup goes once
        nothing runs in it; what still runs keeps its own)."""
        if self.base is None or not os.path.isdir(self.base):
            return
        top = os.path.dirname(os.path.dirname(self.base))
        try:
            with open(os.path.join(top, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))
        except OSError:
            return
        for module in os.listdir(self.base):
            try:
                os.rmdir(os.path.join(self.base, module))
            except OSError:
                pass
        for folder in (self.base, os.path.dirname(self.base)):
            try:
                os.rmdir(folder)
            except OSError:
                break


class ModuleCost:
    """The figures of one pytest process (the controller or one worker)."""

    def __init__(self):
        self.modules = {}
        self.current = None
        self.cgroups = CgroupCount()

    def test_done(self, module, before, after):
        """Add one test's protocol (setup, call, teardown) to its module."""
        row = self.modules.setdefault(module, {'tests': 0, 'wall': 0.0, 'cpu': 0.0,
                                               'children': 0.0, 'playbooks': 0})
        row['tests'] += 1
        row['wall'] += after[0] - before[0]
        row['cpu'] += after[1] - before[1]
        row['children'] += after[2] - before[2]
        row['playbooks'] += after[3] - before[3]

    def figures(self, own_children=True):
        """This process's rows: its modules, and the rest of its CPU as the
        start-up row. own_children=False: xdist's controller, whose only
        children are the workers, which report their own."""
        cpu, children = _clock()[1:3]
        if not own_children:
            children = 0.0
        rows = dict((m, dict(r)) for m, r in self.modules.items())
        rows[OUTSIDE] = {'tests': 0, 'wall': 0.0,
                         'cpu': cpu - sum(r['cpu'] for r in rows.values()),
                         'children': children - sum(r['children'] for r in rows.values())}
        return rows

    def add_cgroups(self, rows):
        """The run's cgroup seconds, read once by the controller when its
        workers are done (every worker's modules are under one folder)."""
        for module, seconds in self.cgroups.seconds().items():
            rows.setdefault(module, {'tests': 0, 'wall': 0.0, 'cpu': 0.0, 'children': 0.0})
            rows[module]['cgroup'] = seconds


def merge(into, rows):
    """Add one process's rows to the run's."""
    for module, row in rows.items():
        total = into.setdefault(module, {'tests': 0, 'wall': 0.0, 'cpu': 0.0,
                                         'children': 0.0})
        for key, value in row.items():
            if value is not None:
                total[key] = total.get(key, 0) + value


def _ansible_core():
    try:
        from ansible.release import __version__
    except ImportError:
        return None
    return __version__


def write_report(path, rows, wall):
    """The run's JSON: its rows, its wall seconds and what it ran on."""
    report = {'format': FORMAT, 'wall': wall, 'python': platform.python_version(),
              'ansible_core': _ansible_core(), 'modules': rows}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(report, f, indent=1, sort_keys=True)
    os.replace(path + '.tmp', path)


_cost = {}


def pytest_configure(config):
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    # the controller names the run before xdist's workers start: they
    # inherit it, so all of one run's cgroups are under one folder
    os.environ.setdefault(RUN_ENV, '%d-%d' % (int(time.time()), os.getpid()))
    _cost['process'] = ModuleCost()
    _PLAYBOOKS.hook()
    _cost['run'] = {}
    _cost['started'] = time.monotonic()
    if not hasattr(config, 'workerinput') and os.path.exists(path):
        # a run that ends early leaves no figures of an earlier one behind
        os.remove(path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    cost = _cost.get('process')
    if cost is None:
        yield
        return
    module = item.module.__name__ if item.module else item.nodeid.split('::')[0]
    if cost.current != module:
        cost.current = module
        cost.cgroups.enter(module)
    before = _clock()
    yield
    cost.test_done(module, before, _clock())


def pytest_testnodedown(node, error):
    """xdist's controller: a worker's figures, sent at its end."""
    rows = getattr(node, 'workeroutput', {}).get('module_cpu')
    if rows and 'run' in _cost:
        merge(_cost['run'], json.loads(rows))
        _cost['workers'] = True


def pytest_sessionfinish(session):
    cost = _cost.get('process')
    if cost is None:
        return
    config = session.config
    if hasattr(config, 'workerinput'):
        config.workeroutput['module_cpu'] = json.dumps(cost.figures())
        return
    merge(_cost['run'], cost.figures(own_children=not _cost.get('workers')))
    cost.add_cgroups(_cost['run'])
    write_report(os.environ[REPORT_ENV], _cost['run'], time.monotonic() - _cost['started'])
    cost.cgroups.remove()
