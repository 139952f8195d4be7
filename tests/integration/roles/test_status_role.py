"""`ansible-playbook nixdeploy.fleet.status` on the `sts` lab: one fleet with
every class at once, each made as it happens in life, on the four platforms.

In order on one fleet: the classes (one run), then that a status run changes
nothing on the hosts and builds nothing on the controller, then a deploy
after which every reachable host is in sync.
"""

import hashlib
import json
import os
import subprocess
import uuid

import jsonschema
import pytest

from tests.collection import REPO, run_playbook
from tests.fact_cache import cached_facts
from tests.deploy_fleet import (DeployFleet, prepare, runner_private_dir, write_host_vars,
                                write_inventory)
from tests.integration.plugins.action.conftest_eval import calls, nix_wrapper

pytestmark = pytest.mark.lab

STATUS = 'nixdeploy.fleet.status'
READ = 'nixdeploy.fleet.status : Read each host and class it'
DEPLOY_EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
# the host and the class each is made to be
HOSTS = [{'name': 'sync', 'persona': 'nixos'},       # deployed, nothing since
         {'name': 'ahead', 'persona': 'darwin'},     # deployed, then a commit for it
         {'name': 'back', 'persona': 'nixos'},       # its next deploy's magic rollback
         {'name': 'hand', 'persona': 'nix-on-droid'},  # switched by hand to another system
         {'name': 'kern', 'persona': 'nixos'},       # a new kernel, not booted yet
         {'name': 'fresh', 'persona': 'home-manager'},  # never deployed
         {'name': 'off', 'persona': 'nixos'}]        # deployed, then off
EXPECTED = {'sync': 'in_sync', 'ahead': 'pending', 'back': 'rolled_back',
            'hand': 'changed_elsewhere', 'kern': 'reboot_pending', 'fresh': 'never_deployed'}
# back's watchdog window: its new system cuts the network, so no
# confirmation can come; the window only has to pass (kern beside it keeps
# the role's default, which its confirmation ends at once)
CONFIRM_TIMEOUT = 3
# a host that is off or cut: its read's and its login probe's bounds, for
# it alone (its bounds passing is what makes it unreachable; the healthy
# hosts beside it keep theirs)
DEAD_TIMEOUT = 2
DEAD_VARS = {'nix_status_timeout': DEAD_TIMEOUT, 'nix_probe_timeout': DEAD_TIMEOUT}
# the summary callback prints the lines and totals; the report has a status section
CALLBACKS = 'record,nixdeploy.fleet.summary,nixdeploy.fleet.report'
SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')
PROFILES = {'nixos': '/nix/var/nix/profiles', 'darwin': '/nix/var/nix/profiles',
            'nix-on-droid': '/nix/var/nix/profiles',
            'home-manager': '/home/app/.local/state/nix/profiles'}
STATE = {'nixos': '/nix/var/nixdeploy', 'darwin': '/nix/var/nixdeploy',
         'nix-on-droid': '/home/app/.local/state/nixdeploy',
         'home-manager': '/home/app/.local/state/nixdeploy'}


class StatusFleet(DeployFleet):

    def status(self, *args, callbacks=CALLBACKS, env=None, host_vars=None, group_vars=None):
        workdir = self.rundir()
        if host_vars or group_vars:
            args = run_vars(workdir, host_vars, group_vars) + list(args)
        # a fresh ssh ControlPath folder: a master left to a host now off
        # would wait for TCP to give up on the dead link
        env = dict(env or {}, ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(workdir, 'cp'),
                   ANSIBLE_CALLBACKS_ENABLED=callbacks,
                   NIXDEPLOY_REPORT_DIR=os.path.join(workdir, 'reports'))
        run = run_playbook(STATUS, self.inventory, workdir, args=list(args), env=env,
                           timeout=300)
        run.workdir = workdir
        return run

    @staticmethod
    def report(run):
        """(the JSON report, the HTML page) the status run wrote."""
        folder = os.path.join(run.workdir, 'reports')
        with open(os.path.join(folder, 'nixdeploy-report.json')) as handle:
            data = json.load(handle)
        with open(SCHEMA) as handle:
            jsonschema.validate(data, json.load(handle))
        with open(os.path.join(folder, 'nixdeploy-report.html')) as handle:
            return data, handle.read()


@pytest.fixture(scope='module')
def sts_fleet(make_lab, tmp_path_factory):
    lab = make_lab('sts', HOSTS)
    base = str(tmp_path_factory.mktemp('sts'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    fleet = StatusFleet(lab, flake, inventory, base)
    first = fleet.deploy('-l', '!fresh')
    assert first.rc == 0, first
    # a NixOS host has booted its system (the lab's first boot had none)
    # (both at once: each host is waited for until it booted again)
    boots = dict((host, len(lab.boot_ids(host))) for host in ('sync', 'kern'))
    for host in boots:
        lab.reboot(host, wait=False)
    for host in boots:
        lab.wait_up(host, boots=boots[host] + 1)
        assert lab.booted(host) == lab.current_system(host) == lab.active(host), host
    return fleet


def run_vars(workdir, host_vars=None, group_vars=None):
    """ansible-playbook's arguments that give some hosts variables of their
    own for one run: a second inventory source (a YAML inventory, in
    ``workdir``) beside the fleet's, which adds them to hosts it already has
    (above its group_vars, below extra vars)."""
    path = os.path.join(workdir, 'run-vars.yml')
    with open(path, 'w') as handle:
        json.dump({'all': {'vars': group_vars or {}, 'hosts': host_vars or {}}}, handle)
    return ['-i', path]


def out_paths(run, task=DEPLOY_EVAL):
    return {r['host']: r['result']['out_path'] for r in run.results(task)
            if r['status'] == 'ok'}


def make_every_class(fleet):
    """Each host made what its name says, as it happens in life; returns
    {host: the system the host runs}."""
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    # a deploy whose new system cuts the network: its watchdog rolls it back;
    # beside it a new kernel, switched to without a reboot
    flake.set_config('back', version='2', behaviour='break-network')
    flake.set_config('kern', version='2', kernel_version='6.12.1')
    run = fleet.deploy('-l', 'back,kern', *run_vars(
        fleet.rundir(), {'back': {'nix_confirm_timeout': CONFIRM_TIMEOUT}}))
    # then a commit for it that no run builds (a status run must not either)
    flake.set_config('back', behaviour='ok', version='3-%s' % uuid.uuid4().hex[:8])
    assert run.rc != 0, run
    summary = run.summary()
    assert summary['back']['rolled_back'] and summary['kern']['outcome'] == 'switched', summary
    assert lab.active('back') == before['back']
    # hand: pushed (copied, not activated), then activated by hand on the
    # host; ahead beside it in the same run: a commit for it, built and
    # pushed, not activated yet: the controller's store holds both systems,
    # so its line tells how far apart they are
    flake.set_config('hand', version='2')
    flake.set_config('ahead', version='2-%s' % uuid.uuid4().hex[:8], extra_paths=2,
                     extra_bytes=300000)
    pushed = fleet.deploy('-l', 'hand,ahead', '--skip-tags', 'activate')
    assert pushed.rc == 0, pushed
    assert sorted(out_paths(pushed)) == ['ahead', 'hand'], pushed
    by_hand = out_paths(pushed)['hand']
    lab.run_in('hand', [by_hand + '/activate'], user='app')
    assert lab.active('hand') == by_hand
    # the flake still gives what was deployed before (the controller holds
    # both systems: its line tells how far apart they are, as for ahead)
    flake.set_config('hand', version='1')
    return dict((host, lab.active(host)) for host in lab.hosts)


def snapshot(lab, host):
    """What a run could change on ``host``: its store's paths, its profiles'
    links, its GC roots and the collection's state folder, byte for byte."""
    platform = lab.host(host)['platform']
    script = (
        'ls /nix/store | sort; echo ==; '
        'find %s -maxdepth 1 -printf "%%p %%l\\n" 2>/dev/null | sort; echo ==; '
        'find /nix/var/nix/gcroots -printf "%%p %%l\\n" 2>/dev/null | sort; echo ==; '
        'find %s -type f -exec sha256sum {} + 2>/dev/null | sort; '
        'find %s -printf "%%p %%y %%m %%l\\n" 2>/dev/null | sort'
        % (PROFILES[platform], STATE[platform], STATE[platform]))
    text = lab.run_in(host, ['sh', '-c', script]).stdout
    return hashlib.sha256(text.encode()).hexdigest(), len(text.splitlines())


def short(path):
    """A store path's name without its hash, as the lines show it."""
    return os.path.basename(path)[33:]


def controller_store():
    return set(os.listdir('/nix/store'))


def test_one_run_shows_every_class(sts_fleet, tmp_path):
    fleet, lab = sts_fleet, sts_fleet.lab
    running = make_every_class(fleet)
    snaps = dict((host, snapshot(lab, host)) for host in lab.hosts if host != 'off')
    store = controller_store()
    textfile = str(tmp_path / 'nixdeploy.prom')
    nix, log = nix_wrapper(tmp_path)
    lab.cut('off')
    try:
        run = fleet.status('-e', 'nix_status_textfile=%s' % textfile, '-e', 'nix_bin=%s' % nix,
                           host_vars={'off': DEAD_VARS})
    finally:
        lab.restore('off')

    # every host read is ok whatever its class; the off one is unreachable,
    # in the words of the deploy's login probe
    assert run.rc == 4, run
    off = run.result(READ, 'off')
    assert off['status'] == 'unreachable', off
    assert off['result']['msg'].startswith('off: off is unreachable at '), off
    # a host costs the controller one worker, which evaluates and reads it:
    # no other task runs once per host (ansible-core's check of the role's
    # argument spec, a task every host in sync only skips)
    ran = {}
    for found in run.results():
        ran.setdefault(found['task'], set()).add(found['host'])
    assert sorted(task for task, hosts in ran.items() if len(hosts) > 1) == [READ], ran
    classes = {}
    for host in EXPECTED:
        res = run.result(READ, host)
        assert res['status'] == 'ok', res
        fact = res['result']['ansible_facts']['nixdeploy_status']
        assert fact == res['result']['status'], res
        classes[host] = fact['class']
        assert fact['current'] == running[host], (host, fact)
        # the host's evaluation, by the read's own task; the read was its
        # one login (no probe beside the evaluation)
        evaluated = res['result']['eval']
        assert fact['desired'] == evaluated['out_path'], (host, fact)
        assert 'probe' not in evaluated, (host, evaluated)
    assert classes == EXPECTED, classes
    facts = dict((h, run.result(READ, h)['result']['status']) for h in EXPECTED)
    # the deploy record: the magic rollback, the last switch, none
    assert facts['back']['last_deploy']['rolled_back'] is True, facts['back']
    assert facts['back']['last_deploy']['system'] != facts['back']['current']
    assert facts['sync']['last_deploy']['state'] == 'done', facts['sync']
    assert facts['fresh']['last_deploy'] is None and facts['fresh']['generation'] is None
    assert facts['ahead']['desired'] != facts['ahead']['current']
    # how far apart: the two extra paths (and the new system) added, the
    # old system dropped, the closure grown by the extra bytes at least
    diff = facts['ahead']['closure_diff']
    assert diff['paths_added'] >= 3 and diff['paths_removed'] >= 1, facts['ahead']
    assert diff['size_change_bytes'] >= 300000, facts['ahead']
    assert ', +%d paths, -%d path%s, +' % (
        diff['paths_added'], diff['paths_removed'], '' if diff['paths_removed'] == 1 else 's') \
        in run.result(READ, 'ahead')['result']['msg'], run.result(READ, 'ahead')['result']
    # switched by hand to another system: the way back to the flake's, smaller
    assert facts['hand']['closure_diff']['paths_removed'] >= 1, facts['hand']
    # the flake's system for back was never built: no difference, nothing built
    assert facts['back']['closure_diff'] is None, facts['back']
    # the hosts that drifted asked Nix in the batch's waves (those whose
    # reads end close together share one): each of the hosts whose two
    # systems the store holds in one query of the closures, never back,
    # whose new one it lacks, nor a host in sync
    queries = calls(log, 'path-info')
    assert 1 <= len(queries) <= 2, queries
    for host in ('ahead', 'hand'):
        assert len([q for q in queries if facts[host]['current'] in q
                    and facts[host]['desired'] in q]) == 1, (host, queries)
    for query in queries:
        for path in (facts['back']['desired'], facts['back']['current'], facts['sync']['current']):
            assert path not in query, queries
    assert facts['sync']['closure_diff'] == {'paths_added': 0, 'paths_removed': 0,
                                             'size_change_bytes': 0}, facts['sync']
    # NixOS: booted and current differ in the kernel, the generation moved on
    assert facts['kern']['booted'] != facts['kern']['current'] == facts['kern']['boot_default']
    assert any(r.startswith('kernel: ') for r in facts['kern']['reasons']), facts['kern']
    assert facts['sync']['booted'] == facts['sync']['current']
    for host in ('sync', 'back', 'kern', 'ahead', 'hand'):
        assert isinstance(facts[host]['generation'], int), facts[host]

    # where people look: a line a host, the totals worst first
    assert 'off: unreachable' in run.stdout, run.stdout[-3000:]
    for host, name in EXPECTED.items():
        assert '%s: %s (' % (host, name) in run.stdout, (host, run.stdout[-3000:])
    assert ('nixdeploy status: 1 unreachable, 1 never_deployed, 1 changed_elsewhere, '
            '1 rolled_back, 1 reboot_pending, 1 pending, 1 in_sync') in run.stdout, run.stdout[-3000:]

    assert 'NIXDEPLOY STATUS' in run.stdout and 'evaluated (not activated)' not in run.stdout

    # the evaluation each task did is the summary's and the report's, as a
    # task of its own would be: how each host's answer was found
    assert 'nixdeploy: evaluation: ' in run.stdout, run.stdout[-3000:]
    # the report: a status section, in the JSON and on the page
    report, page = fleet.report(run)
    for host in EXPECTED:
        assert report['hosts'][host]['eval']['answered'] in ('evaluated', 'cached', 'reused'), \
            report['hosts'][host]
    assert dict((host, fact['class']) for host, fact in report['status']['hosts'].items()) == \
        dict(EXPECTED, off='unreachable'), report['status']
    assert report['status']['hosts']['kern'] == facts['kern'], report['status']
    assert report['status']['totals'] == dict((name, 1) for name in
                                              list(EXPECTED.values()) + ['unreachable'])
    assert '<section id="status"><h2>Status</h2><p>7 hosts: 1 unreachable, ' in page, page[-3000:]
    for host, name in dict(EXPECTED, off='unreachable').items():
        assert '<tr><td>%s</td><td>%s</td>' % (host, name) in page, (host, page[-3000:])
    # the closure difference has its column, where the store told it
    assert '<th>Closure difference</th>' in page
    row = page[page.index('<tr><td>ahead</td>'):]
    row = row[:row.index('</tr>')]
    assert '<td>+%d paths, -%d path' % (diff['paths_added'], diff['paths_removed']) in row, row

    # the textfile: one gauge per host and class, generations, last deploys
    metrics = parse_textfile(textfile)
    for host in lab.hosts:
        own = EXPECTED.get(host, 'unreachable')
        ones = [labels['class'] for (name, labels), value in metrics.items()
                if name == 'nixdeploy_status_class' and labels['host'] == host and value == 1]
        assert ones == [own], (host, ones)
    generation = dict((labels['host'], value) for (name, labels), value in metrics.items()
                      if name == 'nixdeploy_status_generation')
    assert generation['kern'] == facts['kern']['generation'], generation
    assert 'fresh' not in generation and 'off' not in generation, generation

    # nothing changed on the hosts, nothing was built on the controller
    for host, before in snaps.items():
        assert snapshot(lab, host) == before, host
    # (the store is this machine's: other runs may add their own paths meanwhile)
    ours = ['-system-%s-' % host for host in lab.hosts]
    built = [name for name in controller_store() - store if not name.endswith('.drv')
             and any(mark in name for mark in ours)]
    assert built == [], built
    assert subprocess.run(['nix-store', '--check-validity', facts['back']['desired']],
                          stderr=subprocess.DEVNULL, check=False).returncode != 0


def parse_textfile(path):
    """{(metric, frozen labels): value} of a Prometheus text file, read with
    the reference parser of the Prometheus Python client."""
    from prometheus_client.parser import text_string_to_metric_families
    with open(path) as handle:
        text = handle.read()
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.type == 'gauge', family
        for sample in family.samples:
            found[(sample.name, LabelKey(sample.labels))] = sample.value
    return found


class LabelKey(dict):
    """Labels as a dict that can be a key."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))


def runner_status_job(fleet, ident):
    """The "nix status" job template as AWX runs it with *Enable Fact
    Storage* on and job type *Check*: ansible-runner with its jsonfile fact
    cache (AWX's ``fact_cache_type``) in the job's artifacts; returns (the
    runner, that fact cache folder)."""
    import ansible_runner
    private = runner_private_dir(os.path.join(fleet.workdir, 'awx-%s' % ident))
    with open(os.path.join(private, 'project', 'status.yml'), 'w') as handle:
        handle.write('---\n- name: Status\n  ansible.builtin.import_playbook: %s\n' % STATUS)
    runner = ansible_runner.run(private_data_dir=private, playbook='status.yml', ident=ident,
                                inventory=fleet.inventory, cmdline='--check', quiet=True,
                                fact_cache_type='jsonfile')
    return runner, os.path.join(private, 'artifacts', ident, 'fact_cache')


def awx_finish_fact_cache(folder, hosts):
    """{host: facts} as AWX's finish_fact_cache (awx/main/tasks/facts.py,
    24.6.1 and newer) keeps them: the file named as the host, plain JSON; a
    host without its file has its facts cleared ({})."""
    kept = {}
    for host in hosts:
        path = os.path.join(folder, host)
        try:
            with open(path) as handle:
                kept[host] = json.load(handle)
        except OSError:
            kept[host] = {}
        except ValueError:
            continue
    return kept


def smart_inventory(kept, host_filter):
    """The hosts of a smart inventory whose host filter is one
    ``ansible_facts__<key>__<key>="<value>"`` term, as AWX reads it: a
    lookup into each host's stored facts."""
    path, _eq, value = host_filter.partition('=')
    keys = path.split('__')
    assert keys[0] == 'ansible_facts', host_filter
    found = []
    for host, facts in kept.items():
        for key in keys[1:]:
            facts = facts.get(key) if isinstance(facts, dict) else None
        if facts == json.loads(value):
            found.append(host)
    return sorted(found)


@pytest.fixture(scope='module')
def status_job(sts_fleet):
    """One "nix status" job on the fleet with every class (after
    test_one_run_shows_every_class)."""
    runner, folder = runner_status_job(sts_fleet, 'status-check')
    assert runner.status == 'successful', runner.stdout.read()[-3000:]
    return runner, folder


def test_the_job_fact_cache_holds_each_hosts_status(sts_fleet, status_job):
    runner, folder = status_job
    assert runner.config.env['ANSIBLE_CACHE_PLUGIN'] == 'jsonfile'
    # every host read has its status in the job's fact cache, as its result said
    read = dict((e['event_data']['host'], e['event_data']['res']['status'])
                for e in runner.events if e.get('event') == 'runner_on_ok'
                and e['event_data'].get('task') == READ.split(' : ', 1)[1])
    assert sorted(read) == sorted(sts_fleet.lab.hosts), read
    kept = dict((host, cached_facts(folder, host)) for host in read)
    for host, status in read.items():
        assert (kept[host] or {}).get('nixdeploy_status') == status, (host, kept[host])
    for host, name in EXPECTED.items():
        assert kept[host]['nixdeploy_status']['class'] == name, (host, kept[host])
    # the smart inventory of docs/awx-semaphore.md over these facts
    assert smart_inventory(kept, 'ansible_facts__nixdeploy_status__class="pending"') == ['ahead']
    assert smart_inventory(kept, 'ansible_facts__nixdeploy_status__class="rolled_back"') == \
        ['back']


def _core_version():
    from ansible.release import __version__
    return tuple(int(p) for p in __version__.split('.')[:2])


@pytest.mark.xfail(_core_version() >= (2, 19), strict=True,
                   reason='ansible-core 2.19+ names a jsonfile cache entry s1_<host> and wraps '
                          'it in __payload__ (ansible/ansible#86028); AWX reads <host> as JSON')
def test_awx_keeps_the_status_facts_of_the_job(sts_fleet, status_job):
    _runner, folder = status_job
    kept = awx_finish_fact_cache(folder, sorted(sts_fleet.lab.hosts))
    assert smart_inventory(kept, 'ansible_facts__nixdeploy_status__class="pending"') == ['ahead']


def test_fail_unless_in_sync_gates_and_a_deploy_brings_every_host_in_sync(sts_fleet):
    fleet, lab = sts_fleet, sts_fleet.lab
    # a switch of the run that is not of its type stops it once, naming the
    # variable, before any host is evaluated (the playbook turns the role's
    # argument spec check off; the role checks its own switches)
    wrong = fleet.status('-l', 'sync,kern', '-e', 'nix_summary=maybe')
    assert wrong.rc == 2, wrong
    assert 'nixdeploy.fleet.status: nix_summary must be true or false (it is maybe): fix the ' \
        'variable where it is set' in wrong.stdout, wrong.stdout[-3000:]
    assert not wrong.results(READ), wrong
    # a login that may only read (not root, no become) is enough
    readonly = fleet.status('-l', 'sync,kern', '-e', 'ansible_user=deploy')
    assert readonly.rc == 0, readonly
    assert dict((host, readonly.result(READ, host)['result']['status']['class'])
                for host in ('sync', 'kern')) == {'sync': 'in_sync', 'kern': 'reboot_pending'}

    # the gate: each host read that is not in sync fails with one line of its
    # own (the project's console callback), in-sync hosts beside it are ok;
    # without the summary callback the role prints the lines itself, the
    # gated hosts among them, and their status reaches the report and a
    # fact cache all the same
    cache = os.path.join(fleet.workdir, 'gate-facts')
    gated = fleet.status('-l', 'sync,ahead,kern', '-e', 'nix_status_fail_unless_in_sync=true',
                         callbacks='record,nixdeploy.fleet.report',
                         env={'ANSIBLE_STDOUT_CALLBACK': 'nixdeploy.fleet.console',
                              'ANSIBLE_CACHE_PLUGIN': 'jsonfile',
                              'ANSIBLE_CACHE_PLUGIN_CONNECTION': cache})
    assert gated.rc == 2, gated
    out = gated.stdout + gated.stderr
    assert 'Origin:' not in out and 'Traceback' not in out and 'FAILED!' not in out, out[-3000:]
    fatal = [ln for ln in gated.stdout.splitlines() if ln.startswith('fatal: ')]
    assert sorted(fatal) == sorted([
        'fatal: [ahead] at status: pending (deploy pending), not in sync: the flake gives %s; '
        'to pass: deploy it (ansible-playbook nixdeploy.fleet.deploy), or '
        'nix_status_fail_unless_in_sync=false'
        % short(gated.result(READ, 'ahead')['result']['status']['desired']),
        'fatal: [kern] at status: reboot_pending (reboot pending), not in sync: %s; '
        'to pass: reboot it, or deploy it with nix_reboot=when-needed, or '
        'nix_status_fail_unless_in_sync=false'
        % '; '.join(gated.result(READ, 'kern')['result']['status']['reasons'])]), fatal
    assert gated.result(READ, 'sync')['status'] == 'ok'
    assert gated.result(READ, 'sync')['result']['status']['class'] == 'in_sync'
    assert 'nixdeploy status: 1 reboot_pending, 1 pending, 1 in_sync' in gated.stdout, \
        gated.stdout[-3000:]
    assert 'ahead: pending (deploy pending), generation ' in gated.stdout, gated.stdout[-3000:]
    report, _page = fleet.report(gated)
    classes = {'sync': 'in_sync', 'ahead': 'pending', 'kern': 'reboot_pending'}
    assert dict((h, f['class']) for h, f in report['status']['hosts'].items()) == classes
    for host, name in classes.items():
        assert gated.result(READ, host)['status'] == ('ok' if name == 'in_sync' else 'failed')
        assert cached_facts(cache, host)['nixdeploy_status'] == \
            gated.result(READ, host)['result']['status'], host

    # the new kernel is booted by the deploy's own reboot
    write_host_vars(fleet.inventory, 'kern', {'nix_reboot': 'when-needed'})
    deployed = fleet.deploy()
    assert deployed.rc == 0, deployed
    run = fleet.status('-e', 'nix_status_fail_unless_in_sync=true')
    assert run.rc == 0, run
    for host in lab.hosts:
        fact = run.result(READ, host)['result']['status']
        assert fact['class'] == 'in_sync', (host, fact)
    assert 'nixdeploy status: 7 in_sync' in run.stdout, run.stdout[-2000:]


def test_a_host_off_at_its_read_is_unreachable_beside_the_healthy_ones(sts_fleet):
    """Off when its one task starts: the read, its first login, gets no
    answer, and the login probe then tries its addresses as a deploy's does.
    The host is Ansible's unreachable beside the healthy ones, in the
    probe's words, counted as such, and no traceback is printed."""
    fleet, lab = sts_fleet, sts_fleet.lab
    healthy = ['sync', 'ahead', 'fresh']
    env = {'NIXDEPLOY_TEST_CUT_BEFORE': READ,
           'NIXDEPLOY_TEST_CUT_LINKS': lab.host('kern')['veth']}
    try:
        # the healthy hosts' reads keep 10 s; kern's read gets no answer
        # within its own bound, then its probe none within its own
        run = fleet.status('-l', ','.join(healthy + ['kern']),
                           callbacks=CALLBACKS + ',cut_link', env=env,
                           group_vars={'nix_status_timeout': 10}, host_vars={'kern': DEAD_VARS})
    finally:
        lab.restore('kern')
    gone = run.result(READ, 'kern')
    assert gone['status'] == 'unreachable', gone
    assert gone['result']['msg'].startswith('kern: kern is unreachable at '), gone
    assert gone['result']['unreachable_at'], gone
    for host in healthy:
        assert run.result(READ, host)['status'] == 'ok', run.result(READ, host)
    assert run.rc == 4, run
    assert 'Traceback' not in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
    assert 'kern: unreachable (not reached)' in run.stdout, run.stdout[-3000:]
    assert '1 unreachable' in run.stdout, run.stdout[-3000:]
