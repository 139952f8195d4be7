# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each host's evaluation reused across commits (issue 63).

    python -m benchmarks.eval_reuse [--hosts 100] [--host-seconds 0.3] [--shared-seconds 0.3]
                                    [--repeat 1] [--workers N] [--changed-host h076]
                                    [--output FILE]

A git flake of N heavy hosts, laid out as real fleets lay theirs out: one
file per host (``hosts/<name>.nix``), a role module a quarter of them import
(``roles/web.nix``), a module every host imports (``common.nix``), and a
shared part every Nix process evaluates once, as a nixpkgs (``pkgs.nix``).
The CPU work is tests/lab/flake/lib.nix's ``cost.burn``, sized in CPU
seconds by tests/lab/heavy.py's calibration of this machine and Nix.

Each step runs ``EvalStage`` on every host in a fresh Python child with a
fresh run folder (``RunSources`` pins once per run), the cache steps with one
persistent cache folder:

  a   commit 1, cache off                          what a run costs today
  b   commit 1, cache on (empty: records)          the price of recording vs a
  c   commit 2: one host's file changed            that host, and once the hosts after
                                                   it in its evaluator (each alone)
  c2  commit 3: the next host's file changed       that host only, from c's records
  d   commit 4: roles/web.nix changed              the web quarter, and once the hosts
                                                   after a web host in its evaluator
  d2  commit 5: roles/web.nix changed again        the web quarter only, from d's records
  e   commit 6: common.nix changed                 every host
  g   commit 7: README.md only (no host reads it)  no host
  h   commit 8: README.md again, with the spot check a deploy makes by default
      (nix_eval_reuse_check): its cost is h's against g's
  f   the pin alone (``flake/_source.pin``, on commit 7 before g, then again) and
      one host alone (a stage of one request, cache off), for c's yardstick:
      1.5x one host's evaluation (its stage minus its warm pin) plus the cold pin

Printed: wall seconds, CPU seconds of the child's descendants (Nix and
strace; the child adopts the orphans a stopped recording leaves) and of the
child itself (the stage's Python: strace logs read, records checked), Nix
processes, hosts evaluated, cached and reused (each entry's ``evaluation``;
an entry without one counts as evaluated, or cached when ``from_cache``),
the ratios to a, the machine's load as the step started, and which hosts
were evaluated beyond the ones the commit changed and which answers did not
change when they should have (a stale reuse) or changed when they should
not. Figures only: nothing here asserts on time. No lab, no root.
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

HOSTS = 100
HOST_SECONDS = 0.3
SHARED_SECONDS = 0.3
ATTR = 'nixosConfigurations.%s.config.system.build.toplevel'
OPTIONS = {'substituters': ''}
NIX_CONFIG = 'experimental-features = nix-command flakes\nsubstituters ='
RECORD_MODULE = os.path.join(REPO, 'plugins', 'plugin_utils', 'evaluation', 'record',
                             '_record.py')
KINDS = ('evaluated', 'cached', 'reused', 'failed')

# ------------------------------------------------------------------ the flake
FLAKE_NIX = '''{
  # A fleet spread over files as real ones are: hosts/<name>.nix each, a role
  # module some import (roles/), a module all import (common.nix), and a
  # shared part each Nix process evaluates once (pkgs.nix, as a nixpkgs).
  description = "nixdeploy.fleet benchmark 12: evaluation reused across commits";
  outputs = { self }:
    let
      cost = import ./lib.nix { fleet = { }; busyboxDir = null; part = "cost"; };
      pkgs = import ./pkgs.nix { inherit cost; };
      systemOf = import ./system.nix { inherit cost pkgs; };
    in {
      nixosConfigurations = builtins.listToAttrs (map
        (name: { inherit name; value = systemOf name; })
        (import ./hosts.nix));
    };
}
'''

PKGS_NIX = '''{ cost }:
# every system's share of the fleet's library: one thunk of the flake's
# outputs, so each Nix process pays it once
{ stamp = "pkgs ${toString (cost.burn %(work)d)}"; }
'''

# a module is {settings, packages}; a host file adds imports and its own work
SYSTEM_NIX = '''{ cost, pkgs }:
name:
let
  host = import (./hosts + "/${name}.nix");
  modules = map import host.imports ++ [ host ];
  settings = builtins.foldl' (acc: m: acc // (m.settings or { })) { } modules;
  packages = builtins.concatLists (map (m: m.packages or [ ]) modules);
  toplevel = derivation {
    name = "nixos-system-${name}";
    system = "%(system)s";
    # never built: the benchmark asks for the derivation alone
    builder = "/bin/sh";
    args = [ "-c" "echo \\"$settings\\" > $out" ];
    settings = builtins.toJSON settings;
    packages = builtins.concatStringsSep " " packages;
    shared = pkgs.stamp;
    # the host's own evaluation cost: folded into the derivation, so asking
    # for its drvPath does the work
    own = toString (cost.burn host.work);
  };
in
{ config.system.build.toplevel = toplevel; config.networking.hostName = name; }
'''

HOST_NIX = '''{
  imports = [ %(imports)s ];
  work = %(work)d;
  settings = { hostName = "%(name)s"; address = "192.0.2.%(octet)d"; revision = %(revision)d; };
}
'''

COMMON_NIX = '''{
  settings = { timeZone = "UTC"; openssh = true; commonRevision = %(revision)d; };
  packages = [ "vim" "htop" "tcpdump" ];
}
'''

WEB_NIX = '''{
  settings = { nginx = true; nginxWorkers = %(workers)d; };
  packages = [ "nginx" ];
}
'''


def host_names(count):
    return ['h%03d' % i for i in range(1, count + 1)]


def web_hosts(names):
    """The quarter of the fleet that imports roles/web.nix."""
    return [name for idx, name in enumerate(names) if idx % 4 == 0]


class ReuseFlake:
    """The benchmark's flake, a git checkout, and the commits of its steps."""

    def __init__(self, path, hosts, work, shared_work):
        self.path = path
        self.names = host_names(hosts)
        self.web = web_hosts(self.names)
        self.work = work
        self.ref = 'git+file://%s' % path
        from tests.lab.fixtures import FLAKE_SRC, nix_system
        os.makedirs(os.path.join(path, 'hosts'))
        os.makedirs(os.path.join(path, 'roles'))
        shutil.copy(os.path.join(FLAKE_SRC, 'lib.nix'), os.path.join(path, 'lib.nix'))
        self.write('flake.nix', FLAKE_NIX)
        self.write('pkgs.nix', PKGS_NIX % {'work': shared_work})
        self.write('system.nix', SYSTEM_NIX % {'system': nix_system()})
        self.write('hosts.nix', '[\n%s]\n' % ''.join('  "%s"\n' % n for n in self.names))
        self.write('common.nix', COMMON_NIX % {'revision': 1})
        self.write('roles/web.nix', WEB_NIX % {'workers': 4})
        self.write('README.md', 'The fleet of benchmark 12.\n')
        for name in self.names:
            self.write_host(name, 1)
        self.git('init', '-q')
        # Nix sees only the files git tracks
        self.git('add', '-A')
        # the lock Nix would otherwise write into a clean tree on first use
        locked = subprocess.run(['nix', 'flake', 'lock', path], env=nix_env(), check=False,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
        if locked.returncode != 0:
            raise RuntimeError('nix flake lock failed: %s' % locked.stderr[-2000:])
        self.commit('commit 1: the fleet')

    def write(self, relative, text):
        with open(os.path.join(self.path, relative), 'w') as handle:
            handle.write(text)

    def write_host(self, name, revision):
        imports = ['../common.nix'] + (['../roles/web.nix'] if name in self.web else [])
        self.write('hosts/%s.nix' % name, HOST_NIX % {
            'imports': ' '.join(imports), 'work': self.work, 'name': name,
            'octet': self.names.index(name) % 250 + 1, 'revision': revision})

    def git(self, *args):
        subprocess.run(['git', '-C', self.path, '-c', 'user.name=bench',
                        '-c', 'user.email=bench@example.invalid'] + list(args),
                       check=True, stdout=subprocess.PIPE)

    def commit(self, message):
        self.git('add', '-A')
        self.git('commit', '-qm', message)


def nix_env():
    env = dict(os.environ)
    env['NIX_CONFIG'] = NIX_CONFIG + ('\n' + env['NIX_CONFIG'] if env.get('NIX_CONFIG') else '')
    return env


# ------------------------------------------------------------------ the child
def collection_path():
    """Make the checkout importable as ansible_collections.nixdeploy.fleet."""
    from tests.collection import collections_path
    path = collections_path()
    if path not in sys.path:
        sys.path.insert(0, path)


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu():
    """This child's own CPU: the stage's Python side (reading strace logs,
    checking records), which the controller pays too."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# prctl's option that makes this process the parent of orphaned descendants
PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans():
    """Become the reaper of this child's orphaned descendants: a recording
    evaluator stopped early (strace ended first) leaves its Nix to init,
    whose CPU would otherwise be missing from RUSAGE_CHILDREN."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER)')


def reap_orphans(deadline=30.0):
    """Wait for every descendant left (after the stage: nothing of the
    stage's own waits for them any more), at most ``deadline`` seconds."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def child_stage(spec):
    """One run's EvalStage on ``spec['hosts']``: figures and each host's
    answer (runs in a fresh Python child)."""
    collection_path()
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation import _eval
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.cache import _cache
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import _source
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage import _stage
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions
    run_folder = tempfile.mkdtemp(prefix='nixdeploy-reuse-run-')
    requests = dict((host, _eval.normalised(_eval.host_request(
        host, {'flake': spec['ref'], 'attr': ATTR % host}, {}, lambda flake: flake)))
        for host in spec['hosts'])
    cache = _cache.EvalCache(spec['cache']) if spec.get('cache') else None
    stage = _stage.EvalStage(NixOptions(options=OPTIONS), workers=spec.get('workers'),
                             cache=cache, sources=_source.RunSources(run_folder),
                             reuse_check=spec.get('check'))
    entries = {}

    def put(host, entry):
        entries[host] = entry

    adopt_orphans()
    # the machine's 1-minute load as the step starts: what else ran
    load = os.getloadavg()[0]
    cpu, py_cpu, started = children_cpu(), own_cpu(), time.monotonic()
    try:
        batch = stage.evaluate(requests, put)
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(run_folder, ignore_errors=True)
    reap_orphans()
    hosts = {}
    for host, entry in entries.items():
        answer = entry.get('answer') or {}
        error = entry.get('error') or answer.get('error')
        kind = 'failed' if error else (entry.get('evaluation') or (
            'cached' if entry.get('from_cache') else 'evaluated'))
        hosts[host] = {'evaluation': kind, 'out': answer.get('out_path'),
                       'error': error and error[:300],
                       'checked': (entry.get('reused') or {}).get('checked')}
    return {'wall': wall, 'cpu': children_cpu() - cpu, 'py_cpu': own_cpu() - py_cpu,
            'hosts': hosts, 'load': load,
            'processes': batch.get('processes'), 'workers': batch.get('workers'),
            'usable': cache.usable if cache else None, 'reason': cache.reason if cache else None}


def child_pin(spec):
    """``flake/_source.pin`` alone, twice: (cold, warm) seconds."""
    collection_path()
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake import _source
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
        NixCommand, NixOptions)
    times = []
    for _idx in range(2):
        started = time.monotonic()
        source = _source.pin(NixCommand(NixOptions(options=OPTIONS)), spec['ref'])
        times.append(time.monotonic() - started)
        if source.reason:
            raise RuntimeError('the pin failed: %s' % source.reason)
    return {'cold': times[0], 'warm': times[1]}


def default_check():
    """How many reused hosts a deploy's evaluation checks by default."""
    collection_path()
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage._stage import (
        DEFAULT_REUSE_CHECK)
    return DEFAULT_REUSE_CHECK


def run_child(kind, spec):
    """``kind`` ('stage', 'pin') in a fresh Python child: its figures."""
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.eval_reuse', '--child', kind,
                           json.dumps(spec)], cwd=REPO, env=nix_env(), check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise RuntimeError('the %s child failed: %s' % (kind, proc.stderr[-3000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the steps
def counts(result):
    found = dict((kind, 0) for kind in KINDS)
    for host in result['hosts'].values():
        found[host['evaluation']] = found.get(host['evaluation'], 0) + 1
    return found


def judged(result, before, expected):
    """What of ``result`` differs from what the commit should give:
    ``expected`` is the set of hosts whose answer the commit changes."""
    hosts = result['hosts']
    changed = set(h for h, v in hosts.items() if before and v['out'] != before.get(h))
    evaluated = set(h for h, v in hosts.items() if v['evaluation'] == 'evaluated')
    checked = [v['checked'] for v in hosts.values() if v['checked'] is not None]
    return {
        # a cache that works evaluates the changed hosts alone
        'evaluated_beyond': sorted(evaluated - expected),
        # an answer that should be new and is not: a stale reuse
        'stale': sorted(expected - changed) if before else [],
        'changed_unexpected': sorted(changed - expected) if before else [],
        'failed': sorted(h for h, v in hosts.items() if v['evaluation'] == 'failed'),
        'checked_mean': sum(checked) / len(checked) if checked else None,
    }


def step_row(step, label, result, before, expected):
    row = {'step': step, 'label': label, 'wall': result['wall'], 'cpu': result['cpu'],
           'load': result['load'], 'py_cpu': result['py_cpu'],
           'processes': result['processes'], 'workers': result['workers'],
           'expected': len(expected)}
    row.update(counts(result))
    row.update(judged(result, before, expected))
    if result.get('usable') is False:
        row['cache_unusable'] = result['reason']
    return row


def outs(result):
    return dict((h, v['out']) for h, v in result['hosts'].items())


def run(hosts=HOSTS, host_seconds=HOST_SECONDS, shared_seconds=SHARED_SECONDS, repeat=1,
        workers=None, changed=None, log=None):
    """Every step on a new flake: {'rows', 'yardstick', 'setup'};
    ``changed``: the host whose file commit 2 changes."""
    log = log or (lambda text: None)
    from tests.lab import heavy
    tmp = tempfile.mkdtemp(prefix='nixdeploy-reuse-')
    try:
        calibration = heavy.calibrate(nix_env(), os.path.join(REPO, 'benchmarks', 'results'))
        work = calibration.config(seconds=host_seconds)['eval_work']
        shared_work = calibration.shared(seconds=shared_seconds)['shared_work']
        flake = ReuseFlake(os.path.join(tmp, 'fleet'), hosts, work, shared_work)
        names = flake.names
        cache = os.path.join(tmp, 'cache')

        def stage(label, cache_folder, only=None, check=None):
            result = run_child('stage', {'ref': flake.ref, 'hosts': only or names,
                                         'cache': cache_folder, 'workers': workers,
                                         'check': check})
            log('  %s: %.1f s, %s' % (label, result['wall'], json.dumps(counts(result))))
            return result

        # the commit fetched once, so that a and b each pay a warm pin alike
        run_child('pin', {'ref': flake.ref})
        rows = []
        today = recording = None
        for turn in range(repeat):
            # a repeated b records into a folder of its own; the last turn's
            # folder is the one the later commits use
            folder = cache if turn == repeat - 1 else os.path.join(tmp, 'cache-%d' % turn)
            found = stage('a commit 1, cache off', None)
            today = found if today is None or found['wall'] < today['wall'] else today
            found = stage('b commit 1, cache on (records)', folder)
            recording = found if recording is None or found['wall'] < recording['wall'] \
                else recording
        rows.append(step_row('a', 'commit 1, cache off (today)', today, None, set(names)))
        rows.append(step_row('b', 'commit 1, cache on: records', recording, None, set(names)))
        before = outs(today)

        # where a recorded host's record is everything its process read
        # before its answer, a change re-evaluates the hosts after it in
        # its piece: a host three quarters down the fleet is mid-piece for
        # one or two evaluators, neither the best nor the worst case
        changed_host = changed or names[len(names) * 3 // 4]
        # the host after it: c evaluated it alone (only its neighbour's file
        # had changed), so its record is its own now
        next_host = names[(names.index(changed_host) + 1) % len(names)]
        steps = [
            ('c', 'commit 2: hosts/%s.nix' % changed_host,
             lambda: flake.write_host(changed_host, 2), {changed_host}),
            ('c2', 'commit 3: hosts/%s.nix' % next_host,
             lambda: flake.write_host(next_host, 2), {next_host}),
            ('d', 'commit 4: roles/web.nix', lambda: flake.write(
                'roles/web.nix', WEB_NIX % {'workers': 8}), set(flake.web)),
            # the same change again: what d's new records give the next one
            ('d2', 'commit 5: roles/web.nix again', lambda: flake.write(
                'roles/web.nix', WEB_NIX % {'workers': 16}), set(flake.web)),
            ('e', 'commit 6: common.nix', lambda: flake.write(
                'common.nix', COMMON_NIX % {'revision': 2}), set(names)),
            ('g', 'commit 7: README.md only', lambda: flake.write(
                'README.md', 'The fleet of benchmark 12, read by no host.\n'), set()),
            # g again, with the spot check a deploy makes by default: its cost
            # is h's against g's
            ('h', 'commit 8: README.md, the spot check on', lambda: flake.write(
                'README.md', 'The fleet of benchmark 12, read by no host at all.\n'), set(),
             default_check()),
        ]
        pins = None
        for step, label, change, expected, *check in steps:
            change()
            flake.commit(label)
            if step == 'g':
                # the yardstick's pin: a commit no run has fetched yet
                pins = run_child('pin', {'ref': flake.ref})
                log('  f pin alone: cold %.2f s, warm %.2f s' % (pins['cold'], pins['warm']))
            found = stage('%s %s' % (step, label), cache, check=check[0] if check else None)
            rows.append(step_row(step, label, found, before, expected))
            before = outs(found)
        one = stage('f one host alone, cache off', None, only=[names[0]])
        yardstick = {'pin_cold': pins['cold'], 'pin_warm': pins['warm'], 'one_host': one['wall'],
                     'one_host_cpu': one['cpu']}
        yardstick['one_eval'] = max(0.0, one['wall'] - pins['warm'])
        yardstick['target'] = 1.5 * yardstick['one_eval'] + pins['cold']
        return {'rows': rows, 'yardstick': yardstick, 'changed_host': changed_host,
                'setup': {'hosts': hosts, 'web_hosts': len(flake.web),
                          'host_seconds': host_seconds, 'shared_seconds': shared_seconds,
                          'host_work': work, 'shared_work': shared_work, 'repeat': repeat,
                          'workers': workers, 'calibration': calibration.figures,
                          'record_module': os.path.exists(RECORD_MODULE),
                          'nix': nix_version()}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def nix_version():
    return subprocess.run(['nix', '--version'], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()


# ------------------------------------------------------------------ the table
HEADER = '%-4s %-30s %7s %7s %5s %6s %9s %7s %7s %9s %8s %5s' % (
    'step', 'what', 'wall s', 'cpu s', 'py s', 'procs', 'evaluated', 'cached', 'reused',
    'vs today', 'cpu vs', 'load')


def table(data):
    setup = data['setup']
    lines = ['12. Evaluation reused across commits: %d hosts (%d import roles/web.nix), '
             '%.2f CPU s each + %.2f s shared; %s%s'
             % (setup['hosts'], setup['web_hosts'], setup['host_seconds'],
                setup['shared_seconds'], setup['nix'],
                '' if setup['record_module'] else '; no record/_record.py (no reuse yet)'),
             HEADER, '-' * len(HEADER)]
    today, today_cpu = data['rows'][0]['wall'], data['rows'][0]['cpu']
    for row in data['rows']:
        lines.append('%-4s %-30s %7.2f %7.2f %5.1f %6s %9d %7d %7d %8.2fx %7.2fx %5.1f' % (
            row['step'], row['label'][:30], row['wall'], row['cpu'], row.get('py_cpu', 0.0),
            row['processes'],
            row['evaluated'], row['cached'], row['reused'], row['wall'] / today,
            row['cpu'] / today_cpu, row.get('load', 0.0)))
    first, second = data['rows'][0], data['rows'][1]
    lines.append('')
    lines.append('recording (b vs a): %+.1f%% wall, %+.1f%% Nix CPU' % (
        100.0 * (second['wall'] / first['wall'] - 1), 100.0 * (second['cpu'] / first['cpu'] - 1)))
    yard = data['yardstick']
    step_c = [row for row in data['rows'] if row['step'] == 'c'][0]
    lines.append('f: pin alone %.2f s cold, %.2f s warm; one host alone %.2f s (its evaluation '
                 '%.2f s); c\'s yardstick 1.5 x %.2f + %.2f = %.2f s; c took %.2f s (%.2fx it)'
                 % (yard['pin_cold'], yard['pin_warm'], yard['one_host'], yard['one_eval'],
                    yard['one_eval'], yard['pin_cold'], yard['target'], step_c['wall'],
                    step_c['wall'] / yard['target']))
    for row in data['rows']:
        notes = []
        if row['evaluated_beyond'] and row['step'] != 'a':
            notes.append('evaluated beyond the %d it changed: %d (%s)' % (
                row['expected'], len(row['evaluated_beyond']), ranges(row['evaluated_beyond'])))
        for key, what in (('stale', 'STALE (answer should have changed)'),
                          ('changed_unexpected', 'changed unexpectedly'), ('failed', 'failed')):
            if row[key]:
                notes.append('%s: %s' % (what, shown(row[key])))
        if row.get('checked_mean') is not None:
            notes.append('reused hosts checked %.1f reads each on average' % row['checked_mean'])
        if row.get('cache_unusable'):
            notes.append('cache not used: %s' % row['cache_unusable'])
        if notes:
            lines.append('%s: %s' % (row['step'], '; '.join(notes)))
    return '\n'.join(lines)


def ranges(names):
    """``h001-h050, h053`` of a list of host names."""
    spans = []
    for name in sorted(names):
        number = int(name[1:])
        if spans and spans[-1][1] == number - 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ', '.join('h%03d' % a if a == b else 'h%03d-h%03d' % (a, b) for a, b in spans)


def shown(names, most=8):
    return ', '.join(names[:most]) + (' and %d more' % (len(names) - most)
                                      if len(names) > most else '')


# ------------------------------------------------------------------ main
def log_err(text):
    print(text, file=sys.stderr)
    sys.stderr.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.eval_reuse', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', type=int, default=HOSTS)
    parser.add_argument('--host-seconds', type=float, default=HOST_SECONDS,
                        help='CPU seconds of each host\'s own evaluation')
    parser.add_argument('--shared-seconds', type=float, default=SHARED_SECONDS,
                        help='CPU seconds of the shared part, once per Nix process')
    parser.add_argument('--repeat', type=int, default=1,
                        help='runs of a and b (the fastest of each is kept)')
    parser.add_argument('--workers', type=int, help='evaluators (default: the stage\'s own)')
    parser.add_argument('--changed-host',
                        help='the host whose file commit 2 changes (default: the one three '
                        'quarters down the fleet, h076 of 100)')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'eval_reuse.json'))
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        print(json.dumps({'stage': child_stage, 'pin': child_pin}[kind](spec)))
        return 0
    if args.hosts < 4:
        parser.error('--hosts: at least 4 (a quarter import the web role)')
    started = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    load = os.getloadavg()[0]
    if args.changed_host and args.changed_host not in host_names(args.hosts):
        parser.error('--changed-host: one of h001..%s' % host_names(args.hosts)[-1])
    data = run(args.hosts, args.host_seconds, args.shared_seconds, args.repeat, args.workers,
               args.changed_host, log=log_err)
    report(data, started, load, table, args.output)
    return 0


def report(data, started, load, table_of, output):
    """Print ``data``'s table (``table_of``) under the machine's figures
    and write it whole to ``output``."""
    data['machine'] = {'started': started, 'cores': os.cpu_count(),
                       'python': platform.python_version(), 'load_at_start': load,
                       'load_at_end': os.getloadavg()[0]}
    print('%s, %d cores, Python %s, load %.1f at start, %.1f at end' % (
        started, os.cpu_count(), platform.python_version(), load, os.getloadavg()[0]))
    print(table_of(data))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output + '.tmp', 'w') as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(output + '.tmp', output)
    print('\nwritten: %s' % os.path.relpath(output, os.getcwd()))


if __name__ == '__main__':
    sys.exit(main())
