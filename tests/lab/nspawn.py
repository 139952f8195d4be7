"""Lab hosts that boot a real systemd as PID 1 (``{'systemd': True}``).

Such a host is a systemd-nspawn container booting this machine's own Debian
userland, in the host's network namespace (same bridge, same addresses as
every lab host). Its parts (``$H`` is the host folder):

  $H/machine/        a small root: /usr bound read-only from this machine, its
                     own copy of /etc (units it need not run masked, the lab's
                     sshd_config and host key, lab-boot.service), bin/lib/sbin
                     links into usr
  $H/nix             bound at /nix: persistent, generations survive reboots
  $H/home, $H/root   bound at /home and /root
  $H/etc-nix         bound at /etc/nix: the same nix.conf as every lab host
  $H/power           bound at /run/lab-power (the fixture systems look for it;
                     a request written there is a power request, as outside)
  $H/log             bound at /var/log/lab (boot.log of the boot activation)

/var and /tmp are tmpfs, /run is nspawn's fresh tmpfs: every boot starts
clean, as a real one. systemd runs nix-daemon.socket/.service, ssh.service and
lab-boot.service (the NixOS persona's stage 2, tests/lab/boot.sh, before sshd).

A **keeper** (this file run as a script, one per systemd host, started by
``Lab.up``; its pid in the host state and ``run/keeper.pid``) is the
machine's power supply: it starts systemd-nspawn, records the container's
PID 1 (``run/host.pid``, what ``Lab.pid`` and ``Lab.run_in`` use) and the
boot id nspawn gave it (``boot_id``, ``boots``), and when nspawn ends:

  status 133 (the container rebooted: ``reboot``/``systemctl reboot`` inside,
             or ``Lab.reboot``, which signals PID 1 SIGRTMIN+5)
             waits ``down_seconds`` and starts it again, unless
             ``comes_back`` is false (then it stays off)
  status 0   (poweroff/halt) off until a ``power-on`` request
  else       off (logged)

It reads the host's ``power/request`` itself (the lab supervisor leaves
systemd hosts alone). On SIGTERM (``Lab.down``) it kills the container's PID 1
by its recorded pid (the kernel then ends every process of the container),
waits for nspawn, and removes what nspawn leaves on the machine (the
per-container cgroups the keeper made, nspawn's propagate folder).

Each container runs in a cgroup of its own (``nixdeploy-lab/<netns>`` in each
cgroup hierarchy that tracks processes) so two containers' systemd never share
one: with ``--keep-unit`` nspawn uses the cgroup it was started in.

Usage (by the lab): python nspawn.py keep HOSTDIR
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.lab.lab import (  # noqa: E402
    POWER_DEFAULTS, SSHD_POLICY, LabError, _pid_gone, _read_pid, _write, sshd_kex, users_locked)

NSPAWN = 'systemd-nspawn'
MACHINE = 'machine'
CGROUP_PARENT = 'nixdeploy-lab'
# Units of this machine a lab host need not run (and what would slow its boot
# or touch things outside the host): masked in the host's /etc.
MASKED_UNITS = (
    'postgresql.service', 'postgresql@.service',
    'avahi-daemon.service', 'avahi-daemon.socket',
    'cups.service', 'cups.socket', 'cups.path', 'cups-browsed.service',
    'getty@.service', 'console-getty.service', 'container-getty@.service',
    'systemd-timesyncd.service', 'systemd-pstore.service', 'e2scrub_reap.service',
    'apt-daily.timer', 'apt-daily-upgrade.timer', 'dpkg-db-backup.timer',
    'e2scrub_all.timer', 'fstrim.timer', 'man-db.timer', 'logrotate.timer',
    'machines.target', 'var-lib-machines.mount',
    'networking.service', 'systemd-networkd.service', 'systemd-networkd.socket',
    'systemd-networkd-wait-online.service', 'systemd-resolved.service',
    'NetworkManager.service', 'ModemManager.service', 'wpa_supplicant.service',
    'systemd-journal-flush.service', 'systemd-hwdb-update.service',
    'ldconfig.service', 'systemd-update-done.service', 'cron.service',
    'exim4.service', 'rsyslog.service', 'unattended-upgrades.service',
    # newer userlands (the current-stack tree): no TPM in a container
    'tpm-udev.path', 'tpm-udev.service',
)
SSHD_CONFIG = """\
# lab host {name} (a systemd host): the lab's sshd settings, as on plain hosts
ListenAddress {address}
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
AuthorizedKeysFile /etc/ssh/lab_authorized_keys
""" + SSHD_POLICY
BOOT_UNIT = """\
[Unit]
Description=Lab stage 2: activate the boot default (as NixOS's stage 2 does)
After=local-fs.target
Before=ssh.service multi-user.target

[Service]
Type=oneshot
# the system's own processes (its httpd) stay in this unit's cgroup
RemainAfterExit=yes
ExecStart=/bin/sh /etc/lab/lab-boot

[Install]
WantedBy=multi-user.target
"""
BOOT_SCRIPT = """\
#!/bin/sh
# lab-boot.service: the NixOS persona's stage 2 on a systemd host (the lab's
# keeper wrote boot-fallback when its power settings ask for the fallback)
set -eu
if [ -e /etc/lab/boot-fallback ]; then
  LAB_BOOT_FALLBACK=1
  export LAB_BOOT_FALLBACK
fi
ip link set lo up
ip link set eth0 up
mkdir -p /run/lab-power
. /etc/lab/boot.sh
boot_activate /var/log/lab/boot.log
"""
# SIGRTMIN+n as systemd (PID 1) reads them: +4 poweroff, +5 reboot
SIG_POWEROFF = signal.SIGRTMIN + 4
SIG_REBOOT = signal.SIGRTMIN + 5
REBOOT_STATUS = 133
# run before nspawn, by the process that becomes nspawn (lab paths: no blanks)
JOIN_CGROUPS = 'for cg in $LAB_CGROUPS; do echo $$ >"$cg/cgroup.procs" || exit 125; done; exec "$@"'
POLL = 0.05


def nspawn_binary():
    """systemd-nspawn's path, or None when this machine lacks it."""
    return shutil.which(NSPAWN)


def _systemd_version():
    """The major version of this userland's systemd-nspawn, or 0."""
    try:
        out = subprocess.run([nspawn_binary(), '--version'], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True,
                             check=False).stdout
        return int(out.split()[1])
    except (OSError, IndexError, ValueError, TypeError):
        return 0


def _machine_on_cgroup_v1():
    """Whether the machine (its PID 1's view, whatever tree we run in) mounts
    the cgroup v1 layout (a tmpfs at /sys/fs/cgroup)."""
    try:
        with open('/proc/1/mountinfo') as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and fields[4] == '/sys/fs/cgroup':
                    return ' - tmpfs ' in line
    except OSError:
        pass
    return False


def unsupported():
    """Why systemd hosts cannot run here, or None."""
    if not nspawn_binary():
        return ('systemd hosts need %s (Debian package systemd-container), which this '
                'machine does not have' % NSPAWN)
    if not os.path.isdir('/sys/fs/cgroup'):
        return 'systemd hosts need /sys/fs/cgroup'
    version = _systemd_version()
    if version >= 256 and _machine_on_cgroup_v1():
        # seen in the current-stack tree (systemd 262) on this machine: it
        # boots under a private cgroup2 mount but refuses again at reboot
        return ('systemd %d refuses the cgroup v1 layout this machine runs (systemd hosts '
                'run on the stack whose systemd is older than 256 here)' % version)
    return None


def require():
    """LabError unless systemd hosts can run here."""
    reason = unsupported()
    if reason:
        raise LabError(reason)


def machine_dir(host):
    return os.path.join(host['dir'], MACHINE)


# ------------------------------------------------------------------ the root
def make_machine(host, labdir):
    """The host's small root: links into /usr, mount points, its own /etc.
    Called by Lab.up after the host's folder (nix, home, keys) exists."""
    root = machine_dir(host)
    os.makedirs(root)
    os.chmod(root, 0o755)
    for name in sorted(os.listdir('/')):
        # bin, lib, lib64, sbin, ...: the merged-/usr links, as on the machine
        target = os.path.join('/', name)
        if os.path.islink(target) and os.readlink(target).startswith('usr/'):
            os.symlink(os.readlink(target), os.path.join(root, name))
    for sub in ('usr', 'var', 'nix', 'root', 'home', 'proc', 'sys', 'dev', 'run', 'srv',
                'mnt', 'opt', 'boot', 'media'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    os.makedirs(os.path.join(root, 'tmp'))
    os.chmod(os.path.join(root, 'tmp'), 0o1777)
    etc = os.path.join(root, 'etc')
    # under the users' lock: a useradd beside it (another lab, the EE's node)
    # would make its lock and temporary files vanish in the middle of the copy
    with users_locked():
        subprocess.run(['cp', '-a', '/etc', etc], check=True)
    # nspawn checks /etc/os-release before /usr is bound: a file, not a link
    for name in ('os-release', 'machine-id', 'fstab', 'hostname', 'resolv.conf', 'mtab'):
        path = os.path.join(etc, name)
        if os.path.lexists(path):
            os.remove(path)
    shutil.copy('/usr/lib/os-release', os.path.join(etc, 'os-release'))
    # a machine id of its own, kept across reboots as on a real machine (and
    # no first boot: systemd would apply presets to this /etc at every one)
    machine_id = uuid.uuid4().hex
    with open(os.path.join(etc, 'machine-id'), 'w') as handle:
        handle.write(machine_id + '\n')
    with open(os.path.join(etc, 'fstab'), 'w') as handle:
        handle.write('# lab host %s: nspawn mounts what it needs\n' % host['name'])
    with open(os.path.join(etc, 'hostname'), 'w') as handle:
        handle.write(host['name'] + '\n')
    with open(os.path.join(etc, 'resolv.conf'), 'w') as handle:
        handle.write('# lab host: no resolver\n')
    os.symlink('../proc/self/mounts', os.path.join(etc, 'mtab'))
    # what it need not run; its own units
    units = os.path.join(etc, 'systemd', 'system')
    os.makedirs(units, exist_ok=True)
    for unit in MASKED_UNITS:
        path = os.path.join(units, unit)
        if os.path.lexists(path):
            os.remove(path)
        os.symlink('/dev/null', path)
    for wants in os.listdir(units):
        folder = os.path.join(units, wants)
        if wants.endswith('.wants') and os.path.isdir(folder) and not os.path.islink(folder):
            for unit in os.listdir(folder):
                if unit in MASKED_UNITS:
                    os.remove(os.path.join(folder, unit))
    os.makedirs(os.path.join(etc, 'lab'))
    shutil.copy(os.path.join(HERE, 'boot.sh'), os.path.join(etc, 'lab', 'boot.sh'))
    with open(os.path.join(etc, 'lab', 'lab-boot'), 'w') as handle:
        handle.write(BOOT_SCRIPT)
    os.chmod(os.path.join(etc, 'lab', 'lab-boot'), 0o755)
    with open(os.path.join(units, 'lab-boot.service'), 'w') as handle:
        handle.write(BOOT_UNIT)
    wants = os.path.join(units, 'multi-user.target.wants')
    os.makedirs(wants, exist_ok=True)
    os.symlink('../lab-boot.service', os.path.join(wants, 'lab-boot.service'))
    # sockets.target.wants: nix-daemon.socket, copied from the machine's /etc
    # (the nixos persona is multi-user); make sure it is there
    sockets = os.path.join(units, 'sockets.target.wants')
    os.makedirs(sockets, exist_ok=True)
    if not os.path.lexists(os.path.join(sockets, 'nix-daemon.socket')):
        os.symlink('/lib/systemd/system/nix-daemon.socket',
                   os.path.join(sockets, 'nix-daemon.socket'))
    # its own sshd: the lab's settings, host key (synced at each boot) and key
    ssh = os.path.join(etc, 'ssh')
    for name in os.listdir(ssh):
        if name.startswith('ssh_host_'):
            os.remove(os.path.join(ssh, name))
    config_d = os.path.join(ssh, 'sshd_config.d')
    if os.path.isdir(config_d):
        shutil.rmtree(config_d)
    with open(os.path.join(ssh, 'sshd_config'), 'w') as handle:
        handle.write(SSHD_CONFIG.format(name=host['name'], address=host['address']) + sshd_kex())
    shutil.copy(os.path.join(labdir, 'authorized_keys'), os.path.join(ssh, 'lab_authorized_keys'))
    os.chmod(os.path.join(ssh, 'lab_authorized_keys'), 0o644)
    sync_host_key(host)
    _write(os.path.join(host['dir'], 'nspawn.json'), json.dumps(
        {'name': host['name'], 'netns': host['netns'], 'dir': host['dir'],
         'machine_id': machine_id}, indent=2))


def sync_host_key(host):
    """The host folder's key is the host's key (Links.change_host_key writes
    it there): copy it into the machine's /etc/ssh."""
    ssh = os.path.join(machine_dir(host), 'etc', 'ssh')
    for suffix, mode in (('', 0o600), ('.pub', 0o644)):
        source = os.path.join(host['dir'], 'ssh_host_ed25519_key' + suffix)
        target = os.path.join(ssh, 'ssh_host_ed25519_key' + suffix)
        shutil.copy(source, target + '.tmp')
        os.chmod(target + '.tmp', mode)
        os.rename(target + '.tmp', target)


def nsenter_prefix(pid):
    """Enter a systemd host through its PID 1: its mount, UTS, IPC, network
    and pid namespaces (so what runs there ends with the container)."""
    return ['nsenter', '-t', str(pid), '-m', '-u', '-i', '-n', '-p', '--']


# ------------------------------------------------------------------ cgroups
def _cgroup_hierarchies():
    """Mount points of the hierarchies that track processes: cgroup2 (at
    /sys/fs/cgroup or /sys/fs/cgroup/unified) and v1 name=systemd."""
    found = []
    with open('/proc/self/mounts') as handle:
        for line in handle:
            fields = line.split()
            point, fstype, options = fields[1], fields[2], fields[3]
            if not point.startswith('/sys/fs/cgroup'):
                continue
            if fstype == 'cgroup2' or (fstype == 'cgroup' and 'name=systemd' in options.split(',')):
                found.append(point)
    return found


def cgroup_dirs(netns):
    return [os.path.join(point, CGROUP_PARENT, netns) for point in _cgroup_hierarchies()]


def _make_cgroups(netns):
    dirs = cgroup_dirs(netns)
    for path in dirs:
        os.makedirs(path, exist_ok=True)
    return dirs


def _remove_cgroups(netns):
    """rmdir the container's cgroups, deepest first; what is left (a cgroup
    that still has processes) is returned."""
    left = []
    for top in cgroup_dirs(netns):
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
        try:
            os.rmdir(os.path.dirname(top))  # the parent, once no lab uses it
        except OSError:
            pass
    return left


def _propagate_dir(netns):
    return os.path.join('/run/systemd/nspawn/propagate', netns)


def leftovers(index):
    """What nspawn or a keeper left on the machine for lab ``index``."""
    found = []
    prefix = 'ndl%d-' % index
    for point in _cgroup_hierarchies():
        parent = os.path.join(point, CGROUP_PARENT)
        if os.path.isdir(parent):
            found += [os.path.join(parent, n) for n in os.listdir(parent)
                      if n.startswith(prefix)]
    propagate = '/run/systemd/nspawn/propagate'
    if os.path.isdir(propagate):
        found += [os.path.join(propagate, n) for n in os.listdir(propagate)
                  if n.startswith(prefix)]
    return found


# ------------------------------------------------------------------ keeper
def start_keeper(host):
    """Start a host's keeper (which boots it); returns the Popen."""
    logf = open(os.path.join(host['dir'], 'log', 'keeper.log'), 'ab')
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'keep', host['dir']],
                            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                            start_new_session=True)
    logf.close()
    return proc


def wait_booted(host, keeper, timeout=30):
    """Wait until the keeper recorded the container's PID 1; return it."""
    deadline = time.time() + timeout
    path = os.path.join(host['dir'], 'run', 'host.pid')
    while time.time() < deadline:
        pid = _read_pid(path)
        if pid:
            return pid
        if keeper.poll() is not None:
            break
        time.sleep(POLL)
    raise LabError('systemd host %s did not start: %s' % (host['name'], log_tail(host)))


def log_tail(host):
    out = []
    for name in ('keeper.log', 'console.log'):
        try:
            with open(os.path.join(host['dir'], 'log', name)) as handle:
                out.append(handle.read()[-800:])
        except OSError:
            pass
    return ' | '.join(out)


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().split(b'\0')
    except OSError:
        return []


def stop_keepers(hosts, timeout=20):
    """Stop the keepers of these (systemd) hosts by their recorded pids,
    which stop their containers; then, for a keeper that did not, its
    container's PID 1 and nspawn by their recorded pids. Cleans up the
    cgroups and propagate folders."""
    keepers = {}
    for host in hosts:
        pid = _read_pid(os.path.join(host['dir'], 'run', 'keeper.pid')) or host.get('keeper_pid')
        # a recorded pid, checked to still be this host's keeper
        if pid and host['dir'].encode() in _cmdline(pid) and not _pid_gone(pid):
            os.kill(pid, signal.SIGTERM)
            keepers[host['name']] = pid
    deadline = time.time() + timeout
    while time.time() < deadline and any(not _pid_gone(p) for p in keepers.values()):
        time.sleep(POLL)
    for host in hosts:
        pid = keepers.get(host['name'])
        if pid and not _pid_gone(pid):
            os.kill(pid, signal.SIGKILL)
        # a keeper that is gone or did not finish: its container's PID 1 and
        # nspawn, by the pids it recorded (each checked to still be that)
        init = _read_pid(os.path.join(host['dir'], 'run', 'host.pid'))
        if init and not _pid_gone(init) and _in_netns(init, host['netns']):
            _kill(init)
        nspawn = _read_pid(os.path.join(host['dir'], 'run', 'nspawn.pid'))
        if nspawn and not _pid_gone(nspawn) and \
                _cmdline(nspawn)[:1] and _cmdline(nspawn)[0].endswith(NSPAWN.encode()):
            _kill(nspawn)
    for host in hosts:
        cleanup(host['netns'])


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _in_netns(pid, netns):
    try:
        return os.stat('/proc/%d/ns/net' % pid).st_ino == os.stat('/run/netns/%s' % netns).st_ino
    except OSError:
        return False


def cleanup(netns):
    """What a container may leave on the machine once it is gone."""
    left = _remove_cgroups(netns)
    propagate = _propagate_dir(netns)
    if os.path.isdir(propagate):
        shutil.rmtree(propagate, ignore_errors=True)
    return left


class Keeper:
    """One systemd host's power supply (see the module's doc)."""

    def __init__(self, hostdir):
        self.dir = hostdir
        with open(os.path.join(hostdir, 'nspawn.json')) as handle:
            self.spec = json.load(handle)
        self.netns = self.spec['netns']
        self.nspawn = None
        self.init_pid = None
        self.stopping = False

    # ---------------------------------------------------------- records
    def log(self, text):
        sys.stdout.write('%s %s\n' % (time.strftime('%H:%M:%S'), text))
        sys.stdout.flush()

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def set_state(self, state):
        _write(self.path('power.state'), state + '\n')

    def settings(self):
        found = dict(POWER_DEFAULTS)
        try:
            with open(self.path('power.json')) as handle:
                found.update(json.load(handle))
        except (OSError, ValueError):
            pass
        return found

    def take_request(self):
        request = self.path('power', 'request')
        try:
            with open(request) as handle:
                action = handle.read().strip()
            os.unlink(request)
            return action
        except OSError:
            return None

    # ---------------------------------------------------------- boot
    def argv(self):
        root = self.path(MACHINE)
        return [nspawn_binary() or NSPAWN, '--quiet', '--boot', '--directory=%s' % root,
                '--machine=%s' % self.netns, '--hostname=%s' % self.spec['name'],
                # random per host, as its /etc/machine-id (nspawn reads that)
                '--uuid=%s' % self.spec['machine_id'], '--register=no', '--keep-unit',
                '--network-namespace-path=/run/netns/%s' % self.netns,
                '--capability=CAP_NET_ADMIN',
                '--resolv-conf=off', '--timezone=off', '--link-journal=no',
                '--console=read-only',
                '--bind-ro=/usr',
                '--bind=%s:/nix' % self.path('nix'),
                '--bind=%s:/home' % self.path('home'),
                '--bind=%s:/root' % self.path('root'),
                '--bind=%s:/etc/nix' % self.path('etc-nix'),
                '--bind=%s:/run/lab-power' % self.path('power'),
                '--tmpfs=/var:mode=0755',
                '--bind=%s:/var/log/lab' % self.path('log'),
                '--', 'systemd.firstboot=off', 'systemd.unit=multi-user.target']

    def safe_boot(self):
        try:
            self.boot()
        except Exception as exc:  # pylint: disable=broad-except
            self.log('boot failed: %r' % exc)
            self._kill_container()
            self.nspawn = None
            self.set_state('off')

    def boot(self):
        self.init_pid = None
        fallback = self.path(MACHINE, 'etc', 'lab', 'boot-fallback')
        if self.settings()['fallback']:
            open(fallback, 'w').close()
        elif os.path.exists(fallback):
            os.remove(fallback)
        sync_host_key({'dir': self.dir})
        # a boot brings the link up, whatever the last system did to it
        subprocess.run(['ip', '-n', self.netns, 'link', 'set', 'eth0', 'up'], check=False)
        cleanup(self.netns)
        cgroups = _make_cgroups(self.netns)
        console = open(self.path('log', 'console.log'), 'ab')
        # nspawn (--keep-unit) runs in the cgroups it starts in: this host's
        self.nspawn = subprocess.Popen(
            ['sh', '-c', JOIN_CGROUPS, 'sh'] + self.argv(), stdin=subprocess.DEVNULL,
            stdout=console, stderr=console, env=dict(os.environ, LAB_CGROUPS=' '.join(cgroups)))
        console.close()
        _write(self.path('run', 'nspawn.pid'), '%d\n' % self.nspawn.pid)
        self.log('nspawn started (pid %d)' % self.nspawn.pid)
        init = self._find_init(timeout=30)
        if not init:
            self.log('no container PID 1 appeared: stopping nspawn')
            self._kill_container()
            self.nspawn = None
            cleanup(self.netns)
            self.set_state('off')
            return
        boot_id = self._read_boot_id(init)
        self.init_pid = init
        _write(self.path('boot_id'), boot_id + '\n')
        with open(self.path('boots'), 'a') as handle:
            handle.write('%.3f %s\n' % (time.time(), boot_id))
        _write(self.path('run', 'host.pid'), '%d\n' % init)
        self.set_state('up')
        self.log('booting: PID 1 is %d, boot id %s' % (init, boot_id))

    def _find_init(self, timeout):
        """The container's PID 1 (pid 1 in its own pid namespace, in this
        host's network namespace) once it runs systemd."""
        try:
            netns_ino = os.stat('/run/netns/%s' % self.netns).st_ino
        except OSError:
            return None
        deadline = time.time() + timeout
        while time.time() < deadline and self.nspawn.poll() is None and not self.stopping:
            for entry in os.listdir('/proc'):
                if not entry.isdigit():
                    continue
                try:
                    if os.stat('/proc/%s/ns/net' % entry).st_ino != netns_ino:
                        continue
                    with open('/proc/%s/status' % entry) as handle:
                        status = dict(line.rstrip('\n').split(':\t', 1)
                                      for line in handle if ':\t' in line)
                    with open('/proc/%s/comm' % entry) as handle:
                        comm = handle.read().strip()
                except (OSError, ValueError):
                    continue
                nspid = status.get('NSpid', '').split()
                if len(nspid) >= 2 and nspid[-1] == '1' and comm == 'systemd':
                    return int(entry)
            time.sleep(POLL)
        return None

    def _read_boot_id(self, init):
        """The boot id nspawn gave this boot, read inside the container."""
        for _attempt in range(100):
            proc = subprocess.run(['nsenter', '-t', str(init), '-m', '--', 'cat',
                                   '/proc/sys/kernel/random/boot_id'],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout.strip()
            time.sleep(POLL)
        raise LabError('cannot read the boot id of %s: %s' % (self.netns, proc.stderr))

    # ---------------------------------------------------------- power
    def _signal_init(self, signum):
        if self.init_pid and not _pid_gone(self.init_pid):
            os.kill(self.init_pid, signum)
            return True
        return False

    def _kill_container(self):
        """Off at once: SIGKILL the container's PID 1 (its pid namespace
        goes with it), then wait for nspawn, which cleans up after it."""
        if not self.nspawn:
            return None
        self._signal_init(signal.SIGKILL)
        try:
            return self.nspawn.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            return self.nspawn.wait()

    def ended(self, status):
        self.log('container ended with status %s' % status)
        self.nspawn = None
        self.init_pid = None
        left = cleanup(self.netns)
        if left:
            self.log('cgroups still busy: %s' % ' '.join(left))
        if status != REBOOT_STATUS:
            self.set_state('off')
            return
        self.set_state('down')
        power = self.settings()
        if not power['comes_back']:
            self.set_state('off')
            self.log('off (comes_back is false)')
            return
        deadline = time.time() + float(power['down_seconds'])
        while time.time() < deadline and not self.stopping:
            time.sleep(POLL)
        if not self.stopping:
            self.safe_boot()

    def handle(self, action):
        state = 'up' if self.nspawn else 'off'
        self.log('request %s (host %s)' % (action, state))
        if action == 'reboot':
            if self.nspawn:
                self._signal_init(SIG_REBOOT)
            else:
                self.safe_boot()
        elif action == 'poweroff':
            if self.nspawn:
                self._signal_init(SIG_POWEROFF)
        elif action == 'power-on':
            if not self.nspawn:
                self.safe_boot()
        else:
            self.log('unknown request %r' % action)

    def stop(self, *_args):
        self.stopping = True

    def run(self):
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        _write(self.path('run', 'keeper.pid'), '%d\n' % os.getpid())
        self.log('keeping %s' % self.netns)
        self.safe_boot()
        while not self.stopping:
            if self.nspawn is not None and self.nspawn.poll() is not None:
                self.ended(self.nspawn.returncode)
                continue
            action = self.take_request()
            if action:
                self.handle(action)
            time.sleep(POLL)
        status = self._kill_container()
        cleanup(self.netns)
        self.set_state('off')
        self.log('stopped (nspawn status %s)' % status)


if __name__ == '__main__':
    if len(sys.argv) != 3 or sys.argv[1] != 'keep':
        sys.exit('usage: nspawn.py keep HOSTDIR')
    Keeper(sys.argv[2]).run()
