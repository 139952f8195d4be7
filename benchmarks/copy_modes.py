# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 3: copying closures over a shaped link, by copy mode.

Eight NixOS lab hosts, each link shaped with netem (default 100 Mbit/s and
20 ms each way, so 40 ms round trip). Every mode deploys a new version whose
closure carries fresh incompressible padding (``extra_bytes`` per host) with
ansible-playbook nixdeploy.fleet.deploy -e nix_copy_mode=MODE:

  push        the controller sends every missing path (nix copy --to ssh-ng://)
  substitute  the hosts first substitute from their own cache, the controller
              pushes the rest (here: the cache holds all but the top-level path)
  cache       the hosts fetch the whole closure from the cache (nix_caches)

The cache stands for one near the hosts (a LAN cache, S3 in their region): a
signed file:// binary cache the lab hosts read from the machine's disk, never
over the controller's link. It is filled (untimed) before each run. Measured:
bytes the controller sent over the hosts' links (lab.link_bytes, everything:
ssh, Nix, Ansible), wall time of the whole deploy, and the copy task's own
seconds (longest host).

No-op copy: the closure is already on the host. For one host, the copy task
alone (cold: a new ssh connection, no ControlMaster), against the plain
``nix copy --to ssh-ng://`` of the same path. Counted: TCP connections the
host accepted (TcpPassiveOpens in its network namespace), packets both ways
on its link, and round trips = (time shaped - time unshaped) / RTT.
"""

import json
import os
import socket
import struct
import subprocess
import threading
import time

from benchmarks._fleet import load, timed

MODES = ('push', 'substitute', 'cache')
COPY_TASK = 'nixdeploy.fleet.deploy : Copy the closure to each host'


def _nix(*args, **kwargs):
    argv = ['nix', '--extra-experimental-features', 'nix-command flakes',
            '--option', 'substituters', ''] + list(args)
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, **kwargs).stdout


def out_paths(fleet):
    """Each selected host's system, built on the controller (untimed)."""
    attrs = ['%s#%s' % (fleet.flake.ref, fleet.flake.attr(n)) for n in fleet.selected]
    built = json.loads(_nix('build', '--no-link', '--json', *attrs))
    return dict((name, item['outputs']['out']) for name, item in zip(fleet.selected, built))


def fill_cache(cache, secret, paths, leave_out=()):
    """A signed file:// cache with the closures of ``paths`` (minus ``leave_out``)."""
    closure = set(_nix('path-info', '-r', *paths).split()) - set(leave_out)
    _nix('store', 'sign', '-k', secret, *sorted(closure))
    _nix('copy', '--to', 'file://%s' % cache, *sorted(closure))


def packets(lab, name):
    veth = lab.host(name)['veth']
    total = 0
    for counter in ('tx_packets', 'rx_packets'):
        with open('/sys/class/net/%s/statistics/%s' % (veth, counter)) as handle:
            total += int(handle.read())
    return total


class Turns:
    """Request/response turns on a host's link, from a packet capture
    (AF_PACKET on the bridge side of its veth): per TCP connection, each time
    payload flows from the controller after flowing from the host (or first)
    starts a round trip. Pure ACKs carry no payload and do not count."""

    def __init__(self, veth, address):
        self.address = socket.inet_aton(address)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind((veth, 0))
        self.sock.settimeout(0.2)
        self.last, self.turns, self.packets = {}, 0, 0
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            try:
                frame = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self._count(frame)

    def _count(self, frame):
        ip = frame[14:]
        if frame[12:14] != b'\x08\x00' or len(ip) < 20 or ip[9] != 6:  # TCP over IPv4 only
            return
        self.packets += 1
        ihl, total = (ip[0] & 15) * 4, struct.unpack('!H', ip[2:4])[0]
        tcp = ip[ihl:]
        payload = total - ihl - (tcp[12] >> 4) * 4
        if payload <= 0:
            return
        from_host = ip[12:16] == self.address
        # the connection, named by (host port, controller port) either way
        key = tcp[0:4] if from_host else tcp[2:4] + tcp[0:2]
        if not from_host and self.last.get(key, True):
            self.turns += 1
        self.last[key] = from_host

    def stop(self):
        time.sleep(0.3)
        self.running = False
        self.thread.join()
        self.sock.close()
        return self.turns


def _counted(lab, name, action):
    host = lab.host(name)
    conns = lab.accepted_connections(name)
    turns = Turns(host['veth'], host['address'])
    try:
        result = action()
    finally:
        result_turns = turns.stop()
    result.update(connections=lab.accepted_connections(name) - conns, packets=turns.packets,
                  round_trips=result_turns)
    return result


def noop_copy(fleet, name, path):
    """The no-op copy of one host: the copy module vs a plain nix copy."""
    lab = fleet.lab
    host = lab.host(name)
    playbook = os.path.join(fleet.workdir, 'noop-copy.yml')
    with open(playbook, 'w') as handle:
        json.dump([{'name': 'No-op copy', 'hosts': name, 'gather_facts': False, 'tasks': [{
            'name': 'Copy a closure the host holds',
            'nixdeploy.fleet.nix_copy_closure': {'path': path, 'nix_options': {'substituters': ''},
                                                 'signing_key': fleet.secret}}]}], handle)
    # cold: a new ssh connection, no ControlMaster to reuse
    cold = {'ANSIBLE_SSH_ARGS': '-o ControlMaster=no', 'ANSIBLE_PIPELINING': 'True'}
    sshopts = ' '.join(['-i', lab.key, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
                        '-o', 'UserKnownHostsFile=%s' % lab.known_hosts,
                        '-o', 'StrictHostKeyChecking=yes'])
    store = 'ssh-ng://%s@%s' % (host['ssh_user'], host['address'])
    plain = ['nix', '--extra-experimental-features', 'nix-command', '--option', 'substituters',
             '', 'copy', '--no-check-sigs', '--to', store, path]
    env = dict(os.environ, NIX_SSHOPTS=sshopts)
    rows = {}
    for label, action in (
            ('nix_copy_closure', lambda: fleet.playbook(1, env=cold, playbook=playbook)),
            ('nix copy', lambda: timed(plain, env=env))):
        rows[label] = _counted(lab, name, action)
    return rows


def run(fleet, hosts=8, rate='100mbit', delay='20ms', extra_bytes=4000000, extra_paths=8,
        log=print):
    fleet.select(hosts)
    lab = fleet.lab
    if delay and not lab.can_delay():
        log('  copy: this kernel has no netem: shaping the rate only, no delay')
        delay = None
    if not all(fleet.active().values()):
        # untimed: the hosts get the base system first, so each mode sends
        # what a routine deploy sends (new paths), not a first install
        fleet.new_version()
        fleet.playbook(hosts)
    cache = os.path.join(lab.dir, 'bench-cache')
    data = {'hosts': hosts, 'rate': rate, 'delay': delay, 'extra_bytes': extra_bytes,
            'load_before': load(), 'modes': {}}
    for name in fleet.selected:
        lab.shape(name, rate=rate, delay=delay)
    try:
        for mode in MODES:
            fleet.new_version(extra_paths=extra_paths, extra_bytes=extra_bytes,
                              extra_seed='copy-%s-%d' % (mode, fleet.version + 1))
            paths = out_paths(fleet)
            extra = {'nix_copy_mode': mode}
            if mode != 'push':
                leave_out = paths.values() if mode == 'substitute' else ()
                fill_cache(cache, fleet.secret, list(paths.values()), leave_out)
                uri = 'file://%s' % cache
                extra['nix_caches'] = [uri]
                # the hosts' daemons get the controller's Nix settings over ssh-ng
                # (Nix forwards them): name the cache there too
                extra['nix_options'] = {'substituters': uri}
                for name in fleet.selected:
                    lab.add_nix_conf(name, 'substituters = %s' % uri)
            before = dict((n, lab.link_bytes(n)) for n in fleet.selected)
            record = os.path.join(fleet.workdir, 'copy-%s.jsonl' % mode)
            result = fleet.playbook(hosts, args=['-e', json.dumps(extra)], record=record)
            sent = sum(lab.link_bytes(n)[0] - before[n][0] for n in fleet.selected)
            received = sum(lab.link_bytes(n)[1] - before[n][1] for n in fleet.selected)
            copies = [r['result'] for r in _records(record) if r['task'] == COPY_TASK]
            wrong = [n for n in fleet.selected if lab.active(n) != paths[n]]
            if wrong:
                raise RuntimeError('copy mode %s: wrong system on %s' % (mode, wrong))
            data['modes'][mode] = {
                'wall': result['wall'], 'cpu': result['cpu'], 'bytes_sent': sent,
                'bytes_received': received,
                'copy_seconds': max([c.get('seconds', 0) for c in copies] or [0]),
                'closure_bytes_sent': sum(c.get('bytes_sent', 0) for c in copies),
                'paths_sent': sum(c.get('paths_sent', 0) for c in copies)}
            log('  copy %-10s %.1f s, %.1f MB to the hosts'
                % (mode, result['wall'], sent / 1e6))
        first = fleet.selected[0]
        data['noop'] = noop_copy(fleet, first, lab.active(first))
    finally:
        for name in fleet.selected:
            lab.shape(name)
    data['load_after'] = load()
    return data


def _records(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def table(data):
    lines = ['3. Copy modes to %d hosts, each link %s%s; %.1f MB of new paths per host'
             % (data['hosts'], data['rate'],
                ' + %s delay each way' % data['delay'] if data['delay'] else ' (no netem: no delay)',
                data['extra_bytes'] / 1e6),
             '%-11s %9s %12s %12s %11s %8s' % ('mode', 'deploy s', 'copy task s', 'MB to hosts',
                                               'closure MB', 'paths')]
    lines.append('-' * len(lines[-1]))
    for mode in MODES:
        cell = data['modes'].get(mode)
        if cell:
            lines.append('%-11s %9.1f %12.1f %12.1f %11.1f %8d' % (
                mode, cell['wall'], cell['copy_seconds'], cell['bytes_sent'] / 1e6,
                cell['closure_bytes_sent'] / 1e6, cell['paths_sent']))
    if data.get('noop'):
        lines += ['', 'no-op copy to 1 host (its closure is there), from a cold start (new ssh):',
                  '%-26s %8s %9s %9s %12s' % ('', 'wall s', 'tcp conn', 'packets',
                                              'round trips')]
        for label, text in (('nix_copy_closure', 'nix_copy_closure task'),
                            ('nix copy', 'nix copy --to ssh-ng')):
            cell = data['noop'][label]
            lines.append('%-26s %8.2f %9d %9d %12d' % (
                text[:26], cell['wall'], cell['connections'], cell['packets'],
                cell['round_trips']))
        lines.append('round trips: request/response turns on the link (packet capture);'
                     ' they include the ssh handshake')
    return '\n'.join(lines)
