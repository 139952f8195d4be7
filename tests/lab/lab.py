"""The lab: a real fleet of Nix hosts on one machine.

Each host is a network namespace on the lab's bridge with a private mount
namespace in which a per-host folder is its ``/nix`` (and ``/home``, ``/root``,
``/etc/nix``), its own sshd and host key, and either a per-host nix-daemon
(multi-user personas) or a store owned by ``app`` (nix-on-droid persona).

Everything the lab starts it records (pids in each host's ``run/``, names in
``state.json``) and stops by those ids; nothing is killed by name.

A host can reboot: ``reboot`` (or ``systemctl reboot``) inside it asks the
lab's supervisor (supervisor.py, one per lab, its pid in ``state.json``),
which stops every process in the host's namespace, waits a moment and boots
it again (host_init.sh): fresh mount namespace and ``/run``, a new boot id,
the boot default activated, sshd started.

A host may run the OTHER stack's Nix (``{'name': 'h3', 'nix': 'other'}``): on
this machine the Debian unstable tree's, inside that tree this machine's (see
``other_nix``). Everything Nix on that host is then that Nix: its nix-daemon,
the nix-* tools on its PATH or in its hidden nix dir, ``nix-daemon --stdio``
for ssh-ng copies, and the lab's own calls inside it; its store is made and
only ever opened by that Nix. ``Lab.nix_version(host)`` says which one runs.

A NixOS host may boot a real systemd as PID 1 (``{'name': 's1', 'systemd':
True}``): a systemd-nspawn container of this machine's userland in the host's
network namespace, with its own /etc, persistent /nix, nix-daemon and sshd
as systemd units, a real reboot and a per-host keeper that starts it again
(nspawn.py). Everything Lab offers works on it the same way.

Faults of the targets themselves (a small /nix that fills, a garbage
collection at a chosen moment, a stopped daemon, a read-only store, a sudo
that asks for a password) are Lab's methods too: target_faults.py.

Network shapes (a bastion and hosts only reachable through it, IPv6-only
hosts, a dead first address, a host that is switched off) are host spec
keys: networks.py.
"""

import contextlib
import fcntl
import glob
import json
import locale
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid

from tests.lab.networks import NetworkShapes
from tests.lab.target_faults import TargetFaults

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get('NIXDEPLOY_LAB_ROOT', '/var/lib/nixdeploy-lab')
# make test runs lab test modules side by side (pytest-xdist): each worker
# keeps its labs in a folder of its own, since two modules may name their
# labs alike (the bridge a lab creates is its claim on its /24, whoever asks)
if os.environ.get('PYTEST_XDIST_WORKER'):
    ROOT = os.path.join(ROOT, os.environ['PYTEST_XDIST_WORKER'])
# useradd/usermod refuse to run while another holds /etc/passwd's lock, and
# a copy of /etc (a systemd host's root) made while they run meets their lock
# and temporary files vanishing under it: all of these take this lock.
USERS_LOCK = '/run/nixdeploy-lab-users.lock'
# 10.213.<index>.0/24, one /24 per lab; only ever addressed on the lab bridge.
SUBNET_PREFIX = '10.213'
# a lab's names on the machine: host namespaces ndl<i>-<host>, veths ndl<i>v<n>
LEFT_NAME = re.compile(r'\Andl([0-9]+)(?:-|v[0-9]+\Z)')
# /run/netns/<this>: a file (no namespace) that holds a lab index while a
# test checks that a lab's down left nothing at it. Its name is a left name
# (LEFT_NAME), so no lab coming up meanwhile, on either stack (/run/netns is
# shared), takes the index the check looks at; leftovers() skips it.
HELD_NAME = 'ndl%d-held-for-a-check'


@contextlib.contextmanager
def index_held(index):
    """Hold lab ``index`` for the block: without it, a lab coming up beside
    a test (another worker, the other stack) may take the index a down just
    freed, and its new bridge reads as a leftover (CI37)."""
    os.makedirs('/run/netns', exist_ok=True)
    path = os.path.join('/run/netns', HELD_NAME % index)
    with open(path, 'w'):
        pass
    try:
        yield index
    finally:
        os.unlink(path)


USERS = ('deploy', 'app')

# What a persona means for the host. Platform is the Nix platform it stands
# for; ``ssh_user`` is who deploys to it; ``nix_on_path`` False mimics macOS
# and nix-on-droid, whose non-login ssh shells have no nix on PATH.
PERSONAS = {
    'nixos': {'platform': 'nixos', 'ssh_user': 'root', 'become': False,
              'multi_user': True, 'nix_on_path': True},
    'darwin': {'platform': 'darwin', 'ssh_user': 'deploy', 'become': True,
               'multi_user': True, 'nix_on_path': False},
    'nix-on-droid': {'platform': 'nix-on-droid', 'ssh_user': 'app', 'become': False,
                     'multi_user': False, 'nix_on_path': False},
    'home-manager': {'platform': 'home-manager', 'ssh_user': 'app', 'become': False,
                     'multi_user': True, 'nix_on_path': True},
}

# Where nix lives on personas that hide it from PATH: the multi-user default
# profile, as on macOS, and the user's profile, as on nix-on-droid.
HIDDEN_NIX_DIRS = {
    'darwin': '/nix/var/nix/profiles/default/bin',
    'nix-on-droid': '/home/app/.nix-profile/bin',
}
# The other stack's userland, whose Nix a host may run instead of this
# stack's (``'nix': 'other'``): NIXDEPLOY_OTHER_ROOT if set (empty: none), else
# inside the current-stack tree this machine's /usr as tests/stack/tree.sh binds
# it, else on this machine that tree.
MACHINE_USR_IN_TREE = '/opt/nixdeploy-machine/usr'
STACK_TREE = os.environ.get('NIXDEPLOY_TREE') or '/var/lib/nixdeploy-stack/%s' % (
    os.environ.get('NIXDEPLOY_SUITE') or 'sid')
NIX_CHOICES = ('own', 'other')

# What every lab sshd allows, plain hosts and systemd hosts (nspawn.py) alike.
SSHD_POLICY = """\
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
MaxStartups 200:30:400
MaxSessions 100
LogLevel ERROR
Subsystem sftp internal-sftp
"""
SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {hostdir}/ssh_host_ed25519_key
PidFile {hostdir}/run/sshd.pid
AuthorizedKeysFile {labdir}/authorized_keys
""" + SSHD_POLICY + """{setenv}
"""

# The key exchange the lab's sshd offers: NIXDEPLOY_LAB_SSH_KEX, a list as
# sshd_config's KexAlgorithms takes it; unset (or 'default'), OpenSSH's own,
# as on a user's hosts. The suite sets curve25519-sha256 (tests/conftest.py):
# OpenSSH 9.2's first choice, sntrup761x25519-sha512, costs each login about
# 100 ms of CPU on a 2-core machine, on each end, and the suite logs in
# thousands of times; nothing a test checks depends on the exchange. A lab
# brought up by hand, by `make demo` or by a benchmark keeps the default.
KEX_ENV = 'NIXDEPLOY_LAB_SSH_KEX'


def sshd_kex():
    """The sshd_config line that limits the key exchange, or ''."""
    kex = os.environ.get(KEX_ENV, '')
    if kex in ('', 'default'):
        return ''
    if not re.fullmatch(r'[a-z0-9@.+-]+(,[a-z0-9@.+-]+)*', kex):
        raise LabError('%s=%r is not a list of key exchange names' % (KEX_ENV, kex))
    return 'KexAlgorithms %s\n' % kex


NIX_CONF = """\
# lab host {name}: no caches, no sandbox (none works here), no build users
substituters =
sandbox = false
build-users-group =
experimental-features = nix-command flakes
trusted-users = root
"""


def sh(argv, check=True, **kwargs):
    """Run a command (argv list) on the controller; return CompletedProcess."""
    kwargs.setdefault('stdout', subprocess.PIPE)
    kwargs.setdefault('stderr', subprocess.PIPE)
    proc = subprocess.run(argv, universal_newlines=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise LabError('%s failed (%s): %s' % (' '.join(argv), proc.returncode,
                                               (proc.stderr or proc.stdout).strip()))
    return proc


@contextlib.contextmanager
def users_locked():
    """Hold USERS_LOCK: no user or group is added or changed meanwhile."""
    with open(USERS_LOCK, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LabError(Exception):
    pass


# Lab.read's answer when a file must be read by entering its host
_ENTER = object()


def other_nix_root():
    """Root of the other stack's userland (a folder holding its ``usr/``), or
    None. See MACHINE_USR_IN_TREE."""
    if 'NIXDEPLOY_OTHER_ROOT' in os.environ:
        candidates = [os.environ['NIXDEPLOY_OTHER_ROOT']]
    else:
        candidates = [os.path.dirname(MACHINE_USR_IN_TREE), STACK_TREE]
    for root in candidates:
        if root and os.path.realpath(root) != '/' and \
                os.path.isfile(os.path.join(root, 'usr', 'bin', 'nix')):
            return root
    return None


def other_nix(root=None):
    """How to run the other stack's Nix from here, or None when it is absent:
    {'root', 'nix' (its binary), 'loader' (its own ld.so, which runs a binary
    of that userland here), 'library_path' (its library folders, searched
    before anything of this userland)}. Its binary picks the tool by argv[0],
    which the loader sets with --argv0."""
    root = root or other_nix_root()
    if not root:
        return None
    usr = os.path.join(root, 'usr')
    # the loader itself, not usr/lib64's link to it: that link may be absolute
    # (pointing into this userland)
    # this machine's architecture first (a multiarch userland has others too)
    loaders = [p for triplet in ('%s-linux-gnu' % os.uname().machine, '*-linux-gnu')
               for p in sorted(glob.glob(os.path.join(usr, 'lib', triplet, 'ld-linux*.so.*')))
               if os.path.isfile(p) and os.access(p, os.X_OK)]
    if not loaders:
        return None
    libdirs = [os.path.join(usr, 'lib', 'nix'), os.path.dirname(loaders[0]),
               os.path.join(usr, 'lib')]
    return {'root': root, 'nix': os.path.join(usr, 'bin', 'nix'), 'loader': loaders[0],
            'library_path': ':'.join(d for d in libdirs if os.path.isdir(d))}


NIX_WRAPPER = """\
#!/bin/sh
# Lab host {name}: the other stack's Nix ({root}). host_init.sh binds this file
# over the host's /usr/bin/nix, so every nix-* name there (they link to nix),
# in its hidden nix dir, on its PATH or under sudo runs it; Nix picks the tool
# by argv[0], which its own loader sets from the name this script ran as.
exec {loader} --library-path {library_path} --argv0 "${{0##*/}}" {nix} "$@"
"""


def _nspawn():
    """nspawn.py, which imports this module (so imported when first used)."""
    from tests.lab import nspawn
    return nspawn


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def stop_pid(pid, tries=50):
    """Stop one process of the lab's by its pid: TERM, then KILL when it has
    not ended after ``tries`` looks 0.05 s apart."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _attempt in range(tries):
        if _pid_gone(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pid_gone(pid):
    """Whether ``pid`` has ended (a zombie has; reaped here when it is ours)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
    except (OSError, IndexError):
        return True


def _write(path, text):
    with open(path + '.tmp', 'w') as handle:
        handle.write(text)
    os.rename(path + '.tmp', path)


# Power settings of a host (power.json): how long a reboot keeps it down,
# whether it comes back at all, and whether its boot loader falls back to the
# generation before the boot default (the new entry "did not boot").
POWER_DEFAULTS = {'down_seconds': 1.0, 'comes_back': True, 'fallback': False}


def start_host(host, labdir, env=None):
    """Boot a host: host_init.sh in its network namespace and a new private
    mount namespace, with a new boot id. Records the pid (the host's sshd
    after the exec) in ``run/host.pid`` and the boot in ``boots``. Used by
    ``Lab.up`` and, after a reboot, by the supervisor."""
    hostdir = host['dir']
    boot_id = str(uuid.uuid4())
    # in place: the host bind-mounts this very file over its boot_id
    with open(os.path.join(hostdir, 'boot_id'), 'w') as handle:
        handle.write(boot_id + '\n')
    logf = open(os.path.join(hostdir, 'log', 'init.log'), 'ab')
    proc = subprocess.Popen(
        ['ip', 'netns', 'exec', host['netns'], 'unshare', '--mount', '--propagation', 'private',
         'sh', os.path.join(HERE, 'host_init.sh'), hostdir, host['persona'],
         os.path.join(labdir, 'tools')],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
        env=dict(os.environ, **(env or {})))
    logf.close()
    # ip and unshare exec, so this pid ends as the host's sshd.
    _write(os.path.join(hostdir, 'run', 'host.pid'), '%d\n' % proc.pid)
    with open(os.path.join(hostdir, 'boots'), 'a') as handle:
        handle.write('%.3f %s\n' % (time.time(), boot_id))
    _write(os.path.join(hostdir, 'power.state'), 'up\n')
    return proc


def netns_pids(netns):
    proc = sh(['ip', 'netns', 'pids', netns], check=False)
    return {int(p) for p in proc.stdout.split() if p.strip().isdigit()}


def _freeze(netns_list, timeout=5.0):
    """SIGSTOP every process in the namespaces, sweep after sweep, until a
    sweep finds no process it had not stopped (or ``timeout`` passes)."""
    stopped, deadline = set(), time.time() + timeout
    while time.time() < deadline:
        found = set()
        for netns in netns_list:
            found |= netns_pids(netns)
        new = found - stopped
        if not new:
            return
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= new


def stop_netns(netns_list, grace=2.0):
    """Stop every process inside the given network namespaces, by pid, as a
    shutdown does: TERM once to each process there, then KILL to whatever is
    left after ``grace`` seconds (what a process starts after its TERM, to
    finish its work, gets no TERM of its own). Returns once none is left (or
    after ``grace`` + 3 s). ``grace`` 0 is a power cut: every process is
    stopped (SIGSTOP, until a sweep finds none it has not stopped) before any
    is killed, so none runs on, or starts another, while the sweep goes on:
    a cut is at one instant for all of them."""
    if grace <= 0:
        _freeze(netns_list)
    deadline = time.time() + grace
    termed = False
    while True:
        left = set()
        for netns in netns_list:
            left |= netns_pids(netns)
        if not left or time.time() > deadline + 3:
            return not left
        killing = time.time() > deadline
        if killing or not termed:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL if killing else signal.SIGTERM)
                except ProcessLookupError:
                    pass
            termed = True
        time.sleep(0.05)


class Lab(TargetFaults, NetworkShapes):
    """A named lab. ``Lab(name).up(...)``; ``Lab(name)`` alone reattaches."""

    def __init__(self, name='lab', root=ROOT):
        if not name.replace('-', '').isalnum() or len(name) > 12:
            raise LabError('lab name must be short and alphanumeric: %r' % name)
        self.name = name
        self.dir = os.path.join(root, name)
        self.root = root
        self.state = self._load()

    # ----------------------------------------------------------- state
    @property
    def state_path(self):
        return os.path.join(self.dir, 'state.json')

    def _load(self):
        try:
            with open(self.state_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def _save(self):
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as handle:
            json.dump(self.state, handle, indent=2, sort_keys=True)
        os.rename(tmp, self.state_path)

    def _claim_index(self):
        # Creating the bridge is the atomic claim: two labs coming up at once
        # may pick the same free index, and only one can create its bridge.
        for _attempt in range(20):
            index = self._free_index()
            bridge = 'ndlbr%d' % index
            if sh(['ip', 'link', 'add', bridge, 'type', 'bridge'], check=False).returncode == 0:
                self.state.update(index=index, bridge=bridge)
                self._save()
                return
            time.sleep(0.05)
        raise LabError('could not claim a lab bridge')

    def _free_index(self):
        used = set()
        if os.path.isdir(self.root):
            for other in os.listdir(self.root):
                path = os.path.join(self.root, other, 'state.json')
                try:
                    with open(path) as handle:
                        used.add(json.load(handle)['index'])
                except (OSError, ValueError, KeyError):
                    continue
        # and the indices of names left on the machine by a lab that was
        # killed before its down (its state gone with its folder, or never
        # saved): a host's namespace ndl<i>-<name> or link ndl<i>v<n> would
        # collide with the same host of a new lab at that index
        left = os.listdir('/run/netns') if os.path.isdir('/run/netns') else []
        for name in left + os.listdir('/sys/class/net'):
            found = LEFT_NAME.match(name)
            if found:
                used.add(int(found.group(1)))
        for index in range(1, 250):
            if index not in used and not os.path.exists('/sys/class/net/ndlbr%d' % index):
                return index
        raise LabError('no free lab index')

    @property
    def hosts(self):
        return self.state['hosts'] if self.state else {}

    def host(self, name):
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError('no host %r in lab %s' % (name, self.name))

    @property
    def key(self):
        return os.path.join(self.dir, 'id_ed25519')

    @property
    def known_hosts(self):
        return os.path.join(self.dir, 'known_hosts')

    @property
    def ssh_config(self):
        return os.path.join(self.dir, 'ssh_config')

    @property
    def bridge_address(self):
        return '%s.%d.1' % (SUBNET_PREFIX, self.state['index'])

    # ----------------------------------------------------------- up
    def up(self, hosts=8, personas=None):
        """Bring up ``hosts`` (a count, or a list of names or dicts).

        ``personas``: a list cycled over the hosts (default all ``nixos``).
        A dict host may give ``name``, ``persona`` and ``nix``: ``own`` (the
        default, this stack's Nix) or ``other`` (the other stack's, see
        ``other_nix``), and ``systemd``: True boots it as a container whose
        PID 1 is systemd (NixOS persona, this stack's Nix; see nspawn.py),
        and ``store_size`` ('160M'): its /nix is a filesystem of that size,
        for the target fault knobs (fill_store ...; see target_faults.py),
        and ``listen_any``: True, its sshd listens on every address of the
        host (the others listen on their lab address only), for a test whose
        host moves to another address.

        Network shapes (networks.py; plain hosts): ``bastion``: True, the
        gateway of the lab's inner subnet (one per lab); ``behind``: a
        bastion's name, the host is only on that subnet, reached with
        ProxyJump; ``ipv6_only``: True, an IPv6 address only (the lab bridge
        gets a ULA prefix); ``dead_first``: True, ``ansible_host`` is an
        address no host has and ``nix_target_hosts`` [it, the real one];
        ``off``: True, switched off once up (link down, powered off:
        ``switch_on`` brings it back).
        """
        if self.state:
            self.down()
        started = time.time()
        specs = self._host_specs(hosts, personas or ['nixos'])
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.dir)
        self.state = {'name': self.name, 'dir': self.dir, 'hosts': {}}
        try:
            self._up(specs)
        except BaseException:
            # a failed step, or a Ctrl-C (KeyboardInterrupt) while it comes
            # up: what it made so far goes, as down takes a lab that is up
            # (each host is in the state before its first namespace is made)
            self.down()
            raise
        self.state['up_seconds'] = round(time.time() - started, 2)
        self._save()
        return self

    def _up(self, specs):
        self._claim_index()
        self._ensure_users()
        os.makedirs('/run/sshd', exist_ok=True)
        sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'nixdeploy-lab-deployer',
            '-f', self.key])
        shutil.copy(self.key + '.pub', os.path.join(self.dir, 'authorized_keys'))
        os.chmod(os.path.join(self.dir, 'authorized_keys'), 0o644)
        os.chmod(self.dir, 0o755)
        bridge = self.state['bridge']
        sh(['ip', 'addr', 'add', '%s/24' % self.bridge_address, 'dev', bridge])
        sh(['ip', 'link', 'set', bridge, 'up'])
        self._make_networks(specs)
        self._write_tools()
        hold_after = int(os.environ.get('NIXDEPLOY_LAB_HOLD_AFTER') or 0)
        for number, spec in enumerate(specs, start=1):
            self._add_host(number, spec)
            self._save()
            if number == hold_after:
                self._hold_for_a_test()
        self._write_client_files()
        self._start_supervisor()
        self._wait_ready()
        self._switch_off_shapes()

    def _hold_for_a_test(self, seconds=120):
        """Stop half way up, for a test that stops a lab while it comes up
        (NIXDEPLOY_LAB_HOLD_AFTER=N: after the Nth host). A lab on a quiet
        machine comes up in two seconds, too fast to catch by polling; held
        here, the test's Ctrl-C lands at a known step every time. The file
        ``held`` tells the test the lab waits; the wait is bounded."""
        marker = os.path.join(self.dir, 'held')
        with open(marker, 'w') as handle:
            handle.write('%d\n' % len(self.state['hosts']))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise LabError('lab %s: held for a test %d s and nobody stopped it' % (self.name, seconds))

    @staticmethod
    def _host_specs(hosts, personas):
        if isinstance(hosts, int):
            hosts = ['h%d' % i for i in range(1, hosts + 1)]
        specs = []
        for i, host in enumerate(hosts):
            spec = dict(host) if isinstance(host, dict) else {'name': host}
            spec.setdefault('persona', personas[i % len(personas)])
            if spec['persona'] not in PERSONAS:
                raise LabError('unknown persona %r' % spec['persona'])
            spec['nix'] = spec.get('nix') or 'own'
            if spec['nix'] not in NIX_CHOICES:
                raise LabError('host %s: nix must be one of %s, not %r'
                               % (spec['name'], ', '.join(NIX_CHOICES), spec['nix']))
            if spec['nix'] == 'other' and not other_nix():
                raise LabError('host %s: no other stack\'s Nix here (set NIXDEPLOY_OTHER_ROOT '
                               'to a userland with usr/bin/nix and its own loader)' % spec['name'])
            spec['systemd'] = bool(spec.get('systemd'))
            if spec['systemd']:
                if spec['persona'] != 'nixos':
                    raise LabError('host %s: systemd hosts are NixOS-shaped (persona nixos), '
                                   'not %s' % (spec['name'], spec['persona']))
                if spec['nix'] != 'own':
                    raise LabError('host %s: systemd hosts run this stack\'s Nix' % spec['name'])
                _nspawn().require()
            # 'store_size': '160M': its /nix a filesystem of that size (target_faults.py)
            TargetFaults._check_store_size(spec)
            specs.append(spec)
        if len(specs) > 200:
            raise LabError('at most 200 hosts per lab')
        NetworkShapes._check_shapes(specs)
        return specs

    @staticmethod
    def _ensure_users():
        with users_locked():
            Lab._ensure_users_locked()

    @staticmethod
    def _ensure_users_locked():
        for user in USERS:
            if sh(['getent', 'passwd', user], check=False).returncode != 0:
                sh(['useradd', '--create-home', '--shell', '/bin/sh', user])
            # '*' = no password but not locked: sshd refuses locked accounts
            # even for keys when PAM is off.
            sh(['usermod', '-p', '*', user])
        sh(['usermod', '-a', '-G', 'nix-users', 'deploy'], check=False)
        sh(['usermod', '-a', '-G', 'nix-users', 'app'], check=False)
        sudoers = '/etc/sudoers.d/nixdeploy-lab'
        if not os.path.exists(sudoers):
            with open(sudoers + '.tmp', 'w') as handle:
                handle.write('deploy ALL=(ALL) NOPASSWD: ALL\n')
            os.chmod(sudoers + '.tmp', 0o440)
            os.rename(sudoers + '.tmp', sudoers)

    def _add_host(self, number, spec):
        name, persona = spec['name'], spec['persona']
        traits = PERSONAS[persona]
        index = self.state['index']
        address = '%s.%d.%d' % (SUBNET_PREFIX, index, 10 + number)
        netns = 'ndl%d-%s' % (index, name)
        veth = 'ndl%dv%d' % (index, number)
        hostdir = os.path.join(self.dir, 'hosts', name)
        host = {'name': name, 'persona': persona, 'platform': traits['platform'],
                'address': address, 'netns': netns, 'veth': veth, 'dir': hostdir,
                'ssh_user': traits['ssh_user'], 'become': traits['become'],
                'nix_on_path': traits['nix_on_path'],
                'nix_dir': HIDDEN_NIX_DIRS.get(persona, '/usr/bin'),
                # which Nix runs everything on the host; nix_root: whose userland
                'nix': spec['nix'],
                'nix_root': other_nix()['root'] if spec['nix'] == 'other' else '/',
                # PID 1 is a real systemd (a systemd-nspawn container)
                'systemd': spec['systemd'],
                # bytes of its /nix (a tmpfs), or None: the machine's disk
                'store_size': spec.get('store_size'),
                # its sshd listens on every address of the host, as a real
                # host's does: one whose new system moves it stays reachable
                'listen_any': bool(spec.get('listen_any'))}
        # its address and bridge, a network shape's keys (networks.py)
        host.update(self._shape_host(spec, number, address))
        self.state['hosts'][name] = host
        self._mount_store(host)
        self._make_host_tree(host, traits)
        sh(['ip', 'netns', 'add', netns])
        sh(['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns])
        sh(['ip', 'link', 'set', veth, 'master', host['bridge']])
        sh(['ip', 'link', 'set', veth, 'up'])
        self._address_host(host)
        sh(['ip', '-n', netns, 'link', 'set', 'eth0', 'up'])
        if host['systemd']:
            # its keeper boots it (and again after a reboot); the pid of the
            # first boot is the container's PID 1
            keeper = _nspawn().start_keeper(host)
            host['keeper_pid'] = keeper.pid
            host['pid'] = _nspawn().wait_booted(host, keeper)
            return
        # the pid of the first boot; after a reboot run/host.pid has the current one
        host['pid'] = start_host(host, self.dir).pid

    def _write_tools(self):
        """The lab's own commands that hosts bind over the machine's
        (systemctl, and with it reboot and poweroff), executable whatever
        the checkout's file modes."""
        tools = os.path.join(self.dir, 'tools')
        os.makedirs(tools)
        shutil.copy(os.path.join(HERE, 'systemctl.sh'), os.path.join(tools, 'systemctl'))
        os.chmod(os.path.join(tools, 'systemctl'), 0o755)
        os.chmod(tools, 0o755)

    def _start_supervisor(self):
        """The lab's power supervisor: boots hosts again after they ask for
        a reboot (supervisor.py). Recorded, and stopped first by ``down``."""
        logf = open(os.path.join(self.dir, 'supervisor.log'), 'ab')
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, 'supervisor.py'), self.dir],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
        logf.close()
        self.state['supervisor_pid'] = proc.pid
        self._save()

    def _make_host_tree(self, host, traits):
        hostdir = host['dir']
        for sub in ('nix/store', 'nix/var/nix/profiles/per-user', 'nix/var/nix/gcroots',
                    'nix/var/nix/daemon-socket', 'nix/var/lab', 'home', 'root',
                    'etc-nix', 'run', 'log', 'power'):
            os.makedirs(os.path.join(hostdir, sub), exist_ok=True)
        os.chmod(os.path.join(hostdir, 'nix/var/lab'), 0o1777)
        # the host's /run/lab-power: only its root may ask for a reboot
        os.chmod(os.path.join(hostdir, 'power'), 0o700)
        _write(os.path.join(hostdir, 'power.json'), json.dumps(POWER_DEFAULTS))
        for user in USERS:
            home = os.path.join(hostdir, 'home', user)
            os.makedirs(home, exist_ok=True)
            shutil.chown(home, user, user)
        if traits['platform'] == 'home-manager':
            state = os.path.join(hostdir, 'home/app/.local/state/nix/profiles')
            os.makedirs(state)
            for path in (state, os.path.dirname(state), os.path.dirname(os.path.dirname(state)),
                         os.path.join(hostdir, 'home/app/.local')):
                shutil.chown(path, 'app', 'app')
        with open(os.path.join(hostdir, 'etc-nix', 'nix.conf'), 'w') as handle:
            handle.write(NIX_CONF.format(name=host['name']))
        if host['nix'] == 'other':
            self._write_nix_wrapper(host)
        if traits['multi_user']:
            open(os.path.join(hostdir, 'multi-user'), 'w').close()
            os.chmod(os.path.join(hostdir, 'nix/store'), 0o1775)
        else:
            # single-user store owned by the one app user, as on nix-on-droid
            for dirpath, dirnames, _files in os.walk(os.path.join(hostdir, 'nix')):
                shutil.chown(dirpath, 'app', 'app')
        if not traits['nix_on_path']:
            self._hide_nix(host)
        setenv = ''
        if not traits['nix_on_path']:
            setenv = 'SetEnv PATH=%s' % os.path.join(hostdir, 'syspath')
        with open(os.path.join(hostdir, 'sshd_config'), 'w') as handle:
            handle.write(SSHD_CONFIG.format(address='0.0.0.0' if host.get('listen_any')
                                            else host['address'], hostdir=hostdir,
                                            labdir=self.dir, setenv=setenv) + sshd_kex())
        sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', host['name'],
            '-f', os.path.join(hostdir, 'ssh_host_ed25519_key')])
        if host['systemd']:
            _nspawn().make_machine(host, self.dir)

    @staticmethod
    def _write_nix_wrapper(host):
        """The host's ``other-nix``: the other stack's Nix through that
        userland's own loader and libraries (host_init.sh binds it over the
        host's /usr/bin/nix). Paths are resolved here, once, for the host."""
        found = other_nix(host['nix_root'])
        path = os.path.join(host['dir'], 'other-nix')
        _write(path, NIX_WRAPPER.format(
            name=host['name'], root=found['root'], loader=shlex.quote(found['loader']),
            library_path=shlex.quote(found['library_path']), nix=shlex.quote(found['nix'])))
        os.chmod(path, 0o755)

    @staticmethod
    def _hide_nix(host):
        """A PATH with the system's tools but no nix; nix in its usual place."""
        hostdir = host['dir']
        syspath = os.path.join(hostdir, 'syspath')
        os.makedirs(syspath)
        for tool in os.listdir('/usr/bin'):
            if not tool.startswith('nix'):
                os.symlink(os.path.join('/usr/bin', tool), os.path.join(syspath, tool))
        nix_dir = os.path.join(hostdir, host['nix_dir'].lstrip('/'))
        os.makedirs(nix_dir)
        for tool in os.listdir('/usr/bin'):
            if tool.startswith('nix'):
                os.symlink(os.path.join('/usr/bin', tool), os.path.join(nix_dir, tool))
        if host['persona'] == 'nix-on-droid':
            for dirpath, _dirs, _files in os.walk(os.path.join(hostdir, 'home/app')):
                shutil.chown(dirpath, 'app', 'app')

    def _write_client_files(self):
        lines, config = [], []
        for host in self.hosts.values():
            with open(os.path.join(host['dir'], 'ssh_host_ed25519_key.pub')) as handle:
                pub = ' '.join(handle.read().split()[:2])
            lines += ['%s %s\n' % (name, pub) for name in self._shape_key_names(host)]
            config.append(self._shape_ssh_config(host, (
                'Host %s\n  HostName %s\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n'
                '  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n'
                % (host['name'], host['address'], host['ssh_user'], self.key, self.known_hosts))))
        with open(self.known_hosts, 'w') as handle:
            handle.writelines(lines)
        with open(self.ssh_config, 'w') as handle:
            handle.write('\n'.join(config))
        with open(os.path.join(self.dir, 'inventory.yml'), 'w') as handle:
            json.dump(self.ansible_inventory(), handle, indent=2)

    def ssh_args(self):
        """ssh options that pin the lab's key and known_hosts, checking on."""
        return ['-i', self.key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
                '-o', 'UserKnownHostsFile=%s' % self.known_hosts,
                '-o', 'StrictHostKeyChecking=yes', '-o', 'ConnectTimeout=5']

    def ansible_vars(self, name):
        """Connection vars Ansible (and so the collection) uses for a host."""
        host = self.host(name)
        hostvars = {
            'ansible_host': host['address'], 'ansible_port': 22,
            'ansible_user': host['ssh_user'],
            'ansible_ssh_private_key_file': self.key,
            'ansible_ssh_common_args': '-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'
                                       ' -o IdentitiesOnly=yes' % self.known_hosts,
            'nix_platform': host['platform'],
        }
        if host['become']:
            hostvars['ansible_become'] = True
        return self._shape_ansible_vars(host, hostvars)

    def ansible_inventory(self):
        """A static YAML/JSON inventory of the lab, grouped by persona."""
        groups = {}
        for name, host in self.hosts.items():
            groups.setdefault(host['persona'].replace('-', '_'), {'hosts': {}})['hosts'][name] = \
                self.ansible_vars(name)
        return {'all': {'children': groups}}

    def _wait_ready(self, timeout=30):
        # a systemd host boots a whole userland: a few seconds each on 2 cores
        timeout += 10 * sum(1 for h in self.hosts.values() if h.get('systemd'))
        deadline = time.time() + timeout
        pending = set(self.hosts)
        while pending and time.time() < deadline:
            for name in sorted(pending):
                host = self.host(name)
                if _pid_gone(self.pid(name)):
                    raise LabError('host %s: %s died: %s' % (
                        name, 'its systemd' if host.get('systemd') else 'sshd',
                        self._log_tail(host)))
                try:
                    probe = self.ssh(name, 'true', user='root', check=False,
                                     timeout=max(5, min(15, deadline - time.time())))
                except subprocess.TimeoutExpired:
                    # a fresh sshd on a loaded machine (labs side by side)
                    # may answer its first login late: asked again until the
                    # deadline, as a refused one is
                    continue
                if probe.returncode == 0:
                    pending.discard(name)
            if pending:
                time.sleep(0.2)
        if pending:
            raise LabError('hosts not reachable in %ss: %s' % (timeout, ', '.join(sorted(pending))))
        for name in self.hosts:
            pidfile = os.path.join(self.host(name)['dir'], 'run', 'nix-daemon.pid')
            self.host(name)['daemon_pid'] = _read_pid(pidfile)

    @staticmethod
    def _log_tail(host):
        out = []
        for log in ('init.log', 'sshd.log', 'boot.log', 'keeper.log', 'console.log'):
            try:
                with open(os.path.join(host['dir'], 'log', log)) as handle:
                    out.append(handle.read()[-800:])
            except OSError:
                pass
        return ' | '.join(out)

    # ----------------------------------------------------------- use
    def ssh(self, name, command, user=None, check=True, timeout=60, input=None):
        """Run a shell command on a host over real ssh (strict host keys)."""
        host = self.host(name)
        argv = ['ssh'] + self.ssh_args() + self._shape_ssh_args(host) + [
            '-l', user or host['ssh_user'], host['address'], command]
        proc = subprocess.run(argv, universal_newlines=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise LabError('ssh %s@%s %r failed (%d): %s' % (
                user or host['ssh_user'], name, command, proc.returncode, proc.stderr.strip()))
        return proc

    def run_in(self, name, argv, check=True, timeout=60, user=None):
        """Run argv inside a host's namespaces without ssh (for the truth when
        the host's network is down). ``user`` switches user via setpriv."""
        if self.host(name).get('systemd'):
            # its mount, UTS, IPC, network and pid namespaces: what runs
            # there ends with the container
            prefix = _nspawn().nsenter_prefix(self.pid(name))[:-1]
        else:
            prefix = ['nsenter', '-t', str(self.pid(name)), '-m', '-n']
        if user:
            prefix += ['--', 'setpriv', '--reuid', user, '--regid', user, '--init-groups',
                       'env', 'HOME=/home/%s' % user, 'USER=%s' % user]
        else:
            prefix += ['--']
        return sh(prefix + list(argv), check=check, timeout=timeout)

    def read(self, name, path):
        """Contents of a file on a host (stripped), or None when absent."""
        found = self._read_through_proc(name, path)
        if found is not _ENTER:
            return found
        proc = self.run_in(name, ['cat', path], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _read_through_proc(self, name, path):
        """A host file read from this process through ``/proc/<pid>/root``,
        which walks the host's own mounts (its /nix among them): the tests
        poll host files often, and entering the host with ``nsenter`` and
        ``cat`` costs two programs a read. Only for a path none of whose
        parts is a symlink (the kernel resolves a symlink met there against
        this process's root, not the host's); else, or when the host's
        process is gone, ``_ENTER``: read by entering the host."""
        if not path.startswith('/') or '..' in path.split('/'):
            # a '..' there would climb out of the host's root into /proc
            return _ENTER
        where = '/proc/%d/root' % self.pid(name)
        if not os.path.isdir(where):
            return _ENTER
        for part in path.split('/'):
            if not part:
                continue
            where = os.path.join(where, part)
            try:
                if stat.S_ISLNK(os.lstat(where).st_mode):
                    return _ENTER
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError:
                return _ENTER
        try:
            with open(where, 'rb') as handle:
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError:
            return _ENTER
        # as ``sh`` decodes a program's output (universal_newlines)
        text = data.decode(locale.getpreferredencoding(False))
        return text.replace('\r\n', '\n').replace('\r', '\n').strip()

    def active(self, name, key=None):
        """The system the fake activation recorded as active on a host."""
        return self.read(name, '/nix/var/lab/%s/active' % (key or self.state_key(name)))

    def boot(self, name, key=None):
        return self.read(name, '/nix/var/lab/%s/boot' % (key or self.state_key(name)))

    def nix_version(self, name):
        """What the host's own ``nix --version`` says (e.g. 'nix (Nix) 2.8.0')."""
        return self.run_in(name, ['nix', '--version']).stdout.strip()

    def state_key(self, name):
        platform = self.host(name)['platform']
        return {'nixos': 'system', 'darwin': 'system', 'nix-on-droid': 'nix-on-droid',
                'home-manager': 'home-manager-app'}[platform]

    def store_has(self, name, path):
        """Whether ``path`` is a valid path in the host's own store."""
        # as the store's owner on single-user hosts: a root nix would leave
        # root-owned state in app's store
        user = 'app' if self.host(name)['persona'] == 'nix-on-droid' else None
        proc = self.run_in(name, ['nix-store', '--check-validity', path], check=False, user=user)
        return proc.returncode == 0

    def restart_daemon(self, name):
        """Restart a multi-user host's nix-daemon (to re-read its nix.conf)."""
        host = self.host(name)
        if host.get('systemd'):
            self.run_in(name, ['systemctl', 'restart', 'nix-daemon.service'])
            return
        # the pid file, not the state: a reboot started another daemon
        pid = _read_pid(os.path.join(host['dir'], 'run', 'nix-daemon.pid'))
        if pid and _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _attempt in range(50):
                if not _pid_alive(pid):
                    break
                time.sleep(0.1)
        pidfile = os.path.join(host['dir'], 'run', 'nix-daemon.pid')
        self.run_in(name, ['sh', '-c', 'setsid nix-daemon </dev/null >>%s 2>&1 & echo $! >%s'
                           % (os.path.join(host['dir'], 'log', 'nix-daemon.log'), pidfile)])
        host['daemon_pid'] = _read_pid(pidfile)
        self._save()

    def restart_sshd(self, name, timeout=30):
        """Restart a host's sshd in place, so it reads its config and host key
        again: SIGHUP to its pid (the host's recorded pid, see ``pid``) makes
        sshd exec itself anew, same pid, same arguments. Needed after a host
        key changes: OpenSSH 9.2's sshd re-read the key for each connection,
        10.x reads it only when it starts. Returns once the host serves the key
        its key file now holds (LabError after ``timeout`` seconds)."""
        host = self.host(name)
        with open(os.path.join(host['dir'], 'ssh_host_ed25519_key.pub')) as handle:
            want = handle.read().split()[1]
        pid = self.pid(name)
        if not pid or _pid_gone(pid):
            raise LabError('host %s: no sshd to restart' % name)
        if host.get('systemd'):
            # its sshd is ssh.service, its key the machine's copy of the host
            # folder's (ExecReload: sshd -t, then SIGHUP to the main pid)
            _nspawn().sync_host_key(host)
            self.run_in(name, ['systemctl', 'reload', 'ssh.service'])
        else:
            os.kill(pid, signal.SIGHUP)
        deadline = time.time() + timeout
        served = ''
        while time.time() < deadline:
            scan = sh(['ssh-keyscan', '-T', '2', '-t', 'ed25519', host['address']],
                      check=False, timeout=10)
            served = scan.stdout
            if want in served.split():
                return
            time.sleep(0.1)
        raise LabError('host %s: sshd (pid %d) does not serve its new host key after %ss: %s'
                       % (name, pid, timeout, served.strip() or self._log_tail(host)))

    def add_nix_conf(self, name, text, restart=True):
        """Append settings to a host's own nix.conf (e.g. trusted keys)."""
        host = self.host(name)
        with open(os.path.join(host['dir'], 'etc-nix', 'nix.conf'), 'a') as handle:
            handle.write(text.rstrip('\n') + '\n')
        if restart and os.path.exists(os.path.join(host['dir'], 'multi-user')):
            self.restart_daemon(name)

    # ----------------------------------------------------------- power
    def pid(self, name):
        """The pid of a host's sshd in its current boot (enter the host
        through it); the first boot's when nothing else was recorded. On a
        systemd host: its PID 1 (systemd) as seen from the machine."""
        host = self.host(name)
        return _read_pid(os.path.join(host['dir'], 'run', 'host.pid')) or host['pid']

    def power_state(self, name):
        """'up', 'down' (between a reboot's stop and its boot) or 'off'."""
        try:
            with open(os.path.join(self.host(name)['dir'], 'power.state')) as handle:
                return handle.read().strip()
        except OSError:
            return 'up'

    def set_power(self, name, **settings):
        """Change how a host reboots: ``down_seconds`` (how long it stays
        down, default 1), ``comes_back`` (False: it stays off after its next
        reboots, as a machine that never boots again), ``fallback`` (True:
        its boot loader starts the generation before the boot default)."""
        unknown = set(settings) - set(POWER_DEFAULTS)
        if unknown:
            raise LabError('unknown power settings: %s' % ', '.join(sorted(unknown)))
        path = os.path.join(self.host(name)['dir'], 'power.json')
        with open(path) as handle:
            current = json.load(handle)
        current.update(settings)
        _write(path, json.dumps(current))

    def boot_id(self, name):
        """The boot id the host sees in /proc/sys/kernel/random/boot_id."""
        with open(os.path.join(self.host(name)['dir'], 'boot_id')) as handle:
            return handle.read().strip()

    def boot_ids(self, name):
        """Every boot id of the host, the first boot's first."""
        with open(os.path.join(self.host(name)['dir'], 'boots')) as handle:
            return [line.split()[1] for line in handle if line.strip()]

    def booted(self, name):
        """The system the host booted (/run/booted-system), or None."""
        proc = self.run_in(name, ['readlink', '/run/booted-system'], check=False)
        return proc.stdout.strip() or None

    def current_system(self, name):
        """The system the host runs now (/run/current-system), or None."""
        proc = self.run_in(name, ['readlink', '/run/current-system'], check=False)
        return proc.stdout.strip() or None

    def _request_power(self, name, action):
        _write(os.path.join(self.host(name)['dir'], 'power', 'request'), action + '\n')

    def reboot(self, name, wait=True, timeout=60):
        """Reboot a host from outside (as ``reboot`` inside it would) and,
        with ``wait``, return once it is up again and accepts ssh."""
        boots = len(self.boot_ids(name))
        self._request_power(name, 'reboot')
        if wait:
            self.wait_up(name, timeout=timeout, boots=boots + 1)

    def power_cut(self, name, wait=True, timeout=60):
        """The host loses power, then boots again: every process in it is
        SIGKILLed at once (no shutdown's SIGTERM, nothing runs its exit), as
        a pulled plug or a kernel panic. Plain hosts only (the supervisor's)."""
        if self.host(name).get('systemd'):
            raise LabError('power_cut: %s boots systemd; its keeper has no power cut' % name)
        boots = len(self.boot_ids(name))
        self._request_power(name, 'power-cut')
        if wait:
            self.wait_up(name, timeout=timeout, boots=boots + 1)

    def power_on(self, name, wait=True, timeout=60):
        """Boot a host that stayed off (``comes_back`` False, or poweroff)."""
        boots = len(self.boot_ids(name))
        self._request_power(name, 'power-on')
        if wait:
            self.wait_up(name, timeout=timeout, boots=boots + 1)

    def wait_up(self, name, timeout=60, boots=None):
        """Wait until a host has booted ``boots`` times (if given) and
        accepts ssh; LabError when it does not within ``timeout`` s."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if (boots is None or len(self.boot_ids(name)) >= boots) and \
                    self.power_state(name) == 'up' and \
                    self.ssh(name, 'true', user='root', check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise LabError('host %s is not up after %ss (power %s): %s' % (
            name, timeout, self.power_state(name), self._log_tail(self.host(name))))

    def http_url(self, name, path='/cgi-bin/health', port=80):
        """The URL of a NixOS host's http_status endpoint (busybox httpd)."""
        suffix = '' if port == 80 else ':%d' % port
        return 'http://%s%s%s' % (self.host(name)['address'], suffix, path)

    # ----------------------------------------------------------- links
    def cut(self, name):
        """Cut a host's link (the bridge side), as if its cable were pulled."""
        sh(['ip', 'link', 'set', self.host(name)['veth'], 'down'])

    def restore(self, name):
        sh(['ip', 'link', 'set', self.host(name)['veth'], 'up'])
        sh(['ip', '-n', self.host(name)['netns'], 'link', 'set', 'eth0', 'up'])

    def shape(self, name, rate=None, delay=None, loss=None):
        """Shape both directions of a host's link: ``rate`` like '100mbit'
        (tbf), ``delay`` like '20ms' and ``loss`` like '1%' (netem, which not
        every kernel has: LabError says so). All None clears the shaping."""
        host = self.host(name)
        for prefix in (['ip', 'netns', 'exec', host['netns']], []):
            dev = 'eth0' if prefix else host['veth']
            sh(prefix + ['tc', 'qdisc', 'del', 'dev', dev, 'root'], check=False)
            if delay or loss:
                argv = prefix + ['tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem']
                argv += (['delay', delay] if delay else []) + (['loss', loss] if loss else [])
                argv += ['rate', rate] if rate else []
                proc = sh(argv, check=False)
                if proc.returncode != 0:
                    raise LabError('cannot add delay/loss on %s: this kernel has no netem (%s)'
                                   % (name, proc.stderr.strip()))
            elif rate:
                # tbf is built into kernels that lack netem; the burst of
                # 64 KiB keeps a 100 Mbit/s link near its rate at HZ=250
                sh(prefix + ['tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', rate,
                             'burst', '64kb', 'latency', '200ms'])

    def can_delay(self):
        """Whether this kernel can add delay/loss (netem) to a link."""
        try:
            with open('/proc/modules') as handle:
                if any(line.startswith('sch_netem ') for line in handle):
                    return True
        except OSError:
            pass
        try:
            import gzip
            with gzip.open('/proc/config.gz', 'rt') as handle:
                return 'CONFIG_NET_SCH_NETEM=y' in handle.read()
        except OSError:
            return os.path.isdir('/lib/modules/%s/kernel/net/sched' % os.uname().release)

    def link_bytes(self, name):
        """(bytes sent to the host, bytes received from it) on its link."""
        veth = self.host(name)['veth']
        values = []
        for counter in ('tx_bytes', 'rx_bytes'):
            with open('/sys/class/net/%s/statistics/%s' % (veth, counter)) as handle:
                values.append(int(handle.read()))
        return tuple(values)

    def accepted_connections(self, name):
        """TCP connections a host has accepted so far (its namespace's
        PassiveOpens counter): how many logins a step really opened."""
        snmp = sh(['ip', 'netns', 'exec', self.host(name)['netns'], 'cat', '/proc/net/snmp'])
        rows = [ln.split() for ln in snmp.stdout.splitlines() if ln.startswith('Tcp:')]
        return int(rows[1][rows[0].index('PassiveOpens')])

    # ----------------------------------------------------------- down
    def processes(self):
        """Pids of every process inside the lab's namespaces."""
        pids = set()
        for host in self.hosts.values():
            pids |= netns_pids(host['netns'])
        return pids

    def commands(self, name):
        """The argv of every process in one host's network namespace. A
        plain host shares the machine's pid namespace, so ``ps`` inside it
        would also list the other hosts' and labs' processes."""
        found = []
        for pid in sorted(netns_pids(self.host(name)['netns'])):
            try:
                with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                    argv = handle.read().split(b'\0')[:-1]
            except OSError:
                continue  # it ended since it was listed
            found.append([arg.decode('utf-8', 'replace') for arg in argv])
        return found

    def _stop_supervisor(self):
        pid = self.state.get('supervisor_pid')
        if pid:
            stop_pid(pid)

    def down(self):
        """Stop every process the lab started, remove its namespaces and links."""
        if not self.state:
            return
        # first the supervisor, so that no host boots again meanwhile, and
        # the target fault watchers (target_faults.py)
        self._stop_supervisor()
        self._stop_watchers()
        # then the systemd hosts' keepers, which stop their containers
        containers = [h for h in self.hosts.values() if h.get('systemd')]
        if containers:
            _nspawn().stop_keepers(containers)
        recorded = []
        for host in self.hosts.values():
            if host.get('systemd'):
                continue
            recorded += [host.get('pid'), host.get('daemon_pid'),
                         _read_pid(os.path.join(host['dir'], 'run', 'host.pid')),
                         _read_pid(os.path.join(host['dir'], 'run', 'nix-daemon.pid'))]
        for pid in sorted({p for p in recorded if p}):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        # Anything still inside the lab's own namespaces was started there by
        # the lab or by a deploy to it (detached activations, watchdogs, the
        # systems' own httpd).
        stop_netns([host['netns'] for host in self.hosts.values()])
        for host in self.hosts.values():
            sh(['ip', 'link', 'del', host['veth']], check=False)
            sh(['ip', 'netns', 'del', host['netns']], check=False)
        self._remove_networks()
        if self.state.get('bridge'):
            # none yet: stopped before it claimed one
            sh(['ip', 'link', 'del', self.state['bridge']], check=False)
        self._unmount_stores()
        self.state = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self, index=None):
        """What of this lab still exists (for the test that down is clean)."""
        index = self.state['index'] if self.state else index
        found = []
        netns = sh(['ip', 'netns', 'list'], check=False).stdout
        found += [ln.split()[0] for ln in netns.splitlines()
                  if ln.startswith('ndl%d-' % index) and ln.split()[0] != HELD_NAME % index]
        links = sh(['ip', '-o', 'link', 'show'], check=False).stdout
        for line in links.splitlines():
            ifname = line.split(':')[1].strip().split('@')[0]
            if ifname in ('ndlbr%d' % index,) or ifname.startswith('ndl%dv' % index):
                found.append(ifname)
        with open('/proc/mounts') as handle:
            found += [ln.split()[1] for ln in handle if '/ndl%d-' % index in ln]
        # systemd hosts: their cgroups and nspawn's folders
        found += _nspawn().leftovers(index)
        # store_size hosts: their /nix filesystems
        found += self._store_mounts()
        # network shapes: the inner bridge, a bastion's link, the route
        found += self._network_leftovers(index)
        return found

    def status(self):
        rows = []
        for name, host in sorted(self.hosts.items()):
            power = self.power_state(name)
            if power == 'up' and _pid_gone(self.pid(name)):
                power = 'DOWN'
            rows.append('%-10s %-13s %-15s ssh %-6s %-5s boots %d%s%s' % (
                name, host['persona'], host['address'], host['ssh_user'], power,
                len(self.boot_ids(name)),
                '  nix: other (%s)' % host['nix_root'] if host.get('nix') == 'other' else '',
                '  systemd (container)' if host.get('systemd') else ''))
        return rows
