"""pytest plugin: the CPU time each test module costs, its lab included.

A lab test's wall time says little on a busy 2-core machine (the suite's
own modules wait for each other's cores: one EE test took 216 s in a full
`make test` and 13 s beside one other module). What the suite's time is
made of is CPU: each module's processes (pytest's, its labs' sshd and
nix-daemon, every ansible-playbook and nix it starts, detached ones too)
are counted in a cgroup of their own, which every child inherits.

    make unit MODULE_CPU=tests/output/module-cpu.txt
    python -m pytest -p tests.module_cpu ... (NIXDEPLOY_MODULE_CPU=FILE)

Root only (it makes cgroups); cgroup v2, or v1's cpuacct. The report, at the
end of the session, lists the modules by CPU seconds, most first. Processes
started in containers (podman gives them cgroups of their own) are not
counted.
"""

import os
import time

REPORT_ENV = 'NIXDEPLOY_MODULE_CPU'
RUN_ENV = 'NIXDEPLOY_MODULE_CPU_RUN'
V1 = '/sys/fs/cgroup/cpuacct'
V2 = '/sys/fs/cgroup'
_current = {}


def cgroup_root():
    """The cgroup hierarchy that counts CPU (v1's cpuacct, else v2), or None."""
    if os.path.isfile(os.path.join(V1, 'cpuacct.usage')):
        return V1
    if os.path.isfile(os.path.join(V2, 'cgroup.controllers')):
        return V2
    return None


def _base():
    """The folder under which this run's cgroups go, or None where there is
    no cgroup to count in."""
    root = cgroup_root()
    return root and os.path.join(root, 'nixdeploy-module-cpu', os.environ[RUN_ENV])


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


def pytest_configure(config):
    if not os.environ.get(REPORT_ENV):
        return
    # the controller names the run before xdist's workers start: they
    # inherit it, so all of one run's modules are under one folder
    os.environ.setdefault(RUN_ENV, '%d-%d' % (int(time.time()), os.getpid()))


def pytest_runtest_setup(item):
    if not os.environ.get(REPORT_ENV):
        return
    module = item.module.__name__
    if _current.get('module') == module:
        return
    _current['module'] = module
    base = _base()
    if base is None:
        return
    group = os.path.join(base, module)
    os.makedirs(group, exist_ok=True)
    # this process (and from now on what it starts) counts for the module;
    # what the previous module left running still counts for that one
    with open(os.path.join(group, 'cgroup.procs'), 'w') as f:
        f.write(str(os.getpid()))


def pytest_sessionfinish(session):
    report = os.environ.get(REPORT_ENV)
    if not report or hasattr(session.config, 'workerinput'):
        return
    base = _base()
    if base is None or not os.path.isdir(base):
        return
    rows = sorted(((_seconds(os.path.join(base, m)), m) for m in os.listdir(base)
                   if os.path.isdir(os.path.join(base, m))), reverse=True)
    total = sum(row[0] for row in rows)
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
    with open(report, 'w') as f:
        f.write('# CPU seconds a test module (its labs and children included): %.0f s in all\n'
                % total)
        for seconds, module in rows:
            f.write('%8.1f  %s\n' % (seconds, module))
    # a module's cgroup goes once nothing runs in it; this process leaves its own
    with open(os.path.join(os.path.dirname(os.path.dirname(base)), 'cgroup.procs'), 'w') as f:
        f.write(str(os.getpid()))
    for row in rows:
        try:
            os.rmdir(os.path.join(base, row[1]))
        except OSError:
            pass
    for folder in (base, os.path.dirname(base)):
        try:
            os.rmdir(folder)
        except OSError:
            break
