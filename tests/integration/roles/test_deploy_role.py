"""The deploy role end to end on the `rol` lab: real eval, build, ssh copies and
activations, run as users run it (`ansible-playbook nixdeploy.fleet.deploy`).

Every test starts from a deployed fleet (``fleet``: the module's first deploy,
made once, by whichever test asks first) and reads the state it changes from
the hosts themselves, so each runs alone with ``-k`` as well as in order:
deploy, redeploy (nothing changes), check/diff of a new version (nothing
changes, the diff is shown), a version one host fails to activate (it rolls
back and ends failed; the others go on; the play exits non-zero), the rollback
role, the keys the activate task uploads (with --tags keys and --skip-tags
keys), one run in which a host's own role variable (nix_goal) reaches its
modules beside a failing host, and last one host's phase results alone and
beside the fleet (they must not grow with it).

Scenarios that need the same flags share a run, one host a case (issue 91):
the keys' first deploy is h1's case in the run where h2 fails its activation
and h3 its evaluation (``failed_beside_keys``), which both tests read.
"""

import json
import os
import re
import subprocess
import types
import uuid

import pytest

from tests.collection import run_playbook
from tests.integration.plugins.action.conftest_eval import calls, nix_wrapper

pytestmark = pytest.mark.lab

PLAYBOOK = 'nixdeploy.fleet.deploy'
EVAL = 'Evaluate the system of each host'
ACTIVATE = 'Activate and confirm the new system'
PHASE_TASKS = (EVAL, 'Build the system of each host', 'Copy the closure to each host', ACTIVATE)


def task(name):
    return 'nixdeploy.fleet.deploy : %s' % name


def deploy(fleet, *args):
    return run_playbook(PLAYBOOK, fleet.inventory, fleet.rundir(), args=list(args))


def out_paths(run):
    return {r['host']: r['result']['out_path'] for r in run.results(task(EVAL)) if r['status'] == 'ok'}


def summaries(run):
    return run.summary()


def tasks_run(run, host):
    """The tasks that ran (not skipped) on ``host``."""
    return [r['task'] for r in run.results(host=host) if r['status'] != 'skipped']


BUILD = 'Build the system of each host'


@pytest.fixture(scope='module')
def first_deploy(rol_fleet):
    """The fleet's first deploy, made once for the module by the first test
    that needs a deployed fleet, with a ``nix`` that logs its calls: (run,
    the calls' log). Its systems are new to this controller (a no-op in
    their activation, the session's own), so the build builds them: a
    store that holds them already lists them all at once."""
    rol_fleet.flake.set_all(on_activate=': session %s' % uuid.uuid4().hex[:12])
    nix, log = nix_wrapper(rol_fleet.rundir())
    return deploy(rol_fleet, '-e', 'nix_bin=%s' % nix), log


@pytest.fixture
def fleet(rol_fleet, first_deploy):
    """The `rol` fleet, deployed at least once."""
    assert first_deploy[0].rc == 0, first_deploy[0]
    return rol_fleet


def store_paths(line):
    return set(word for word in line.split() if word.startswith('/nix/store/'))


def test_deploy_activates_every_host(rol_fleet, first_deploy):
    lab = rol_fleet.lab
    run, log = first_deploy
    assert run.rc == 0, run
    paths = out_paths(run)
    assert sorted(paths) == ['h1', 'h2', 'h3'], run
    # Each system's closure is listed once, by the build (its sizes), and the
    # copy reads the listing the build kept, not Nix again: every system is
    # named by exactly one `nix path-info`, and the build's results carry the
    # sizes read from it. The build lists a system's closure when it answers
    # the system's host: h3's system builds slowly (build_seconds, conftest),
    # so the build's watch answers h1 and h2 while h3 still builds, with a
    # listing of their own (a loaded machine splits a build that way too, or
    # into waves): several calls, each system in one of them, h3 in the last.
    listed = [store_paths(line) for line in calls(log, 'path-info')]
    systems = set(paths.values())
    for host, path in paths.items():
        assert [call <= systems for call in listed if path in call] == [True], (host, listed)
        copy = run.result(task('Copy the closure to each host'), host)['result']
        built = run.result(task(BUILD), host)['result']
        assert copy['closure_paths'] == built['closure_paths'] > 0, (host, copy, built)
    assert set().union(*listed) == systems, listed
    # a listing before the last one is the watch's: its hosts' builds ended
    # while h3's still ran
    ended = dict((h, run.result(task(BUILD), h)['ended']) for h in paths)
    assert paths['h3'] in listed[-1], listed
    for call in listed[:-1]:
        assert all(ended[h] < ended['h3'] for h in paths if paths[h] in call), (listed, ended)
    for host, path in paths.items():
        assert lab.active(host) == path, (host, run)
    summary = summaries(run)
    assert {h: s['outcome'] for h, s in summary.items()} == {
        'h1': 'switched', 'h2': 'switched', 'h3': 'switched'}, run
    assert summary['h3']['platform'] == 'darwin'
    # the summary table is printed once, one line per host
    assert run.stdout.count('NIXDEPLOY SUMMARY') == 1, run
    for host in paths:
        assert '%s ' % host in run.stdout
    # one task per phase and nothing else on a host that succeeds (no keys
    # task, no stats task: each would cost every host a task); the custom
    # stats above came from the phases' own results
    for host in paths:
        assert tasks_run(run, host) == [task(name) for name in PHASE_TASKS], tasks_run(run, host)
    activate = run.result(task(ACTIVATE), 'h1')['result']
    assert activate['confirmed'] and [p['name'] for p in activate['phases']] == [
        'activate', 'confirm'], activate
    if lab.hosts['h2'].get('systemd'):
        # a systemd host: its activation ran as a transient unit, and confirmed
        h2 = run.result(task(ACTIVATE), 'h2')['result']
        assert h2['detached_with'] == 'systemd-run' and h2['confirmed'], h2
        assert (h2.get('unit') or '').startswith('nixdeploy-activate-'), h2


def test_second_deploy_changes_nothing(fleet):
    run = deploy(fleet)
    assert run.rc == 0, run
    changed = [(r['host'], r['task']) for r in run.records if r['result'].get('changed')]
    assert changed == [], run
    assert {h: s['outcome'] for h, s in summaries(run).items()} == {
        'h1': 'unchanged', 'h2': 'unchanged', 'h3': 'unchanged'}


def test_check_mode_builds_nothing_and_changes_nothing(fleet):
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    # a system no run ever built on this controller
    flake.set_config('h1', version='2', extra_seed='unbuilt-%s' % uuid.uuid4().hex[:8])
    run = deploy(fleet, '--check', '-l', 'vps')
    assert run.rc == 0, run
    new = out_paths(run)
    # not built (no --diff), not copied, not activated; the copy says why
    assert subprocess.run(['nix-store', '--check-validity', new['h1']],
                          stderr=subprocess.DEVNULL, check=False).returncode != 0
    assert not lab.store_has('h1', new['h1'])
    assert {host: lab.active(host) for host in lab.hosts} == before
    copy = run.result(task('Copy the closure to each host'), 'h1')['result']
    assert copy['changed'] and 'not built yet' in copy['msg'], copy
    assert run.outcomes() == {'h1': 'would switch', 'h2': 'unchanged'}, run


def test_check_diff_changes_nothing_and_shows_the_closure_diff(fleet):
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    flake.set_config('h1', version='2', extra_seed='v2')
    run = deploy(fleet, '--check', '--diff', '-l', 'vps')
    assert run.rc == 0, run
    new = out_paths(run)
    assert sorted(new) == ['h1', 'h2'], run
    # nothing changed on any host: same active systems, new closure not copied
    assert {host: lab.active(host) for host in lab.hosts} == before
    assert not lab.store_has('h1', new['h1'])
    # per host: the closure difference with versions and sizes
    activate = run.result(task(ACTIVATE), 'h1')['result']
    text = activate['diff']['prepared']
    assert text in run.stdout
    assert 'lab-extra-v2' in activate['closure_diff']['added'], activate['closure_diff']
    assert 'nixos-system-h1: 1 \u2192 2' in text, text
    assert 'lab-extra-v2' in text and 'KiB' in text, text
    assert 'lab-extra-base' in text, text
    assert {h: s['outcome'] for h, s in summaries(run).items()} == {
        'h1': 'would switch', 'h2': 'unchanged'}, run


def test_skip_tags_activate_copies_without_activating(fleet):
    # colmena's `push`: evaluate, build and copy; activate nothing
    lab = fleet.lab
    before = lab.active('h1')
    # a version h1 has never run
    fleet.flake.set_config('h1', version='push-%s' % uuid.uuid4().hex[:8])
    run = deploy(fleet, '--skip-tags', 'activate', '-l', 'h1')
    assert run.rc == 0, run
    new = out_paths(run)['h1']
    assert new != before
    assert lab.store_has('h1', new)
    assert lab.active('h1') == before
    assert summaries(run)['h1']['outcome'] == 'copied (not activated)', run


def keys_of(text):
    """nix_keys: one key before the activation, one after."""
    return {'early': {'text': text, 'dest_dir': '/run/keys/role-test', 'mode': '0400'},
            'late': {'text': 'late-' + text, 'dest_dir': '/run/keys/role-test',
                     'upload_at': 'post-activation'}}


def keys_var(text):
    """nix_keys (``keys_of``) as an extra var."""
    return json.dumps({'nix_keys': keys_of(text)})


def host_vars_source(workdir, hostvars):
    """An inventory source (JSON) that gives each host of ``hostvars`` its
    vars, for ``-i`` beside the fleet's inventory; returns its path."""
    path = os.path.join(workdir, 'host-vars.json')
    with open(path, 'w') as handle:
        json.dump({'all': {'hosts': hostvars}}, handle)
    return path


KEY_FILES = ('early', 'late')


@pytest.fixture(scope='module')
def failed_beside_keys(rol_fleet, first_deploy):
    """One run of the whole fleet for two tests, each host a case of its own
    (one ansible-playbook start-up, one evaluation and one batch instead of
    two runs): h2 fails its activation and rolls back, h3 fails its
    evaluation (test_failing_hosts_end_failed_and_others_go_on), and h1,
    beside them, switches with nix_keys in its own host vars (the first
    deploy of test_keys_ride_the_activate_task_and_keep_their_tags; its
    --tags keys and --skip-tags keys runs stay its own). Made once, by
    whichever of the two asks first; the hosts' systems and h1's key files
    are read right after the run, so what a test asserts is what this run
    left, whatever ran between."""
    assert first_deploy[0].rc == 0, first_deploy[0]
    lab, flake = rol_fleet.lab, rol_fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    flake.set_all(version='3')
    flake.set_config('h2', behaviour='fail')       # activation fails: rolls back
    flake.set_config('h3', broken_eval=True)       # Nix evaluation error
    workdir = rol_fleet.rundir()
    # h1's own host vars, not an extra var: h2 and h3 get no keys, so their
    # failures are the same as without them
    extra = host_vars_source(workdir, {'h1': {'nix_keys': keys_of('sekrit-1')}})
    try:
        run = run_playbook(PLAYBOOK, rol_fleet.inventory, workdir, args=['-i', extra])
    finally:
        flake.set_config('h2', behaviour='ok')
        flake.set_config('h3', broken_eval=False)
    return types.SimpleNamespace(
        run=run, before=before, after={host: lab.active(host) for host in lab.hosts},
        keys=dict((name, lab.read('h1', '/run/keys/role-test/%s' % name)) for name in KEY_FILES))


def test_failing_hosts_end_failed_and_others_go_on(fleet, failed_beside_keys):
    before, after = failed_beside_keys.before, failed_beside_keys.after
    run = failed_beside_keys.run
    assert run.rc != 0, run
    paths = out_paths(run)
    assert after['h1'] == paths['h1'], ('h1', after, paths)
    summary = summaries(run)
    assert summary['h1']['outcome'] == 'switched', ('h1', summary)
    # h2 rolled back to what it ran before and is reported failed
    assert after['h2'] == before['h2'], ('h2', before, after)
    assert summary['h2']['failed'] and summary['h2']['rolled_back'], ('h2', summary)
    assert summary['h2']['outcome'].startswith('FAILED: rolled back'), ('h2', summary)
    assert summary['h2']['phase'] == 'activate', ('h2', summary)
    assert summary['h2']['before'] == summary['h2']['after'], ('h2', summary)
    # h3 failed evaluating, with Nix's own message, and was not touched
    assert after['h3'] == before['h3'], ('h3', before, after)
    assert summary['h3']['failed'] and not summary['h3']['rolled_back'], ('h3', summary)
    assert summary['h3']['outcome'].startswith('FAILED at eval'), ('h3', summary)
    eval_h3 = run.result(task(EVAL), 'h3')
    assert eval_h3['status'] == 'failed', ('h3', eval_h3)
    assert 'this_option_does_not_exist' in eval_h3['result']['msg'], ('h3', eval_h3)
    # the summary's cause names the file and line Nix stopped at
    cause = run.stdout[run.stdout.index('NIXDEPLOY SUMMARY'):].split()
    assert '-source/lib.nix:205:38)' in ' '.join(cause), ('h3', run)
    stats = run.stdout[run.stdout.index('PLAY RECAP'):]
    assert 'h1' in stats and stats.count('failed=1') == 2, stats


# a host whose link is cut: the login probe finds it (test_new_user: test_down_host_is_unreachable)
@pytest.mark.here_only
def test_unreachable_host_is_named_and_nothing_is_done_to_it(fleet):
    lab, flake = fleet.lab, fleet.flake
    before = lab.active('h2')
    flake.set_config('h2', version='4')
    flake.set_config('h3', version='4')
    lab.cut('h2')
    try:
        # A fresh ssh ControlPath dir: the master the last run left to h2
        # (ControlPersist, no keepalives) would wait for TCP to give up on the
        # dead link; this run meets the cut link with new connections.
        workdir = fleet.rundir()
        env = {'ANSIBLE_SSH_CONTROL_PATH_DIR': os.path.join(workdir, 'cp')}
        # a run that logs in to no host (the build on the controller) needs
        # no probe: h2 is built beside h3, and nobody is unreachable
        built = run_playbook(PLAYBOOK, fleet.inventory, workdir, args=[
            '-l', 'h2,h3', '--tags', 'build'], env=env, timeout=240)
        run = run_playbook(PLAYBOOK, fleet.inventory, workdir, args=['-l', 'h2,h3'],
                           env=env, timeout=240)
    finally:
        lab.restore('h2')
    assert built.rc == 0, built
    for host in ('h2', 'h3'):
        assert built.result(task('Build the system of each host'), host)['status'] == 'ok', built
        assert 'probe' not in built.result(task(EVAL), host)['result'], built
    assert 'unreachable=1' not in built.stdout, built.stdout[-2000:]
    # the login probe found it before its build: Ansible's unreachable
    assert run.rc == 4, run
    assert run.results(task('Build the system of each host'), 'h2') == [], run
    summary = summaries(run)
    assert summary['h3']['outcome'] == 'switched', summary
    assert re.search(r'h2\s+: ok=0 .*unreachable=1 +failed=0', run.stdout), run.stdout[-2000:]
    assert 'UNREACHABLE: h2 is unreachable at ' in run.stdout, run.stdout[-3000:]
    assert lab.active('h2') == before


def generations(lab, host):
    """(current generation, {generation: system}) of the host's system profile,
    read on the host."""
    listing = lab.run_in(host, ['sh', '-c', 'cd /nix/var/nix/profiles && readlink system && '
                                'for l in system-*-link; do echo "$l $(readlink -f "$l")"; '
                                'done']).stdout.split('\n')
    number = re.compile(r'system-(\d+)-link')
    systems = {}
    for line in listing[1:]:
        if line.strip():
            link, target = line.split()
            systems[int(number.match(link).group(1))] = target
    return int(number.match(listing[0].strip()).group(1)), systems


def test_rollback_role_returns_to_the_previous_generation(fleet):
    """h1 rolls back; beside it h2 refuses every connection (a wrong port
    in its host_vars): nothing starts there, so it fails at once as
    unreachable, not followed until the activation's deadline."""
    lab = fleet.lab
    before = lab.active('h2')
    current, systems = generations(lab, 'h1')
    if not [n for n in systems if n < current]:
        # run alone: h1 has one generation; a new version gives it a second
        fleet.flake.set_config('h1', version='rollback-%s' % uuid.uuid4().hex[:8])
        assert deploy(fleet, '-l', 'h1').rc == 0
        current, systems = generations(lab, 'h1')
    previous = max(n for n in systems if n < current)
    host_vars = os.path.join(fleet.inventory, 'host_vars')
    os.makedirs(host_vars)
    with open(os.path.join(host_vars, 'h2.yml'), 'w') as handle:
        # no sshd listens there: ssh's "Connection refused"
        json.dump({'ansible_port': 2299}, handle)
    try:
        run = run_playbook('nixdeploy.fleet.rollback', fleet.inventory, fleet.rundir(),
                           args=['-l', 'h1,h2'], timeout=240)
    finally:
        os.remove(os.path.join(host_vars, 'h2.yml'))
        os.rmdir(host_vars)
    assert run.rc == 2, run
    assert lab.active('h1') == systems[previous], run
    line = run.result('nixdeploy.fleet.rollback : Record the outcome on this host', 'h1')
    want = 'gen %3s -> %-3s rolled back' % (current, previous)
    assert want in line['result']['ansible_facts']['rollback_summary_line'], (want, line)
    assert re.search(r'h2\s+: ok=\d+ .*unreachable=0 +failed=1', run.stdout), run.stdout[-3000:]
    failed = [r for r in run.results(host='h2') if r['status'] == 'failed']
    assert len(failed) == 1, run.results(host='h2')
    result = failed[0]['result']
    assert result['phase'] == 'rollback' and result['connection_lost'] is True, result
    assert 'nothing was started on it' in result['msg'], result
    assert 'Connection refused' in result['msg'] and 'h2' in result['msg'], result
    assert lab.active('h2') == before


def test_keys_ride_the_activate_task_and_keep_their_tags(fleet, failed_beside_keys):
    lab, flake = fleet.lab, fleet.flake
    # a deploy with keys (h1's case of failed_beside_keys, beside two
    # failing hosts): both uploaded by the activate task itself, around it
    run = failed_beside_keys.run
    new = out_paths(run)['h1']
    assert failed_beside_keys.after['h1'] == new, ('h1', failed_beside_keys.after, new)
    assert failed_beside_keys.keys == {'early': 'sekrit-1', 'late': 'late-sekrit-1'}, (
        'h1', failed_beside_keys.keys)
    assert tasks_run(run, 'h1') == [task(name) for name in PHASE_TASKS], tasks_run(run, 'h1')
    activate = run.result(task(ACTIVATE), 'h1')['result']
    assert activate['keys_pre']['key_files']['early']['changed'], ('h1', activate['keys_pre'])
    assert activate['keys_post']['key_files']['late']['changed'], ('h1', activate['keys_post'])
    assert [p['name'] for p in activate['phases']] == ['keys', 'activate', 'confirm', 'keys'], (
        'h1', activate)
    assert 'sekrit' not in json.dumps(activate), activate  # never the content
    assert summaries(run)['h1']['outcome'] == 'switched', ('h1', run)
    # --tags keys (colmena's upload-keys): the keys only, no activation. What
    # h1 runs now is read on it: another test may have moved it since.
    running = lab.active('h1')
    flake.set_config('h1', version='keys-2')
    run = deploy(fleet, '-l', 'h1', '--tags', 'keys', '-e', keys_var('sekrit-2'))
    assert run.rc == 0, run
    assert lab.active('h1') == running
    assert lab.read('h1', '/run/keys/role-test/early') == 'sekrit-2'
    assert lab.read('h1', '/run/keys/role-test/late') == 'late-sekrit-2'
    # --skip-tags keys: the activation without them
    run = deploy(fleet, '-l', 'h1', '--skip-tags', 'keys', '-e', keys_var('sekrit-3'))
    assert run.rc == 0, run
    assert lab.active('h1') == out_paths(run)['h1'] != running
    assert lab.read('h1', '/run/keys/role-test/early') == 'sekrit-2'
    activate = run.result(task(ACTIVATE), 'h1')['result']
    assert 'keys_pre' not in activate and 'keys_post' not in activate, activate
    assert summaries(run)['h1']['outcome'] == 'switched', run


def test_each_hosts_own_role_variables_reach_its_phases(fleet):
    """The phase modules read the role's variables per host (from_role_vars):
    in one run, h1's inventory says nix_goal=boot, h2 fails its activation and
    h3 takes the role's defaults."""
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in ('h1', 'h2', 'h3')}
    flake.set_all(version='vars-1')
    flake.set_config('h2', behaviour='fail')
    workdir = fleet.rundir()
    extra = host_vars_source(workdir, {'h1': {'nix_goal': 'boot'}})
    try:
        run = run_playbook(PLAYBOOK, fleet.inventory, workdir, args=['-i', extra])
    finally:
        flake.set_config('h2', behaviour='ok')
    assert run.rc != 0, run
    paths = out_paths(run)
    goals = dict((h, run.result(task(ACTIVATE), h)['result'].get('goal')) for h in paths)
    assert goals == {'h1': 'boot', 'h2': 'switch', 'h3': 'switch'}, goals
    # h1: the new system is the boot default, the running one stays
    assert lab.boot('h1') == paths['h1'] and lab.active('h1') == before['h1']
    summary = summaries(run)
    assert not summary['h1']['failed'] and not summary['h3']['failed'], summary
    # h2 rolled back and failed; h3 switched
    assert lab.active('h2') == before['h2']
    assert summary['h2']['failed'] and summary['h2']['rolled_back'], summary
    assert lab.active('h3') == paths['h3'] != before['h3']


def no_larger(many, one, where='result'):
    """Where ``many`` holds more than ``one``: more keys, or a longer list.
    (A host alone carries its batch's figures too, the fleet's go to one of
    its hosts: ``many`` may have fewer keys. A run's job names a key of its
    own, so keys are counted, and compared where both have them.)"""
    if isinstance(many, dict) and isinstance(one, dict):
        if len(many) > len(one):
            return '%s: keys %s, alone %s' % (where, sorted(many), sorted(one))
        for key in set(many) & set(one):
            found = no_larger(many[key], one[key], '%s.%s' % (where, key))
            if found:
                return found
    elif isinstance(many, list) and isinstance(one, list):
        if len(many) > len(one):
            return '%s: %d items, %d alone' % (where, len(many), len(one))
        for index, (item, alone) in enumerate(zip(many, one)):
            found = no_larger(item, alone, '%s[%d]' % (where, index))
            if found:
                return found
    elif type(many) is not type(one):
        return '%s: a %s, a %s alone' % (where, type(many).__name__, type(one).__name__)
    return None


# What a phase's result on a host may grow by between two runs that do the
# same on it: its timings and times (digits), nothing that names other hosts
SIZE_SLACK = 64


def test_no_hosts_result_grows_with_the_fleet(fleet):
    """What each phase registers on a host stays in ansible-playbook's heap
    for the rest of the run, and every worker forked after it gets a copy
    (docs/benchmarks.md, benchmark 10a: per-host data there is what makes a
    later host cost more): nothing in it may grow with the fleet. h1 goes one
    generation further alone, then again beside h2 and h3: each phase's
    result on h1 beside them has no key or list item it had not alone, and
    is no larger but for what timings change."""
    flake = fleet.flake
    flake.set_all(version='grow-a')
    alone = deploy(fleet, '-l', 'h1')
    assert alone.rc == 0, alone
    flake.set_all(version='grow-b')
    whole = deploy(fleet)
    assert whole.rc == 0, whole
    assert sorted(out_paths(whole)) == ['h1', 'h2', 'h3'], whole
    for run in (alone, whole):
        assert run.result(task(ACTIVATE), 'h1')['result']['changed'], run
    for name in PHASE_TASKS:
        one = alone.result(task(name), 'h1')['result']
        many = whole.result(task(name), 'h1')['result']
        assert no_larger(many, one) is None, (name, no_larger(many, one), one, many)
        size_one, size_many = len(json.dumps(one)), len(json.dumps(many))
        assert size_many <= size_one + SIZE_SLACK, (name, size_one, size_many, one, many)
