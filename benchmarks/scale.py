# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 10: the deploy at fleet size (250 and 1,000 hosts) against the plain script.

On a scale lab (tests/lab/scale: light NixOS hosts, each with its own network
namespace, address, mount namespace, /nix and sshd started per connection),
for each N, the first N hosts:
  playbook   ansible-playbook nixdeploy.fleet.deploy -l @hosts (forks F; the
             repository's ansible.cfg: ControlPersist, pipelining) with the
             summary and report callbacks on, as users run it
  script     benchmarks/baseline_deploy.sh, the same Nix commands, F at a time
  handwritten  benchmarks/handwritten/deploy.yml (issue 45): the playbook an
             Ansible user writes by hand for the script's Nix commands
             (ansible.builtin only: one nix eval and one nix build on the
             controller, per host nix copy and the switch, no rollback), forks F
  before     with --before DIR: the same playbook run as ``playbook``, from
             another version of the collection (DIR/ansible_collections/
             nixdeploy/fleet, say `git archive` of an older commit), on the
             same lab in the same run: a change's cost, beside the code before it
each a full deploy (every host a new system) and then a no-op redeploy. Per
run: wall time, controller CPU (user + system of the run's process tree, and
for the playbook the ssh masters it leaves detached), controller peak memory
(sum of the PSS and of the RSS of that tree, sampled every 2 s), and for
the playbook the job events (per host), the summary lines and the HTML
report's size. Before the first N every host gets a first system from the
plain script (a warm-up: real fleets upgrade a running system, and the shared
paths - busybox, the kernel - are then on every host for both deployers), and
then, untimed, one from the playbook: a host's first deploy by the collection
sets up what its later ones reuse, which no timed run should pay alone.

    python -m benchmarks.scale                    N = 250 and 1,000, forks 50
    python -m benchmarks.scale --hosts 100        a quick run
    python -m benchmarks --only scale --scale-sizes 100
    python -m benchmarks.scale --hosts 1000 --failures 10 --cascade
                                                  then a deploy with 10 failing hosts
                                                  (its report rendered in Chromium) and
                                                  push against cascade
    python -m benchmarks.scale --before /tmp/old --repeat 2
                                                  this checkout against an older version,
                                                  alternated, ratio/before in the table
    python -m benchmarks.scale --repeat 3         every size three times, in alternated
                                                  order; the growth of the medians and
                                                  issue 64's verdict (_scale_growth.py)

Root; the lab takes slot 0 (bridge ndscale0, 10.213.252.0/22, up to 1,000 hosts)
or, when that is taken, slot 1 (up to 480).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from benchmarks._fleet import (BASELINE, CALLBACKS, PLAYBOOK, SSH_ARGS, BenchFleet,  # noqa: E402
                               RunError, load, phases)
from benchmarks._scale_measure import (PROFILE_RATE, profile_shares, profile_table,  # noqa: E402
                                       summary_lines, timed)
from benchmarks import _handwritten, _scale_cascade, _scale_growth, report_render  # noqa: E402
from benchmarks._cpu_groups import CpuGroups  # noqa: E402
from benchmarks._fork_count import ForkCounter  # noqa: E402
from tests.collection import ansible_env  # noqa: E402
from tests.deploy_fleet import prepare, write_inventory  # noqa: E402
from tests.lab.scale import ScaleLab  # noqa: E402

SIZES = (250, 1000)
PY_SPY = os.path.join(os.path.dirname(sys.executable), 'py-spy')
FORKS = 50
DEPLOYERS = ('playbook', 'script', 'handwritten')
# every deployer a run may have, in the order of its runs and rows: another
# version's playbook (--before) right after this checkout's
ORDER = ('playbook', 'before', 'script', 'handwritten')


class ScaleFleet(BenchFleet):
    """BenchFleet on a scale lab; the playbook runs with the summary, the
    report and the event counter on, and every run's memory is sampled."""

    # -e for every playbook run (--extra-vars)
    extra_vars = ''
    # the other version's collections path (--before), or None
    before_path = None

    # pylint: disable=super-init-not-called
    def __init__(self, name, hosts, workdir, forks=FORKS, log=print):
        self.workdir, self.forks = workdir, forks
        os.makedirs(workdir, exist_ok=True)
        self.lab = ScaleLab(name).up(hosts)
        self.groups = self.counter = None
        try:
            self._attach(name, hosts, log)
        except BaseException:
            # a failed step or a Ctrl-C before the benchmark's own try:
            # the lab goes, no namespace is left behind
            self.down()
            raise

    def _attach(self, name, hosts, log):
        """The fleet's flake and inventory on the lab that is up, and the
        counters of CPU and processes by side."""
        self.up_seconds, self.up_steps = self.lab.state['up_seconds'], self.lab.state['timings']
        self.up_memory = self.lab.state.get('memory_kb')
        log('  scale lab %s: %d hosts up in %.1f s %s'
            % (name, hosts, self.up_seconds, json.dumps(self.up_steps)))
        self.flake, self.secret = prepare(self.lab, os.path.join(self.workdir, 'flake'))
        self.inventory = write_inventory(os.path.join(self.workdir, 'inventory'), self.lab,
                                         self.flake, self.secret)
        # the controller's and the hosts' CPU apart (_cpu_groups): the
        # listener starts every host's sshd, so the hosts' work is its group's
        self.groups = CpuGroups.open('nixdeploy-bench-%d' % os.getpid())
        if self.groups:
            self.groups.join('targets', self.lab.state['listener_pid'])
        else:
            log('  scale: no cgroup to count CPU by (controller: wait4 and the ssh masters; '
                'hosts: not measured)')
        # the processes each side starts (the kernel's process events)
        self.counter = ForkCounter.open(self.groups)
        if self.groups and not self.counter:
            log('  scale: no process events connector: processes a host by side not counted')
        self.names = sorted(self.lab.hosts, key=lambda n: int(n[1:]))
        self.selected = list(self.names)
        self.runs = 0
        self.version = 0
        self.down_seconds = None

    def down(self):
        if getattr(self, 'counter', None):
            self.counter.close()
        if self.groups:
            self.groups.close()
        self.lab.down()
        self.down_seconds = getattr(self.lab, 'down_seconds', None)

    def active(self):
        # one nsenter per host is too slow at 1,000: read the files directly
        out = {}
        for name in self.selected:
            path = os.path.join(self.lab.host(name)['dir'], 'nix', 'var', 'lab', 'system',
                                'active')
            try:
                with open(path) as handle:
                    out[name] = handle.read().strip()
            except OSError:
                out[name] = None
        return out

    def playbook(self, forks, args=(), env=None, record=None, playbook=PLAYBOOK, profile=None,
                 check=True):
        """As BenchFleet.playbook; ``profile``: a file for py-spy's raw
        stacks of ansible-playbook and its forks (a run apart: sampling
        slows what it samples)."""
        extra = {'ANSIBLE_CONFIG': os.path.join(REPO, 'ansible.cfg'),
                 'ANSIBLE_FORKS': str(forks), 'ANSIBLE_SSH_ARGS': SSH_ARGS,
                 'ANSIBLE_PIPELINING': 'True'}
        extra.update(env or {})
        run_env = ansible_env(extra)
        number = self.runs + 1
        times = os.path.join(self.workdir, 'times-%d.json' % number)
        events = os.path.join(self.workdir, 'events-%d.json' % number)
        report = os.path.join(self.workdir, 'report-%d' % number)
        run_env.update(NIXDEPLOY_BENCH_TIMES=times, NIXDEPLOY_BENCH_EVENTS=events,
                       NIXDEPLOY_REPORT_DIR=report,
                       ANSIBLE_CALLBACK_PLUGINS=CALLBACKS + os.pathsep
                       + run_env['ANSIBLE_CALLBACK_PLUGINS'],
                       ANSIBLE_CALLBACKS_ENABLED='task_times,scale_events,'
                                                 'nixdeploy.fleet.summary,nixdeploy.fleet.report')
        # the selection as a file: 1,000 names are too long for one argument
        limit = os.path.join(self.workdir, 'limit-%d' % len(self.selected))
        with open(limit, 'w') as handle:
            handle.write('\n'.join(self.selected) + '\n')
        argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                '-i', self.inventory, playbook, '-l', '@' + limit] + list(args)
        if self.extra_vars:
            argv += ['-e', self.extra_vars]
        if profile:
            # --gil: samples of Python code running (holding the GIL), not
            # of waits (the strategy's poll sleep, a fork waiting on ssh)
            argv = [PY_SPY, 'record', '--subprocesses', '--nonblocking', '--gil', '--rate', str(PROFILE_RATE),
                    '--format', 'raw', '--full-filenames', '--output', profile, '--'] + argv
        log = self._log('playbook')
        # a control path folder of the run's own, as AWX gives each job
        # (private_data_dir/cp): no run rides the masters of the one before
        folder = run_env.setdefault('ANSIBLE_SSH_CONTROL_PATH_DIR',
                                    os.path.join(self.workdir, 'cp-%d' % number))
        os.makedirs(folder, exist_ok=True)
        result = timed(argv, env=run_env, cwd=self.workdir, log=log, folder=folder,
                       groups=self.groups, counter=self.counter)
        if check and result['rc'] != 0:
            raise RunError('the deploy playbook failed (rc %s), see %s' % (result['rc'], log))
        result['phases'] = phases(times, result)
        result['phases'].pop('done', None)
        try:
            with open(events) as handle:
                result['events'] = json.load(handle)
        except (OSError, ValueError):
            result['events'] = None
        result['summary_lines'] = summary_lines(log)
        result['report'] = dict((name, os.path.getsize(os.path.join(report, name)))
                                for name in ('nixdeploy-report.html', 'nixdeploy-report.json')
                                if os.path.exists(os.path.join(report, name)))
        return result

    def before(self, forks):
        """``playbook``, from the collection under ``before_path`` (an
        ``ansible_collections`` tree's parent folder) instead of this checkout."""
        return self.playbook(forks, env={'ANSIBLE_COLLECTIONS_PATH': self.before_path})

    def baseline(self, parallel, trace=False, script=BASELINE):
        """``script`` (benchmarks/baseline_deploy.sh, or another plain script
        of the same arguments) on the selected hosts, ``parallel`` at a time."""
        plan = os.path.join(self.workdir, 'baseline-hosts')
        with open(plan, 'w') as handle:
            for name in self.selected:
                host = self.lab.host(name)
                handle.write('%s %s %s %s\n' % (name, host['address'], host['ssh_user'],
                                                self.flake.attr(name)))
        log = self._log('baseline')
        result = timed(['sh', script, self.flake.ref, plan, str(parallel), self.lab.key,
                        self.lab.known_hosts], log=log, groups=self.groups, counter=self.counter)
        if result['rc'] != 0:
            raise RunError('the baseline script failed (rc %s), see %s' % (result['rc'], log))
        return result

    def _plan(self):
        return [(name, self.lab.host(name)['address'], self.lab.host(name)['ssh_user'],
                 self.flake.attr(name)) for name in self.selected]

    def handwritten(self, forks, playbook=_handwritten.PLAYBOOK):
        """benchmarks/handwritten/deploy.yml (or ``playbook``, another of that
        folder) on the selected hosts, with its
        static inventory, forks ``forks`` and the same ssh settings, control
        path folder of its own and accounting as ``playbook``; the job events
        counted, no other callback but the default output."""
        inventory = _handwritten.write_inventory(
            os.path.join(self.workdir, 'handwritten-hosts-%d.yml' % len(self.selected)),
            self._plan(), self.flake.ref, self.lab.key, self.lab.known_hosts)
        run_env = ansible_env({'ANSIBLE_CONFIG': _handwritten.CONFIG,
                               'ANSIBLE_FORKS': str(forks), 'ANSIBLE_SSH_ARGS': SSH_ARGS,
                               'ANSIBLE_PIPELINING': 'True'})
        number = self.runs + 1
        events = os.path.join(self.workdir, 'events-%d.json' % number)
        run_env.update(NIXDEPLOY_BENCH_EVENTS=events, ANSIBLE_CALLBACK_PLUGINS=CALLBACKS,
                       ANSIBLE_CALLBACKS_ENABLED='scale_events')
        argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                '-i', inventory, playbook]
        log = self._log('handwritten')
        folder = os.path.join(self.workdir, 'cp-%d' % number)
        run_env['ANSIBLE_SSH_CONTROL_PATH_DIR'] = folder
        os.makedirs(folder, exist_ok=True)
        result = timed(argv, env=run_env, cwd=self.workdir, log=log, folder=folder,
                       groups=self.groups, counter=self.counter)
        if result['rc'] != 0:
            raise RunError('the hand-written playbook failed (rc %s), see %s' % (result['rc'], log))
        try:
            with open(events) as handle:
                result['events'] = json.load(handle)
        except (OSError, ValueError):
            result['events'] = None
        return result

    def expected(self):
        """{host: the store path of its system} of the selected hosts, by one
        nix eval (the script's own expression), outside any measured run."""
        attrs = ' '.join(json.dumps(self.flake.attr(name)) for name in self.selected)
        apply = ('f: map (a: (builtins.foldl\' (s: n: s.${n}) f (builtins.filter '
                 'builtins.isString (builtins.split "[.]" a))).outPath) [ %s ]' % attrs)
        proc = subprocess.run(['nix', '--extra-experimental-features', 'nix-command flakes',
                               '--option', 'substituters', '', 'eval', '--json',
                               self.flake.ref + '#""', '--apply', apply],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise RunError('nix eval of the expected systems failed: %s' % proc.stderr[-2000:])
        return dict(zip(self.selected, json.loads(proc.stdout)))

    def profiles(self):
        """{host: the store path its system profile points to}, read in its folder."""
        return dict((name, _handwritten.profile_target(self.lab.host(name)['dir']))
                    for name in self.selected)

    def check_state(self, expected, what):
        """Every selected host active on, and its system profile set to, its
        ``expected`` system: the state the script leaves."""
        wrong = _handwritten.state_mismatches(expected, self.active(), self.profiles())
        if wrong:
            raise RunError('after the %s, %d hosts are not as the script leaves them: %s' % (
                what, len(set(w[0] for w in wrong)), ', '.join('%s %s %s' % w for w in wrong[:5])))


def _deploy(fleet, deployer):
    """A new system on every selected host, then the no-op redeploy; after
    each, every host runs the new system and its system profile points to it
    (the state the script leaves)."""
    fleet.new_version()
    before = fleet.active()
    expected = fleet.expected()
    run = getattr(fleet, deployer)
    first = run(fleet.forks)
    fleet.deployed(before)
    fleet.check_state(expected, '%s deploy' % deployer)
    after = fleet.active()
    second = run(fleet.forks)
    if fleet.active() != after:
        raise RunError('a no-op %s redeploy changed what is active' % deployer)
    fleet.check_state(expected, '%s no-op' % deployer)
    return {'deploy': first, 'noop': second}


def ratios(row, top='playbook', base='script', suffix=''):
    """row['<phase>_<measure><suffix>_ratio'] = top / base, for the deploy
    and the no-op: wall, controller CPU, hosts' CPU."""
    for phase in ('deploy', 'noop'):
        for measure in ('wall', 'cpu', 'targets_cpu'):
            low = row[base][phase].get(measure)
            high = row[top][phase].get(measure)
            row['%s_%s%s_ratio' % (phase, measure, suffix)] = (
                high / low if low and high is not None else None)
    return row


def run(fleet, sizes, log=print, partial=None, profile=False, deployers=DEPLOYERS, repeat=1):
    """{'rows': [{n, round, playbook: {deploy, noop}, script: {...}, handwritten: {...},
    ratios (playbook / script; '_hw': playbook / handwritten)}], 'growth': ...};
    ``partial(data)`` after each size (a long run keeps what it measured);
    ``profile``: after the smallest size, one more deploy and no-op of it
    under py-spy; ``repeat``: rounds of every size, their order and the
    deployers' alternated from round to round (``_scale_growth``)."""
    rows, data = [], {}
    fleet.select(max(sizes))
    started = time.monotonic()
    fleet.new_version()
    fleet.baseline(fleet.forks)
    by_playbook = any(deployer != 'script' for deployer in deployers)
    if by_playbook:
        # and a first deploy by the collection, untimed: a host's first one
        # sets up what later deploys reuse (the copy's GC root, the
        # activation's state folder and its reserve: about nine processes a
        # host), and that cost would fall on whichever version came first
        fleet.new_version()
        fleet.playbook(fleet.forks)
    warmup = round(time.monotonic() - started, 1)
    log('  scale warm-up: a first system on %d hosts by the script%s in %.1f s'
        % (max(sizes), ', then by the playbook' if by_playbook else '', warmup))
    for number in range(repeat):
        for size, order in _scale_growth.round_order(sizes, deployers, number):
            rows.append(_size_row(fleet, size, order, number, log))
            if profile and number == 0 and size == min(sizes):
                data['profile'] = profiled(fleet, size, log=log)
            data.update({'rows': rows, 'forks': fleet.forks, 'warmup': warmup, 'repeat': repeat,
                         'growth': _scale_growth.growth(rows, deployers),
                         'lab': {'hosts': len(fleet.names), 'up_seconds': fleet.up_seconds,
                                 'up_steps': fleet.up_steps, 'memory_kb': fleet.up_memory}})
            if partial:
                partial(data)
    return data


def _size_row(fleet, size, deployers, number, log):
    """One size's row of one round: each deployer's deploy and no-op."""
    fleet.select(size)
    row = {'n': size, 'round': number, 'load_before': load()}
    for deployer in deployers:
        row[deployer] = _deploy(fleet, 'baseline' if deployer == 'script' else deployer)
        log('  scale N=%d %-8s deploy %.1f s (cpu %.1f, hosts %s), no-op %.1f s (cpu %.1f, '
            'hosts %s)' % (
                size, deployer, row[deployer]['deploy']['wall'], row[deployer]['deploy']['cpu'],
                _seconds(row[deployer]['deploy'], 'targets_cpu'), row[deployer]['noop']['wall'],
                row[deployer]['noop']['cpu'], _seconds(row[deployer]['noop'], 'targets_cpu')))
    ratios(row)
    # the collection against the hand-written playbook (issue 45)
    if 'handwritten' in row:
        ratios(row, base='handwritten', suffix='_hw')
    # this checkout against the version before a change (--before)
    if 'before' in row:
        ratios(row, base='before', suffix='_before')
    row['load_after'] = load()
    return row


def profiled(fleet, size, log=print):
    """One more deploy (a new system) and no-op of ``size`` hosts under py-spy."""
    fleet.select(size)
    out = {'n': size}
    fleet.new_version()
    for phase in ('deploy', 'noop'):
        raw = os.path.join(fleet.workdir, 'profile-%d-%s.txt' % (size, phase))
        result = fleet.playbook(fleet.forks, profile=raw)
        out[phase] = {'wall': result['wall'], 'cpu': result['cpu'], 'raw': raw,
                      'shares': profile_shares(raw)}
        log('  scale profile N=%d %s: %.1f s under py-spy, %s' % (
            size, phase, result['wall'], json.dumps(out[phase]['shares'])))
    return out


def failures_run(fleet, size, bad, log=print):
    """A deploy of ``size`` hosts of which ``bad`` (spread over the fleet) get
    a system whose activation fails: the report a reader opens after a real
    rollout, rendered in headless Chromium (figures, and a screenshot of its
    first screen beside the report)."""
    fleet.select(size)
    step = max(1, size // bad)
    failing = [fleet.selected[i] for i in range(step // 2, size, step)][:bad]
    fleet.new_version()
    for name in failing:
        fleet.flake.set_config(fleet.flake.config_of(name), behaviour='fail')
    try:
        result = fleet.playbook(fleet.forks, check=False)
    finally:
        fleet.flake.set_all(behaviour='ok')
    report = os.path.join(fleet.workdir, 'report-%d' % fleet.runs, 'nixdeploy-report.html')
    out = {'n': size, 'bad': failing, 'wall': result['wall'], 'rc': result['rc'],
           'report_bytes': os.path.getsize(report) if os.path.exists(report) else None,
           'report': report}
    try:
        out['render'] = report_render.render(report, png_path=report[:-len('.html')] + '.png',
                                             runs=3)
    except report_render.ChromiumMissing as exc:
        out['render'] = {'skipped': u'%s' % exc}
    log('  scale failures N=%d: %d bad hosts, rc %s, %.1f s; render %s' % (
        size, len(failing), result['rc'], result['wall'], json.dumps(
            dict((k, v) for k, v in out['render'].items() if k.endswith('_ms') or k == 'skipped'))))
    return out


def failures_table(cell):
    render = cell.get('render') or {}
    if 'skipped' in render:
        shown = 'render skipped: %s' % render['skipped']
    else:
        shown = ('first contentful paint %s ms, load %s ms, browser CPU %s ms, page %s px'
                 % (render.get('fcp_ms'), render.get('load_ms'), render.get('cpu_ms'),
                    render.get('height')))
    return ('10b. The report of a %d-host deploy with %d failing hosts (rolled back): %.0f KB HTML; %s\n'
            '     screenshot: %s' % (cell['n'], len(cell['bad']), (cell['report_bytes'] or 0) / 1024.0,
                                     shown, cell['report'][:-len('.html')] + '.png'))


def _ratio(value):
    return '%.2fx' % value if value else '-'


def _seconds(run, key):
    return '%.1f' % run[key] if run.get(key) is not None else '-'


def _per_host(run, group, hosts):
    started = (run.get('started') or {}).get(group)
    return '%.0f' % (started / float(hosts)) if started is not None else '-'


def table(data):
    deployers = [d for d in ORDER if any(d in row for row in data['rows'])]
    lines = ['10. Scale: deploy playbook vs plain script%s at fleet size (forks and script '
             'parallelism %d)' % (' vs hand-written playbook' if 'handwritten' in deployers
                                  else '', data['forks']),
             '%5s  %-11s %8s %7s %7s %8s %7s %7s %7s %7s %6s %6s %5s %8s' % (
                 'N', 'deployer', 'deploy s', 'cpu s', 'host s', 'no-op s', 'cpu s', 'host s',
                 'PSS MB', 'RSS MB', 'ev', 'ev/h', 'summ', 'html KB')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        for deployer in deployers:
            cell = row[deployer]
            deploy, noop = cell['deploy'], cell['noop']
            peak = max(deploy['memory']['pss_mb'], noop['memory']['pss_mb'])
            peak_rss = max(deploy['memory']['rss_mb'], noop['memory']['rss_mb'])
            events = (deploy.get('events') or {}).get('events')
            html = (deploy.get('report') or {}).get('nixdeploy-report.html')
            lines.append('%5d  %-11s %8.1f %7.1f %7s %8.1f %7.1f %7s %7.0f %7.0f %6s %6s %5s %8s' % (
                row['n'], deployer, deploy['wall'], deploy['cpu'], _seconds(deploy, 'targets_cpu'),
                noop['wall'], noop['cpu'], _seconds(noop, 'targets_cpu'),
                peak, peak_rss, events if events is not None else '',
                '%.1f' % (float(events) / row['n']) if events is not None else '',
                deploy.get('summary_lines', ''), '%.0f' % (html / 1024.0) if html else ''))
        for label, suffix in (('ratio', ''), ('ratio/hw', '_hw'), ('ratio/before', '_before')):
            if 'deploy_wall%s_ratio' % suffix not in row:
                continue
            lines.append('%5s  %-11s %8s %7s %7s %8s %7s %7s' % (
                '', label, _ratio(row['deploy_wall%s_ratio' % suffix]),
                _ratio(row['deploy_cpu%s_ratio' % suffix]),
                _ratio(row.get('deploy_targets_cpu%s_ratio' % suffix)),
                _ratio(row['noop_wall%s_ratio' % suffix]),
                _ratio(row['noop_cpu%s_ratio' % suffix]),
                _ratio(row.get('noop_targets_cpu%s_ratio' % suffix))))
    if 'handwritten' in deployers:
        lines.append('ratio: playbook / script; ratio/hw: playbook / handwritten '
                     '(benchmarks/handwritten/deploy.yml)')
    if 'before' in deployers:
        lines.append('ratio/before: playbook (this checkout) / before (the collection of '
                     '--before, %s)' % data.get('before'))
    idle = ['N=%d %s' % (row['n'], ', '.join(
        '%s %s %s' % (deployer, phase, _seconds(row[deployer][phase], 'idle'))
        for deployer in deployers if deployer in row for phase in ('deploy', 'noop')))
        for row in data['rows']]
    lines.append('cpu s: the deployer\'s (every process it started, ssh masters included); '
                 'host s: the lab hosts\' (sshd, Nix, activations) meanwhile; both on the same '
                 'cores. Idle CPU seconds of the machine during each run: ' + '; '.join(idle))
    started = ['N=%d %s' % (row['n'], ', '.join(
        '%s %s %s' % (deployer, phase, '%.0f' % (row[deployer][phase]['processes'] / float(row['n']))
                      if row[deployer][phase].get('processes') is not None else '-')
        for deployer in deployers if deployer in row for phase in ('deploy', 'noop')))
        for row in data['rows']]
    lines.append('Processes started a host (controller and hosts, the whole machine): '
                 + '; '.join(started))
    sides = ['N=%d %s' % (row['n'], ', '.join(
        '%s %s %s/%s' % (deployer, phase, _per_host(row[deployer][phase], 'controller', row['n']),
                         _per_host(row[deployer][phase], 'targets', row['n']))
        for deployer in deployers if deployer in row for phase in ('deploy', 'noop')))
        for row in data['rows'] if any(row[d]['deploy'].get('started') for d in deployers
                                       if d in row)]
    if sides:
        lost = sum(row[d][phase].get('started_lost') or 0 for row in data['rows']
                   for d in deployers if d in row for phase in ('deploy', 'noop'))
        lines.append('Processes started a host, controller/hosts (process events by control '
                     'group, threads left out%s): ' % (
                         '; %d event reads lost' % lost if lost else '') + '; '.join(sides))
    columns = ('startup', 'eval', 'build', 'copy', 'activate', 'confirm', 'other')
    lines += ['', "where the playbook's time goes (s; startup = Python + inventory plugin):",
              '%5s  %-7s ' % ('N', 'run') + ' '.join('%8s' % c for c in columns)]
    for row in data['rows']:
        for phase in ('deploy', 'noop'):
            cell = row['playbook'][phase].get('phases') or {}
            lines.append('%5d  %-7s ' % (row['n'], 'no-op' if phase == 'noop' else phase)
                         + ' '.join('%8.1f' % cell.get(c, 0) for c in columns))
    mains = ['N=%d %.1f s deploy, %.1f s no-op' % (
        row['n'], row['playbook']['deploy']['memory']['main_cpu'],
        row['playbook']['noop']['memory']['main_cpu'])
        for row in data['rows'] if 'main_cpu' in row['playbook']['deploy']['memory']]
    if mains:
        lines.append("CPU of ansible-playbook's main process (the strategy loop): " + ', '.join(mains))
    lab = data['lab']
    lines.append('')
    lines.append('lab: %d hosts up in %.1f s (%s), down in %s s; warm-up (script) %.1f s' % (
        lab['hosts'], lab['up_seconds'],
        ', '.join('%s %.1f' % (k, v) for k, v in sorted(lab['up_steps'].items()) if k != 'total'),
        '%.1f' % lab['down_seconds'] if lab.get('down_seconds') is not None else '-',
        data['warmup']))
    memory = lab.get('memory_kb')
    if memory:
        lines.append('lab memory once up: %.0f MB less available (%.0f KB a host), slab %+.0f MB, '
                     'the listener %.0f MB PSS' % (
                         memory['MemAvailable'] / 1024.0, memory['MemAvailable'] / float(lab['hosts']),
                         memory['Slab'] / 1024.0, memory['listener_pss'] / 1024.0))
    lines.append('goals (issue 37, at N = 1,000): deploy at most 1.1x the script\'s wall, '
                 'no-op at most 0.8x')
    for row in data['rows']:
        lines.append('  N=%d: deploy %s (%s), no-op %s (%s)' % (
            row['n'], _ratio(row['deploy_wall_ratio']),
            'met' if (row['deploy_wall_ratio'] or 99) <= 1.1 else 'NOT met',
            _ratio(row['noop_wall_ratio']),
            'met' if (row['noop_wall_ratio'] or 99) <= 0.8 else 'NOT met'))
    if data.get('growth'):
        lines += _scale_growth.table(data['growth'], data.get('repeat', 1))
    if data.get('profile'):
        lines.append(profile_table(data['profile']))
    return '\n'.join(lines)


def versions():
    out = {'python': platform.python_version(), 'kernel': platform.release()}
    for name, argv in (('nix', ['nix', '--version']), ('openssh', ['ssh', '-V']),
                       ('ansible-core', [os.path.join(os.path.dirname(sys.executable),
                                                      'ansible-playbook'), '--version'])):
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  universal_newlines=True, check=False)
            out[name] = proc.stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            out[name] = None
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.scale', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', default=','.join(str(s) for s in SIZES),
                        help='comma list of fleet sizes (default 250,1000; at most 1000)')
    parser.add_argument('--forks', type=int, default=FORKS,
                        help='forks of the playbook and parallel jobs of the script')
    parser.add_argument('--profile', action='store_true',
                        help='then one more deploy and no-op of the smallest size under py-spy '
                             '(pip install py-spy into the venv)')
    parser.add_argument('--failures', type=int, default=0,
                        help='then a deploy of the largest size in which this many hosts get a '
                             'system that fails (rolled back), and its HTML report rendered in '
                             'headless Chromium (benchmarks/report_render.py)')
    parser.add_argument('--cascade', action='store_true',
                        help='then push against cascade on the largest size '
                             '(benchmarks/_scale_cascade.py)')
    parser.add_argument('--deployers', default=','.join(DEPLOYERS),
                        help='comma list of the deployers to run (default: %(default)s; '
                             'playbook and script are always run)')
    parser.add_argument('--before', metavar='DIR',
                        help='also run the playbook from the collection at '
                             'DIR/ansible_collections/nixdeploy/fleet (another version), '
                             'alternated with this checkout on the same lab')
    parser.add_argument('--repeat', type=int, default=1,
                        help='rounds of every size, in alternated order (default 1); the '
                             'growth is then taken between the medians')
    parser.add_argument('--lab', default='scale', help='name of the scale lab (up, then down)')
    parser.add_argument('--extra-vars', default='',
                        help="-e for every playbook run, e.g. 'nix_probe_timeout=0' (the "
                             "deploy without its login probe)")
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'scale.json'))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the scale lab needs root')
    sizes = sorted(set(int(s) for s in args.hosts.split(',') if s.strip()))
    if args.repeat < 1:
        parser.error('--repeat: at least 1 round')
    if args.before and not os.path.isdir(os.path.join(args.before, 'ansible_collections',
                                                      'nixdeploy', 'fleet', 'plugins')):
        parser.error('--before: no collection at %s/ansible_collections/nixdeploy/fleet'
                     % args.before)
    results = {'started': datetime.datetime.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'),
               'machine': {'cores': os.cpu_count(), 'load_at_start': load(),
                           'memory_gb': round(os.sysconf('SC_PAGE_SIZE')
                                              * os.sysconf('SC_PHYS_PAGES') / 2 ** 30, 1)},
               'versions': versions()}
    if args.profile and not os.path.exists(PY_SPY):
        parser.error('--profile needs py-spy in the venv: %s' % PY_SPY)
    workdir = os.path.join(os.path.dirname(args.output), 'work-scale')
    started = time.monotonic()

    def partial(data):
        results['table'] = data
        write(args.output + '.partial', results)
    fleet = ScaleFleet(args.lab, max(sizes), workdir, forks=args.forks, log=log)
    fleet.extra_vars = args.extra_vars
    fleet.before_path = args.before and os.path.abspath(args.before)
    try:
        # 'before' only with --before, which names its collection
        asked = set(d.strip() for d in args.deployers.split(',')) - {'before'}
        asked |= {'playbook', 'script'} | ({'before'} if args.before else set())
        deployers = [d for d in ORDER if d in asked]
        data = run(fleet, sizes, log=log, partial=partial, profile=args.profile,
                   deployers=deployers, repeat=args.repeat)
        data['before'] = fleet.before_path
        if args.failures:
            data['failures'] = failures_run(fleet, max(sizes), args.failures, log=log)
            partial(data)
        if args.cascade:
            fleet.select(max(sizes))
            data['cascade'] = _scale_cascade.measure(fleet, log=log)
            partial(data)
    finally:
        fleet.down()
    data['lab']['down_seconds'] = fleet.down_seconds
    results['table'] = data
    results['seconds'] = round(time.monotonic() - started, 1)
    results['machine']['load_at_end'] = load()
    print(header(results))
    print(table(data))
    if data.get('failures'):
        print('\n' + failures_table(data['failures']))
    if data.get('cascade'):
        print('\n' + _scale_cascade.table(data['cascade']))
    write(args.output, results)
    print('\nwritten: %s' % os.path.relpath(args.output, os.getcwd()))
    return 0


def write(path, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
    os.rename(path + '.tmp', path)


def header(results):
    ver = results['versions']
    return ('nixdeploy.fleet scale benchmark, %s; %d cores, %.0f GB; load %.1f at start, %.1f at '
            'end; %.0f s\n%s; %s; %s; Python %s; kernel %s\n' % (
                results['started'], results['machine']['cores'], results['machine']['memory_gb'],
                results['machine']['load_at_start'], results['machine']['load_at_end'],
                results['seconds'], ver.get('ansible-core'), ver.get('nix'), ver.get('openssh'),
                ver.get('python'), ver.get('kernel')))


def log(text):
    print(text, file=sys.stderr)
    sys.stderr.flush()


if __name__ == '__main__':
    sys.exit(main())
