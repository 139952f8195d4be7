"""The chaos campaign's fleet: a dozen lab hosts of every persona, its flake
and inventory, and the deploy runs started on it.

Every persona (NixOS plain and on systemd where the machine allows, nix-darwin,
nix-on-droid, home-manager), with and without sudo, three hosts whose /nix is
a small filesystem of its own (the full-store fault), two NixOS hosts that
deploy one shared system (so a cascade really goes host to host). NixOS hosts
answer a health check over http and reboot when their kernel changes.
"""

import copy
import json
import os
import shutil
import subprocess
import tempfile

from tests.collection import BIN, ansible_env
from tests.deploy_fleet import prepare, write_inventory
from tests.faults.fleet import output
from tests.lab import Lab, nspawn

PLAYBOOK = 'nixdeploy.fleet.deploy'
LAB_NAME = 'chaos'
STORE_SIZE = '160M'
# name, persona, and what else the host is: deployed by `deploy` with sudo,
# a systemd PID 1, a /nix of its own size, a configuration shared with others
HOSTS = [
    {'name': 'n1', 'persona': 'nixos'},
    {'name': 'n2', 'persona': 'nixos', 'store_size': STORE_SIZE},
    {'name': 'n3', 'persona': 'nixos', 'sudo': True},
    {'name': 'w1', 'persona': 'nixos', 'configuration': 'web'},
    {'name': 'w2', 'persona': 'nixos', 'configuration': 'web'},
    {'name': 's1', 'persona': 'nixos', 'systemd': True},
    {'name': 's2', 'persona': 'nixos', 'systemd': True, 'sudo': True},
    {'name': 'd1', 'persona': 'darwin'},
    {'name': 'd2', 'persona': 'darwin', 'store_size': STORE_SIZE},
    {'name': 'a1', 'persona': 'nix-on-droid'},
    {'name': 'm1', 'persona': 'home-manager'},
    {'name': 'm2', 'persona': 'home-manager', 'store_size': STORE_SIZE},
]
# A short confirmation window and one quick try per health check: a system
# that takes the network down costs its window in every round it is drawn.
CONFIRM_TIMEOUT = 10
HEALTH = {'name': 'health', 'http': {'url': 'http://{{ ansible_host }}/cgi-bin/health',
                                     'status': 200},
          'retries': 0, 'timeout': 3}
# Ansible's ssh masters live this long after their last use: the controller
# invariants look for leftovers once it has passed.
CONTROL_PERSIST = 3
SSH_ARGS = '-o ControlMaster=auto -o ControlPersist=%ds -o ServerAliveInterval=5' % CONTROL_PERSIST
# Set in the environment of every run: any process that still carries it
# after the run (and its ssh masters' persistence) is a leftover of it.
MARKER = 'NIXDEPLOY_CHAOS_RUN'


def host_specs(systemd=None):
    """The lab's host specs; systemd hosts come up plain where they cannot run."""
    if systemd is None:
        systemd = nspawn.unsupported() is None
    specs = []
    for spec in HOSTS:
        lab_spec = dict((k, spec[k]) for k in ('name', 'persona', 'store_size') if k in spec)
        lab_spec['systemd'] = bool(spec.get('systemd')) and systemd
        specs.append(lab_spec)
    return specs


def spec_of(host):
    return next(s for s in HOSTS if s['name'] == host)


def root_activated(host):
    """Whether the host's activation runs as root (it can take eth0 down)."""
    return spec_of(host)['persona'] in ('nixos', 'darwin')


class Run:
    """One ansible-playbook of the deploy, started in a session of its own."""

    def __init__(self, proc, rundir, label):
        self.proc, self.rundir, self.label = proc, rundir, label
        self.killed = False     # SIGKILLed whole (faults.kill_whole): no report
        self.cancelled = False  # SIGTERM first (an AWX cancel)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def complete(self):
        """Whether the run ended by itself: only then has it a report and a
        recap (ansible-playbook dies of a SIGTERM without either)."""
        return not self.killed and self.proc.returncode is not None and self.proc.returncode >= 0

    def output(self):
        return output(self)

    def report(self):
        """The report callback's JSON, or None (a killed run has none)."""
        try:
            with open(os.path.join(self.rundir, 'nixdeploy-report.json')) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    @property
    def control_dir(self):
        return os.path.join(self.rundir, 'cp')

    @property
    def local_temp(self):
        return os.path.join(self.rundir, 'tmp')

    @property
    def marker(self):
        return self.rundir


class ChaosFleet:
    """The lab, its flake (with the knobs each configuration had at its last
    good deploy) and inventory; ``start`` runs the deploy playbook."""

    def __init__(self, workdir, name=LAB_NAME, systemd=None):
        self.workdir = workdir
        self.name = name
        self.systemd = nspawn.unsupported() is None if systemd is None else systemd
        self.lab = None
        self.runs = 0
        # the controller's roots of this fleet, apart from other labs'
        self.gc_root_dir = '/nix/var/nix/gcroots/nixdeploy-%s' % name

    def up(self):
        self.lab = Lab(self.name).up(host_specs(self.systemd))
        shared = dict((s['name'], s['configuration']) for s in HOSTS if 'configuration' in s)
        configurations = dict((c, {'platform': 'nixos'}) for c in set(shared.values()))
        self.flake, self.secret = prepare(self.lab, os.path.join(self.workdir, 'flake'),
                                          configurations=configurations, shared=shared)
        for spec in HOSTS:
            if spec.get('sudo'):
                self.flake.data['hosts'][spec['name']]['user'] = 'deploy'
        for name, cfg in self.flake.data['configurations'].items():
            cfg.update(self.base_knobs(name))
        self.flake.save()
        self.inventory = write_inventory(os.path.join(self.workdir, 'inventory'), self.lab,
                                         self.flake, self.secret)
        self.cache = os.path.join(self.workdir, 'cache')
        self._write_group_vars()
        self.good = copy.deepcopy(self.flake.data['configurations'])
        return self

    def down(self):
        if self.lab is not None:
            self.lab.down()
        # the controller's roots of the fleet's systems go with it
        shutil.rmtree(self.gc_root_dir, ignore_errors=True)

    # ------------------------------------------------------------ flake
    def configurations(self):
        return sorted(self.flake.data['configurations'])

    def hosts_of(self, configuration):
        return sorted(h for h, d in self.flake.data['hosts'].items()
                      if d['configuration'] == configuration)

    def platform(self, configuration):
        return self.flake.data['configurations'][configuration]['platform']

    def base_knobs(self, configuration):
        """What a healthy system of ``configuration`` always has."""
        knobs = {'version': 'c0', 'behaviour': 'ok', 'on_activate': ''}
        if self.platform(configuration) == 'nixos':
            knobs.update(http_status=200, kernel_version='6.6.1')
        return knobs

    def set_system(self, configuration, knobs):
        """``configuration`` becomes exactly these knobs (none left of its last system)."""
        knobs = dict(knobs, platform=self.platform(configuration))
        self.flake.data['configurations'][configuration] = knobs
        self.flake.save()

    def restore(self, configuration):
        """``configuration`` evaluates again to what its hosts last ran."""
        self.set_system(configuration, copy.deepcopy(self.good[configuration]))

    def keep_good(self, configurations):
        """The systems of ``configurations`` are now what their hosts run."""
        for name in configurations:
            self.good[name] = copy.deepcopy(self.flake.data['configurations'][name])

    # ------------------------------------------------------------ inventory
    def _write_group_vars(self):
        group_vars = os.path.join(self.inventory, 'group_vars')
        with open(os.path.join(group_vars, 'all.yml')) as handle:
            common = json.load(handle)
        common.update(nix_confirm_timeout=CONFIRM_TIMEOUT, nix_gc_root_dir=self.gc_root_dir)
        with open(os.path.join(group_vars, 'all.yml'), 'w') as handle:
            json.dump(common, handle, indent=2)
        with open(os.path.join(group_vars, 'nixos.yml'), 'w') as handle:
            json.dump({'nix_health_checks': [HEALTH], 'nix_reboot': 'when-needed',
                       'nix_reboot_timeout': 120}, handle, indent=2)
        os.makedirs(os.path.join(self.inventory, 'host_vars'), exist_ok=True)
        self.set_copy_modes({})

    def set_copy_modes(self, modes):
        """host_vars: each host's copy mode (push when not given) and become."""
        for spec in HOSTS:
            host = spec['name']
            host_vars = {'nix_copy_mode': modes.get(host, 'push')}
            if host_vars['nix_copy_mode'] == 'cache':
                host_vars['nix_caches'] = ['file://%s' % self.cache]
            if spec.get('sudo'):
                host_vars['ansible_become'] = True
            with open(os.path.join(self.inventory, 'host_vars', '%s.yml' % host), 'w') as handle:
                json.dump(host_vars, handle)

    def fill_cache(self, hosts):
        """Build the systems of ``hosts`` and put them in the file:// cache
        the cache-mode hosts fetch from (as nixdeploy.fleet.publish would)."""
        if not hosts:
            return
        nix = ['nix', '--extra-experimental-features', 'nix-command flakes',
               '--option', 'substituters', '']
        attrs = sorted(set('%s#%s' % (self.flake.ref, self.flake.attr(h)) for h in hosts))
        built = subprocess.run(nix + ['build', '--no-link', '--json'] + attrs, check=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True).stdout
        paths = [item['outputs']['out'] for item in json.loads(built)]
        subprocess.run(nix + ['copy', '--to', 'file://%s?compression=none&secret-key=%s'
                              % (self.cache, self.secret)] + paths,
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # ------------------------------------------------------------ runs
    def start(self, label, *args):
        """ansible-playbook deploy in the background in a session of its own,
        with the report, the record and the summary; its own ssh control
        folder and Ansible temp folder (the controller invariants read them)."""
        self.runs += 1
        rundir = os.path.join(self.workdir, 'run%03d-%s' % (self.runs, label))
        os.makedirs(rundir)
        run_env = {
            'NIXDEPLOY_TEST_RECORD': os.path.join(rundir, 'record.jsonl'),
            'ANSIBLE_CALLBACKS_ENABLED': 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report',
            'NIXDEPLOY_REPORT_DIR': rundir,
            'NIXDEPLOY_REPORT_HTML': 'false',
            'NIXDEPLOY_REPORT_FLAKE_METADATA': 'false',
            'ANSIBLE_SSH_CONTROL_PATH_DIR': os.path.join(rundir, 'cp'),
            'ANSIBLE_LOCAL_TEMP': os.path.join(rundir, 'tmp'),
            'ANSIBLE_SSH_ARGS': SSH_ARGS,
            'ANSIBLE_FORKS': str(len(HOSTS)),
            MARKER: rundir,
        }
        os.makedirs(run_env['ANSIBLE_LOCAL_TEMP'])
        log = open(os.path.join(rundir, 'output.log'), 'w')
        argv = [os.path.join(BIN, 'ansible-playbook'), '-i', self.inventory, PLAYBOOK] + list(args)
        proc = subprocess.Popen(argv, cwd=rundir, env=ansible_env(run_env, cwd=rundir),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        return Run(proc, rundir, label)


def workdir(base=None):
    return tempfile.mkdtemp(prefix='nixdeploy-chaos-', dir=base)
