"""A new user's first mistakes, each beside healthy hosts (issue 61's error catalogue).

One lab (`nwu`) of ten hosts and a project laid out as the quickstart has a
user make it (tests/new_user_fleet.py: a git checkout with the flake at its
top, ``inventory/fleet.nix.yml`` with ``flake: ..``, ansible.cfg with only the
nix inventory plugin enabled, an unparsed inventory an error, the summary and
report callbacks, the console stdout callback, host key checking on). Every
run is the real ``ansible-playbook nixdeploy.fleet.deploy`` (or ``.rollback``)
in that folder; the first deploy, every host healthy, with ansible-core's
plain ``default`` stdout callback instead, which still works.

The fleet's mistakes go into ONE deploy, host by host, beside the two healthy
hosts ``web1`` (NixOS) and ``mac`` (nix-darwin, deploy + sudo, signed):

- ``typo``: its configuration name is misspelt (``tpyo``): no such system
- ``goal``: ``nix_goal: bot`` in its host_vars: refused before evaluation
- ``down``: powered off
- ``key``: the wrong ssh key: the login is refused
- ``hostkey``: not in known_hosts (a new host never connected to)
- ``units``: its activation exits 4 with the failed unit's line: rolled back
- ``build``: its builder fails
- ``home``: a home-manager user Nix does not trust, and no ``nix_signing_key``
- the whole run: ``-e nix_gaol=boot`` (a typo'd role variable)

Then the run-wide mistakes, each a quick run that deploys nothing: a syntax
error in flake.nix, a wrong ``flake:`` path, no nix on the PATH, ``-e
nix_bin=/opt/nonexistent/nix``, ``-l`` matching no host (deploy and
rollback), ``-l @vps``, an unknown key in the inventory file (``flak:``), and
a flake.nix git does not track.

For every mistake: rc != 0 where a host was not deployed, the recap, the
summary and the report say the same of every host, the message names the host
or the variable and the way out, the cause is printed at most twice (once
where it happens, on the console's one ``fatal:`` line for the host, and once
in the summary; a cause several hosts share once for all of them), nothing
prints a Python traceback, and the healthy hosts move one generation.
"""

import json
import os
import re
import subprocess
import time

import pytest

from tests.deploy_fleet import commit_project, git
from tests.new_user_fleet import (copy_project, generation, path_without_nix, run_user_playbook,
                                  write_user_project, write_vars)

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'web1', 'persona': 'nixos'},
         {'name': 'typo', 'persona': 'nixos'},
         {'name': 'goal', 'persona': 'nixos'},
         {'name': 'down', 'persona': 'nixos'},
         {'name': 'key', 'persona': 'nixos'},
         {'name': 'hostkey', 'persona': 'nixos'},
         {'name': 'units', 'persona': 'nixos'},
         {'name': 'build', 'persona': 'nixos'},
         {'name': 'mac', 'persona': 'darwin'},
         {'name': 'home', 'persona': 'home-manager'}]
NAMES = [h['name'] for h in HOSTS]
HEALTHY = ('web1', 'mac')
FAILING = tuple(n for n in NAMES if n not in HEALTHY)
TAGS = dict((name, ['vps']) for name in NAMES if name not in ('mac', 'home'))
DEPLOY = 'nixdeploy.fleet.deploy'
ROLLBACK = 'nixdeploy.fleet.rollback'


def flat(text):
    """Text with its line breaks and runs of blanks as one space: a wrapped
    line reads as the sentence it is."""
    return ' '.join(text.split())


class Fleet:
    def __init__(self, lab, flake, secret, project, base):
        self.lab, self.flake, self.secret = lab, flake, secret
        self.project, self.base = project, base

    def generations(self, hosts=None):
        return dict((h, generation(self.lab, h)) for h in (hosts or NAMES))


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('nwu', HOSTS)
    base = str(tmp_path_factory.mktemp('new-user'))
    project = os.path.join(base, 'project')
    flake, secret = write_user_project(project, lab, tags=TAGS)
    # the first deploy, every host healthy (the home-manager user's signing
    # key given for this run only: the mistake comes later), with
    # ansible-core's own stdout callback: the collection works with it as
    # with its console
    first = run_user_playbook(project, DEPLOY, args=['-e', 'nix_signing_key=%s' % secret],
                              env={'ANSIBLE_STDOUT_CALLBACK': 'default'})
    assert first.rc == 0, first
    assert sorted(first.recap()) == sorted(NAMES) and first.recap_bad() == [], first
    assert all('switched' in first.summary_of(host) for host in NAMES), first.summary_lines()
    fleet = Fleet(lab, flake, secret, project, base)
    deployed = fleet.generations()
    assert all(number for number, _path in deployed.values()), deployed
    return fleet


def known_hosts_without(fleet, host):
    """The project's known_hosts without ``host``'s line; returns the old text."""
    path = os.path.join(fleet.project, 'known_hosts')
    with open(path) as handle:
        text = handle.read()
    address = fleet.lab.host(host)['address']
    with open(path, 'w') as handle:
        handle.write(''.join(line for line in text.splitlines(True)
                             if not line.startswith(address + ' ')))
    return text


def power_off(lab, host, timeout=120):
    lab.set_power(host, comes_back=False)
    lab.reboot(host, wait=False)
    deadline = time.monotonic() + timeout
    while lab.power_state(host) != 'off':
        assert time.monotonic() < deadline, 'host %s did not power off' % host
        time.sleep(0.2)


@pytest.fixture(scope='module')
def mistakes(fleet):
    """The fleet run with every host's mistake; the project put right after."""
    lab, flake, project = fleet.lab, fleet.flake, fleet.project
    before = fleet.generations()
    flake.set_all(version='2')
    flake.data['hosts']['typo']['configuration'] = 'tpyo'
    flake.set_config('units', behaviour='fail-units')
    flake.set_config('build', broken_build=True)
    commit_project(project, 'version 2, with mistakes')
    write_vars(project, 'host_vars', 'goal', {'nix_goal': 'bot'})
    wrong_key = os.path.join(fleet.base, 'not-the-deploy-key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', wrong_key], check=True)
    write_vars(project, 'host_vars', 'key', {'ansible_ssh_private_key_file': wrong_key})
    known = known_hosts_without(fleet, 'hostkey')
    power_off(lab, 'down')
    try:
        run = run_user_playbook(project, DEPLOY, args=['-e', 'nix_gaol=boot'])
    finally:
        lab.set_power('down', comes_back=True)
        lab.power_on('down')
        with open(os.path.join(project, 'known_hosts'), 'w') as handle:
            handle.write(known)
        write_vars(project, 'host_vars', 'goal', None)
        write_vars(project, 'host_vars', 'key', None)
        flake.data['hosts']['typo']['configuration'] = 'typo'
        flake.set_config('units', behaviour='ok')
        flake.set_config('build', broken_build=False)
        commit_project(project, 'version 2, put right')
    return {'run': run, 'before': before, 'after': fleet.generations(),
            'report': run.report(), 'report_path': run.report_path(),
            'page': run.report_html()}


# ---------------------------------------------------------------- checks shared by the cases
def assert_no_traceback(run):
    assert 'Traceback' not in run.output, run.output[-6000:]
    for path in run.report_files():
        with open(path, encoding='utf-8', errors='replace') as handle:
            assert 'Traceback' not in handle.read(), path


def assert_not_deployed(fleet, run, host, before, after):
    """The host was not deployed, the run failed and its recap says the host did."""
    assert run.rc != 0, run
    assert after[host] == before[host], (host, before[host], after[host])
    recap = run.recap()
    assert host in recap, ('no recap line for %s' % host, run.stdout[-3000:])
    assert recap[host]['failed'] + recap[host]['unreachable'] >= 1, (host, recap[host])


def assert_says_once(run, host, cause, names=(), report=None):
    """The host's failure is said once where it happens and once in the
    summary: ``cause`` (Nix's, ssh's or the activation's own line, or the
    refused value) is on the console's one ``fatal:`` line for the host (with
    its continuation lines: the module's message, no result dump, no
    ``[ERROR]`` block, no second error from the role's rescue), in the host's
    summary and in its report message; so at most twice on the console in
    all. ``names`` (regular expressions: the variable, the way out) are in
    the host's summary and on its fatal line."""
    summary = run.summary_of(host)
    assert summary, ('no summary line for %s' % host, run.summary_lines())
    assert flat(cause) in flat(summary), (host, cause, summary)
    fatal = run.fatal_lines(host)
    assert len(fatal) == 1, ('%d fatal lines name %s' % (len(fatal), host), fatal)
    assert flat(fatal[0]).count(flat(cause)) == 1, (host, cause, fatal[0])
    assert '=> {' not in fatal[0] and 'FAILED!' not in fatal[0], fatal[0]
    for name in names:
        assert re.search(name, flat(summary), re.I), (host, name, summary)
        assert re.search(name, flat(fatal[0]), re.I), (host, name, fatal[0])
    if report is not None:
        assert host in report['hosts'], ('%s not in the report' % host, sorted(report['hosts']))
        rec = report['hosts'][host]
        assert rec['failed'], rec
        assert flat(cause) in flat(rec.get('message') or ''), (host, cause, rec.get('message'))
    # once where it happens, once in the summary
    where = flat(run.console()).count(flat(cause))
    printed = flat(run.output).count(flat(cause))
    assert where == 1 and printed <= 2, (
        '%r printed %d times, %d of them outside the summary' % (cause, printed, where),
        [line for line in run.output.splitlines() if cause in line])
    assert 'see its error above' not in run.output, run.output[-3000:]


def result_msg(run, host):
    """The message of the host's failed phase (the first failed result)."""
    for rec in run.results(host=host):
        if rec['status'] in ('failed', 'unreachable') and (rec['result'] or {}).get('msg'):
            return rec['result']['msg']
    return ''


def assert_nothing_deployed(fleet, run, before):
    assert run.rc != 0, run
    assert fleet.generations() == before
    assert not [rec for rec in run.records if rec.get('status') != 'stats'
                and 'Activate' in (rec.get('task') or '')], run


# ---------------------------------------------------------------- the fleet run
# make check's lab run: the whole deploy of one mixed fleet, every host asserted
@pytest.mark.smoke
def test_healthy_hosts_deploy_beside_the_mistakes(fleet, mistakes):
    run, before, after = mistakes['run'], mistakes['before'], mistakes['after']
    assert run.rc != 0, run
    recap = run.recap()
    for host in HEALTHY:
        assert recap[host]['failed'] == recap[host]['unreachable'] == 0, (host, recap[host])
        # switched (nix_gaol is not nix_goal: the default goal), one generation on
        assert after[host][0] == before[host][0] + 1, (host, before[host], after[host])
        assert after[host][1] != before[host][1], host
        if fleet.lab.host(host)['platform'] == 'nixos':
            assert fleet.lab.current_system(host) == after[host][1], host
        assert 'switched' in run.summary_of(host), run.summary_lines()
    assert_no_traceback(run)


@pytest.mark.smoke
def test_recap_summary_report_and_exit_code_agree(fleet, mistakes):
    run, report = mistakes['run'], mistakes['report']
    assert run.rc != 0
    recap = run.recap()
    assert sorted(recap) == sorted(NAMES), recap
    assert run.recap_bad() == sorted(FAILING), recap
    assert report is not None, ('the run wrote no report', run.report_files())
    assert sorted(report['hosts']) == sorted(NAMES), sorted(report['hosts'])
    failed = sorted(h for h, rec in report['hosts'].items() if rec['failed'])
    assert failed == run.recap_bad(), (failed, recap)
    totals = report['totals']
    # every host the recap counts as failed or unreachable is one the tiles
    # count as not deployed (a rolled-back host is a failed host)
    assert totals['failed_total'] + totals['unreachable'] == len(run.recap_bad()), totals
    assert totals['changed'] == len(HEALTHY), totals
    # the summary's count line, where it has one, counts what the recap counts
    counts = re.search(r'nixdeploy: (\d+) hosts: (\d+) failed.*?(\d+) unreachable, (\d+) changed',
                       run.stdout)
    if counts:
        hosts, failed, unreachable, changed = (int(v) for v in counts.groups())
        assert (hosts, failed + unreachable, changed) == (
            len(NAMES), len(run.recap_bad()), len(HEALTHY)), counts.group(0)
    # the summary marks the same hosts failed
    for host in NAMES:
        line = run.summary_of(host)
        assert line, (host, run.summary_lines())
        assert (host in FAILING) == ('FAILED' in line or 'UNREACHABLE' in line.upper()), line


def test_no_maintainer_comments_shown(mistakes):
    """ansible-core 2.19's ``Origin:`` block shows the lines above a failed
    task: the role's maintainer comments must not be what users read."""
    run = mistakes['run']
    shown = [line for line in run.output.splitlines() if re.match(r'^\s*\d+\s+#', line)]
    assert not shown, shown[:10]


def test_failed_results_keep_internals_out(mistakes):
    """A failed host's result is read by people (the default callback and
    ``-v`` print it whole): the batch's internals (``play_hosts``,
    ``nix_processes``) are not among its keys. The console prints no result
    of a failed phase at all: its one line is the module's message."""
    run = mistakes['run']
    for host in FAILING:
        for rec in run.results(host=host):
            if rec['status'] in ('failed', 'unreachable'):
                result = rec['result'] or {}
                assert not {'play_hosts', 'nix_processes'} & set(result), (host, sorted(result))
        for text in run.fatal_lines(host):
            assert 'play_hosts' not in text and 'nix_processes' not in text, text


def test_typod_role_variable_warns_once_naming_nix_goal(mistakes):
    """Mistake 5: ``-e nix_gaol=boot``."""
    run = mistakes['run']
    said = flat(run.output)
    assert run.output.count('nix_gaol') == 1, [line for line in run.output.splitlines()
                                               if 'nix_gaol' in line]
    assert re.search(r'nix_gaol\W.{0,120}did you mean\W+nix_goal', said, re.I), said[-3000:]


def test_typod_configuration_name(fleet, mistakes):
    """Mistake 4: the host's system does not exist (``tpyo``); the others deploy."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'typo', mistakes['before'], mistakes['after'])
    # the hint's words, the last line the summary keeps on every Nix (2.34's
    # error runs over several lines between the first and the last)
    assert_says_once(run, 'typo', 'has no attribute tpyo; the nearest names it has: typo',
                     report=mistakes['report'])
    assert_no_traceback(run)


def test_bad_role_variable_value_refused_before_evaluation(fleet, mistakes):
    """Mistake 6: ``nix_goal: bot`` on one host."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'goal', mistakes['before'], mistakes['after'])
    assert_says_once(run, 'goal', "'bot'", names=[r'\bnix_goal\b'], report=mistakes['report'])
    # before any phase: nothing was evaluated, built, copied for it
    for rec in run.results(host='goal'):
        result = rec['result'] or {}
        assert not result.get('out_path') and not result.get('drv_path'), rec
        assert 'Build' not in rec['task'] and 'Copy' not in rec['task'], rec
    # the role variable, not the module option (`value of goal must be one of`)
    assert 'value of goal' not in run.output, run.output[-3000:]
    assert_no_traceback(run)


def test_down_host_is_unreachable(fleet, mistakes):
    """Mistake 8: a host that is off."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'down', mistakes['before'], mistakes['after'])
    line = run.summary_of('down')
    assert 'unreachable' in line.lower(), line
    assert_says_once(run, 'down', 'Connection refused')
    rec = mistakes['report']['hosts']['down']
    # a host that is off: unreachable (never connected), or a phase that lost it
    assert rec['failed'] and (rec['unreachable'] or rec['connection_lost']), rec
    assert_no_traceback(run)


def test_wrong_ssh_key_is_a_refused_login(fleet, mistakes):
    """Mistake 9: the key the host does not accept."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'key', mistakes['before'], mistakes['after'])
    # the way out: the key ssh offers, the user it logs in as
    assert_says_once(run, 'key', 'login refused',
                     names=[r'ansible_ssh_private_key_file|ssh-agent|authorized_keys'],
                     report=mistakes['report'])
    assert 'connection lost' not in run.summary_of('key').lower(), run.summary_of('key')
    assert_no_traceback(run)


def test_host_missing_from_known_hosts(fleet, mistakes):
    """Mistake 10: a new host never connected to: refused, named, the fix said."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'hostkey', mistakes['before'], mistakes['after'])
    line = run.summary_of('hostkey')
    msg = result_msg(run, 'hostkey')
    assert 'host key' in line.lower() and 'hostkey' in run.output, line
    # the way out: add the host's key to known_hosts
    assert re.search(r'known_hosts|ssh-keyscan', flat(line + ' ' + msg)), (line, msg)
    # in short lines, the detail after (the was one 1,140-character line)
    assert max(len(line) for line in msg.splitlines()) <= 200, msg
    # printable: ssh's carriage return is no literal backslash-r in what people read
    assert '\\r' not in line and '\\r' not in msg, (line, msg)
    rec = mistakes['report']['hosts']['hostkey']
    assert rec['failed'] and 'host key' in (rec.get('message') or '').lower(), rec
    assert_no_traceback(run)


def test_failing_activation_names_the_unit(fleet, mistakes):
    """Mistake 11: activation exits 4 with the failed unit's line: rolled back."""
    run, report = mistakes['run'], mistakes['report']
    assert_not_deployed(fleet, run, 'units', mistakes['before'], mistakes['after'])
    assert fleet.lab.active('units') == mistakes['before']['units'][1]
    assert_says_once(run, 'units', 'lab-units.service', report=report)
    assert 'rolled back' in run.summary_of('units').lower(), run.summary_of('units')
    assert report['hosts']['units']['rolled_back'], report['hosts']['units']
    # and on the page people open
    assert 'lab-units.service' in mistakes['page'], 'the unit is not on the report page'
    assert_no_traceback(run)


def test_failing_build_keeps_nix_error_line(fleet, mistakes):
    """Mistake 12: the builder exits 1; its line and the host are named."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'build', mistakes['before'], mistakes['after'])
    # the builder's last line, as Nix passes it on
    assert_says_once(run, 'build', 'this system does not build', report=mistakes['report'])
    assert mistakes['report']['hosts']['build']['failed_phase'] == 'build'
    assert 'this system does not build' in mistakes['page'], 'the cause is not on the page'
    assert_no_traceback(run)


def test_untrusted_user_without_signing_key(fleet, mistakes):
    """More: a home-manager user Nix does not trust and no nix_signing_key."""
    run = mistakes['run']
    assert_not_deployed(fleet, run, 'home', mistakes['before'], mistakes['after'])
    # Nix's line (2.8: 'lacks a valid signature'; later: 'lacks a signature by
    # a trusted key'), and the role variable that is the way out
    assert_says_once(run, 'home', 'because it lacks a', names=[r'\bnix_signing_key\b'],
                     report=mistakes['report'])
    assert_no_traceback(run)


def test_rollback_of_a_host_with_no_earlier_generation(fleet, mistakes):
    """More, with the rollback playbook: ``home`` has one generation only
    (its deploy above failed), ``web1`` two. web1 goes back and its summary
    says so (not "switched"); home fails naming why; the report agrees."""
    lab = fleet.lab
    before = fleet.generations(['web1', 'home'])
    run = run_user_playbook(fleet.project, ROLLBACK, args=['-l', 'web1,home'])
    assert run.rc != 0, run
    assert run.recap_bad() == ['home'], run.recap()
    assert lab.active('web1') == mistakes['before']['web1'][1] != before['web1'][1]
    assert fleet.generations(['home']) == {'home': before['home']}
    web1 = run.summary_of('web1')
    assert 'rolled back' in web1.lower() and 'switched' not in web1.lower(), run.summary_lines()
    # one summary: the rollback's (not a second one saying "switched")
    assert [line for line in run.summary_lines() if line.startswith('web1 ')] == \
        [web1.splitlines()[0]], run.summary_lines()
    report = run.report()
    assert report is not None and sorted(h for h, r in report['hosts'].items()
                                         if r['failed']) == ['home'], report
    # each run keeps its own report: the deploy's is still there, as it was
    kept = mistakes['report_path']
    assert kept and kept != run.report_path() and os.path.exists(kept), (kept, run.written)
    with open(kept) as handle:
        assert json.load(handle)['runs'] == mistakes['report']['runs'], kept
    # the failure is the rollback's, not an activation's
    assert report['hosts']['home']['failed_phase'] == 'rollback', report['hosts']['home']
    assert_no_traceback(run)
    assert_says_once(run, 'home', 'no generation', report=report)


# ---------------------------------------------------------------- run-wide mistakes
def test_wrong_nix_bin_names_nix_bin_without_traceback(fleet, mistakes):
    """Mistake 7: ``-e nix_bin=/opt/nonexistent/nix``: every host fails."""
    before = fleet.generations()
    run = run_user_playbook(fleet.project, DEPLOY, args=['-e', 'nix_bin=/opt/nonexistent/nix'])
    assert_nothing_deployed(fleet, run, before)
    assert run.recap_bad() == sorted(NAMES), run.recap()
    # the summary says the cause under the first host it hit, and each other
    # host points to it
    first = sorted(NAMES)[0]
    assert 'nix_bin' in run.summary_of(first), run.summary_of(first)
    for host in sorted(NAMES)[1:]:
        assert 'the same as %s' % first in run.summary_of(host), (host, run.summary_of(host))
    # the cause the whole batch shares: said once where it happens, for every
    # host (a host whose failure came after that line was printed points to
    # it), then once in the summary
    said = [line for line in run.console().splitlines() if '/opt/nonexistent/nix' in line]
    assert len(said) == 1 and said[0].startswith('fatal: ['), said
    named = set()
    for line in run.console().splitlines():
        match = re.match(r'^fatal: \[(.*)\] at eval: ', line)
        if match:
            named.update(match.group(1).split(', '))
    assert named == set(NAMES), (named, said)
    assert run.output.count('/opt/nonexistent/nix') == 2, \
        [line for line in run.output.splitlines() if '/opt/nonexistent/nix' in line]
    assert 'see its error above' not in run.output, run.output[-3000:]
    report = run.report()
    assert report is not None and sorted(h for h, r in report['hosts'].items()
                                         if r['failed']) == sorted(NAMES), report
    assert_no_traceback(run)


def edit(path, old, new):
    with open(path) as handle:
        text = handle.read()
    assert old in text, (path, old)
    with open(path, 'w') as handle:
        handle.write(text.replace(old, new))
    return text


def assert_inventory_refused(fleet, run, before, needles, cause):
    """A run-wide mistake: nothing deployed, rc != 0, the cause said once."""
    assert_nothing_deployed(fleet, run, before)
    said = flat(run.output)
    for needle in needles:
        assert re.search(needle, said, re.I), (needle, run.output[-3000:])
    # once as the plugin says it; ansible-core 2.19's warning for a source
    # that failed repeats its cause under "<<< caused by >>>": at most twice
    printed = len(re.findall(cause, said))
    assert 1 <= printed <= 2, ('%r printed %d times' % (cause, printed), run.output[-3000:])
    assert_no_traceback(run)


def test_syntax_error_in_flake(fleet, mistakes):
    """Mistake 1: a syntax error in flake.nix."""
    project = copy_project(fleet.project, os.path.join(fleet.base, 'syntax'))
    edit(os.path.join(project, 'flake.nix'), 'description = "nixdeploy.fleet lab fleet";',
         'description = "nixdeploy.fleet lab fleet"')
    commit_project(project, 'a typo')
    before = fleet.generations()
    run = run_user_playbook(project, DEPLOY, args=['-l', 'vps'])
    assert_inventory_refused(fleet, run, before, [r'syntax error', r'flake\.nix'],
                             r'syntax error')


def test_wrong_flake_path(fleet, mistakes):
    """Mistake 2: ``flake: ./nonexistent`` (the issue's reproduction), both playbooks."""
    config = os.path.join(fleet.project, 'inventory', 'fleet.nix.yml')
    old = edit(config, 'flake: ..', 'flake: ./nonexistent')
    before = fleet.generations()
    try:
        run = run_user_playbook(fleet.project, DEPLOY, args=['-l', 'vps'])
        back = run_user_playbook(fleet.project, ROLLBACK, args=['-l', 'web1'])
    finally:
        with open(config, 'w') as handle:
            handle.write(old)
    for one in (run, back):
        assert_inventory_refused(fleet, one, before, [r'no flake\.nix', r'nonexistent'],
                                 r'no flake\.nix')


# its failed inventory under the report callback: test_wrong_flake_path on the current stack
@pytest.mark.here_only
def test_no_older_report_looks_current(fleet, mistakes):
    """A run that deployed nothing leaves no older report as "the latest"."""
    config = os.path.join(fleet.project, 'inventory', 'fleet.nix.yml')
    assert [p for p in os.listdir(os.path.join(fleet.project, 'reports'))
            if p.endswith('.json')], 'the earlier runs wrote no report'
    old = edit(config, 'flake: ..', 'flake: ./nonexistent')
    try:
        run = run_user_playbook(fleet.project, DEPLOY, args=['-l', 'vps'])
    finally:
        with open(config, 'w') as handle:
            handle.write(old)
    assert run.rc != 0, run
    stale = [p for p in run.latest_reports() if os.path.getmtime(p) < run.started - 0.05]
    assert not stale, ('an older report still looks like the latest', stale)


def test_nix_missing_from_path(fleet, mistakes):
    """Mistake 3: the controller has no nix on the run's PATH."""
    before = fleet.generations()
    path = path_without_nix(os.path.join(fleet.base, 'bin-without-nix'))
    run = run_user_playbook(fleet.project, DEPLOY, args=['-l', 'vps'], env={'PATH': path})
    assert_inventory_refused(fleet, run, before, [r'\bnix\b', r'\bPATH\b', r'\bnix_bin\b'],
                             r'\bPATH\b')


def test_limit_matching_nothing(fleet, mistakes):
    """Mistake 13: ``-l`` names no host of the fleet: rc != 0, one sentence."""
    before = fleet.generations()
    for playbook in (DEPLOY, ROLLBACK):
        run = run_user_playbook(fleet.project, playbook, args=['-l', 'nosuchhost'])
        assert_nothing_deployed(fleet, run, before)
        assert 'nosuchhost' in run.output, run
        # ansible-core's own warning, and the playbook's sentence
        assert 1 <= run.output.count('nosuchhost') <= 2, run.output[-3000:]
        assert_no_traceback(run)


def test_limit_with_at_sign(fleet, mistakes):
    """More: ``-l @vps`` (colmena's way to say a tag) is a file to Ansible."""
    before = fleet.generations()
    run = run_user_playbook(fleet.project, DEPLOY, args=['-l', '@vps'])
    assert_nothing_deployed(fleet, run, before)
    assert 'vps' in run.output, run
    assert_no_traceback(run)


def test_unknown_inventory_config_key(fleet, mistakes):
    """Mistake 14: ``flak: ..`` in the inventory file."""
    config = os.path.join(fleet.project, 'inventory', 'fleet.nix.yml')
    old = edit(config, 'flake: ..', 'flak: ..')
    before = fleet.generations()
    try:
        run = run_user_playbook(fleet.project, DEPLOY, args=['-l', 'vps'])
    finally:
        with open(config, 'w') as handle:
            handle.write(old)
    assert_inventory_refused(fleet, run, before, [r'\bflak\b', r'fleet\.nix\.yml'], r'\bflak\b')


def test_flake_not_tracked_by_git(fleet, mistakes):
    """Mistake 15: ``git init`` but no ``git add``."""
    project = copy_project(fleet.project, os.path.join(fleet.base, 'untracked'))
    subprocess.run(['rm', '-rf', os.path.join(project, '.git')], check=True)
    git(project, 'init', '-q', '-b', 'main')
    before = fleet.generations()
    run = run_user_playbook(project, DEPLOY, args=['-l', 'vps'])
    assert_inventory_refused(fleet, run, before, [r'not tracked', r'flake\.nix', r'git add'],
                             r'not tracked')
    assert 'getting status of' not in run.output, run.output[-3000:]
