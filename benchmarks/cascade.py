# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: closure cascade against push (issue 15).

N NixOS lab hosts (8, then 16) deploy ONE shared system whose new version
carries ``--bytes`` of fresh incompressible paths (8 MB). Every link is shaped
to ``--rate`` with tbf (tests/lab/links.py): each host's link both ways and the
controller's own uplink (the lab bridge). Each mode deploys its own new version
(eval, build, copy, activate on the free strategy; the copy with
``mode: push`` or ``mode: cascade``). Measured:

  uplink MB     what the controller sent (the bridge device's own tx counter:
                ssh, Nix and Ansible, everything)
  links MB      bytes summed over every link they crossed (uplink both ways,
                each host link both ways: a host-to-host byte crosses two)
  copy s        the copy phase: the longest copy task (in cascade mode the
                first host's task runs the whole cascade, the others wait for it)
  hops s        cascade only: first hop to last hop (module result cascade.seconds)
  estimate s    (log2 N + 1) x S / U for cascade, N x S / U for push (S the
                closure's missing NAR bytes, U the rate)

    python -m benchmarks.cascade                       8 and 16 hosts, 100 Mbit/s, 8 MB
    python -m benchmarks.cascade --sizes 4 --bytes 2000000

Root needed (the lab). The lab (``--lab``, default ``cab``) is downed at the end.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

from benchmarks._fleet import REPO, load, timed
from tests.collection import ansible_env
from tests.deploy_fleet import prepare, write_inventory
from tests.lab import Lab
from tests.lab.links import Links

MODES = ('push', 'cascade')
COPY_TASK = 'copy'

PLAYBOOK = [{
    'name': 'Deploy one system, copy mode from copy_mode',
    'hosts': 'all', 'gather_facts': False, 'strategy': 'free',
    'tasks': [
        {'name': 'eval', 'nixdeploy.fleet.nix_eval': {}, 'register': 'ev'},
        {'name': 'build', 'nixdeploy.fleet.nix_build': {'drv_path': '{{ ev.drv_path }}'}},
        {'name': COPY_TASK, 'nixdeploy.fleet.nix_copy_closure': {
            'path': '{{ ev.out_path }}', 'copy_mode': '{{ copy_mode }}',
            'signing_key': '{{ nix_signing_key }}', 'nix_options': '{{ nix_options }}'}},
        {'name': 'activate', 'nixdeploy.fleet.nix_activate': {
            'path': '{{ ev.out_path }}', 'goal': 'switch'}},
    ]}]


def rate_bytes(rate):
    """'100mbit' -> bytes per second (tc's units: k/m/g bit, powers of 1000)."""
    text = rate.lower().rstrip('it').rstrip('b')
    scale = {'k': 1e3, 'm': 1e6, 'g': 1e9}.get(text[-1:], 1)
    number = float(text[:-1] if text[-1:] in 'kmg' else text)
    return number * scale / 8


class CascadeFleet:
    """``hosts`` NixOS lab hosts sharing one configuration, every link shaped."""

    def __init__(self, name, hosts, workdir, rate):
        self.workdir = workdir
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        self.lab = Lab(name).up(hosts)
        try:
            self.names = sorted(self.lab.hosts, key=lambda n: int(n[1:]))
            self.flake, self.secret = prepare(
                self.lab, os.path.join(workdir, 'flake'),
                shared=dict((n, 'fleet') for n in self.names),
                configurations={'fleet': {'platform': 'nixos'}})
            self.inventory = write_inventory(os.path.join(workdir, 'inventory'), self.lab,
                                             self.flake, self.secret)
            self.playbook = os.path.join(workdir, 'deploy.yml')
            with open(self.playbook, 'w') as handle:
                json.dump(PLAYBOOK, handle)
            self.links = Links(self.lab)
            self.links.shape_all(rate)
        except Exception:
            self.lab.down()
            raise
        self.runs = 0

    def down(self):
        self.lab.down()

    def deploy(self, hosts, mode, **knobs):
        """A new version deployed to ``hosts`` with copy ``mode``: the run's
        figures and the copy results by host."""
        self.runs += 1
        self.flake.set_config('fleet', version='v%d' % self.runs, **knobs)
        label = 'run%02d-%s-%d' % (self.runs, mode, len(hosts))
        record = os.path.join(self.workdir, label + '.jsonl')
        env = ansible_env({'ANSIBLE_CONFIG': os.path.join(REPO, 'ansible.cfg'),
                           'ANSIBLE_FORKS': str(len(hosts)), 'NIXDEPLOY_TEST_RECORD': record})
        argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                '-i', self.inventory, self.playbook, '-l', ','.join(hosts),
                '-e', json.dumps({'copy_mode': mode})]
        before = self.links.traffic()
        result = timed(argv, env=env, cwd=self.workdir,
                       log=os.path.join(self.workdir, label + '.log'))
        moved = self.links.traffic().since(before)
        if result['rc'] != 0:
            raise RuntimeError('%s deploy to %d hosts failed (rc %s), see %s.log'
                               % (mode, len(hosts), result['rc'], label))
        copies = {}
        with open(record) as handle:
            for line in handle:
                entry = json.loads(line)
                if entry.get('task') == COPY_TASK:
                    copies[entry['host']] = entry['result']
        wrong = [h for h in hosts if self.lab.active(h) != copies[h]['path']]
        if wrong:
            raise RuntimeError('%s: wrong system active on %s' % (mode, wrong))
        return result, moved, copies


def run(fleet, sizes=(8, 16), rate='100mbit', extra_bytes=8000000, extra_paths=8, log=print):
    data = {'rate': rate, 'bytes': extra_bytes, 'load_before': load(), 'rows': []}
    per_second = rate_bytes(rate)
    # untimed: every host gets the base system first, so each row moves what
    # a routine deploy moves (the new paths)
    fleet.deploy(fleet.names[:max(sizes)], 'cascade', extra_paths=0, extra_bytes=0)
    for size in sizes:
        hosts = fleet.names[:size]
        for mode in MODES:
            result, moved, copies = fleet.deploy(
                hosts, mode, extra_paths=extra_paths, extra_bytes=extra_bytes,
                extra_seed='bench-%s-%d' % (mode, size))
            missing = max(c['bytes_missing'] for c in copies.values())
            if mode == 'cascade':
                estimate = (math.log(size, 2) + 1) * missing / per_second
            else:
                estimate = size * missing / per_second
            row = {'n': size, 'mode': mode, 'closure': missing, 'wall': result['wall'],
                   'uplink': moved.controller_sent, 'links': moved.on_all_links,
                   'host_to_host': moved.host_to_host,
                   'copy': max(c['seconds'] for c in copies.values()),
                   'hops': max((c.get('cascade') or {}).get('seconds', 0)
                               for c in copies.values()),
                   'rounds': max((c.get('cascade') or {}).get('rounds', 0)
                                 for c in copies.values()),
                   'estimate': estimate}
            data['rows'].append(row)
            log('  cascade benchmark N=%d %-7s copy %.1f s (estimate %.1f s), uplink %.1f MB'
                % (size, mode, row['copy'], estimate, row['uplink'] / 1e6))
    data['load_after'] = load()
    return data


def table(data):
    lines = ['Closure cascade vs push: one shared system, %.1f MB of new paths per host, every '
             'link %s (tbf; the controller\'s uplink too)' % (data['bytes'] / 1e6, data['rate']),
             '%4s %-8s %9s %10s %9s %8s %7s %11s %7s %6s' % (
                 'N', 'mode', 'S MB', 'uplink MB', 'links MB', 'copy s', 'hops s', 'estimate s',
                 'ratio', 'depth')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        lines.append('%4d %-8s %9.2f %10.2f %9.1f %8.1f %7s %11.1f %7.2f %6s' % (
            row['n'], row['mode'], row['closure'] / 1e6, row['uplink'] / 1e6, row['links'] / 1e6,
            row['copy'], '%.1f' % row['hops'] if row['mode'] == 'cascade' else '-',
            row['estimate'], row['copy'] / row['estimate'] if row['estimate'] else 0,
            row['rounds'] if row['mode'] == 'cascade' else '-'))
    lines += ['estimate: (log2 N + 1) x S / U for cascade, N x S / U for push; ratio = copy s /'
              ' estimate; load %.1f before, %.1f after'
              % (data['load_before'], data['load_after'])]
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.cascade', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', default='8,16')
    parser.add_argument('--rate', default='100mbit')
    parser.add_argument('--bytes', type=int, default=8000000)
    parser.add_argument('--lab', default='cab')
    parser.add_argument('--output', help='write the figures as JSON here too')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the benchmark deploys to a lab fleet, which needs root')
    sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    with tempfile.TemporaryDirectory(prefix='nixdeploy-cascade-bench-') as tmp:
        fleet = CascadeFleet(args.lab, max(sizes), os.path.join(tmp, 'work'), args.rate)
        try:
            data = run(fleet, sizes, args.rate, args.bytes,
                       log=lambda text: print(text, file=sys.stderr))
        finally:
            fleet.down()
    print(table(data))
    if args.output:
        with open(args.output, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
