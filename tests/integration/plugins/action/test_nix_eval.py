"""nixdeploy.fleet.nix_eval for real: playbooks, real Nix, on the controller.

What these tests ask of nix_eval happens on the controller: its hosts are
an inventory of names and vars (``Roster``), no lab comes up, and its one
part that logs in to a host, the login probe, is off (``eval_task``). The
Nix processes are counted with a logging wrapper given as nix_bin.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from benchmarks._pipeline_figures import MARKER, NixSampler
from tests.collection import BIN, ansible_env, collections_path, run_playbook
from tests.lab import heavy
from tests.lab.lab import PERSONAS as LAB_PERSONAS

from tests.integration.plugins.action import conftest_eval
from tests.integration.plugins.action.conftest_eval import (
    NIX_OPTIONS, PERSONAS, calls, inventory, make_flake, nix_wrapper, play, spot_checks, truth)

sys.path.insert(0, collections_path())
# a failed result's figures are under ``details``: read as the report reads them
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _outcome  # noqa: E402

# real Nix and its store, as root: with the lab tests, though no lab comes up
pytestmark = pytest.mark.lab


# the discard service's port: closed on the lab's machines
CLOSED_PORT = 9


class Roster(object):
    """The hosts nix_eval is asked about, as the lab would name them, with
    none of them up: nix_eval evaluates on the controller, and its login
    probe is off (``eval_task``). The same names, personas (cycled over
    h1..h8 as ``Lab.up`` cycles them), platforms and users as
    ``lab_session``'s lab, so a fixture flake (``FleetFlake.for_lab``) and
    the inventory (``conftest_eval.inventory``) are what they are with the
    lab; each address is a loopback one whose port nothing listens on
    (``CLOSED_PORT``), so a task that did log in would fail at once, never
    leaving this machine, instead of passing unseen."""

    def __init__(self, count=8, personas=None):
        personas = personas or PERSONAS
        self.hosts = {}
        for number in range(1, count + 1):
            persona = personas[(number - 1) % len(personas)]
            traits = LAB_PERSONAS[persona]
            self.hosts['h%d' % number] = {
                'name': 'h%d' % number, 'persona': persona, 'platform': traits['platform'],
                'address': '127.0.0.%d' % (10 + number), 'ssh_user': traits['ssh_user'],
                'become': traits['become']}

    def ansible_inventory(self):
        """As ``Lab.ansible_inventory``: grouped by persona, each host's
        connection vars and its platform."""
        groups = {}
        for name, host in self.hosts.items():
            hostvars = {'ansible_host': host['address'], 'ansible_port': CLOSED_PORT,
                        'ansible_user': host['ssh_user'], 'nix_platform': host['platform']}
            if host['become']:
                hostvars['ansible_become'] = True
            groups.setdefault(host['persona'].replace('-', '_'), {'hosts': {}})['hosts'][name] = \
                hostvars
        return {'all': {'children': groups}}


@pytest.fixture(scope='module')
def evb_hosts():
    """The module's hosts: names and vars only (Roster); no lab comes up."""
    return Roster()


# the module-scoped fixture of conftest_eval, visible to pytest here
calibrated = conftest_eval.calibrated


TASK = 'evaluate'


def eval_task(nix_bin, **extra):
    # one evaluator unless a test asks for more: these count its processes.
    # No login probe: it is nix_eval's one part that logs in to a host (its
    # tests, with hosts up: the deploy role's, the network shapes'), and
    # these hosts are not up (Roster)
    args = {'nix_bin': nix_bin, 'nix_options': NIX_OPTIONS, 'probe_timeout': 0,
            'eval_workers': 1}
    args.update(extra)
    return [{'name': TASK, 'nixdeploy.fleet.nix_eval': args, 'register': 'ev'},
            {'name': 'fact', 'ansible.builtin.debug': {'var': 'ansible_facts.nix_drv_path'}}]


def named(tasks, suffix):
    """eval_task's tasks, their names ending in ``suffix`` (one play's of several)."""
    return [dict(task, name='%s %s' % (task['name'], suffix)) for task in tasks]


# Outputs a real flake has beside its systems, for the controller's system:
# `nix eval <flake>#""` on any Nix took packages.<system> for the outputs.
PACKAGES_OUTPUTS = r'''
    // (let
      system = (builtins.fromJSON (builtins.readFile ./fleet.json)).system;
      hello = derivation { name = "hello"; inherit system; builder = "/bin/sh"; };
    in {
      packages.${system} = { default = hello; inherit hello; };
      legacyPackages.${system} = { inherit hello; lib.version = "0"; };
      devShells.${system}.default = hello;
      checks.${system}.hello = hello;
      formatter.${system} = hello;
    })
'''


def with_packages_outputs(flake):
    """The flake's outputs extended with PACKAGES_OUTPUTS."""
    path = os.path.join(flake.path, 'flake.nix')
    with open(path) as handle:
        text = handle.read()
    # the outputs function's body is `import ./lib.nix { ... }`: extend it
    body = text.rindex('}')
    outputs_end = text.rindex(';', 0, body)
    with open(path, 'w') as handle:
        handle.write(text[:outputs_end] + PACKAGES_OUTPUTS + text[outputs_end:])


def test_eight_hosts_one_process(evb_hosts, tmp_path):
    """Every host of every persona in one Nix process, each answered right,
    on a flake that also has the outputs a real flake has beside its
    systems (scenario: test_flake_with_packages_evaluates_its_systems) and
    two hosts that deploy one configuration (scenario:
    test_shared_configuration_evaluates_once). Every other test of the module
    evaluates a flake without packages outputs or shared configurations:
    what this flake adds is told apart by the assertions named for it."""
    # h1 and h5 (both nixos) deploy one configuration "web"
    flake = make_flake(tmp_path / 'flake', evb_hosts, heavy=20000,
                       shared={'h1': 'web', 'h5': 'web'})
    with_packages_outputs(flake)
    nix, log = nix_wrapper(tmp_path)
    run = play(tmp_path / 'play', evb_hosts, flake, eval_task(nix))
    assert run.rc == 0, run
    evals = calls(log, 'eval')
    # one process still with the packages outputs: the installable named
    # the outputs themselves
    assert len(evals) == 1, evals
    # the flake's first recording run: one host drawn and evaluated by Nix
    # beside the evaluator, its answer compared with the recorded one
    assert len(spot_checks(log)) == 1, spot_checks(log)
    platforms = set()
    for host in evb_hosts.hosts:
        res = run.result(TASK, host)
        assert res['status'] == 'ok', (host, res)
        got = res['result']
        assert got['changed'] is False, host
        expected = truth(flake, host)
        assert got['drv_path'] == expected['drvPath'], (host, got)
        assert got['out_path'] == expected['outPath'], (host, got)
        assert got['platform'] == evb_hosts.hosts[host]['platform'], host
        assert got['system'] == flake.data['system'], host
        assert got['attr'] == flake.attr(host), host
        assert got['flake'] == flake.ref, host
        platforms.add(got['platform'])
        # the fact a later task (nix_build) defaults to
        assert run.result('fact', host)['result']['ansible_facts.nix_drv_path'] == \
            expected['drvPath'], host
    assert platforms == {'nixos', 'darwin', 'nix-on-droid', 'home-manager'}
    assert sum(1 for h in evb_hosts.hosts if run.result(TASK, h)['result']['evaluated_here']) == 1
    # the shared configuration: 7 distinct systems for 8 hosts, each
    # attribute once in the expression, h1 and h5 given one system
    assert evals[0].count('"nixosConfigurations" "web"') == 1, evals
    h1 = run.result(TASK, 'h1')['result']
    assert h1['out_path'] == run.result(TASK, 'h5')['result']['out_path'], h1
    assert 'nixos-system-web-' in h1['out_path'], h1


BROKEN_H3 = {'h3': {'platform': 'nix-on-droid', 'broken_eval': True}}
# the end of a play whose host failed on purpose: the next play's hosts are
# every host again, the failed one too
CLEAR = {'name': 'clear', 'ansible.builtin.meta': 'clear_host_errors'}


def batch_figures(results):
    """The results that carry a batch's figures (``evaluated_here``), read
    as the report reads them: they ride on the batch's last answer, which
    may be a broken host's, whose failed result keeps them under
    ``details``."""
    return [r for r in (_outcome.with_details(r['result']) for r in results)
            if r.get('evaluated_here')]


def others_answer(run, task, flake, hosts, broken='h3'):
    """Every host but ``broken`` got its own system of ``flake`` from ``task``."""
    for host in hosts:
        if host != broken:
            res = run.result(task, host)
            assert res['status'] == 'ok', (host, res)
            assert res['result']['out_path'] == truth(flake, host)['outPath'], (host, res)


def shallow_clone(flake, folder):
    """``git+file://`` of a depth-1 clone of ``flake`` (made a repository of
    two commits), as a CI job checks it out (actions/checkout's default)
    and AWX 21.4 copied a project."""
    git = ['git', '-c', 'user.name=t', '-c', 'user.email=t@t', '-C', flake.path]
    subprocess.run(git + ['init', '-q'], check=True)
    subprocess.run(git + ['add', '-A'], check=True)
    subprocess.run(git + ['commit', '-qm', 'one'], check=True)
    subprocess.run(git + ['commit', '-q', '--allow-empty', '-m', 'two'], check=True)
    subprocess.run(['git', 'clone', '-q', '--depth', '1', 'file://' + flake.path, folder],
                   check=True)
    assert os.path.isfile(os.path.join(folder, '.git', 'shallow'))
    return 'git+file://' + folder


def test_eval_error_fails_only_that_host(evb_hosts, tmp_path):
    """A broken host (h3) fails alone, named with Nix's own message, in three
    shapes, each a play of one run with its own flake, its own ``nix`` that
    counts its processes, and its own task name (the run's evaluation cache
    holds each flake's answers apart):

    - ``one``: one evaluator; the failed chunk is evaluated again past the
      broken host, not host by host (its flake as the task's argument);
    - ``parallel`` (scenario: test_parallel_evaluators_answer_every_host):
      two evaluators side by side, one process each for half the hosts; the
      broken host costs its evaluator one more process (its flake as the
      task's argument);
    - ``clone`` (scenario: test_a_flake_in_a_depth_1_clone): the fleet's
      flake in a depth-1 clone, given by the inventory's nix_flake: Nix
      2.20+ evaluates such a clone's commit when told it is shallow, and the
      run's pin tells it (it pinned the commit alone, and Nix refused every
      host). Nix 2.8 refuses the clone itself: every host fails with its
      message, named. Last: a play whose every host fails ends the run.

    A play after one whose host failed starts with every host
    (``clear_host_errors``); the run's return code is its last play's."""
    one = make_flake(tmp_path / 'one', evb_hosts, configurations=BROKEN_H3)
    parallel = make_flake(tmp_path / 'parallel', evb_hosts, heavy=20000, configurations=BROKEN_H3)
    cloned = make_flake(tmp_path / 'cloned', evb_hosts, configurations=BROKEN_H3)
    ref = shallow_clone(cloned, str(tmp_path / 'clone'))
    inv = inventory(evb_hosts, cloned, extra=dict((h, {'nix_flake': ref}) for h in evb_hosts.hosts))
    nix = {}
    for name in ('one', 'parallel', 'clone'):
        (tmp_path / ('nix-' + name)).mkdir()
        nix[name] = nix_wrapper(tmp_path / ('nix-' + name))
    playbook = [
        {'hosts': 'all', 'gather_facts': False,
         'tasks': named(eval_task(nix['one'][0], flake=one.ref), 'one') + [CLEAR]},
        {'hosts': 'all', 'gather_facts': False,
         'tasks': named(eval_task(nix['parallel'][0], flake=parallel.ref, eval_workers=2),
                        'parallel') + [CLEAR]},
        {'hosts': 'all', 'gather_facts': False,
         'tasks': named(eval_task(nix['clone'][0]), 'clone')}]
    run = run_playbook(playbook, inv, str(tmp_path / 'play'), env={'ANSIBLE_FORKS': '8'})
    assert run.rc != 0, run

    # one evaluator
    task = '%s one' % TASK
    failed = run.result(task, 'h3')
    assert failed['status'] == 'failed', failed
    msg = failed['result']['msg']
    assert msg.startswith('h3: '), msg
    # Nix's own message with file and line
    assert "attribute 'lab' missing" in msg, msg
    assert 'lib.nix:' in msg, msg
    others_answer(run, task, one, evb_hosts.hosts)
    # the failed chunk is re-evaluated past the broken host, not host by host:
    # one process up to h3's error, one for the hosts after it
    evals = calls(nix['one'][1], 'eval')
    assert len(evals) == 2, evals

    # two evaluators
    task = '%s parallel' % TASK
    assert run.result(task, 'h3')['status'] == 'failed', run.result(task, 'h3')
    assert "attribute 'lab' missing" in run.result(task, 'h3')['result']['msg']
    others_answer(run, task, parallel, evb_hosts.hosts)
    # 2 evaluators: 2 processes, plus one for the hosts after h3 in its piece
    evals = calls(nix['parallel'][1], 'eval')
    assert len(evals) == 3, evals
    (last,) = batch_figures(run.results(task))
    figures = last['evaluation']
    assert figures['processes'] == last['nix_processes'] == 3, figures
    assert figures['workers'] == 2 and figures['budget_mb'] == 2 * 4096, figures
    assert figures['evaluated'] == 8 and figures['from_cache'] == 0, figures

    # the depth-1 clone
    task = '%s clone' % TASK
    nix_2_8 = subprocess.run(['nix', '--version'], stdout=subprocess.PIPE, universal_newlines=True,
                             check=True).stdout.split()[-1].startswith('2.8.')
    for host in evb_hosts.hosts:
        res = run.result(task, host)
        if nix_2_8:
            assert res['status'] == 'failed', res
            assert res['result']['msg'].startswith('%s: ' % host), res
            assert 'is a shallow Git repository' in res['result']['msg'], res
        elif host == 'h3':
            assert res['status'] == 'failed', res
            assert "attribute 'lab' missing" in res['result']['msg'], res
        else:
            assert res['status'] == 'ok', res
            got = res['result']
            assert got['out_path'] == truth(cloned, host)['outPath'], got
            assert got['flake'] == ref


def test_limit_serial_and_chunks(evb_hosts, tmp_path):
    """-l, serial and eval_chunk_size, each counted in its own Nix processes:
    -l in a run of its own; serial and the chunks as two plays of one run,
    the chunks' play on a flake of its own given as the task's argument (the
    run's evaluation cache would answer the serial play's flake), each
    play's processes logged by a ``nix`` of its own."""
    flake = make_flake(tmp_path / 'flake', evb_hosts, heavy=1000)
    nix, log = nix_wrapper(tmp_path)
    # -l: only the selected hosts are evaluated (h2 is not)
    run = play(tmp_path / 'limit', evb_hosts, flake, eval_task(nix), args=['-l', 'h1,h3,h4'])
    assert run.rc == 0, run
    assert {r['host'] for r in run.results(TASK)} == {'h1', 'h3', 'h4'}
    evals = calls(log, 'eval')
    assert len(evals) == 1 and '"h2"' not in evals[0] and '"h4"' in evals[0], evals
    # serial: one batch evaluation per batch of 3 (3 + 3 + 2 hosts)
    open(log, 'w').close()
    chunked = make_flake(tmp_path / 'chunked', evb_hosts, heavy=1000)
    (tmp_path / 'chunks').mkdir()
    chunks_nix, chunks_log = nix_wrapper(tmp_path / 'chunks')
    playbook = [
        {'hosts': 'all', 'gather_facts': False, 'serial': 3,
         'tasks': named(eval_task(nix), 'serial')},
        # eval_chunk_size 3: ceil(8 / 3) processes for one batch
        {'hosts': 'all', 'gather_facts': False,
         'tasks': named(eval_task(chunks_nix, eval_chunk_size=3, flake=chunked.ref), 'chunks')}]
    run = run_playbook(playbook, inventory(evb_hosts, flake), str(tmp_path / 'serial'),
                       env={'ANSIBLE_FORKS': '8'})
    assert run.rc == 0, run
    serial = run.results('%s serial' % TASK)
    assert len(serial) == 8 and all(r['status'] == 'ok' for r in serial), serial
    assert len(calls(log, 'eval')) == 3, calls(log, 'eval')
    chunks = run.results('%s chunks' % TASK)
    assert len(chunks) == 8, chunks
    for res in chunks:
        assert res['status'] == 'ok', res
        assert res['result']['flake'] == chunked.ref, res
    assert len(calls(chunks_log, 'eval')) == 3, calls(chunks_log, 'eval')


def test_explicit_arguments_and_per_host_templates(evb_hosts, tmp_path):
    """Two plays of one run, on the hosts' inventory without nix_flake and
    nix_attr host vars, each with a flake of its own (the run's evaluation
    cache holds their answers apart):

    - the flake as an argument, the attribute from nix_platform + the host
      name; then attr templated per host (h5 asks for h1's system);
    - (scenario: test_a_loop_gets_each_item_its_own_evaluation) nix_eval in a
      loop over two attributes per host (its own system, then its
      neighbour's): every item of every host is answered for its own
      attribute, never with what the batch or an earlier item left for it."""
    flake = make_flake(tmp_path / 'flake', evb_hosts)
    looped = make_flake(tmp_path / 'looped', evb_hosts)
    hosts = sorted(evb_hosts.hosts)
    wanted = dict((host, [looped.attr(host), looped.attr(hosts[(i + 1) % len(hosts)])])
                  for i, host in enumerate(hosts))
    nix, _log = nix_wrapper(tmp_path)
    inv = inventory(evb_hosts, flake, extra=dict((h, {'loop_attrs': wanted[h]}) for h in hosts))
    # no nix_flake/nix_attr host vars at all: flake as an argument, the
    # attribute from nix_platform + the host name; attr templated per host
    for group in inv['all']['children'].values():
        for hostvars in group['hosts'].values():
            del hostvars['nix_flake']
            del hostvars['nix_attr']
    tasks = [{'name': TASK, 'nixdeploy.fleet.nix_eval': {
        'nix_bin': nix, 'nix_options': NIX_OPTIONS, 'probe_timeout': 0, 'flake': str(flake.path)}},
        {'name': 'templated', 'nixdeploy.fleet.nix_eval': {
            'nix_bin': nix, 'nix_options': NIX_OPTIONS, 'probe_timeout': 0, 'flake': flake.ref,
            'attr': '{{ "nixosConfigurations.h1.config.system.build.toplevel" '
                    'if inventory_hostname == "h5" else omit }}'}}]
    loop = [{'name': 'loop', 'loop': '{{ loop_attrs }}', 'nixdeploy.fleet.nix_eval': {
        'nix_bin': nix, 'nix_options': NIX_OPTIONS, 'probe_timeout': 0, 'flake': looped.ref,
        'attr': '{{ item }}'}}]
    run = run_playbook([{'hosts': 'all', 'gather_facts': False, 'tasks': tasks},
                        {'hosts': 'all', 'gather_facts': False, 'tasks': loop}],
                       inv, str(tmp_path / 'play'), env={'ANSIBLE_FORKS': '8'})
    assert run.rc == 0, run
    for host in evb_hosts.hosts:
        assert run.result(TASK, host)['result']['out_path'] == truth(flake, host)['outPath'], host
    # h5 asked for h1's system: answered right even though it differs from the batch
    assert run.result('templated', 'h5')['result']['out_path'] == truth(flake, 'h1')['outPath']
    assert run.result('templated', 'h2')['result']['out_path'] == truth(flake, 'h2')['outPath']
    # the loop: each item its own attribute's answer
    outs = dict((looped.attr(h), truth(looped, h)['outPath']) for h in hosts)
    for host in hosts:
        items = run.result('loop', host)['result']['results']
        assert [i['attr'] for i in items] == wanted[host], host
        assert [i['out_path'] for i in items] == [outs[a] for a in wanted[host]], host


# hosts asking again: test_explicit_arguments_...; two evaluators: test_eval_error_... (parallel)
@pytest.mark.here_only
def test_attributes_templated_per_host_stay_within_the_evaluators(evb_hosts, tmp_path, calibrated):
    """``attr`` templated per host to another variable than nix_attr: the
    first host foresees every host's request from its own value, so the
    other hosts ask their own. Asking together, they share a wave of evaluators
    (the flake's shared part is evaluated once per evaluator, not once per
    host), and the job never runs more Nix evaluators at once than
    eval_workers (they share its slots): 8 hosts are not 8 heaps at once.
    A broken host beside them fails alone. Every evaluation is counted once
    in the hosts' figures."""
    # each evaluation lasts long enough (half a CPU second) for the sampler
    # to see every one and those that overlap
    configurations = dict((host, dict(heavy.heavy_config(seconds=0.5, calibration=calibrated),
                                      platform=spec['platform']))
                          for host, spec in evb_hosts.hosts.items())
    configurations['h3'].update({'platform': 'nix-on-droid', 'broken_eval': True})
    flake = make_flake(tmp_path / 'flake', evb_hosts, configurations=configurations)
    inv = inventory(evb_hosts, flake, extra=dict(
        (host, {'my_attr': flake.attr(host)}) for host in evb_hosts.hosts))
    for group in inv['all']['children'].values():
        for hostvars in group['hosts'].values():
            del hostvars['nix_attr']
    nix, log = nix_wrapper(tmp_path)
    tasks = [{'name': TASK, 'nixdeploy.fleet.nix_eval': {
        'nix_bin': nix, 'nix_options': NIX_OPTIONS, 'probe_timeout': 0, 'attr': '{{ my_attr }}',
        'eval_workers': 2}}]
    token = uuid.uuid4().hex
    sampler = NixSampler(token, every=0.05).start()
    try:
        run = play(tmp_path / 'play', evb_hosts, flake, tasks, inv=inv, env={MARKER: token})
    finally:
        seen = sampler.stop()
    assert run.rc != 0, run
    assert run.result(TASK, 'h3')['status'] == 'failed'
    assert "attribute 'lab' missing" in run.result(TASK, 'h3')['result']['msg']
    for host in evb_hosts.hosts:
        if host != 'h3':
            assert run.result(TASK, host)['result']['out_path'] == truth(flake, host)['outPath']
    # the first wave (every host with the first host's attr: one
    # evaluation), then the 7 others in one wave: 2 evaluators, and one
    # more process for the hosts after the broken one; on a busy machine a
    # host that asks late starts another wave, one that asks early is in
    # the first. Not one process per host (8): two at a time at most.
    evaluations = calls(log, 'eval')
    assert 3 <= len(evaluations) < len(evb_hosts.hosts), evaluations
    assert 1 <= seen['sampled_most_at_once'] <= 2, seen
    # a wave's figures ride on its last answer, which may be the broken host's
    figures = [r['evaluation'] for r in batch_figures(run.results(TASK))]
    assert sum(f['processes'] for f in figures) == len(evaluations), figures
    # each host once with its own request, and the hosts whose own request
    # came only after the first wave took the one foreseen for them once
    # more (a host that asks in time replaces its foreseen request)
    assert len(evb_hosts.hosts) <= sum(f['evaluated'] for f in figures) \
        <= len(evb_hosts.hosts) + 7, figures


# per-host attributes asked again: test_explicit_arguments_... (its templated task and its loop)
@pytest.mark.here_only
def test_a_request_the_batch_could_not_form_is_asked_again(evb_hosts, tmp_path):
    """``attr`` templated per host, empty on h1 (its system comes from its
    platform) and given on the others, which have no platform variable. h1
    starts the batch (one fork: hosts in inventory order), whose process
    forms every request from h1's arguments: for the others that is "no
    attribute". Each of them asks again with its own request and gets its
    own system: one host's arguments never fail another host."""
    flake = make_flake(tmp_path / 'flake', evb_hosts)
    hosts = sorted(evb_hosts.hosts)
    inv = inventory(evb_hosts, flake, extra=dict(
        (h, {'my_attr': '' if h == 'h1' else flake.attr(h)}) for h in hosts))
    for group in inv['all']['children'].values():
        for name, hostvars in group['hosts'].items():
            del hostvars['nix_attr']
            if name != 'h1':
                hostvars.pop('nix_platform', None)
    nix, _log = nix_wrapper(tmp_path)
    tasks = [{'name': TASK, 'nixdeploy.fleet.nix_eval': {
        'nix_bin': nix, 'nix_options': NIX_OPTIONS, 'probe_timeout': 0, 'attr': '{{ my_attr }}'}}]
    run = play(tmp_path / 'play', evb_hosts, flake, tasks, inv=inv, env={'ANSIBLE_FORKS': '1'})
    assert run.result(TASK, 'h1')['result']['started_here'], run.result(TASK, 'h1')
    for host in hosts:
        got = run.result(TASK, host)
        assert got['status'] == 'ok', (host, got['result'].get('msg'))
        assert got['result']['out_path'] == truth(flake, host)['outPath'], host


# the cache's rules, with real Nix on both stacks: tests/unit/.../evaluation/test_eval_cache.py
@pytest.mark.here_only
def test_evaluation_cache_between_runs(evb_hosts, tmp_path):
    """A second run of the unchanged flake evaluates nothing; a changed flake,
    another evaluation option or a derivation gone from the store does.

    Three runs: the first; the unchanged flake, then another option, as two
    plays of the second; the changed flake, then the cache turned off, as
    two plays of the third. Each claim "between runs" is the first play of
    a run of its own (a fresh controller process reads what the run before
    wrote); a play after it asserts a miss, which what the play before it
    left in the process could only turn into a hit, never hide. Each play
    counts its own Nix processes (a logging wrapper of its own: the cache's
    key holds Nix's version, not its path)."""
    flake = make_flake(tmp_path / 'flake', evb_hosts)
    wrappers = {}
    for name in ('runs', 'option', 'off'):
        (tmp_path / name).mkdir()
        wrappers[name] = nix_wrapper(tmp_path / name)
    cache = {'NIXDEPLOY_EVAL_CACHE': str(tmp_path / 'cache')}

    def again(name, steps):
        """One run of one play per (step, wrapper, task args) of ``steps``:
        {step: (run, evals)}."""
        for _step, wrapper, _extra in steps:
            open(wrappers[wrapper][1], 'w').close()
        playbook = [{'hosts': 'all', 'gather_facts': False,
                     'tasks': named(eval_task(wrappers[wrapper][0], **extra), step)}
                    for step, wrapper, extra in steps]
        run = run_playbook(playbook, inventory(evb_hosts, flake), str(tmp_path / name),
                           env=dict({'ANSIBLE_FORKS': '8'}, **cache))
        assert run.rc == 0, run
        found = {}
        for step, wrapper, _extra in steps:
            task = '%s %s' % (TASK, step)
            for host in evb_hosts.hosts:
                assert run.result(task, host)['result']['out_path'] == \
                    truth(flake, host)['outPath'], (step, host)
            found[step] = (run.results(task), len(calls(wrappers[wrapper][1], 'eval')))
        return found

    results, evals = again('first', [('first', 'runs', {})])['first']
    assert evals == 1 and not any(r['result']['from_cache'] for r in results)
    found = again('unchanged', [
        ('unchanged', 'runs', {}),
        # another evaluation option: a miss
        ('option', 'option', {'nix_options': dict(NIX_OPTIONS, **{'eval-cache': False})})])
    results, evals = found['unchanged']
    assert evals == 0, 'an unchanged flake is not evaluated again'
    assert all(r['result']['from_cache'] for r in results)
    (last,) = batch_figures(results)
    assert last['evaluation']['from_cache'] == 8 and last['evaluation']['processes'] == 0
    assert found['option'][1] == 1, 'another evaluation option is a miss'
    # the flake changed (one host's version): every host evaluated again
    flake.set_config(flake.config_of('h2'), version='2')
    found = again('changed', [
        ('changed', 'runs', {}),
        # turned off: evaluated, and the cache (the changed flake's, just
        # written) is not read
        ('off', 'off', {'eval_cache': False})])
    results, evals = found['changed']
    assert evals == 1 and not any(r['result']['from_cache'] for r in results)
    assert found['off'][1] == 1, 'a cache turned off is not read'


def nix_processes_of(token):
    """pids of the ``nix eval`` processes (and the strace that records one)
    whose environment holds ``token`` (this test's job: its evaluators
    inherit the job's environment), whatever reference they evaluate."""
    found = []
    needle = ('NIXDEPLOY_TEST_JOB=%s' % token).encode()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().decode('utf-8', 'replace')
            with open('/proc/%s/environ' % pid, 'rb') as handle:
                environ = handle.read().split(b'\0')
        except OSError:
            continue
        if 'eval' in cmdline.split('\0') and needle in environ:
            found.append(int(pid))
    return found


def evaluators_of(token, host=None):
    """Those of ``nix_processes_of(token)`` that evaluate hosts: their
    expression traces each answer with the evaluator's marker (calls), which
    the run's short look at the flake's attributes does not carry; with
    ``host``, those whose expression names that host."""
    found = []
    for pid in nix_processes_of(token):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                cmdline = handle.read().decode('utf-8', 'replace')
        except OSError:
            continue
        if 'nixdeploy-eval-result' in cmdline and (host is None or '"%s"' % host in cmdline):
            found.append(pid)
    return found


def group_of(pid):
    """The process group of ``pid`` (None once it is gone)."""
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# Where the heavy host h1 is evaluated when the job is cancelled, and what
# ends that Nix process with the batch's own (tests.mutations, faults.yml):
# - 'the pool': an evaluator of the pool (evaluation/pool/_pool.py), in a
#   session of its own: the batch process kills its group (CHILD_GROUPS);
# - 'the spot check': the first recording run's spot check, which Nix
#   evaluates before the pool starts (reuse/_reuse.spot_check: one host of
#   a new recorder, its evaluator's first, h1), in the batch process's own
#   group: it ends with that group.
WHERE = {'the pool': {'eval_reuse_check': 0}, 'the spot check': {}}


@pytest.mark.parametrize('signum,where', [(signal.SIGINT, 'the spot check'),
                                          (signal.SIGKILL, 'the pool')],
                         ids=['SIGINT-spot-check', 'SIGKILL-pool'])
def test_a_cancelled_job_leaves_no_evaluator(evb_hosts, tmp_path, signum, where, calibrated):
    """The batch's evaluation runs in a process of its own (it outlives the
    first host's task): a job stopped mid-evaluation (Ctrl-C, or killed as
    AWX's cancel ends it) takes its evaluators with it, wherever the host
    was being evaluated (``WHERE``)."""
    flake = make_flake(tmp_path / 'flake', evb_hosts, configurations={
        'h1': heavy.heavy_config(seconds=120, calibration=calibrated)})
    workdir = tmp_path / 'play'
    workdir.mkdir()
    (workdir / 'playbook.yml').write_text(json.dumps(
        [{'hosts': 'all', 'gather_facts': False,
          'tasks': eval_task('nix', eval_workers=1, **WHERE[where])}]))
    (workdir / 'inventory.json').write_text(json.dumps(inventory(evb_hosts, flake)))
    token = uuid.uuid4().hex
    job = subprocess.Popen([os.path.join(BIN, 'ansible-playbook'), '-i', 'inventory.json',
                            'playbook.yml'], cwd=str(workdir),
                           env=dict(ansible_env(cwd=str(workdir)), NIXDEPLOY_TEST_JOB=token),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # the heavy host's evaluator (not the run's short look at the
        # flake's attributes, nor a light host's), told by its command
        # line: it is running when it is seen, and h1 holds it for 120 s
        while not evaluators_of(token, 'h1'):
            assert job.poll() is None and time.monotonic() < deadline, 'no evaluator started'
            time.sleep(0.2)
        # the case is the one named: a pool's evaluator leads a group of
        # its own (strace's, with Nix in it, where it records); the spot
        # check's Nix is in the batch process's group
        seen = evaluators_of(token, 'h1')
        leaders = [pid for pid in seen if group_of(pid) == pid]
        assert bool(leaders) == (where == 'the pool'), (where, seen, leaders)
        job.send_signal(signum)
        job.wait(timeout=60)
        deadline = time.monotonic() + 10
        while nix_processes_of(token) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert nix_processes_of(token) == [], 'an evaluator of %s outlived the job' % where
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
        # what a failed case left running (this job's Nix: its token) goes too
        for pid in nix_processes_of(token):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
