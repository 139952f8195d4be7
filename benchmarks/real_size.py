# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 7: systems of real size (issue 22) to a fleet, against a plain
``nix copy`` + ssh script on the same fleet in the same run.

Each of the N NixOS lab hosts (default 8) deploys a system of its own of real
size, shaped as real ones are: 1,970 small files made at evaluation time and
12 built paths of 17 MB of random bytes, all shared by every host (as nixpkgs
is), plus 8 small files of the host and version and the host's own system:
1,994 paths, 210.5 MB (tests/lab/flake/lib.nix, ``eval_*`` and ``extra_*``).

The hosts first run a small system (busybox and co, 2 MB; untimed). Then
rows, each with a shared part of its own (a new seed: every host lacks 208.5
MB, as after a nixpkgs update), built beforehand (untimed, as CI would), so a
deploy builds only the hosts' own systems:

  playbook push     ansible-playbook nixdeploy.fleet.deploy, nix_copy_mode=push
  playbook cache    ... cache: the hosts fetch from a signed file:// cache on the
                    machine's disk (a cache near them), filled beforehand
  playbook cascade  ... cascade (one system per host: one cascade per host)
  script            benchmarks/baseline_deploy.sh: one nix eval, one nix build,
                    N parallel ``nix copy --to ssh-ng://``, N parallel ssh
                    activations, then a new ssh login per host

then, per row, a new version with a tiny change (each host's own files and
system, ~38 KB of NAR per host). Measured: wall and controller CPU time, the
seconds of each phase (the playbook's from its task times, the script's from
its execution trace), and the bytes the controller sent on its link (the lab
bridge's own tx counter: ssh, Nix, Ansible, everything) and to each host.
Forks N; the repository's ansible.cfg (ControlPersist, pipelining).

    python -m benchmarks.real_size                        8 hosts, every row, unshaped
    python -m benchmarks.real_size --rate 1gbit --rows push,script

Root needed (the lab); the lab (``--lab``, default ``rsb``) is downed at the end.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

from benchmarks._fleet import BenchFleet, RunError, load, ssh_masters
from tests.lab.links import Links

ROWS = ('push', 'script', 'cache', 'cascade')
# one host's configuration (the seeds are set per row)
REAL_SIZE = {'platform': 'nixos', 'eval_paths': 1970, 'eval_own': 8, 'extra_paths': 12,
             'extra_bytes': 204000000}
NIX = ['nix', '--extra-experimental-features', 'nix-command flakes',
       '--option', 'substituters', '']
PHASES = ('eval', 'build', 'copy', 'activate', 'confirm')
COPY_TASK = 'nixdeploy.fleet.deploy : Copy the closure to each host'
SEEDS = {'push': 'real-size-push', 'cache': 'real-size-cache', 'cascade': 'real-size-cascade',
         'script': 'real-size'}


def _nix(*args):
    return subprocess.run(NIX + list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True).stdout


class RealFleet(BenchFleet):
    """N NixOS hosts, each deploying a real-sized system of its own."""

    def __init__(self, name, hosts, workdir):
        configurations = dict(('h%d' % i, dict(REAL_SIZE)) for i in range(1, hosts + 1))
        super(RealFleet, self).__init__(name, hosts, workdir, configurations=configurations)
        self.links = Links(self.lab)
        self.cache = os.path.join(self.lab.dir, 'bench-cache')

    def build(self):
        """Every selected host's system, built now: {host: out path}."""
        attrs = ['%s#%s' % (self.flake.ref, self.flake.attr(n)) for n in self.selected]
        built = json.loads(_nix('build', '--no-link', '--json', *attrs))
        return dict((n, b['outputs']['out']) for n, b in zip(self.selected, built))

    def publish(self, paths):
        """Put the closures of ``paths`` in the file:// cache, signed (only
        what it lacks is written; no compression: the bulk is random)."""
        _nix('copy', '--to', 'file://%s?compression=none&secret-key=%s' % (self.cache, self.secret),
             *sorted(paths))

    def shape(self, rate):
        if rate:
            self.links.shape_all(rate, hosts=self.selected)

    def closure_stats(self, paths):
        """Paths and NAR bytes of one host's closure, and of the part of it
        every host's closure holds."""
        sets, first = [], None
        for path in paths.values():
            infos = json.loads(_nix('path-info', '-r', '--json', path))
            if isinstance(infos, dict):  # Nix 2.19+: a map
                infos = [dict(info or {}, path=p) for p, info in infos.items()]
            sizes = dict((i['path'].rsplit('/', 1)[-1], i.get('narSize', 0)) for i in infos)
            first = first or sizes
            sets.append(set(sizes))
        shared = set.intersection(*sets)
        return {'paths': len(first), 'bytes': sum(first.values()), 'shared': len(shared),
                'shared_bytes': sum(first[p] for p in shared)}


def _records(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _measure(fleet, row, label):
    """One deploy of the current version by the row's deployer."""
    before_active = fleet.active()
    before = fleet.links.traffic(fleet.selected)
    started = load()
    masters, missing = 0.0, []
    if row == 'script':
        result = fleet.baseline(len(fleet.selected), trace=True)
    else:
        extra = {'nix_copy_mode': row}
        if row == 'cache':
            extra['nix_caches'] = ['file://%s' % fleet.cache]
        # ssh masters of this run alone: new logins, as a deploy some
        # minutes after the last one (playbook() counts their CPU in 'cpu')
        folder = os.path.join(fleet.workdir, 'cp-%s' % label)
        record = os.path.join(fleet.workdir, 'record-%s.jsonl' % label)
        result = fleet.playbook(len(fleet.selected), args=['-e', json.dumps(extra)],
                                env={'ANSIBLE_SSH_CONTROL_PATH_DIR': folder}, record=record)
        masters = result['ssh_masters_cpu']
        missing = [r['result'].get('bytes_missing', 0) for r in _records(record)
                   if r.get('task') == COPY_TASK]
        for pid in ssh_masters(folder):  # started by this run; not needed any more
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    moved = fleet.links.traffic(fleet.selected).since(before)
    fleet.deployed(before_active)
    phases = result.get('phases') or {}
    return {'label': label, 'wall': result['wall'], 'cpu': result['cpu'],
            'ssh_masters_cpu': masters, 'bytes_missing': missing,
            'phases': dict((p, phases.get(p, 0.0)) for p in PHASES + ('startup',)),
            'uplink': moved.controller_sent, 'to_hosts': moved.to_hosts,
            'load_before': started, 'load_after': load()}


def run(fleet, rows=ROWS, rate=None, log=print):
    data = {'hosts': len(fleet.selected), 'rate': rate, 'rows': [], 'load_before': load()}
    # untimed: every host runs a small system first (busybox, kernel and
    # systemd stand-ins: 2 MB), so each row sends what a nixpkgs update
    # sends, the same in every row, to a fleet already deployed
    fleet.flake.set_all(version='base', eval_paths=0, eval_own=0, extra_paths=0, extra_bytes=0)
    fleet.playbook(len(fleet.selected))
    fleet.shape(rate)
    try:
        for row in rows:
            # A shared part per row (what a nixpkgs update brings), the same
            # in every run (the controller builds it once; the hosts are new
            # each run) and the same as tests/integration/roles/test_real_size.py's.
            # Untimed: built as CI would; each deploy builds the hosts' own systems.
            seed = SEEDS[row]
            knobs = dict(REAL_SIZE, eval_seed=seed, extra_seed=seed)
            fleet.flake.set_all(version='%s-warm' % row, **knobs)
            fleet.build()
            cells = {}
            for step, version in (('first', '%s-1' % row), ('tiny', '%s-2' % row)):
                fleet.flake.set_all(version=version)
                if row == 'cache':
                    fleet.publish(fleet.build().values())
                cells[step] = _measure(fleet, row, version)
                log('  real size %-8s %-5s %.1f s, uplink %.1f MB'
                    % (row, step, cells[step]['wall'], cells[step]['uplink'] / 1e6))
            if 'closure' not in data:
                data['closure'] = fleet.closure_stats(fleet.active())
            data['rows'].append(dict(cells, row=row))
    finally:
        fleet.shape(None)
    data['load_after'] = load()
    return data


def _name(row):
    return 'script' if row == 'script' else 'playbook %s' % row


def _missing(data, step):
    """The most NAR bytes a host lacked in ``step`` (playbook rows' copy results)."""
    found = [n for row in data['rows'] for n in row[step].get('bytes_missing') or []]
    return max(found) if found else 0


def table(data):
    closure = data.get('closure') or {}
    lines = ['7. Real-sized systems to %d hosts: %d paths, %.1f MB per system (%d paths, %.1f MB '
             'shared by all hosts); each host lacks %.1f MB of it (a new nixpkgs: all but the 2 MB '
             'of its previous system), then %.0f KB (a tiny change); links %s'
             % (data['hosts'], closure.get('paths', 0), closure.get('bytes', 0) / 1e6,
                closure.get('shared', 0), closure.get('shared_bytes', 0) / 1e6,
                _missing(data, 'first') / 1e6, _missing(data, 'tiny') / 1e3,
                'shaped to %s (tbf)' % data['rate'] if data.get('rate') else 'unshaped'),
             '%-17s %7s %7s %6s %6s %6s %8s %8s %10s   %-s' % (
                 'deployer', 'wall s', 'cpu s*', 'eval', 'build', 'copy', 'activate', 'confirm',
                 'uplink MB', 'tiny change: wall s, KB to each host, uplink KB')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        first, tiny = row['first'], row['tiny']
        per_host = sorted(tiny['to_hosts'].values()) or [0]
        lines.append('%-17s %7.1f %7.1f %6.1f %6.1f %6.1f %8.1f %8.1f %10.1f   %.1f s, %.0f-%.0f '
                     'KB, %.0f KB' % (
                         _name(row['row']), first['wall'],
                         first['cpu'],
                         first['phases']['eval'], first['phases']['build'],
                         first['phases']['copy'], first['phases']['activate'],
                         first['phases']['confirm'], first['uplink'] / 1e6, tiny['wall'],
                         per_host[0] / 1e3, per_host[-1] / 1e3, tiny['uplink'] / 1e3))
    by_row = dict((row['row'], row) for row in data['rows'])
    if 'script' in by_row:
        base = by_row['script']
        ratios = ['%s %.2fx (tiny change %.2fx)' % (
            _name(name), by_row[name]['first']['wall'] / base['first']['wall'],
            by_row[name]['tiny']['wall'] / base['tiny']['wall'])
            for name in ROWS if name in by_row and name != 'script']
        if ratios:
            lines.append('wall time against the script: ' + '; '.join(ratios))
    lines.append('* cpu: the controller\'s, the deployer and what it waited for, plus the ssh '
                 'masters Ansible leaves detached (they encrypt what nix copy sends over them)')
    lines.append('phases: seconds during which some host was in the phase (the playbook\'s task '
                 'times; the script\'s steps); cache: systems built and published beforehand; '
                 'load %.1f before, %.1f after' % (data['load_before'], data['load_after']))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.real_size', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', type=int, default=8)
    parser.add_argument('--rows', default=','.join(ROWS),
                        help='comma list of: %s' % ','.join(ROWS))
    parser.add_argument('--rate', help='tbf rate of every host link and the controller uplink '
                                       '(e.g. 1gbit); default unshaped')
    parser.add_argument('--lab', default='rsb')
    parser.add_argument('--output', help='write the figures as JSON here too')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the benchmark deploys to a lab fleet, which needs root')
    rows = [r.strip() for r in args.rows.split(',') if r.strip()]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error('unknown rows: %s' % ', '.join(sorted(unknown)))
    with tempfile.TemporaryDirectory(prefix='nixdeploy-real-size-bench-') as tmp:
        fleet = RealFleet(args.lab, args.hosts, os.path.join(tmp, 'work'))
        try:
            data = run(fleet, rows, args.rate, log=lambda text: print(text, file=sys.stderr))
        except RunError as exc:
            print('real size benchmark: %s' % exc, file=sys.stderr)
            return 1
        finally:
            fleet.down()
    print(table(data))
    if args.output:
        with open(args.output, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
