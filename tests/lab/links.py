"""Links of a lab: shape every one, count the controller's bytes apart from
the hosts' bytes to each other, and break them the ways a cascade must survive.

Built on Lab's public methods and state (hosts' namespaces, veths, the
bridge), with ``ip``/``tc``/``nsenter`` argv on the lab's own devices only.

Topology: each host hangs off the lab bridge by its veth; the controller is
the bridge's own address. So
- a host's link is its veth: ``lab.shape(host, rate=...)`` puts tbf on both
  ends (towards the host on the veth, from the host on its ``eth0``);
- the controller's uplink is the bridge device itself: what the controller
  sends leaves through the bridge's own queue (tbf there shapes it), while
  frames one host sends another are forwarded port to port and never touch
  the bridge device's queue or counters.
Hence ``controller sent`` = the bridge device's tx bytes, and the bytes hosts
sent each other = (bytes delivered to all hosts) - (controller sent).
"""

import os
import signal
import subprocess
import time

from tests.lab.lab import LabError, sh


class Traffic:
    """Byte counters at one moment; ``since(before)`` gives what moved."""

    def __init__(self, controller_sent, controller_received, to_hosts, from_hosts):
        self.controller_sent = controller_sent
        self.controller_received = controller_received
        self.to_hosts = dict(to_hosts)
        self.from_hosts = dict(from_hosts)

    def since(self, before):
        to_hosts = dict((h, n - before.to_hosts.get(h, 0)) for h, n in self.to_hosts.items())
        from_hosts = dict((h, n - before.from_hosts.get(h, 0))
                          for h, n in self.from_hosts.items())
        moved = Traffic(self.controller_sent - before.controller_sent,
                        self.controller_received - before.controller_received,
                        to_hosts, from_hosts)
        return moved

    @property
    def delivered(self):
        """Bytes all host links carried towards their hosts."""
        return sum(self.to_hosts.values())

    @property
    def host_to_host(self):
        """Bytes hosts sent to other hosts (each counted once)."""
        return max(0, self.delivered - self.controller_sent)

    @property
    def on_all_links(self):
        """Bytes summed over every link they crossed: the controller's uplink
        and each host link (a host-to-host byte crosses two host links)."""
        return (self.controller_sent + self.controller_received + self.delivered
                + sum(self.from_hosts.values()))

    def as_dict(self):
        return {'controller_sent': self.controller_sent,
                'controller_received': self.controller_received,
                'delivered': self.delivered, 'host_to_host': self.host_to_host,
                'on_all_links': self.on_all_links}


class Links:
    """Shaping, counting and breaking the links of ``lab``."""

    def __init__(self, lab):
        self.lab = lab
        self.isolated = {}

    @property
    def bridge(self):
        return self.lab.state['bridge']

    # ------------------------------------------------------------ shaping
    def shape_all(self, rate, hosts=None):
        """Every host link (both ways) and the controller's uplink at ``rate``
        (tbf, e.g. '100mbit'); None clears them."""
        for name in hosts or self.lab.hosts:
            self.lab.shape(name, rate=rate)
        self.shape_uplink(rate)

    def shape_uplink(self, rate):
        sh(['tc', 'qdisc', 'del', 'dev', self.bridge, 'root'], check=False)
        if rate:
            # same tbf settings as Lab.shape uses for host links
            sh(['tc', 'qdisc', 'add', 'dev', self.bridge, 'root', 'tbf', 'rate', rate,
                'burst', '64kb', 'latency', '200ms'])

    def clear(self):
        self.shape_all(None)

    # ------------------------------------------------------------ counting
    def _bridge_bytes(self):
        values = []
        for counter in ('tx_bytes', 'rx_bytes'):
            with open('/sys/class/net/%s/statistics/%s' % (self.bridge, counter)) as handle:
                values.append(int(handle.read()))
        return values

    def traffic(self, hosts=None):
        sent, received = self._bridge_bytes()
        to_hosts, from_hosts = {}, {}
        for name in hosts or self.lab.hosts:
            to_hosts[name], from_hosts[name] = self.lab.link_bytes(name)
        return Traffic(sent, received, to_hosts, from_hosts)

    # ------------------------------------------------------------ breaking
    def isolate(self, name):
        """Other hosts can no longer reach ``name`` (as behind a firewall that
        answers host-unreachable); the controller still can."""
        address = self.lab.host(name)['address']
        for other, host in self.lab.hosts.items():
            if other != name:
                sh(['ip', '-n', host['netns'], 'route', 'add', 'unreachable',
                    '%s/32' % address])
        self.isolated[name] = address

    def unisolate(self, name):
        address = self.isolated.pop(name, None)
        if address is None:
            return
        for other, host in self.lab.hosts.items():
            if other != name:
                sh(['ip', '-n', host['netns'], 'route', 'del', 'unreachable',
                    '%s/32' % address], check=False)

    def change_host_key(self, name):
        """A new host key for ``name``, served from now on (its sshd restarted:
        OpenSSH 10.x reads host keys only when it starts): the controller's
        known_hosts no longer matches."""
        key = os.path.join(self.lab.host(name)['dir'], 'ssh_host_ed25519_key')
        for path in (key, key + '.pub'):
            os.remove(path)
        sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name + '-new', '-f', key])
        self.lab.restart_sshd(name)

    def _netns_inodes(self):
        """{namespace inode: host} of the lab's hosts."""
        found = {}
        for name, host in self.lab.hosts.items():
            try:
                found[os.stat('/run/netns/%s' % host['netns']).st_ino] = name
            except OSError:
                continue
        return found

    def _processes(self):
        """[(host, pid, argv)] of every process in a host's network namespace,
        from one scan of /proc (cheap enough to poll while a copy runs)."""
        hosts = self._netns_inodes()
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                inode = os.stat('/proc/%s/ns/net' % entry).st_ino
                if inode not in hosts:
                    continue
                with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                    argv = handle.read().split(b'\0')
            except OSError:
                continue
            found.append((hosts[inode], int(entry), argv))
        return found

    def pids(self, name):
        return [pid for host, pid, _argv in self._processes() if host == name]

    def hops_in_flight(self):
        """[(host, pid)] of the ``nix copy --to ssh-ng://`` processes running
        inside the hosts: cascade hops, on their senders."""
        return [(host, pid) for host, pid, argv in self._processes()
                if b'copy' in argv and any(a.startswith(b'ssh-ng://') for a in argv)]

    def _pid_file(self, name, which):
        """A pid the lab recorded in the host's ``run/`` folder (``host`` for
        its sshd in the current boot, ``nix-daemon``), or None."""
        try:
            with open(os.path.join(self.lab.host(name)['dir'], 'run', '%s.pid' % which)) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def kill_host(self, name):
        """The host dies for the network: its sshd and everything else in its
        namespace, by pid, except its nix-daemon (kept so the host's store can
        still be read afterwards, see ``run_on``)."""
        keep = self._pid_file(name, 'nix-daemon') or self.lab.host(name).get('daemon_pid')
        killed = [pid for pid in self.pids(name) if pid != keep]
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return killed

    def run_on(self, name, argv, user=None, timeout=120):
        """argv inside a host's namespaces, also after ``kill_host`` (through
        its nix-daemon, which lives in the same mount namespace)."""
        host = self.lab.host(name)
        candidates = [self._pid_file(name, 'host'), host['pid'],
                      self._pid_file(name, 'nix-daemon'), host.get('daemon_pid')]
        alive = [p for p in candidates if p and os.path.exists('/proc/%d' % p)]
        if not alive:
            raise LabError('no process left in %s to enter' % name)
        pid = alive[0]
        prefix = ['nsenter', '-t', str(pid), '-m', '-n', '--']
        if user:
            prefix += ['setpriv', '--reuid', user, '--regid', user, '--init-groups',
                       'env', 'HOME=/home/%s' % user, 'USER=%s' % user]
        return sh(prefix + list(argv), check=False, timeout=timeout)

    def verify_closure(self, name, path):
        """``nix store verify`` of ``path``'s closure on the host: '' when every
        path is valid and its contents match, else what Nix said."""
        user = 'app' if self.lab.host(name)['persona'] == 'nix-on-droid' else None
        proc = self.run_on(name, ['nix', '--extra-experimental-features', 'nix-command',
                                  'store', 'verify', '--no-trust',
                                  '-r', path], user=user)
        return '' if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-800:]


def wait_for(condition, timeout, step=0.05):
    """Poll ``condition()`` until it returns something true; that value, or
    None after ``timeout`` seconds (an event to wait for, not an assertion)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def leftovers(lab, since=0):
    """What a cascade may have left behind: hop temp folders on the hosts
    (their /tmp is the machine's) and the controller's hop folders made after
    ``since`` (a time.time()), hop agents still running, and anything under
    the hosts' ~/.ssh."""
    found = []
    for name in os.listdir('/tmp'):
        path = os.path.join('/tmp', name)
        if name.startswith('nixdeploy-hop.') or name.startswith('ndh-'):
            try:
                if os.stat(path).st_mtime >= since:
                    found.append(path)
            except OSError:
                continue
    # only this controller's agents: the other stack of `make test` runs its
    # cascades at the same time in a mount namespace of its own, and /proc
    # shows its agents too
    own_mounts = os.readlink('/proc/self/ns/mnt')
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
            mounts = os.readlink('/proc/%s/ns/mnt' % pid)
        except OSError:
            continue
        if mounts != own_mounts:
            continue
        if argv and argv[0].endswith(b'ssh-agent') and any(b'/ndh-' in a for a in argv):
            found.append('ssh-agent pid %s' % pid)
    for name, host in lab.hosts.items():
        for home in ('root', 'home/deploy', 'home/app'):
            ssh_dir = os.path.join(host['dir'], home, '.ssh')
            if os.path.isdir(ssh_dir) and os.listdir(ssh_dir):
                found.append('%s: %s' % (name, ssh_dir))
    return found


def nix_store_verify_available():
    proc = subprocess.run(['nix', '--extra-experimental-features', 'nix-command', 'store',
                           'verify', '--help'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=False)
    return proc.returncode == 0
