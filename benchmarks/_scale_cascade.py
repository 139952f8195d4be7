# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table 10's cascade rows: the closure cascade against push at fleet size.

``measure(fleet)`` takes a ``benchmarks.scale.ScaleFleet`` that is up and
whose selected hosts already run a first system. It makes the selected hosts
deploy ONE shared system (as benchmarks/cascade.py does: the cascade shares a
closure only between hosts deploying the same store path, and per-host
toplevels give one cascade per host, which is a push: docs/copy-cascade.md,
"Limits"), then, for each mode, a new version of it carrying fresh padding
(FleetFlake's extra_paths/extra_bytes/extra_seed: the same new paths for every
host, as a shared update) deployed with ``ansible-playbook
nixdeploy.fleet.deploy -e nix_copy_mode=MODE --skip-tags activate`` (eval,
build, copy: the activation costs the same in both modes and would double a
1,000-host run). Per mode:

  uplink MB    what the controller sent: the scale lab bridge device's tx
               counter (its own IP stack's packets only; frames one host sends
               another are forwarded port to port and not counted there:
               ``counter_check`` shows it on the lab before the runs)
  link s       uplink MB at the shaped rate U: the least time the uplink needs
  h2h MB       bytes hosts sent each other (delivered to all hosts - uplink)
  copy s       the copy phase (the task_times callback: some host copying)
  run s        the whole run; cpu s: the controller's (the run's process tree)
  hosts s      CPU of every host's sshd sessions and what ran in them
  PSS, hPSS    peak memory of the controller's run, of the hosts' processes
  depth        longest chain controller -> ... -> host (copied_from)
  fan-out      most receivers one holder served; seeds: controller hops
  new          hosts whose store holds the new system afterwards

The scale lab's links are not shaped: every host's sshd and Nix share the
controller's cores, so host-to-host bytes cost CPU, not link time. Shaping
only the controller's uplink (``uplink``, tbf on the bridge device: what the
controller sends, never host-to-host frames) models the case a cascade is
for: a controller behind a slower link than the fleet's own network.

    python -m benchmarks._scale_cascade --hosts 50      a lab of its own, then down
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from tests.lab.links import Links  # noqa: E402

MODES = ('push', 'cascade')
CONFIGURATION = 'scale-cascade'
# 4 paths, 2 MB per host: at 1,000 hosts push moves 2 GB through the
# controller (160 s at 100 Mbit/s), the cascade about 2 MB
PADDING = {'extra_paths': 4, 'extra_bytes': 2000000}
UPLINK = '100mbit'
CHECK_BYTES = 8 * 1024 * 1024

# Runs inside a lab host's network namespace: receive on ADDRESS:PORT until
# the peer closes, print the byte count (only the lab's own addresses).
_RECEIVE = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1)
print('ready', flush=True)
conn, _ = srv.accept(); got = 0
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    got += len(chunk)
print(got, flush=True)
"""
_SEND = r"""
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
left = int(sys.argv[3]); block = b'x' * 65536
while left > 0:
    conn.sendall(block[:left]); left -= 65536
conn.close()
"""


def _in_netns(lab, name, code, *args):
    return ['nsenter', '--net=/run/netns/%s' % lab.host(name)['netns'], '--',
            sys.executable, '-c', code] + [str(a) for a in args]


def counter_check(lab, sender='h1', receiver='h2', size=CHECK_BYTES, port=47123):
    """Send ``size`` bytes from one lab host to another (the controller idle)
    and read the bridge device's tx counter around it: {'sent', 'bridge_tx',
    'delivered'}. ``bridge_tx`` stays near 0 if forwarded frames are not counted."""
    links = Links(lab)
    address = lab.host(receiver)['address']
    before = links.traffic(hosts=[receiver])
    proc = subprocess.Popen(_in_netns(lab, receiver, _RECEIVE, address, port),
                            stdout=subprocess.PIPE, universal_newlines=True)
    try:
        if proc.stdout.readline().strip() != 'ready':
            raise RuntimeError('counter check: the receiver did not start')
        subprocess.run(_in_netns(lab, sender, _SEND, address, port, size), check=True,
                       timeout=60)
        got = int(proc.stdout.readline().strip() or 0)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    moved = links.traffic(hosts=[receiver]).since(before)
    return {'sent': got, 'bridge_tx': moved.controller_sent, 'delivered': moved.delivered}


def hosts_cpu(lab):
    """CPU seconds the lab's hosts used so far: every sshd session the
    listener started (and what ran under it) once reaped, plus the processes
    still running in the hosts' namespaces (Ansible's persistent masters keep
    their sessions open past a run)."""
    tick = float(os.sysconf('SC_CLK_TCK'))

    def stat(pid, fields):
        try:
            with open('/proc/%d/stat' % pid) as handle:
                values = handle.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return sum(int(values[i]) for i in fields) / tick

    # after the command name: utime, stime, cutime, cstime are fields 11-14
    total = stat(lab.state['listener_pid'], (13, 14))
    for pid in lab.processes():
        total += stat(pid, (11, 12, 13, 14))
    return total


class HostMemory:
    """Samples, every ``every`` seconds until stopped, the peak PSS and count
    of the processes in the lab's hosts (sshd, Nix: in a cascade, half the
    fleet sends at once) and the machine's lowest MemAvailable."""

    def __init__(self, lab, every=2.0):
        self.lab, self.every = lab, every
        self.peak = {'hosts_pss_mb': 0.0, 'hosts_processes': 0, 'available_min_mb': None}
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            held = self.lab.memory()
            self.peak['hosts_pss_mb'] = max(self.peak['hosts_pss_mb'], held['pss_kb'] / 1024.0)
            self.peak['hosts_processes'] = max(self.peak['hosts_processes'], held['processes'])
            with open('/proc/meminfo') as handle:
                available = [int(ln.split()[1]) / 1024.0 for ln in handle
                             if ln.startswith('MemAvailable:')][0]
            low = self.peak['available_min_mb']
            self.peak['available_min_mb'] = available if low is None else min(low, available)
            time.sleep(self.every)

    def stop(self):
        self.running = False
        self.thread.join()
        return dict((k, round(v, 1) if v is not None else None) for k, v in self.peak.items())


def share_one_system(flake, hosts, **knobs):
    """Make ``hosts`` deploy one configuration; returns what to restore."""
    saved = dict((name, flake.data['hosts'][name]['configuration']) for name in hosts)
    flake.data['configurations'].setdefault(
        CONFIGURATION, {'platform': 'nixos', 'version': '1', 'behaviour': 'ok'})
    flake.data['configurations'][CONFIGURATION].update(knobs)
    for name in hosts:
        flake.data['hosts'][name]['configuration'] = CONFIGURATION
    flake.save()
    return saved


def restore(flake, saved):
    for name, configuration in saved.items():
        flake.data['hosts'][name]['configuration'] = configuration
    flake.save()


def tree(copied_from):
    """{'depth', 'fanout', 'seeds', 'hops', 'levels'} of a cascade from
    {host: copied_from} (a host name, 'controller', or None)."""
    depth = {}

    def depth_of(name, seen=()):
        if name in depth:
            return depth[name]
        source = copied_from.get(name)
        if source is None or name in seen:
            return 0
        value = 1 if source == 'controller' else depth_of(source, seen + (name,)) + 1
        depth[name] = value
        return value

    fanout = {}
    for name, source in copied_from.items():
        depth_of(name)
        if source:
            fanout[source] = fanout.get(source, 0) + 1
    levels = {}
    for value in depth.values():
        levels[value] = levels.get(value, 0) + 1
    return {'depth': max(depth.values() or [0]),
            'fanout': max([n for s, n in fanout.items() if s != 'controller'] or [0]),
            'seeds': fanout.get('controller', 0),
            'hops': sum(n for s, n in fanout.items() if s != 'controller'),
            'levels': dict((str(k), v) for k, v in sorted(levels.items()))}


def _report(fleet, number):
    path = os.path.join(fleet.workdir, 'report-%d' % number, 'nixdeploy-report.json')
    with open(path) as handle:
        return json.load(handle)


def _holds(fleet, names, path):
    """Hosts whose store (their /nix is a folder of the lab) holds ``path``."""
    base = os.path.basename(path or '') or '-'
    return [n for n in names
            if os.path.isdir(os.path.join(fleet.lab.host(n)['dir'], 'nix', 'store', base))]


def _one_run(fleet, links, mode, seed, padding, log):
    fleet.version += 1
    fleet.flake.set_config(CONFIGURATION, version='c%d' % fleet.version, extra_seed=seed,
                           **padding)
    number = fleet.runs + 1
    before, cpu_before = links.traffic(hosts=fleet.selected), hosts_cpu(fleet.lab)
    sampler = HostMemory(fleet.lab)
    try:
        result = fleet.playbook(fleet.forks, args=['-e', json.dumps({'nix_copy_mode': mode}),
                                                   '--skip-tags', 'activate'])
    finally:
        host_memory = sampler.stop()
    moved = links.traffic(hosts=fleet.selected).since(before)
    host_cpu = hosts_cpu(fleet.lab) - cpu_before
    report = _report(fleet, number)
    hosts = report['hosts']
    copies = dict((n, (hosts.get(n) or {}).get('copy') or {}) for n in fleet.selected)
    paths = set((hosts.get(n) or {}).get('store_path') for n in fleet.selected)
    path = paths.pop() if len(paths) == 1 else None
    shape = tree(dict((n, c.get('copied_from')) for n, c in copies.items()))
    row = {'n': len(fleet.selected), 'mode': mode, 'wall': round(result['wall'], 1),
           'cpu': round(result['cpu'], 1), 'hosts_cpu': round(host_cpu, 1),
           'copy': (result.get('phases') or {}).get('copy'),
           'uplink': moved.controller_sent, 'uplink_received': moved.controller_received,
           'delivered': moved.delivered, 'host_to_host': moved.host_to_host,
           'closure': max([c.get('bytes_missing') or 0 for c in copies.values()] or [0]),
           'failed': sorted(n for n in fleet.selected if (hosts.get(n) or {}).get('failed')),
           'system': path, 'new': len(_holds(fleet, fleet.selected, path)) if path else 0,
           'memory': result.get('memory'), 'host_memory': host_memory, 'tree': shape}
    log('  scale cascade N=%d %-7s run %.1f s, copy %s s, uplink %.1f MB, host to host %.1f MB, '
        'depth %d, %d/%d hosts hold the new system'
        % (row['n'], mode, row['wall'], row['copy'], row['uplink'] / 1e6,
           row['host_to_host'] / 1e6, shape['depth'], row['new'], row['n']))
    return row


def measure(fleet, log=print, modes=MODES, uplink=UPLINK, padding=None, check=True):
    """Push and cascade on the fleet's selected hosts (see the module doc).
    ``uplink``: tbf rate of the controller's uplink for the runs (None: not
    shaped). Returns {'rows': [...], 'uplink', 'padding', 'counter_check'}."""
    padding = dict(PADDING, **(padding or {}))
    links = Links(fleet.lab)
    data = {'uplink': uplink, 'padding': padding, 'rows': [], 'n': len(fleet.selected),
            'load_before': os.getloadavg()[0]}
    if check and len(fleet.selected) >= 2:
        data['counter_check'] = counter_check(fleet.lab, fleet.selected[0], fleet.selected[1])
        log('  scale cascade counter check: %s' % json.dumps(data['counter_check']))
    saved = share_one_system(fleet.flake, fleet.selected)
    try:
        if uplink:
            links.shape_uplink(uplink)
        for mode in modes:
            data['rows'].append(_one_run(fleet, links, mode, 'scale-cascade-%s-%d-%d' % (
                mode, len(fleet.selected), fleet.version), padding, log))
    finally:
        if uplink:
            links.shape_uplink(None)
        restore(fleet.flake, saved)
    data['load_after'] = os.getloadavg()[0]
    return data


def rate_bytes(rate):
    """'100mbit' -> bytes per second (tc's units: k/m/g bit, powers of 1000)."""
    text = rate.lower()
    for suffix, scale in (('gbit', 1e9), ('mbit', 1e6), ('kbit', 1e3), ('bit', 1)):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * scale / 8
    raise ValueError('a tbf rate like 100mbit: %r' % rate)


def table(result):
    """Lines for table 10 (a list of ``measure`` results, or one)."""
    results = result if isinstance(result, list) else [result]
    first = results[0]
    lines = ['10c. Closure cascade vs push at fleet size: one shared system, %.1f MB of new '
             'paths per host (%d paths); the deploy playbook with --skip-tags activate'
             % (first['padding']['extra_bytes'] / 1e6, first['padding']['extra_paths']),
             "    host links not shaped (every host's sshd and Nix run on the controller's cores); "
             "U: the controller's uplink, shaped with tbf on the bridge device or not (-)",
             '%5s %-8s %7s %6s %9s %7s %8s %7s %6s %6s %7s %6s %7s %5s %7s %5s %7s' % (
                 'N', 'mode', 'U', 'S MB', 'uplink MB', 'link s', 'h2h MB', 'copy s', 'run s',
                 'cpu s', 'hosts s', 'PSS MB', 'hPSS MB', 'depth', 'fan-out', 'seeds', 'new')]
    lines.append('-' * len(lines[-1]))
    for data in results:
        for row in data['rows']:
            shape = row['tree']
            cascade = row['mode'] == 'cascade'
            bound = row['uplink'] / rate_bytes(data['uplink']) if data['uplink'] else None
            hosts_pss = (row.get('host_memory') or {}).get('hosts_pss_mb')
            lines.append('%5d %-8s %7s %6.2f %9.1f %7s %8.1f %7s %6.1f %6.1f %7.1f %6s %7s %5s %7s %5s %7s'
                         % (row['n'], row['mode'], data['uplink'] or '-', row['closure'] / 1e6,
                            row['uplink'] / 1e6,
                            '%.1f' % bound if bound is not None else '-',
                            row['host_to_host'] / 1e6,
                            '%.1f' % row['copy'] if row['copy'] else '-', row['wall'], row['cpu'],
                            row['hosts_cpu'],
                            '%.0f' % row['memory']['pss_mb'] if row.get('memory') else '-',
                            '%.0f' % hosts_pss if hosts_pss is not None else '-',
                            shape['depth'] if cascade else '-', shape['fanout'] if cascade else '-',
                            shape['seeds'] if cascade else '-', '%d/%d' % (row['new'], row['n'])))
    lines.append("uplink: the bridge device's tx bytes (ssh, Nix, Ansible: everything the "
                 'controller sent); link s: uplink MB at rate U, the least time it takes')
    checks = [d['counter_check'] for d in results if d.get('counter_check')]
    if checks:
        lines.append('  (host-to-host frames are not in it: %.1f MB sent from one host to another '
                     'moved it by %.3f MB)' % (checks[0]['sent'] / 1e6, checks[0]['bridge_tx'] / 1e6))
    lines.append("cpu s: the controller's (the run's process tree); hosts s: every host's sshd and "
                 "Nix (the lab's sessions); PSS: the controller's peak, hPSS: the hosts' (sampled)")
    lows = ['N=%d %s %.0f' % (row['n'], row['mode'], row['host_memory']['available_min_mb'])
            for data in results for row in data['rows']
            if (row.get('host_memory') or {}).get('available_min_mb') is not None]
    if lows:
        lines.append("the machine's lowest MemAvailable (MB) during the run: " + ', '.join(lows))
    loads = ['%.1f-%.1f' % (d['load_before'], d['load_after']) for d in results]
    lines.append('load (1 min) before-after: ' + ', '.join(loads))
    levels = ['N=%d %s' % (row['n'], ' '.join('%s:%s' % kv for kv in row['tree']['levels'].items()))
              for data in results for row in data['rows'] if row['mode'] == 'cascade']
    if levels:
        lines.append('cascade hosts by depth (depth:hosts): ' + '; '.join(levels))
    return '\n'.join(lines)


def main(argv=None):
    import argparse  # pylint: disable=import-outside-toplevel
    from benchmarks.scale import ScaleFleet  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(prog='python -m benchmarks._scale_cascade',
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', default='50', help='comma list of sizes (first N hosts)')
    parser.add_argument('--lab', default='scasc')
    parser.add_argument('--uplink', default=UPLINK, help="tbf rate, or 'none'")
    parser.add_argument('--bytes', type=int, default=PADDING['extra_bytes'])
    parser.add_argument('--output')
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.hosts.split(',') if s.strip())
    results = []
    with tempfile.TemporaryDirectory(prefix='nixdeploy-scale-cascade-') as tmp:
        fleet = ScaleFleet(args.lab, max(sizes), os.path.join(tmp, 'work'), log=_log)
        try:
            started = time.monotonic()
            fleet.select(max(sizes))
            fleet.new_version()
            fleet.baseline(fleet.forks)
            _log('  warm-up: a first system on %d hosts in %.1f s'
                 % (max(sizes), time.monotonic() - started))
            for size in sizes:
                fleet.select(size)
                results.append(measure(fleet, log=_log, padding={'extra_bytes': args.bytes},
                                       uplink=None if args.uplink == 'none' else args.uplink))
        finally:
            fleet.down()
    print(table(results))
    if args.output:
        with open(args.output, 'w') as handle:
            json.dump(results, handle, indent=2, sort_keys=True)
    return 0


def _log(text):
    print(text, file=sys.stderr)
    sys.stderr.flush()


if __name__ == '__main__':
    sys.exit(main())
