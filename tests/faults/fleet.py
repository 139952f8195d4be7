"""The fault suite's fleet and the facts it checks on the hosts.

Every check reads the host itself (``lab.run_in``: through its namespaces, not
over ssh, so it holds while its network is down): which system the fake
activation recorded, where the profile points, which locks are left.
"""

import json
import os
import subprocess
import time

from tests.collection import BIN, ansible_env, run_playbook

PLAYBOOK = 'nixdeploy.fleet.deploy'
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'

# The profile each persona's system lives in (home-manager: the XDG folder
# exists on lab hosts, so that one).
PROFILES = {
    'nixos': '/nix/var/nix/profiles/system',
    'darwin': '/nix/var/nix/profiles/system',
    'nix-on-droid': '/nix/var/nix/profiles/nix-on-droid',
    'home-manager': '/home/app/.local/state/nix/profiles/home-manager',
}

# The `tfl` fleet (test_target_faults.py): faults of the targets themselves
# (tests/lab/target_faults.py). Every /nix is a small filesystem of its own;
# s1 and s2 boot a real systemd where systemd hosts run here (else they are
# plain NixOS hosts and test_systemd_hosts_in_the_fleet says why); s2 is
# deployed by `deploy` with sudo, as the darwin host is.
TFL_STORE = '64M'
TFL_HOSTS = [
    {'name': 'n1', 'persona': 'nixos'},
    {'name': 's1', 'persona': 'nixos', 'systemd': True},
    {'name': 's2', 'persona': 'nixos', 'systemd': True},
    {'name': 'd1', 'persona': 'darwin'},
    {'name': 'm1', 'persona': 'home-manager'},
    {'name': 'a1', 'persona': 'nix-on-droid'},
]
TFL_SUDO = ('d1', 's2')   # ssh as deploy, become root with sudo


class FaultFleet:
    def __init__(self, lab, flake, secret, inventory, workdir):
        self.lab, self.flake, self.secret = lab, flake, secret
        self.inventory, self.workdir = inventory, workdir
        self.runs = 0
        self.version = 1

    def rundir(self):
        self.runs += 1
        path = os.path.join(self.workdir, 'run%02d' % self.runs)
        os.makedirs(path)
        return path

    def deploy(self, *args, **kwargs):
        inventory = kwargs.pop('inventory', self.inventory)
        return run_playbook(PLAYBOOK, inventory, self.rundir(), args=list(args), **kwargs)

    def new_version(self, hosts=None, **knobs):
        """A new system for ``hosts`` (default all); returns the version."""
        self.version += 1
        version = 'f%d' % self.version
        for host in hosts or self.lab.hosts:
            self.flake.set_config(self.flake.config_of(host), version=version, **knobs)
        return version

    def start(self, *args, **kwargs):
        """ansible-playbook deploy in the background, in a session of its own
        (so the test can kill the whole controller side by its group id)."""
        rundir = self.rundir()
        log = open(os.path.join(rundir, 'output.log'), 'w')
        argv = [os.path.join(BIN, 'ansible-playbook'), '-i', kwargs.get('inventory', self.inventory),
                PLAYBOOK] + list(args)
        env = ansible_env({'NIXDEPLOY_TEST_RECORD': os.path.join(rundir, 'record.jsonl')},
                          cwd=rundir)
        proc = subprocess.Popen(argv, cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        proc.rundir = rundir
        return proc


def output(proc):
    with open(os.path.join(proc.rundir, 'output.log')) as handle:
        return handle.read()


def records(proc):
    path = os.path.join(proc.rundir, 'record.jsonl')
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def out_paths(run):
    """{host: out_path} from a PlaybookRun, or from the records of a started run."""
    found = run.results(EVAL) if hasattr(run, 'results') else [
        r for r in run if r['task'] == EVAL]
    return dict((r['host'], r['result']['out_path']) for r in found if r['status'] == 'ok')


def summaries(run):
    """{host: summary record} (the deploy role's custom stat)."""
    return run.summary()


def profile_path(lab, host):
    """Where the host's profile points now (None without one)."""
    proc = lab.run_in(host, ['readlink', '-f', PROFILES[lab.host(host)['persona']]], check=False)
    path = proc.stdout.strip()
    return path if proc.returncode == 0 and path.startswith('/nix/store/') else None


def assert_consistent(lab, host):
    """Not half-switched: the profile's generation is the active system, and
    (system profiles) the boot default."""
    active, profile = lab.active(host), profile_path(lab, host)
    assert active == profile, '%s half-switched: active %s, profile %s' % (host, active, profile)
    if lab.state_key(host) == 'system':
        assert lab.boot(host) == active, '%s: boot %s, active %s' % (host, lab.boot(host), active)
    return active


def locks(lab, host):
    """Activation locks left on a host (root's and the users')."""
    proc = lab.run_in(host, ['sh', '-c', 'ls -d /nix/var/nixdeploy/*/lock '
                             '/home/*/.local/state/nixdeploy/*/lock 2>/dev/null; true'])
    return proc.stdout.split()


def wait_until(predicate, timeout, interval=0.5, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))


def settled(lab, host, timeout=60):
    """Wait until the host holds no activation lock (its detached run, if
    any, finished: activated, rolled back or gave up)."""
    return wait_until(lambda: not locks(lab, host), timeout, what='the locks of %s' % host)


def history(lab, host):
    """[(time, goal, path)] of the activations the host ran."""
    text = lab.read(host, '/nix/var/lab/history-%s' % lab.state_key(host)) or ''
    rows = []
    for line in text.splitlines():
        # time goal path, then the fake NixOS's own words (install-bootloader=...)
        parts = line.split()
        if len(parts) >= 3:
            rows.append((int(parts[0]), parts[1], parts[2]))
    return rows


def verify_store(lab, host, path):
    """The closure of ``path`` is valid and intact in the host's store."""
    user = 'app' if lab.host(host)['persona'] == 'nix-on-droid' else None
    proc = lab.run_in(host, ['nix', '--extra-experimental-features', 'nix-command', 'store',
                             'verify', '--no-trust', '-r', path], check=False, user=user)
    assert proc.returncode == 0, (host, proc.stdout, proc.stderr)
