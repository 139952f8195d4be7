"""A scale lab: up to 1,000 light NixOS hosts on one machine.

Each host keeps what a lab host has that a deploy touches: its own network
namespace and address, its own mount namespace in which a per-host folder is
its ``/nix`` (and ``/home``, ``/root``, ``/etc/nix``), a fresh ``/run``, its
own boot id and the lab's systemctl, and its own sshd with its own host key.
What it does not have, to be light:

- no resident process: its mount namespace is kept by a bind mount of its
  nsfs file (``unshare --mount=FILE``), as ``ip netns`` keeps a network
  namespace, and its sshd is started per connection (``sshd -i``) by the
  lab's one listener (listener.py), which holds a socket inside each host's
  network namespace;
- no nix-daemon: a single-user store owned by root, whom the NixOS persona
  deploys as (``nix copy --to ssh-ng://`` runs ``nix-daemon --stdio`` per
  connection, which opens the local store itself);
- no reboot (no power supervisor), no target faults, one persona (nixos).

Addresses: 10.213.252.0/22 on the bridge ``ndscale0`` (slot 0, up to 1,000
hosts), or 10.213.250.0/23 on ``ndscale1`` (slot 1, up to 480) when slot 0 is
taken. The lab's plain labs use 10.213.<index>.0/24 with index 1-249 (lab.py
``_free_index``), so these (indexes 250-255) never meet them; creating a
slot's bridge is its claim, so two scale labs can be up at a time.

Everything is recorded in state.json and stopped by its ids: the listener by
its pid, every process in a host's namespaces by its pid (one scan of /proc
against the namespaces' inodes), every namespace by its name or file.
"""

import concurrent.futures
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

from tests.lab.lab import NIX_CONF, SSHD_CONFIG, Lab, LabError, _pid_gone, sh, sshd_kex, stop_pid

HERE = os.path.dirname(os.path.abspath(__file__))
SCALE_ROOT = os.environ.get('NIXDEPLOY_SCALE_ROOT', '/var/lib/nixdeploy-scale')
# where the hosts' mount namespace files live: a private mount of its own
# (unshare --mount=FILE needs one), on the machine's /run
NS_ROOT = '/run/nixdeploy-scale'
FIRST_HOST = 10
# Two scale labs can be up at once, each in its own slot (its bridge, network
# and interface names): a benchmark of 1,000 hosts in slot 0 and `make test`'s
# 100-host run in slot 1. The plain labs use 10.213.<index>.0/24 with index
# 1-249, so both slots (indexes 250-255) are clear of them. Creating a slot's
# bridge is its claim; up() takes the first free slot that holds the hosts.
SLOTS = (
    {'bridge': 'ndscale0', 'network': '10.213.252.0/22', 'netns': 'ndsc-', 'veth': 'ndscv',
     'max_hosts': 1000},
    {'bridge': 'ndscale1', 'network': '10.213.250.0/23', 'netns': 'ndsd-', 'veth': 'ndsdv',
     'max_hosts': 480},
)
MAX_HOSTS = max(slot['max_hosts'] for slot in SLOTS)
# the controller's neighbour table holds every host's address: above the
# kernel's default hard limit (gc_thresh3 1024) with the other labs' hosts
NEIGH = {'gc_thresh1': 4096, 'gc_thresh2': 8192, 'gc_thresh3': 16384}
NEIGH_PATH = '/proc/sys/net/ipv4/neigh/default/%s'
PARALLEL = 4

# A host's boot, inside its new mount namespace (run by unshare, which keeps
# the namespace in a file once this ends). The copies of the machine's
# namespace files (every lab's /run/netns entries, this lab's ns folder) would
# keep those namespaces alive as long as this one: detached first.
HOST_INIT = r"""
set -eu
hostdir=$1 tools=$2 nsroot=$3
umount -l /run/netns 2>/dev/null || true
# every scale lab's namespace folder (this one's and another slot's)
for dir in "$nsroot"/*/; do
  umount -l "${dir%/}" 2>/dev/null || true
done
mount --bind "$hostdir/nix" /nix
mount --bind "$hostdir/home" /home
mount --bind "$hostdir/root" /root
mount --bind "$hostdir/etc-nix" /etc/nix
mount -t tmpfs -o mode=0755,size=8m scale-run /run
mkdir -m 0755 /run/sshd
mount --bind "$hostdir/boot_id" /proc/sys/kernel/random/boot_id
mount --bind "$tools/systemctl" /usr/bin/systemctl
"""


def parallel(function, items, workers=PARALLEL):
    """``function`` over ``items`` in a few threads (each mostly waits on a
    child process); the first exception is raised."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def meminfo():
    """The machine's memory figures a lab changes, in KiB."""
    wanted = ('MemAvailable', 'Slab', 'SUnreclaim', 'KernelStack', 'Shmem', 'PageTables')
    out = {}
    with open('/proc/meminfo') as handle:
        for line in handle:
            key = line.split(':')[0]
            if key in wanted:
                out[key] = int(line.split()[1])
    return out


def _ns_inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _proc_ns(pid, kind):
    try:
        link = os.readlink('/proc/%s/ns/%s' % (pid, kind))
    except OSError:
        return None
    return int(link.split('[', 1)[1].rstrip(']'))


class ScaleLab(Lab):
    """``ScaleLab(name).up(1000)``; ``ScaleLab(name)`` alone reattaches."""

    def __init__(self, name='scale', root=SCALE_ROOT):
        Lab.__init__(self, name, root=root)

    @property
    def nsdir(self):
        return os.path.join(NS_ROOT, self.name)

    @property
    def slot(self):
        return SLOTS[(self.state or {}).get('slot', 0)]

    @property
    def network(self):
        return ipaddress.ip_network(self.slot['network'])

    @property
    def bridge(self):
        return self.slot['bridge']

    @property
    def bridge_address(self):
        return str(self.network.network_address + 1)

    # ----------------------------------------------------------- up
    def up(self, hosts=100, personas=None):
        """Bring up ``hosts`` light NixOS hosts h1..hN. Returns self; the
        seconds of each step are in ``state['timings']``."""
        if personas and set(personas) != {'nixos'}:
            raise LabError('a scale lab has NixOS hosts only')
        if not 1 <= hosts <= MAX_HOSTS:
            raise LabError('a scale lab has 1 to %d hosts' % MAX_HOSTS)
        if self.state:
            self.down()
        timings = {}
        memory_before = meminfo()
        started = mark = time.monotonic()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.state = {'name': self.name, 'dir': self.dir, 'kind': 'scale', 'hosts': {},
                      'nsdir': self.nsdir, 'timings': timings}
        for number, slot in enumerate(SLOTS):
            if hosts <= slot['max_hosts'] and sh(['ip', 'link', 'add', slot['bridge'], 'type',
                                                  'bridge'], check=False).returncode == 0:
                self.state.update(slot=number, bridge=slot['bridge'])
                break
        else:
            self.state = None
            shutil.rmtree(self.dir, ignore_errors=True)
            raise LabError('no free scale lab slot for %d hosts (bridges %s exist: other scale '
                           'labs are up)' % (hosts, ', '.join(s['bridge'] for s in SLOTS
                                                              if hosts <= s['max_hosts'])))
        self._save()
        try:
            self._up(hosts, timings, mark)
        except BaseException:
            # a Ctrl-C (KeyboardInterrupt) too: a benchmark stopped while
            # its lab comes up leaves no namespace behind
            self.down()
            raise
        timings['total'] = round(time.monotonic() - started, 2)
        self.state['up_seconds'] = timings['total']
        # what the machine gave the lab (other work moves these too: read
        # them at 1,000 hosts, not 10)
        after = meminfo()
        self.state['memory_kb'] = dict((key, memory_before[key] - after[key]
                                        if key == 'MemAvailable' else after[key] - memory_before[key])
                                       for key in after)
        self.state['memory_kb']['listener_pss'] = self.memory()['pss_kb']
        self._save()
        return self

    def _step(self, timings, name, mark):
        now = time.monotonic()
        timings[name] = round(now - mark, 2)
        self._save()
        return now

    def _up(self, count, timings, mark):
        self._ensure_users()
        self._raise_neigh()
        sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'nixdeploy-scale-deployer',
            '-f', self.key])
        shutil.copy(self.key + '.pub', os.path.join(self.dir, 'authorized_keys'))
        os.chmod(os.path.join(self.dir, 'authorized_keys'), 0o644)
        os.chmod(self.dir, 0o755)
        self._write_tools()
        for number in range(1, count + 1):
            name = 'h%d' % number
            self.state['hosts'][name] = {
                'name': name, 'persona': 'nixos', 'platform': 'nixos',
                'address': str(self.network.network_address + FIRST_HOST - 1 + number),
                'netns': self.slot['netns'] + name, 'veth': '%s%d' % (self.slot['veth'], number),
                'dir': os.path.join(self.dir, 'hosts', name),
                'mntns': os.path.join(self.nsdir, name),
                'ssh_user': 'root', 'become': False, 'nix_on_path': True, 'nix_dir': '/usr/bin',
                'nix': 'own', 'nix_root': '/', 'systemd': False, 'store_size': None}
        hosts = list(self.hosts.values())
        parallel(self._make_host_tree, hosts)
        mark = self._step(timings, 'host_folders', mark)
        self._make_links(hosts)
        mark = self._step(timings, 'links', mark)
        self._make_mount_namespaces(hosts)
        mark = self._step(timings, 'mount_namespaces', mark)
        self._write_client_files()
        self._start_listener()
        mark = self._step(timings, 'listener', mark)
        self._wait_ready()
        self._step(timings, 'ssh_probe', mark)

    # The limits are the machine's, shared by both slots: the first lab up
    # saves the kernel's values (in NS_ROOT, beside the namespace files), the
    # last one down puts them back.
    NEIGH_SAVED = os.path.join(NS_ROOT, 'neigh-saved.json')

    def _raise_neigh(self):
        if not os.path.exists(self.NEIGH_SAVED):
            saved = {}
            for key in NEIGH:
                with open(NEIGH_PATH % key) as handle:
                    saved[key] = int(handle.read())
            os.makedirs(NS_ROOT, exist_ok=True)
            with open(self.NEIGH_SAVED, 'w') as handle:
                json.dump(saved, handle)
        with open(self.NEIGH_SAVED) as handle:
            saved = json.load(handle)
        for key, want in NEIGH.items():
            if saved[key] < want:
                with open(NEIGH_PATH % key, 'w') as handle:
                    handle.write('%d\n' % want)

    def _restore_neigh(self):
        # the other labs live with the kernel's defaults: put them back when
        # no scale lab is left (highest first, as the kernel wants thresh1 <=
        # thresh2 <= thresh3)
        if any(os.path.exists('/sys/class/net/%s' % slot['bridge']) for slot in SLOTS):
            return
        try:
            with open(self.NEIGH_SAVED) as handle:
                saved = json.load(handle)
        except (OSError, ValueError):
            return
        for key in ('gc_thresh1', 'gc_thresh2', 'gc_thresh3'):
            if saved.get(key):
                with open(NEIGH_PATH % key, 'w') as handle:
                    handle.write('%d\n' % saved[key])
        os.unlink(self.NEIGH_SAVED)

    def _make_host_tree(self, host):
        hostdir = host['dir']
        for sub in ('nix/store', 'nix/var/nix/profiles/per-user', 'nix/var/nix/gcroots',
                    'nix/var/lab', 'home', 'root', 'etc-nix', 'log'):
            os.makedirs(os.path.join(hostdir, sub), exist_ok=True)
        os.chmod(os.path.join(hostdir, 'nix/var/lab'), 0o1777)
        with open(os.path.join(hostdir, 'boot_id'), 'w') as handle:
            handle.write('%s\n' % uuid.uuid4())
        with open(os.path.join(hostdir, 'etc-nix', 'nix.conf'), 'w') as handle:
            handle.write(NIX_CONF.format(name=host['name']))
        with open(os.path.join(hostdir, 'sshd_config'), 'w') as handle:
            handle.write(SSHD_CONFIG.format(address=host['address'], hostdir=hostdir,
                                            labdir=self.dir, setenv='') + sshd_kex())
        sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', host['name'],
            '-f', os.path.join(hostdir, 'ssh_host_ed25519_key')])

    def _make_links(self, hosts):
        """Namespaces and veths with one ``ip -batch``, then each namespace's
        own side with one ``ip -n NS -batch`` (a batch line cannot name
        another namespace)."""
        lines = []
        for host in hosts:
            lines += ['netns add %s' % host['netns'],
                      'link add %s type veth peer name eth0 netns %s' % (host['veth'],
                                                                         host['netns']),
                      'link set %s master %s up' % (host['veth'], self.bridge)]
        lines += ['addr add %s/%d dev %s' % (self.bridge_address, self.network.prefixlen,
                                             self.bridge),
                  'link set %s up' % self.bridge]
        sh(['ip', '-batch', '-'], input='\n'.join(lines) + '\n')

        def inside(host):
            sh(['ip', '-n', host['netns'], '-batch', '-'], input=(
                'link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\n'
                % (host['address'], self.network.prefixlen)))
        parallel(inside, hosts)

    def _make_mount_namespaces(self, hosts):
        os.makedirs(self.nsdir, exist_ok=True)
        # a private mount of its own: unshare --mount=FILE refuses a shared one
        sh(['mount', '--bind', self.nsdir, self.nsdir])
        sh(['mount', '--make-private', self.nsdir])
        self.state['nsdir_mounted'] = True
        self._save()
        tools = os.path.join(self.dir, 'tools')

        def boot(host):
            open(host['mntns'], 'w').close()
            sh(['nsenter', '--net=/run/netns/%s' % host['netns'], '--',
                'unshare', '--mount=%s' % host['mntns'], '--propagation', 'private',
                'sh', '-c', HOST_INIT, 'host-init', host['dir'], tools, NS_ROOT])
        parallel(boot, hosts)

    def _start_listener(self):
        logf = open(os.path.join(self.dir, 'listener.log'), 'ab')
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, 'listener.py'), self.dir],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
        logf.close()
        self.state['listener_pid'] = proc.pid
        self._save()
        ready = os.path.join(self.dir, 'listener.ready')
        deadline = time.time() + 60
        while not os.path.exists(ready):
            if proc.poll() is not None or time.time() > deadline:
                with open(os.path.join(self.dir, 'listener.log')) as handle:
                    raise LabError('the scale lab listener did not start: %s'
                                   % handle.read()[-2000:])
            time.sleep(0.1)

    def _wait_ready(self, timeout=300):
        """Every host answers a real ssh login (strict host keys)."""
        deadline = time.time() + timeout

        def probe(name):
            while time.time() < deadline:
                if self.ssh(name, 'true', check=False, timeout=30).returncode == 0:
                    return None
                time.sleep(0.5)
            return name
        failed = [n for n in parallel(probe, sorted(self.hosts), workers=8) if n]
        if failed:
            raise LabError('hosts not reachable in %ss: %s' % (timeout, ', '.join(failed[:20])))

    # ----------------------------------------------------------- use
    def pid(self, name):
        """No host process to enter by (run_in enters the namespaces' files)."""
        return None

    def run_in(self, name, argv, check=True, timeout=60, user=None):
        host = self.host(name)
        prefix = ['nsenter', '--net=/run/netns/%s' % host['netns'], '--mount=%s' % host['mntns']]
        if user:
            prefix += ['--', 'setpriv', '--reuid', user, '--regid', user, '--init-groups',
                       'env', 'HOME=/home/%s' % user, 'USER=%s' % user]
        else:
            prefix += ['--']
        return sh(prefix + list(argv), check=check, timeout=timeout)

    def processes(self):
        """Pids of every process inside the lab's namespaces (one /proc scan)."""
        nets = set(filter(None, (_ns_inode('/run/netns/%s' % h['netns'])
                                 for h in self.hosts.values())))
        mnts = set(filter(None, (_ns_inode(h['mntns']) for h in self.hosts.values())))
        found = set()
        for entry in os.listdir('/proc'):
            if entry.isdigit() and (_proc_ns(entry, 'net') in nets or
                                    _proc_ns(entry, 'mnt') in mnts):
                found.add(int(entry))
        return found

    def memory(self):
        """Memory the lab holds now: {'processes', 'pss_kb' of them, 'kernel_kb'
        (slab growth is not attributable: see benchmarks/scale.py)}."""
        pss = 0
        pids = self.processes() | {self.state.get('listener_pid') or 0}
        for pid in pids:
            try:
                with open('/proc/%d/smaps_rollup' % pid) as handle:
                    for line in handle:
                        if line.startswith('Pss:'):
                            pss += int(line.split()[1])
            except OSError:
                continue
        return {'processes': len(pids), 'pss_kb': pss}

    # ----------------------------------------------------------- down
    def _stop_listener(self):
        pid = self.state.get('listener_pid')
        if pid:
            stop_pid(pid, tries=100)

    def _stop_processes(self, grace=2.0):
        deadline = time.time() + grace
        while True:
            left = self.processes()
            if not left or time.time() > deadline + 5:
                return left
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL if time.time() > deadline else signal.SIGTERM)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def down(self):
        """Stop the listener and every process in the hosts' namespaces (by
        pid), unmount the mount namespace files, delete the network
        namespaces (their veths go with them) and the bridge, restore the
        neighbour table limits, remove the lab's folder."""
        if not self.state:
            return
        started = time.monotonic()
        self._stop_listener()
        self._stop_processes()
        hosts = list(self.hosts.values())
        mounted = [h['mntns'] for h in hosts if os.path.ismount(h['mntns'])]
        for chunk in range(0, len(mounted), 200):
            sh(['umount'] + mounted[chunk:chunk + 200], check=False)
        if self.state.get('nsdir_mounted'):
            sh(['umount', self.nsdir], check=False)
        shutil.rmtree(self.nsdir, ignore_errors=True)
        existing = set(os.listdir('/run/netns')) if os.path.isdir('/run/netns') else set()
        links = set(os.listdir('/sys/class/net'))
        # Each veth is deleted by its name first: a namespace's own end (and
        # with it this one) goes only when the kernel's cleanup of that
        # namespace runs, later and in the background on a busy machine,
        # after the leftovers check has already looked (a CI run saw two).
        lines = ['link del %s' % h['veth'] for h in hosts if h['veth'] in links]
        lines += ['netns del %s' % h['netns'] for h in hosts if h['netns'] in existing]
        if lines:
            # -force: go on past a namespace that is already gone
            sh(['ip', '-force', '-batch', '-'], input='\n'.join(lines) + '\n', check=False)
        if self.state.get('bridge'):
            sh(['ip', 'link', 'del', self.state['bridge']], check=False)
        self._restore_neigh()
        self.last_slot = self.state.get('slot', 0)
        self.state = None
        shutil.rmtree(self.dir, ignore_errors=True)
        self.down_seconds = round(time.monotonic() - started, 2)

    def leftovers(self, index=None):
        """What of this lab's slot still exists on the machine (the slot it
        was up in, or slot 0): its namespaces, interfaces, namespace files
        (under this lab's name) and, while it is up, its processes."""
        number = getattr(self, 'last_slot', (self.state or {}).get('slot', 0))
        slot = SLOTS[number]
        found = []
        if self._slot_taken_by_other(number):
            # the slot's names are another lab's now: only this lab's own
            # namespace files can be left of it
            with open('/proc/mounts') as handle:
                return [ln.split()[1] for ln in handle if ln.split()[1].startswith(self.nsdir)]
        netns = sh(['ip', 'netns', 'list'], check=False).stdout
        found += [ln.split()[0] for ln in netns.splitlines() if ln.startswith(slot['netns'])]
        links = sh(['ip', '-o', 'link', 'show'], check=False).stdout
        for line in links.splitlines():
            ifname = line.split(':')[1].strip().split('@')[0]
            if ifname == slot['bridge'] or ifname.startswith(slot['veth']):
                found.append(ifname)
        with open('/proc/mounts') as handle:
            found += [ln.split()[1] for ln in handle
                      if ln.split()[1].startswith(self.nsdir) or '/' + slot['netns'] in ln]
        if self.state:
            found += ['pid %d' % p for p in self.processes()]
        return found

    def _slot_taken_by_other(self, number):
        root = os.path.dirname(self.dir)
        for name in (os.listdir(root) if os.path.isdir(root) else ()):
            if name == self.name:
                continue
            try:
                with open(os.path.join(root, name, 'state.json')) as handle:
                    other = json.load(handle)
            except (OSError, ValueError):
                continue
            if other.get('kind') == 'scale' and other.get('slot', 0) == number:
                return True
        return False

    def status(self):
        listener = self.state.get('listener_pid')
        up = bool(listener) and not _pid_gone(listener)
        head = ['scale lab %s: %d hosts on %s (%s), listener %s' % (
            self.name, len(self.hosts), self.bridge, self.network, 'pid %d' % listener if up else 'DOWN')]
        rows = ['%-6s %-15s %s' % (n, h['address'], h['netns'])
                for n, h in sorted(self.hosts.items(), key=lambda i: int(i[0][1:]))]
        return head + rows
