"""The progress lines of a real deploy (`ansible-playbook nixdeploy.fleet.deploy`,
lab `prg`, real ssh and Nix, the quickstart's console and summary callbacks):
while the activations run, a line counts the batch's hosts in each phase and
says which host runs its health checks and which awaits its confirmation.

Two NixOS hosts: `chk` runs a health check that takes a few seconds; `slow`
comes up on its new system with an sshd that takes new logins only after a
few seconds (as one restarting on the switch): its old session still works,
so the controller sees the run await its confirmation, and its confirmation
(a new login) waits until the host takes logins again, within its window.
"""

import json
import os
import re
import shutil

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_inventory

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'chk', 'persona': 'nixos'}, {'name': 'slow', 'persona': 'nixos'}]
# seconds: chk's health check, slow's sshd refusing new logins, between progress lines
CHECK_SECONDS = 6
NO_LOGINS_SECONDS = 8
PROGRESS_INTERVAL = 1
IPTABLES, SETSID, SLEEP = (shutil.which(name) for name in ('iptables', 'setsid', 'sleep'))
# new ssh connections to the host are dropped (the ones open go on)
NO_NEW_LOGINS = '-p tcp --dport 22 --syn -j DROP'
# slow's activation, once (its boot step after the confirmation runs it too):
# new logins dropped for NO_LOGINS_SECONDS, lifted by a process of its own
SLOW_SSHD = ('if mkdir /nix/var/lab/prg-sshd-restarted 2>/dev/null; then '
             '{iptables} -I INPUT {rule}; {setsid} sh -c "{sleep} {seconds}; {iptables} -D INPUT '
             '{rule}" </dev/null >/dev/null 2>&1 & fi').format(
                 iptables=IPTABLES, setsid=SETSID, sleep=SLEEP, seconds=NO_LOGINS_SECONDS,
                 rule=NO_NEW_LOGINS)
# a running host in a progress line: name, seconds in its task, and its step
RUNNING = r'(?P<host>[\w.-]+) \((?P<seconds>\d+)s(?:, (?P<step>[a-z ]+) (?P<step_seconds>\d+)s)?\)'


@pytest.fixture(scope='module')
def prg_fleet(make_lab, tmp_path_factory):
    lab = make_lab('prg', HOSTS)
    base = str(tmp_path_factory.mktemp('prg'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    # chk's health check, as a user writes one in host_vars/
    os.makedirs(os.path.join(inventory, 'host_vars'))
    with open(os.path.join(inventory, 'host_vars', 'chk.yml'), 'w') as handle:
        json.dump({'nix_health_checks': [{'name': 'slow check', 'retries': 0, 'timeout': 60,
                                          'command': 'sleep %d' % CHECK_SECONDS}]}, handle)
    fleet = DeployFleet(lab, flake, inventory, base)
    run = fleet.deploy()
    assert run.rc == 0, run
    return fleet


def steps_shown(stdout):
    """{step: {host: the longest seconds at it}} of every progress line's
    activate phase, with the progress lines themselves."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith('nixdeploy: progress: ')]
    steps = {}
    for line in lines:
        activate = re.search(r'activate: \d+ of 2 done(?: \(\d+ failed\))?, \d+ running: (.*)$',
                             line)
        for found in re.finditer(RUNNING, activate.group(1) if activate else ''):
            if found.group('step'):
                hosts = steps.setdefault(found.group('step'), {})
                hosts[found.group('host')] = max(hosts.get(found.group('host'), 0),
                                                 int(found.group('step_seconds')))
    return steps, lines


@pytest.mark.skipif(not (IPTABLES and SETSID and SLEEP), reason='needs iptables and setsid')
def test_progress_lines_say_who_runs_health_checks_and_who_awaits_confirmation(prg_fleet):
    lab, flake = prg_fleet.lab, prg_fleet.flake
    flake.set_all(version='2')
    flake.set_config('slow', on_activate=SLOW_SSHD)
    try:
        run = prg_fleet.deploy(env={'NIXDEPLOY_PROGRESS_INTERVAL': str(PROGRESS_INTERVAL),
                                    'ANSIBLE_STDOUT_CALLBACK': 'nixdeploy.fleet.console'})
    finally:
        flake.set_config('slow', on_activate='')
        lab.run_in('slow', [IPTABLES, '-D', 'INPUT'] + NO_NEW_LOGINS.split(), check=False)
    summary = run.summary()
    # both passed and switched, each confirmed within its window
    for host in ('chk', 'slow'):
        assert not summary[host]['failed'] and summary[host]['outcome'] == 'switched', summary
    steps, lines = steps_shown(run.stdout)
    assert lines, run
    # chk said so while its check ran, for seconds; slow never ran one
    assert set(steps.get('health checks', {})) == {'chk'} and \
        steps['health checks']['chk'] >= CHECK_SECONDS - 2, lines
    # slow awaited its confirmation while new logins were dropped (chk may
    # be seen awaiting its own, in the moment between its check and it)
    assert steps.get('awaiting confirmation', {}).get('slow', 0) >= 3, lines
    # every line counts the batch's two hosts in each phase it names
    for line in lines:
        for part in line[len('nixdeploy: progress: '):].split('; '):
            assert re.match(r'^(eval|build|copy|keys|activate): [0-2] of 2 done', part), line
