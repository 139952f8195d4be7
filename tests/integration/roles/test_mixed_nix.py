"""A fleet on two Nix versions at once: the deploy of ONE run
(`ansible-playbook nixdeploy.fleet.deploy`, lab `mix`, real ssh and Nix) to
hosts on the controller's own Nix and hosts on the other stack's (the lab's
``'nix': 'other'``: on this machine's stack Nix 2.34 from the current-stack
tree, inside that tree this machine's Nix 2.8).

Four hosts: two NixOS on the stack's own Nix, one NixOS and one nix-darwin on
the other. The tests share one fleet, deployed once (``first_deploy``, made by
the first test that needs it), and each runs alone with ``-k`` as well as in
order: every host switches; check and diff shows the closure difference of an
other-Nix host and changes nothing; then a version one other-Nix host fails to
activate: it goes back to its previous generation and is reported failed
while the others switch; last, the NixOS hosts share one system and copy it to
each other in cascade mode, across the two versions.
"""

import os
import re
import subprocess

import pytest

from tests.deploy_fleet import DeployFleet, deployed_once, prepare, write_inventory
from tests.lab.lab import other_nix

pytestmark = pytest.mark.lab

EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'
COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'

HOSTS = [{'name': 'own1', 'persona': 'nixos'},
         {'name': 'own2', 'persona': 'nixos'},
         {'name': 'oth1', 'persona': 'nixos', 'nix': 'other'},
         {'name': 'oth2', 'persona': 'darwin', 'nix': 'other'}]
OWN = ('own1', 'own2')
OTHER = ('oth1', 'oth2')
# the other-Nix host whose activation fails in the last test
FAILING = 'oth1'


def version_of(text):
    """'nix (Nix) 2.34.8' -> '2.34.8'."""
    found = re.search(r'\(Nix\) (\S+)', text)
    assert found, text
    return found.group(1)


def controller_nix_version():
    return version_of(subprocess.run(['nix', '--version'], stdout=subprocess.PIPE,
                                     universal_newlines=True, check=True).stdout)


def other_nix_version(found):
    """What the other stack's Nix says, run here through its own loader."""
    return version_of(subprocess.run(
        [found['loader'], '--library-path', found['library_path'], '--argv0', 'nix',
         found['nix'], '--version'], stdout=subprocess.PIPE, universal_newlines=True,
        check=True).stdout)


def out_paths(run):
    return {r['host']: r['result']['out_path'] for r in run.results(EVAL) if r['status'] == 'ok'}


def profile_target(lab, host):
    """The system profile's current generation on the host (its own readlink)."""
    return lab.run_in(host, ['readlink', '-f', '/nix/var/nix/profiles/system']).stdout.strip()


@pytest.fixture(scope='module')
def mix_fleet(make_lab, tmp_path_factory):
    found = other_nix()
    if not found:
        pytest.skip('no other stack\'s Nix on this machine: neither NIXDEPLOY_OTHER_ROOT nor '
                    'the current-stack tree (tests/stack/tree.sh) nor, inside that tree, this '
                    'machine\'s /usr bound at /opt/nixdeploy-machine/usr')
    lab = make_lab('mix', HOSTS)
    base = str(tmp_path_factory.mktemp('mix'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    fleet = DeployFleet(lab, flake, inventory, base)
    fleet.other = found
    return fleet


def test_hosts_run_two_nix_versions(mix_fleet):
    lab = mix_fleet.lab
    own, other = controller_nix_version(), other_nix_version(mix_fleet.other)
    assert own != other, (own, other)
    for host in OWN + OTHER:
        want = other if host in OTHER else own
        assert lab.host(host)['nix'] == ('other' if host in OTHER else 'own')
        # the host's own nix, its nix-daemon, and what a deploy finds over
        # ssh (PATH on NixOS, the hidden profile dir on nix-darwin)
        assert version_of(lab.nix_version(host)) == want, host
        with open('/proc/%d/cmdline' % lab.host(host)['daemon_pid'], 'rb') as handle:
            daemon = handle.read().split(b'\0')
        assert (mix_fleet.other['loader'].encode() == daemon[0]) == (host in OTHER), daemon
        over_ssh = lab.ssh(host, '%s/nix-daemon --version' % lab.host(host)['nix_dir'])
        assert version_of(over_ssh.stdout) == want, (host, over_ssh.stdout)


first_deploy, deployed = deployed_once('mix_fleet')


def test_first_deploy_switches_every_host(mix_fleet, first_deploy):
    lab = mix_fleet.lab
    run = first_deploy
    assert run.rc == 0, run
    paths = out_paths(run)
    assert sorted(paths) == sorted(OWN + OTHER), run
    summary = run.summary()
    for host, path in paths.items():
        assert lab.active(host) == path, (host, run)
        assert lab.store_has(host, path), host
        assert profile_target(lab, host) == path, host
        assert summary[host]['outcome'] == 'switched', summary
        assert not summary[host]['failed'], summary
        res = run.result(ACTIVATE, host)
        assert res['status'] == 'ok' and res['result']['confirmed'], (host, res)
        # the closure went over ssh-ng to the host's own nix-daemon --stdio,
        # found where the host keeps its nix
        copy = run.result(COPY, host)['result']
        assert copy['store_uri'].startswith('ssh-ng://'), copy
        assert copy['remote_nix_dir'] == lab.host(host)['nix_dir'], copy
        assert copy['paths_missing'] > 0, copy
    assert summary['oth2']['platform'] == 'darwin', summary


def test_check_diff_shows_the_closure_diff_of_an_other_nix_host(deployed):
    fleet = deployed
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    saved = dict(flake.data['configurations']['oth1'])
    flake.set_config('oth1', version='2', extra_paths=1, extra_bytes=4000, extra_seed='v2')
    try:
        run = fleet.deploy('--check', '--diff')
    finally:
        flake.data['configurations']['oth1'] = saved
        flake.save()
    assert run.rc == 0, run
    new = out_paths(run)
    # nothing changed anywhere; the new closure did not go to the host
    assert {host: lab.active(host) for host in lab.hosts} == before
    assert not lab.store_has('oth1', new['oth1'])
    activate = run.result(ACTIVATE, 'oth1')['result']
    # the host's current system was read on the host (its own, other Nix)
    # and diffed against the new one on the controller
    assert 'lab-extra-v2' in activate['closure_diff']['added'], activate
    text = activate['diff']['prepared']
    assert 'nixos-system-oth1: 1 \u2192 2' in text, text
    assert text in run.stdout
    assert run.outcomes() == {'own1': 'unchanged', 'own2': 'unchanged',
                              'oth1': 'would switch', 'oth2': 'unchanged'}, run


# copy to the other Nix: test_first_deploy_switches_every_host; its rollback is the target's own Nix
@pytest.mark.here_only
def test_failing_other_nix_host_rolls_back_and_the_others_switch(deployed, first_deploy):
    fleet = deployed
    lab, flake = fleet.lab, fleet.flake
    before = {host: lab.active(host) for host in lab.hosts}
    flake.set_all(version='3')
    flake.set_config(FAILING, behaviour='fail')
    try:
        run = fleet.deploy()
    finally:
        flake.set_config(FAILING, behaviour='ok')
    assert run.rc != 0, run
    new = out_paths(run)
    summary = run.summary()
    assert sorted(summary) == sorted(lab.hosts), summary
    # the failing host: back on its previous generation, reported failed
    assert lab.active(FAILING) == before[FAILING] == out_paths(first_deploy)[FAILING]
    assert profile_target(lab, FAILING) == before[FAILING]
    assert lab.store_has(FAILING, new[FAILING])
    rec = summary[FAILING]
    assert rec['failed'] and rec['rolled_back'], summary
    assert rec['phase'] == 'activate' and not rec['connection_lost'], summary
    assert rec['outcome'].startswith('FAILED: rolled back'), summary
    assert rec['before'] == rec['after'], rec
    # every other host, on either Nix: switched to the new system
    for host in lab.hosts:
        if host == FAILING:
            continue
        assert lab.active(host) == new[host] != before[host], (host, run)
        assert profile_target(lab, host) == new[host], host
        assert summary[host]['outcome'] == 'switched' and not summary[host]['failed'], summary
        assert summary[host]['after'] == summary[host]['before'] + 1, summary[host]
    recap = run.stdout[run.stdout.index('PLAY RECAP'):]
    assert recap.count('failed=1') == 1, recap


def test_closure_cascades_between_the_two_nix_versions(mix_fleet):
    """The NixOS hosts deploy one shared system in cascade mode: the
    controller sends it once, hosts copy it on host to host (the sender's own
    `nix copy` to the receiver's `nix-daemon --stdio`), so some hop joins a
    host on one Nix to a host on the other."""
    lab, flake = mix_fleet.lab, mix_fleet.flake
    nixos = ('own1', 'own2', 'oth1')
    flake.data['configurations']['shared'] = {
        'platform': 'nixos', 'version': '4', 'behaviour': 'ok',
        'extra_paths': 2, 'extra_bytes': 20000, 'extra_seed': 'shared'}
    for host in nixos:
        flake.data['hosts'][host]['configuration'] = 'shared'
    flake.save()
    run = mix_fleet.deploy('-e', 'nix_copy_mode=cascade', '-l', ','.join(nixos))
    assert run.rc == 0, run
    new = out_paths(run)
    assert len(set(new.values())) == 1, new
    copied_from = {}
    for host in nixos:
        copy = run.result(COPY, host)['result']
        assert copy['mode'] == 'cascade' and not copy['hop_errors'], copy
        copied_from[host] = copy['copied_from']
        assert lab.active(host) == new[host], (host, run)
        # 'switched (closure from <sender>)' for the hosts a hop served
        assert run.summary()[host]['outcome'].startswith('switched'), run.summary()
    assert list(copied_from.values()).count('controller') == 1, copied_from
    crossings = [(sender, host) for host, sender in copied_from.items()
                 if sender != 'controller' and lab.host(sender)['nix'] != lab.host(host)['nix']]
    assert crossings, copied_from
