"""Network shapes of a lab (issue 78, "Fleets on real networks"): a bastion
and hosts only reachable through it, IPv6, a host whose first address is dead
and a host that is switched off. ``Lab`` inherits these methods; lab.py calls
the ``_``-prefixed ones from its own steps (specs, a host's wiring, the
client files, ``ansible_vars``, ``ssh``, ``down``, ``leftovers``).

Host spec keys (``Lab.up(hosts=[{...}, ...])``), at most one of the first
four per host; ``off`` goes with any:

  ``'bastion': True``
      besides its place on the lab bridge (``eth0``), the host is the gateway
      of the lab's inner subnet ``10.214.<index>.0/24``: its ``eth1``
      (``10.214.<index>.1``) on the inner bridge ``ndl<index>-inner``. It does
      not forward (``net.ipv4.ip_forward`` 0 in its namespace). One per lab.
  ``'behind': '<bastion>'``
      the host is ONLY on the inner subnet (``10.214.<index>.<10+n>``). The
      controller has no route there: the lab adds ``unreachable
      10.214.<index>.0/24`` to the machine's routes (so nothing for it ever
      leaves by the machine's default route; a connect fails at once with
      "No route to host"). ``ansible_vars`` reach it the way a user does:
      ``ansible_host`` its inner address and ``-o ProxyJump=deploy@<bastion's
      address>``, with ``-F <lab's ssh_config>``: ssh gives the jump's own ssh
      none of its ``-o`` options, only ``-F``, so the bastion's entry there
      (``Host <bastion> <its address>``) brings its known_hosts
      (``StrictHostKeyChecking yes``) and the lab's key. No token has a
      space: NIX_SSHOPTS (split on whitespace by Nix) takes the same string.
  ``'ipv6_only': True``
      the host's ``eth0`` has an IPv6 address only, ``fd42:213:<index>::<10+n>``
      (no IPv4 at all; ``nodad``: usable at once), on the ULA prefix
      ``fd42:213:<index>::/64`` the lab bridge gets (``::1``, the controller)
      when a lab has such a host. Its sshd listens there; ``ansible_host`` is
      the bare literal.
  ``'dead_first': True``
      ``ansible_vars`` give ``ansible_host`` an address on the lab subnet that
      no host has (``10.213.<index>.254``, then ``.253``, ... for the next
      such host; hosts are ``.11``-``.210``) and ``nix_target_hosts: [that,
      its real address]``: a user whose host's LAN address moved. A connect
      to it fails in about 3 s with "No route to host" (ARP gets no answer on
      the bridge; nothing there is a real machine). The lab's known_hosts
      holds its key at that address too, as the user's does.
  ``'off': True``
      the host comes up, is in the inventory, then is switched off
      (``switch_off``): powered off (no process left) AND its link down, as a
      phone that is off: a connect fails with "No route to host" after ARP's
      ~3 s (not "refused", which a powered-off namespace whose link is up
      would answer). ``switch_on`` brings it back.

Everything these make is in the lab's state before it exists, and ``down``
removes it; ``leftovers`` reports any of it that remains.
"""

import os
import time

INNER_PREFIX = '10.214'           # 10.214.<index>.0/24: a lab's subnet behind its bastion
ULA = 'fd42:213:%d::'             # fd42:213:<index>::/64 on the lab bridge
DEAD_LAST = 254                   # 10.213.<index>.254 down: dead first addresses
JUMP_USER = 'deploy'              # who logs in to the bastion for a ProxyJump
SHAPES = ('bastion', 'behind', 'ipv6_only', 'dead_first')
OFF_TIMEOUT = 30


def _lab():
    from tests.lab import lab
    return lab


def inner_bridge(index):
    return 'ndl%d-inner' % index


def inner_route(index):
    return '%s.%d.0/24' % (INNER_PREFIX, index)


class NetworkShapes:
    """Lab's network shapes; see the module's docstring."""

    # ------------------------------------------------------------ specs
    @staticmethod
    def _check_shapes(specs):
        """Lab._host_specs: the shape keys of every spec, checked together."""
        error = _lab().LabError
        bastions = [s['name'] for s in specs if s.get('bastion')]
        if len(bastions) > 1:
            raise error('one bastion per lab (one inner subnet): %s' % ', '.join(bastions))
        dead = 0
        for spec in specs:
            for key in ('bastion', 'ipv6_only', 'dead_first', 'off'):
                spec[key] = bool(spec.get(key))
            spec['behind'] = spec.get('behind') or None
            given = [key for key in SHAPES if spec[key]]
            if len(given) > 1:
                raise error('host %s: one of %s, not %s'
                            % (spec['name'], ', '.join(SHAPES), ' and '.join(given)))
            if (given or spec['off']) and spec.get('systemd'):
                raise error('host %s: network shapes are for plain hosts, not systemd ones'
                            % spec['name'])
            if spec['behind'] and spec['behind'] not in bastions:
                raise error('host %s: behind %r, which is no bastion of the lab'
                            % (spec['name'], spec['behind']))
            dead += spec['dead_first']
        if dead > 40:
            raise error('at most 40 dead_first hosts per lab')

    # ------------------------------------------------------------ up
    def _make_networks(self, specs):
        """Lab._up, once the lab bridge is up: the inner bridge and the
        machine's unreachable route for a lab with a bastion, the ULA prefix
        on the lab bridge for a lab with an IPv6 host. Each is in the state
        (saved) before it is made, so ``down`` removes it whatever happens."""
        sh, index = _lab().sh, self.state['index']
        if any(s['bastion'] for s in specs):
            self.state.update(inner_bridge=inner_bridge(index), inner_route=inner_route(index))
            self._save()
            # replace: a route left by a lab killed at this index is the same one
            sh(['ip', 'route', 'replace', 'unreachable', self.state['inner_route']])
            sh(['ip', 'link', 'add', self.state['inner_bridge'], 'type', 'bridge'])
            sh(['ip', 'link', 'set', self.state['inner_bridge'], 'up'])
        if any(s['ipv6_only'] for s in specs):
            if not os.path.exists('/proc/sys/net/ipv6'):
                raise _lab().LabError('ipv6_only hosts: this kernel has no IPv6')
            self.state['ula'] = ULA % index + '1/64'
            self._save()
            sh(['sysctl', '-qw', 'net.ipv6.conf.%s.disable_ipv6=0' % self.state['bridge']])
            sh(['ip', 'addr', 'add', self.state['ula'], 'dev', self.state['bridge'], 'nodad'])

    def _shape_host(self, spec, number, address):
        """Lab._add_host, before anything of the host exists: its address,
        the bridge its veth joins and its shape's keys in its state."""
        index = self.state['index']
        host = {'bridge': self.state['bridge'], 'address': address}
        if spec['bastion']:
            host.update(bastion=True, inner_veth='ndl%d-j%d' % (index, number),
                        inner_address='%s.%d.1' % (INNER_PREFIX, index))
        elif spec['behind']:
            host.update(behind=spec['behind'], bridge=self.state['inner_bridge'],
                        address='%s.%d.%d' % (INNER_PREFIX, index, 10 + number))
        elif spec['ipv6_only']:
            host.update(ipv6_only=True, address=ULA % index + '%d' % (10 + number))
        elif spec['dead_first']:
            taken = sum(1 for h in self.hosts.values() if h.get('dead_address'))
            host['dead_address'] = '%s.%d.%d' % (_lab().SUBNET_PREFIX, index, DEAD_LAST - taken)
        if spec['off']:
            host['off'] = True
        return host

    def _address_host(self, host):
        """Lab._add_host, its veth joined to its bridge: the host's address on
        eth0 and, on a bastion, its link to the inner bridge (eth1)."""
        sh, netns = _lab().sh, host['netns']
        if host.get('ipv6_only'):
            sh(['ip', '-n', netns, 'addr', 'add', host['address'] + '/64', 'dev', 'eth0', 'nodad'])
        else:
            sh(['ip', '-n', netns, 'addr', 'add', host['address'] + '/24', 'dev', 'eth0'])
        if host.get('bastion'):
            veth = host['inner_veth']
            sh(['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth1', 'netns', netns])
            sh(['ip', 'link', 'set', veth, 'master', self.state['inner_bridge']])
            sh(['ip', 'link', 'set', veth, 'up'])
            sh(['ip', '-n', netns, 'addr', 'add', host['inner_address'] + '/24', 'dev', 'eth1'])
            sh(['ip', '-n', netns, 'link', 'set', 'eth1', 'up'])
            # a bastion is no router: what the controller sends it for the
            # inner subnet (had it a route there) is dropped
            sh(['ip', 'netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=0'])

    # ------------------------------------------------------------ clients
    def _jump(self, host):
        """``deploy@<bastion's address>`` for a host behind it."""
        return '%s@%s' % (JUMP_USER, self.host(host['behind'])['address'])

    def _shape_ssh_config(self, host, entry):
        """Lab._write_client_files: a host's ssh_config entry. A bastion's
        also matches its address (what a ProxyJump's own ssh is given, with
        ``-F`` only); a host behind it says ProxyJump."""
        if host.get('bastion'):
            entry = entry.replace('Host %s\n' % host['name'],
                                  'Host %s %s\n' % (host['name'], host['address']), 1)
        if host.get('behind'):
            entry += '  ProxyJump %s\n' % self._jump(host)
        return entry

    @staticmethod
    def _shape_key_names(host):
        """Lab._write_client_files: the names the lab's known_hosts holds
        the host's key under: its address, and the ``ansible_host`` its
        shape gives it (a dead first address), where a user's known_hosts
        holds the key of a host whose address moved."""
        return [host['address']] + ([host['dead_address']] if host.get('dead_address') else [])

    def _shape_ansible_vars(self, host, hostvars):
        """Lab.ansible_vars: what a user writes for the host's shape."""
        if host.get('behind'):
            hostvars['ansible_ssh_common_args'] += ' -F %s -o ProxyJump=%s' % (
                self.ssh_config, self._jump(host))
        if host.get('dead_address'):
            hostvars['ansible_host'] = host['dead_address']
            hostvars['nix_target_hosts'] = [host['dead_address'], host['address']]
        return hostvars

    def _shape_ssh_args(self, host):
        """Lab.ssh: the options that reach the host (a jump) besides
        ``ssh_args``."""
        if host.get('behind'):
            return ['-F', self.ssh_config, '-o', 'ProxyJump=%s' % self._jump(host)]
        return []

    # ------------------------------------------------------------ off
    def _switch_off_shapes(self):
        """Lab._up, once every host is up: the ``off`` hosts go off."""
        for name, host in sorted(self.hosts.items()):
            if host.get('off'):
                self.switch_off(name)

    def switch_off(self, name, timeout=OFF_TIMEOUT):
        """The host is switched off, as a phone: its link goes down (the
        bridge side of its veth, as ``cut``), the neighbour entry for it is
        forgotten (a host off for a while has none), then it powers off (no
        process left, as ``poweroff`` inside it). A connect to it fails with
        "No route to host" once ARP (or IPv6's neighbour discovery) gave up,
        about 3 s. Plain hosts only. ``switch_on`` undoes it."""
        host = self.host(name)
        if host.get('systemd'):
            raise _lab().LabError('switch_off: %s is a systemd host' % name)
        self.cut(name)
        if host.get('behind'):
            where = ['-n', self.host(host['behind'])['netns']]
            dev = 'eth1'
        else:
            where, dev = [], self.state['bridge']
        _lab().sh(['ip'] + where + ['neigh', 'flush', 'to', host['address'], 'dev', dev],
                  check=False)
        self._request_power(name, 'poweroff')
        deadline = time.monotonic() + timeout
        while self.power_state(name) != 'off':
            if time.monotonic() > deadline:
                raise _lab().LabError('host %s is not off after %ss (power %s)'
                                      % (name, timeout, self.power_state(name)))
            time.sleep(0.05)
        host['switched_off'] = True
        self._save()

    def switch_on(self, name, timeout=60):
        """A switched-off host comes back: its link up, booted, ssh answers."""
        host = self.host(name)
        self.restore(name)
        self.power_on(name, wait=True, timeout=timeout)
        host['switched_off'] = False
        self._save()

    def switched_off(self, name):
        return bool(self.host(name).get('switched_off'))

    # ------------------------------------------------------------ down
    def _remove_networks(self):
        """Lab.down, once the hosts' namespaces are gone: the bastion's inner
        link, the inner bridge, the machine's route, the ULA address."""
        sh = _lab().sh
        for host in self.hosts.values():
            if host.get('inner_veth'):
                # gone with the bastion's namespace already, unless it never
                # got there
                sh(['ip', 'link', 'del', host['inner_veth']], check=False)
        if self.state.get('inner_bridge'):
            sh(['ip', 'link', 'del', self.state['inner_bridge']], check=False)
        if self.state.get('inner_route'):
            sh(['ip', 'route', 'del', 'unreachable', self.state['inner_route']], check=False)
        if self.state.get('ula') and self.state.get('bridge'):
            sh(['ip', 'addr', 'del', self.state['ula'], 'dev', self.state['bridge']], check=False)

    @staticmethod
    def _network_leftovers(index):
        """Lab.leftovers: the inner bridge, a bastion's link (``ndl<i>-...``)
        and the machine's unreachable route of lab ``index``."""
        sh, found = _lab().sh, []
        for line in sh(['ip', '-o', 'link', 'show'], check=False).stdout.splitlines():
            ifname = line.split(':')[1].strip().split('@')[0]
            if ifname.startswith('ndl%d-' % index):
                found.append(ifname)
        routes = sh(['ip', 'route', 'show', 'type', 'unreachable'], check=False).stdout
        found += ['route unreachable %s' % inner_route(index)
                  for ln in routes.splitlines() if ln.split()[1:2] == [inner_route(index)]]
        return found
