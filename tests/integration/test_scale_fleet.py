"""A canary-then-waves rollout on a 100-host scale lab (`sct`), as users run
it on a large fleet (issue 37): the real playbook ``nixdeploy.fleet.deploy``
with forks 50 and the repository's ansible.cfg (ControlPersist, pipelining,
the summary and report callbacks), on the benchmark's ScaleFleet
(benchmarks/scale.py: light NixOS hosts with their own network and mount
namespace, /nix and sshd).

Every run is judged host by host from what the hosts hold (the lab's
``active`` file, the profile's generation links, the activation history and
the store, read from each host's folder) and from the run's
nixdeploy-report.json, not from the playbook's text alone:

1. canary: ``nix_serial: [1, "5%", "25%", "100%"]``, ``nix_max_fail_percentage:
   0``, a new version whose system fails its activation on the canary (the
   first host in play order): the play stops after batch 1, the canary rolls
   back to its previous generation, and no other host changes at all;
2. waves: the same serial with ``nix_max_fail_percentage: 10``, a good version
   except one bad host in wave 3 and one in wave 4, one host unreachable in
   wave 3 (its address removed inside its namespace) and one slow host in
   wave 4: every wave runs, the bad hosts roll back, the unreachable one is
   untouched, all others run the new system, and the play exits non-zero;
3. the no-op redeploy of the good hosts changes nothing.
"""

import json
import os
import re
import subprocess

import jsonschema
import pytest

from benchmarks._fleet import PLAYBOOK, SSH_ARGS, stop_masters
from benchmarks.scale import ScaleFleet
from tests.collection import BIN, REPO, ansible_env, run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.scale]

LAB = 'sct'
HOSTS = 100
FORKS = 50
SERIAL = [1, '5%', '25%', '100%']
# what Ansible makes of SERIAL on 100 hosts: the last size repeats
WAVES = (1, 5, 25, 69)
SCHEMA = os.path.join(REPO, 'docs', 'report.schema.json')
# as benchmarks/scale.py runs the playbook: the repository's ansible.cfg
RUN_ENV = {'ANSIBLE_CONFIG': os.path.join(REPO, 'ansible.cfg'), 'ANSIBLE_FORKS': str(FORKS),
           'ANSIBLE_SSH_ARGS': SSH_ARGS, 'ANSIBLE_PIPELINING': 'True'}


class Fleet:
    """The ScaleFleet, and playbook runs that may fail (ScaleFleet.playbook
    raises on rc != 0): each with its own folder, report and ssh masters."""

    def __init__(self, base):
        self.base = base
        self.scale = ScaleFleet(LAB, HOSTS, os.path.join(base, 'fleet'), forks=FORKS,
                                log=lambda _line: None)
        self.lab, self.flake = self.scale.lab, self.scale.flake
        self.runs = 0
        self.order = None
        # the hosts the waves deployed, for the no-op redeploy
        self.good = None
        # a test changed the flake since the fixture's deploy (every host
        # then ran the system the flake gives)
        self.changed_flake = False

    def play_order(self):
        """The hosts in the order the play takes them (its batches are slices
        of it): `ansible --list-hosts` walks the inventory as the play does."""
        proc = subprocess.run([os.path.join(BIN, 'ansible'), 'all', '-i', self.scale.inventory,
                               '--list-hosts'], env=ansible_env(RUN_ENV), cwd=self.base,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, check=True)
        names = [line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()]
        assert sorted(names) == sorted(self.lab.hosts), proc.stdout
        return names

    def deploy(self, extra_vars=None, hosts=None):
        """ansible-playbook nixdeploy.fleet.deploy (on ``hosts``, else all);
        returns (PlaybookRun, report dict)."""
        self.runs += 1
        workdir = os.path.join(self.base, 'run%d' % self.runs)
        os.makedirs(workdir)
        report_dir = os.path.join(workdir, 'report')
        # a control path folder per run: the next run never rides a master
        # of this one (one to a host made unreachable would hang)
        control = os.path.join(workdir, 'cp')
        args = ['-e', json.dumps(extra_vars)] if extra_vars else []
        if hosts is not None:
            limit = os.path.join(workdir, 'limit')
            with open(limit, 'w') as handle:
                handle.write('\n'.join(hosts) + '\n')
            args += ['-l', '@' + limit]
        try:
            run = run_playbook(PLAYBOOK, self.scale.inventory, workdir, args=args, env=dict(
                RUN_ENV, ANSIBLE_SSH_CONTROL_PATH_DIR=control, NIXDEPLOY_REPORT_DIR=report_dir,
                # the tests' recorder (the custom stats AWX keeps) beside the two users enable
                ANSIBLE_CALLBACKS_ENABLED='record,nixdeploy.fleet.summary,nixdeploy.fleet.report'))
        finally:
            stop_masters(control)
        # what the playbook printed, to read when an assertion fails
        with open(os.path.join(workdir, 'output.log'), 'w') as handle:
            handle.write(run.stdout + '\n--- stderr\n' + run.stderr)
        with open(os.path.join(report_dir, 'nixdeploy-report.json')) as handle:
            report = json.load(handle)
        with open(SCHEMA) as handle:
            jsonschema.validate(report, json.load(handle))
        return run, report

    def state(self, name):
        """What a host holds, read from its folder (its /nix): the system the
        activation recorded as active, the system profile's generation links,
        the activation history and the store's entries."""
        hostdir = self.lab.host(name)['dir']
        profiles = os.path.join(hostdir, 'nix', 'var', 'nix', 'profiles')
        links = dict((entry, os.readlink(os.path.join(profiles, entry)))
                     for entry in os.listdir(profiles)
                     if entry.startswith('system') and os.path.islink(os.path.join(profiles, entry)))
        return {'active': _read(os.path.join(hostdir, 'nix', 'var', 'lab', 'system', 'active')),
                'history': _read(os.path.join(hostdir, 'nix', 'var', 'lab', 'history-system')),
                'links': links,
                'store': sorted(os.listdir(os.path.join(hostdir, 'nix', 'store')))}

    def states(self):
        return dict((name, self.state(name)) for name in self.lab.hosts)

    def unreachable(self, name):
        """Remove the host's address inside its network namespace (and the
        controller's neighbour entry for it): a connection fails within
        seconds (no route to host), as to a host that is down."""
        host = self.lab.host(name)
        prefix = self.lab.network.prefixlen
        subprocess.run(['ip', '-n', host['netns'], 'addr', 'del', '%s/%d' % (host['address'], prefix),
                        'dev', 'eth0'], check=True)
        subprocess.run(['ip', 'neigh', 'del', host['address'], 'dev', self.lab.bridge], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def reachable(self, name):
        host = self.lab.host(name)
        subprocess.run(['ip', '-n', host['netns'], 'addr', 'replace',
                        '%s/%d' % (host['address'], self.lab.network.prefixlen), 'dev', 'eth0'],
                       check=True)

    def down(self):
        self.scale.down()


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def generation(link_name):
    match = re.match(r'^system-(\d+)-link$', link_name)
    return int(match.group(1)) if match else None


def current(state):
    """(generation number, store path) the system profile points at."""
    target = state['links'].get('system')
    return generation(target), state['links'].get(target)


def summaries(stdout):
    """{host: summary line} of every NIXDEPLOY SUMMARY block, and the number of blocks."""
    lines, blocks, inside = {}, 0, False
    for line in stdout.splitlines():
        if 'NIXDEPLOY SUMMARY' in line:
            inside, blocks = True, blocks + 1
            continue
        if inside and (not line.strip() or line.startswith(('nixdeploy', 'PLAY', 'TASK'))):
            inside = False
        elif inside and not line.startswith(' '):  # indented: a failed host's cause
            lines[line.split()[0]] = line
    return lines, blocks


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    if not os.path.exists(os.path.join(BIN, 'ansible-playbook')):
        pytest.fail('no ansible-playbook beside %s' % BIN)
    base = str(tmp_path_factory.mktemp('scale'))
    made = Fleet(base)
    try:
        made.order = made.play_order()
        # a first system on every host (real fleets upgrade a running one),
        # all at once, as `make bench` deploys it
        made.scale.new_version(behaviour='ok')
        run, report = made.deploy()
        assert run.rc == 0, run
        assert report['totals']['changed'] == HOSTS, report['totals']
        yield made
    finally:
        made.down()
    # nothing of the lab is left: namespaces, interfaces, namespace files
    assert made.lab.leftovers() == []


def test_a_bad_canary_stops_the_rollout_and_no_other_host_changes(fleet):
    canary, others = fleet.order[0], fleet.order[1:]
    before = fleet.states()
    old_generation, old_path = current(before[canary])
    assert old_path == before[canary]['active'] and old_generation is not None
    fleet.changed_flake = True
    fleet.scale.new_version(behaviour='ok')
    fleet.flake.set_config(canary, behaviour='fail')
    run, report = fleet.deploy({'nix_serial': SERIAL, 'nix_max_fail_percentage': 0})
    assert run.rc != 0, run
    after = fleet.states()

    # the canary tried the new system, failed, rolled back to what it ran
    rec = report['hosts'][canary]
    assert rec['status'] == 'rolled_back' and rec['failed'] and rec['rolled_back'], rec
    assert rec['failed_phase'] == 'activate' and rec['rollback_reason'], rec
    assert rec['eval']['batch_hosts'] == 1, rec['eval']
    attempted = rec['generation']['attempted']['path']
    assert attempted and attempted != old_path, rec['generation']
    assert rec['generation']['before']['path'] == rec['generation']['after']['path'] == old_path
    assert after[canary]['active'] == old_path
    assert current(after[canary]) == (old_generation, old_path), after[canary]['links']
    # its previous generation is intact: every link it had is still there,
    # and its system is a valid path of its store
    for link, target in before[canary]['links'].items():
        if link != 'system':
            assert after[canary]['links'].get(link) == target, (link, after[canary]['links'])
    assert fleet.lab.store_has(canary, old_path)
    lines, blocks = summaries(run.stdout)
    assert blocks == 1 and list(lines) == [canary], run
    assert 'FAILED: rolled back' in lines[canary], lines[canary]
    assert 'no further batch starts (%d hosts not deployed)' % len(others) in run.stdout, run
    assert run.summary()[canary]['rolled_back'], run.summary()

    # the report holds the canary alone: no other host was touched
    assert list(report['hosts']) == [canary], sorted(report['hosts'])
    totals = report['totals']
    assert (totals['hosts'], totals['rolled_back'], totals['changed']) == (1, 1, 0), totals
    changed = [name for name in others if after[name] != before[name]]
    assert changed == [], [(name, before[name], after[name]) for name in changed[:3]]


def test_waves_go_on_within_the_failure_limit(fleet):
    order = fleet.order
    waves, start = [], 0
    for size in WAVES:
        waves.append(order[start:start + size])
        start += size
    assert sum(len(w) for w in waves) == HOSTS
    # wave 3 (25 hosts): a bad system and an unreachable host, 8% (not more
    # than 10%); wave 4: a bad system and a slow activation
    bad = [waves[2][7], waves[3][20]]
    lost, slow = waves[2][15], waves[3][40]
    before = fleet.states()
    fleet.changed_flake = True
    fleet.scale.new_version(behaviour='ok')
    for name in bad:
        fleet.flake.set_config(name, behaviour='fail')
    fleet.flake.set_config(slow, behaviour='slow')
    fleet.unreachable(lost)
    try:
        run, report = fleet.deploy({'nix_serial': SERIAL, 'nix_max_fail_percentage': 10})
    finally:
        fleet.reachable(lost)
    assert run.rc != 0, run
    after = fleet.states()
    hosts = report['hosts']
    assert sorted(hosts) == sorted(order), 'not every wave ran: %d hosts' % len(hosts)
    # every wave a batch of its own, evaluated once
    for number, wave in enumerate(waves, 1):
        sizes = set(hosts[name]['eval']['batch_hosts'] for name in wave)
        assert sizes == {len(wave)}, (number, sizes)
    lines, blocks = summaries(run.stdout)
    assert blocks == len(WAVES) and sorted(lines) == sorted(order), (blocks, len(lines))
    assert 'no further batch starts' not in run.stdout, run

    for name in bad:
        rec = hosts[name]
        assert rec['status'] == 'rolled_back' and rec['failed_phase'] == 'activate', rec
        assert after[name]['active'] == before[name]['active'], name
        assert current(after[name]) == current(before[name]), (name, after[name]['links'])
        assert 'FAILED: rolled back' in lines[name], lines[name]
    rec = hosts[lost]
    # the login probe never reached it: Ansible's unreachable, no connection lost
    assert rec['status'] == 'failed' and rec['unreachable'] and not rec['connection_lost'] \
        and not rec['rolled_back'], rec
    assert 'unreachable' in lines[lost], lines[lost]
    # untouched: nothing copied to it, nothing activated, no new generation
    assert after[lost] == before[lost], (after[lost], before[lost])
    good = [name for name in order if name not in bad + [lost]]
    assert slow in good
    stale = []
    for name in good:
        rec = hosts[name]
        new_path = rec['store_path']
        if (rec['status'] != 'changed' or after[name]['active'] != new_path
                or new_path == before[name]['active']
                or current(after[name]) != (current(before[name])[0] + 1, new_path)):
            stale.append((name, rec['status'], rec.get('message')))
    assert stale == [], stale[:5]
    assert 'switched' in lines[slow], lines[slow]
    slow_activate = [p for p in hosts[slow]['phases'] if p['name'] == 'activate']
    assert slow_activate and slow_activate[0]['duration'] >= 6, hosts[slow]['phases']
    totals = report['totals']
    assert (totals['changed'], totals['rolled_back'], totals['failed'], totals['unreachable'],
            totals['connection_lost']) == (len(good), len(bad), 0, 1, 0), totals
    # the custom stat AWX keeps as the job's artifacts says the same
    stats = run.summary()
    assert sorted(stats) == sorted(order)
    assert all(stats[name]['rolled_back'] for name in bad), [stats[name] for name in bad]
    assert stats[lost]['failed'] and not stats[lost]['connection_lost'], stats[lost]
    assert stats[lost]['outcome'].startswith('UNREACHABLE: '), stats[lost]
    assert set(stats[name]['outcome'] for name in good) == {'switched'}
    fleet.good = good


def test_the_noop_redeploy_of_the_good_hosts_changes_nothing(fleet):
    good = fleet.good
    if good is None and not fleet.changed_flake:
        # run alone: the fixture's deploy put every host on the flake's system
        good = list(fleet.order)
    elif good is None:
        pytest.fail('another test of this module changed the flake and the waves test, which '
                    'says which hosts run its systems, did not finish: run this test alone or '
                    'after the waves test')
    before = fleet.states()
    run, report = fleet.deploy({'nix_serial': SERIAL, 'nix_max_fail_percentage': 10}, hosts=good)
    assert run.rc == 0, run
    after = fleet.states()
    assert sorted(report['hosts']) == sorted(good)
    assert report['totals']['changed'] == 0 and report['totals']['failed'] == 0, report['totals']
    lines, _blocks = summaries(run.stdout)
    for name in good:
        rec = report['hosts'][name]
        assert rec['status'] == 'unchanged', rec
        assert (rec['copy'] or {}).get('paths_sent', 0) == 0, rec['copy']
        assert lines[name].endswith('unchanged'), lines[name]
    # the same system, no new generation, no activation, nothing copied, on
    # every host (the ones left out of the run too)
    changed = [name for name in fleet.order if after[name] != before[name]]
    assert changed == [], changed
    recap = [line for line in run.stdout.split('PLAY RECAP')[-1].splitlines() if ' : ' in line]
    assert len(recap) == len(good) and all(' changed=0 ' in line for line in recap), recap[:3]
