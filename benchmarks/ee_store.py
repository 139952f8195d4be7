# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 9: what an AWX job costs after a one-host change, by where the
execution environment's (EE) Nix store lives (issue 36).

N NixOS lab hosts (default 6) run real-sized systems (the fixture of table 7:
1,994 paths, 210 MB each, all but a few KB shared). The project is a git
repository as AWX checks one out (tests/deploy_fleet.py write_project), each
job a depth-1 clone of it. A job is the EE image run the way the EE tests run
it (tests/integration/test_execution_environment.py): ``podman run`` as
1000650000:0 with the private data dir at /runner, HOME=/runner,
``--passwd=false``, the lab reached with ``--net=host``, the deploy key
loaded into an ssh-agent as ansible-runner does, then ``ansible-playbook -i
inventory/fleet.nix.yml deploy.yml`` in /runner/project.

"CI" (this machine, outside the EE) runs ``nixdeploy.fleet.publish`` on every
commit: each system built and pushed, signed, to a file:// binary cache
(docs/publish.md). Untimed in the job rows; its seconds are printed beside.

First (untimed as a row, printed as "first job"): the whole fleet deployed
by one job with an empty volume at /nix. Then, for each setup, h1's
configuration changes (a new version: its own files and system, a few KB),
the change is committed and published, and one job deploys the fleet:

  image        the store in the image: a fresh container, an empty store
  volume       a persistent store: the folder of group 0 the first job filled,
               mounted at /nix (a PersistentVolumeClaim with fsGroup 0)
  cache        the store in the image, substituting from the publish role's
               cache: nix_options substituters = the cache, its key trusted,
               max-jobs = 0 (the job builds nothing)
  cache-hosts  the same cache, nix_copy_mode=cache: the hosts fetch from it,
               and the job skips its build (--skip-tags build): it evaluates
               and asks the cache, nothing lands in its store but the
               evaluation's own files

Measured per job: the playbook's wall time inside the container (and the
container's, start to exit), its phases (task_times callback), the store
paths the job added and their NAR bytes, split into fetched (substituted:
not "ultimate"), built (ultimate, with a deriver) and written by evaluation
(text files and derivations: ``builtins.toFile``, the flake's source, .drv),
from ``nix path-info --all --json`` before and after the playbook; and the
bytes the job sent on the lab's links (everything: ssh, Nix, Ansible).

    python -m benchmarks.ee_store                 6 hosts, every setup
    python -m benchmarks.ee_store --hosts 4 --setups image,volume

Root needed (the lab, podman); the EE image must exist (``make ee``). The lab
(``--lab``, default ``ees``) is downed at the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks._fleet import CALLBACKS, REPO, RunError, load, phases, timed
from benchmarks.real_size import REAL_SIZE
from tests.collection import ansible_env
from tests.deploy_fleet import commit_project, git, write_inventory, write_project
from tests.lab import Lab
from tests.lab.links import Links

SETUPS = ('image', 'volume', 'cache', 'cache-hosts')
IMAGE = os.environ.get('NIXDEPLOY_EE_IMAGE', 'localhost/nixdeploy-fleet-ee:latest')
CONTAINERS_CONF = os.path.join(REPO, 'ee', 'containers.conf')
# AWX's container group UID (OpenShift's restricted policy): any UID, group 0
JOB_UID = 1000650000
# the shared part's seed of this benchmark (built once per machine by "CI")
KNOBS = dict(REAL_SIZE, eval_seed='ee-store', extra_seed='ee-store')
# In the container: the store before and after the playbook, the playbook's
# own wall time, the deploy key in an agent as ansible-runner loads env/ssh_key.
JOB_SCRIPT = r"""
nix path-info --all --json >/runner/store-before.json
t0=$(date +%s.%N)
ssh-agent sh -c 'ssh-add /runner/env/ssh_key 2>/dev/null &&
    exec ansible-playbook -i inventory/fleet.nix.yml deploy.yml -e @/runner/env/extravars "$@"' \
    sh "$@" >/runner/playbook.log 2>&1
rc=$?
t1=$(date +%s.%N)
nix path-info --all --json >/runner/store-after.json
echo "$t0 $t1 $rc" >/runner/times
exit $rc
"""


def podman(*argv, **kwargs):
    env = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)
    return subprocess.run(['podman'] + list(argv), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                          **kwargs)


def path_infos(text):
    """{path: info} of ``nix path-info --json`` (a list before Nix 2.19, a map after)."""
    data = json.loads(text or '{}')
    if isinstance(data, dict):
        return dict((p, i) for p, i in data.items() if i)
    return dict((i['path'], i) for i in data)


def classify(before, after):
    """What a job added to its store: {kind: [paths, NAR bytes]} for built
    (Nix marks what it built "ultimate"), fetched (substituted: it carries the
    cache's signatures) and eval (what evaluation added: ``builtins.toFile``
    files, the flake's source, .drv files; neither built nor signed)."""
    out = {'fetched': [0, 0], 'built': [0, 0], 'eval': [0, 0]}
    for path, info in after.items():
        if path in before:
            continue
        if info.get('ultimate'):
            kind = 'built'
        elif info.get('signatures'):
            kind = 'fetched'
        else:
            kind = 'eval'
        out[kind][0] += 1
        out[kind][1] += info.get('narSize', 0)
    return out


class StoreFleet:
    """The lab, the project repository, the "CI" (publish to a file:// cache)
    and the EE jobs, each in a private data dir of its own under ``workdir``."""

    def __init__(self, name, hosts, workdir, collections=None):
        self.workdir, self.collections = workdir, collections
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        self.lab = Lab(name).up(hosts, personas=['nixos'])
        try:
            self.names = sorted(self.lab.hosts, key=lambda n: int(n[1:]))
            self.upstream = os.path.join(workdir, 'infra')
            configurations = dict((n, dict(KNOBS)) for n in self.names)
            self.flake, self.secret = write_project(self.upstream, self.lab,
                                                    configurations=configurations,
                                                    key_dir=os.path.join(workdir, 'keys'))
            with open(self.secret + '.pub') as handle:
                self.public = handle.read().strip()
            # what CI deploys from: the same repository, the lab's key and known_hosts
            self.ci_inventory = write_inventory(os.path.join(workdir, 'ci-inventory'), self.lab,
                                                self.flake, self.secret)
        except Exception:
            self.lab.down()
            raise
        self.links = Links(self.lab)
        self.cache = os.path.join(workdir, 'cache')
        self.channels = os.path.join(workdir, 'channels.git')
        git(workdir, 'init', '-q', '--bare', self.channels)
        # the persistent store: an empty folder of group 0, as fsGroup 0 gives a claim
        self.volume = os.path.join(workdir, 'nix-volume')
        os.makedirs(self.volume)
        os.chown(self.volume, -1, 0)
        os.chmod(self.volume, 0o2775)
        self.jobs = 0

    def down(self):
        self.lab.down()

    def active(self):
        return dict((n, self.lab.active(n)) for n in self.names)

    def change(self, host, version):
        """A new version of ``host``'s configuration, committed."""
        self.flake.set_config(self.flake.config_of(host), version=version)
        return commit_project(self.upstream, '%s: %s' % (host, version))

    def publish(self):
        """CI: nixdeploy.fleet.publish of the commit to the cache; seconds."""
        # zstd, as caches serve NARs (the bulk here is random bytes: no gain, little cost)
        extra = {'nix_publish_cache': 'file://%s?compression=zstd' % self.cache,
                 'nix_channel_repo': self.channels,
                 'nix_publish_gc_root_dir': os.path.join(self.workdir, 'roots')}
        log = os.path.join(self.workdir, 'publish-%d.log' % (self.jobs + 1))
        run = timed([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i',
                     self.ci_inventory, 'nixdeploy.fleet.publish', '-e', json.dumps(extra)],
                    env=ansible_env(), cwd=self.workdir, log=log)
        if run['rc'] != 0:
            raise RunError('the publish playbook failed (rc %s), see %s' % (run['rc'], log))
        return run['wall']

    def job(self, setup, label):
        """One AWX-like job in the EE; the figures of ``measure``."""
        self.jobs += 1
        private = os.path.join(self.workdir, 'jobs', '%02d-%s' % (self.jobs, label))
        os.makedirs(os.path.join(private, 'env'))
        # AWX's project: a depth-1 clone of the revision
        git(self.workdir, 'clone', '-q', '--depth', '1', '--branch', 'main',
            'file://%s' % self.upstream, os.path.join(private, 'project'))
        key = os.path.join(private, 'env', 'ssh_key')
        shutil.copy(self.lab.key, key)
        os.chmod(key, 0o600)
        extravars = {'awx_job_id': self.jobs, 'awx_job_template_name': 'nix deploy'}
        options, args = [], []
        if setup == 'volume':
            options += ['-v', '%s:/nix' % self.volume]
        if setup in ('cache', 'cache-hosts'):
            # the same path inside: the hosts read it from this machine's disk (a
            # cache near them), the job asks it for the closures
            options += ['-v', '%s:%s:ro' % (self.cache, self.cache)]
            extravars['nix_options'] = {'substituters': 'file://%s' % self.cache,
                                        'trusted-public-keys': self.public, 'max-jobs': 0}
        if setup == 'cache-hosts':
            extravars.update(nix_copy_mode='cache', nix_caches=['file://%s' % self.cache])
            args += ['--skip-tags', 'build']
        with open(os.path.join(private, 'env', 'extravars'), 'w') as handle:
            json.dump(extravars, handle)
        if self.collections:
            # a collection tree (DIR/ansible_collections/nixdeploy/fleet) before the image's
            options += ['-v', '%s:/bench-collections:ro' % self.collections,
                        '-e', 'ANSIBLE_COLLECTIONS_PATH=/bench-collections']
        # the benchmark's phase timer, read-only beside the job's files
        options += ['-v', '%s:/bench-callbacks:ro' % CALLBACKS,
                    '-e', 'ANSIBLE_CALLBACK_PLUGINS=/bench-callbacks',
                    '-e', 'ANSIBLE_CALLBACKS_ENABLED=task_times,nixdeploy.fleet.summary',
                    '-e', 'NIXDEPLOY_BENCH_TIMES=/runner/times.json']
        for root, dirs, files in os.walk(private):
            for name in [root] + [os.path.join(root, f) for f in dirs + files]:
                os.lchown(name, JOB_UID, 0)
        before_active = self.active()
        before = self.links.traffic(self.names)
        started = time.monotonic()
        proc = podman('run', '--rm', '--net=host', '--passwd=false', '--user', '%d:0' % JOB_UID,
                      '--group-add=root', '--ipc=host', '-e', 'HOME=/runner',
                      # as ansible-runner sets it for every job; group_vars turn it on
                      '-e', 'ANSIBLE_HOST_KEY_CHECKING=False', '--workdir', '/runner/project',
                      '-v', '%s:/runner:Z' % private, *options, IMAGE,
                      'sh', '-c', JOB_SCRIPT, 'job', *args, timeout=1800)
        container = time.monotonic() - started
        moved = self.links.traffic(self.names).since(before)
        if proc.returncode != 0:
            raise RunError('job %s (%s) failed (rc %s): %s' % (
                label, setup, proc.returncode, _failure(private, proc.stdout)))
        with open(os.path.join(private, 'times')) as handle:
            t0, t1, _rc = handle.read().split()
        run = {'epoch': float(t0), 'wall': float(t1) - float(t0)}
        stores = []
        for name in ('store-before.json', 'store-after.json'):
            with open(os.path.join(private, name)) as handle:
                stores.append(path_infos(handle.read()))
        return {'setup': setup, 'label': label, 'wall': run['wall'], 'container': container,
                'phases': phases(os.path.join(private, 'times.json'), run),
                'store': classify(*stores), 'store_paths_after': len(stores[1]),
                'uplink': moved.controller_sent, 'active_before': before_active,
                'active_after': self.active()}


def _failure(private, output):
    """What failed: the summary callback's first FAILED line and the lines
    its message is wrapped on (Nix's own error after "error:"), else
    podman's output."""
    try:
        with open(os.path.join(private, 'playbook.log')) as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for number, line in enumerate(lines):
        if ' FAILED at ' in line:
            return '\n'.join(l.rstrip() for l in lines[number:number + 12]).strip()
    return output.strip()[-1000:] or 'no output'


def check(result, changed):
    """Only ``changed`` moved to a new system; every other host kept its own."""
    moved = sorted(n for n, path in result['active_after'].items()
                   if path != result['active_before'][n])
    if moved != sorted(changed):
        raise RunError('job %s: hosts on a new system %s, expected %s'
                       % (result['label'], moved, sorted(changed)))


def run(fleet, setups=SETUPS, log=print):
    data = {'hosts': len(fleet.names), 'rows': [], 'load_before': load(), 'publish': {}}
    started = time.monotonic()
    data['publish']['first'] = fleet.publish()
    log('  ee store: first publish %.1f s' % data['publish']['first'])
    first = fleet.job('volume', 'first')
    check(first, fleet.names)
    data['first'] = first
    log('  ee store: first job (empty volume) %.1f s' % first['wall'])
    for number, setup in enumerate(setups, 1):
        fleet.change(fleet.names[0], 'ee-store-%d' % number)
        data['publish'][setup] = fleet.publish()
        try:
            result = fleet.job(setup, setup)
            check(result, fleet.names[:1])
        except RunError as exc:
            # the other setups still say what they cost; the table names this one's error
            data['rows'].append({'setup': setup, 'error': str(exc)})
            log('  ee store: %-11s FAILED: %s' % (setup, exc))
            continue
        data['rows'].append(result)
        log('  ee store: %-11s %.1f s, fetched %.1f MB, built %.1f MB'
            % (setup, result['wall'], result['store']['fetched'][1] / 1e6,
               result['store']['built'][1] / 1e6))
    data['seconds'] = round(time.monotonic() - started, 1)
    data['load_after'] = load()
    return data


def _row(name, cell):
    store, ph = cell['store'], cell['phases'] or {}
    return '%-13s %7.1f %7.1f %6.1f %6.1f %6.1f %8.1f  %5d %8.1f  %5d %8.1f  %5d %7.1f %9.0f' % (
        name, cell['wall'], cell['container'], ph.get('eval', 0.0), ph.get('build', 0.0),
        ph.get('copy', 0.0), ph.get('activate', 0.0), store['fetched'][0],
        store['fetched'][1] / 1e6, store['built'][0], store['built'][1] / 1e6, store['eval'][0],
        store['eval'][1] / 1e6, cell['uplink'] / 1e3)


def table(data):
    lines = ['9. EE store: one AWX job after a one-host change, %d NixOS hosts with real-sized '
             'systems (1,994 paths, 210 MB each, all but a few KB shared); the job as '
             '1000650000:0 in the EE image' % data['hosts'],
             '%-13s %7s %7s %6s %6s %6s %8s  %-14s  %-14s  %-13s %9s' % (
                 'store', 'wall s', 'pod s', 'eval', 'build', 'copy', 'activate',
                 'fetched n, MB', 'built n, MB', 'eval n, MB', 'to hosts KB')]
    lines.append('-' * len(lines[-1]))
    lines.append(_row('first job*', data['first']))
    for cell in data['rows']:
        if 'error' in cell:
            lines.append('%-13s FAILED: %s' % (cell['setup'], cell['error'][:300]))
        else:
            lines.append(_row(cell['setup'], cell))
    publish = data.get('publish') or {}
    lines.append('* the whole fleet deployed once, by one job, onto an empty volume (which the '
                 'volume row then uses)')
    lines.append('wall: the playbook in the container; pod: podman run start to exit (with two '
                 'path-info queries); phases: seconds some host was in it')
    lines.append('fetched: substituted from the cache; built: by the job; eval: written by the '
                 'evaluation (toFile, flake source, .drv); NAR bytes of the new store paths')
    lines.append('CI (nixdeploy.fleet.publish, outside the EE): first %.1f s, then %s; load %.1f '
                 'before, %.1f after' % (
                     publish.get('first', 0.0),
                     ', '.join('%s %.1f s' % (s, publish[s]) for s in SETUPS if s in publish),
                     data['load_before'], data['load_after']))
    return '\n'.join(lines)


def check_image():
    if shutil.which('podman') is None:
        return 'podman is not installed (make ee installs it and builds the image)'
    if podman('image', 'exists', IMAGE).returncode != 0:
        return 'the EE image %s is missing: run `make ee` first' % IMAGE
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.ee_store', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', type=int, default=6)
    parser.add_argument('--setups', default=','.join(SETUPS),
                        help='comma list of: %s' % ','.join(SETUPS))
    parser.add_argument('--lab', default='ees')
    parser.add_argument('--output', help='write the figures as JSON here too')
    parser.add_argument('--workdir', help='keep the jobs\' folders (logs, stores) here')
    parser.add_argument('--collections', help='a folder holding ansible_collections/nixdeploy/'
                        'fleet to run instead of the image\'s collection (a checkout\'s, '
                        'without rebuilding the image)')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the benchmark deploys to a lab fleet and runs podman, which needs root')
    setups = [s.strip() for s in args.setups.split(',') if s.strip()]
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error('unknown setups: %s' % ', '.join(sorted(unknown)))
    problem = check_image()
    if problem:
        parser.error(problem)
    with tempfile.TemporaryDirectory(prefix='nixdeploy-ee-store-bench-') as tmp:
        fleet = StoreFleet(args.lab, args.hosts, args.workdir or os.path.join(tmp, 'work'),
                           args.collections)
        try:
            data = run(fleet, setups, log=lambda text: print(text, file=sys.stderr))
        except RunError as exc:
            print('ee store benchmark: %s' % exc, file=sys.stderr)
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
