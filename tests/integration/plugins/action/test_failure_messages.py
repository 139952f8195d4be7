"""A failed host says why, in its message (issue 61), at the earliest phase
that knows (issue 93), on the `fms` lab: after every host runs v1, one deploy
(nixdeploy.fleet.deploy) of v2 to four NixOS hosts and a nix-darwin one,

- f1, whose new system's activation fails with a unit that failed (exit 4):
  its message names the unit, as the activation printed it, not only
  "exited with code 4", and it is rolled back (or, with no generation to go
  back to, failed) as before;
- f2, healthy: switched;
- f3, reached with a key its authorized_keys does not hold: the login probe
  beside its evaluation is refused, so it fails at eval, before its build:
  its message names the user, the address, ssh's words and the fix (key or
  user); it is a failed host, not a lost connection or an unreachable one;
- f5, reached as a user the host does not know (ansible_user): the same, the
  user named;
- f4, reached at a port nothing listens on (ansible_port): unreachable, and
  its message says which port of which address to check;
- d1, nix-darwin reached as its deploy user without become: refused at eval
  by the platform table's rule (its activation needs root), naming the
  variable and the fix, before anything is built for it.

The run is one playbook: every host is asserted on. Then f2's dry
activation (``nix_goal=dry-activate``) shows what it would restart in its
message. Last, ``-e nix_goal=boot`` on f2 and d1: nix-darwin has no boot goal,
so d1 is refused at eval, before its build, while f2 sets its boot default.
"""

import json
import os
import subprocess

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_host_vars, write_inventory

# its calls: test_new_user's key and units mistakes; dry-activate: test_nix_activate's check test
pytestmark = [pytest.mark.lab, pytest.mark.here_only]

HOSTS = [{'name': 'f1', 'persona': 'nixos'}, {'name': 'f2', 'persona': 'nixos'},
         {'name': 'f3', 'persona': 'nixos'}, {'name': 'f4', 'persona': 'nixos'},
         {'name': 'f5', 'persona': 'nixos'}, {'name': 'd1', 'persona': 'darwin'}]
NAMES = [h['name'] for h in HOSTS]
PLATFORMS = {'d1': 'darwin'}
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'
BUILD = 'nixdeploy.fleet.deploy : Build the system of each host'
COPY = 'nixdeploy.fleet.deploy : Copy the closure to each host'
# a port of the lab's hosts nothing listens on
CLOSED_PORT = 2299
ACTIVATE = 'nixdeploy.fleet.deploy : Activate and confirm the new system'


@pytest.fixture(scope='module')
def fleet(make_lab, tmp_path_factory):
    lab = make_lab('fms', HOSTS)
    base = str(tmp_path_factory.mktemp('fms'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'), configurations=dict(
        (name, {'platform': PLATFORMS.get(name, 'nixos'), 'version': 'v1'}) for name in NAMES))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    return DeployFleet(lab, flake, inventory, os.path.join(base, 'runs'))


def wrong_key_for(fleet, name):
    """``name`` reached with a key that no host's authorized_keys holds
    (IdentitiesOnly: the only one ssh offers)."""
    wrong = os.path.join(fleet.workdir, 'wrong_key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', wrong], check=True,
                   stdin=subprocess.DEVNULL)
    write_host_vars(fleet.inventory, name, {'ansible_ssh_private_key_file': wrong})


def built(run, host):
    """The paths the run's build task of ``host`` built, and whether it ran."""
    return [r for r in run.results(BUILD, host) if r['status'] != 'skipped']


def test_each_failed_host_says_why_beside_a_healthy_one(fleet):
    lab = fleet.lab
    # every host on v1 first, so that f1 has a generation to go back to
    run = fleet.deploy()
    assert run.rc == 0, run
    before = dict((name, lab.active(name)) for name in NAMES)
    assert all(before.values()), before
    # then one run: f1's v2 fails a unit, f2's is healthy, f3 is reached
    # with a wrong key, f4 at a closed port, d1 without become
    fleet.flake.set_all(version='v2')
    fleet.flake.set_config('f1', behaviour='fail-units')
    wrong_key_for(fleet, 'f3')
    write_host_vars(fleet.inventory, 'f4', {'ansible_port': CLOSED_PORT})
    # no become and a platform that needs root: the login it cannot make at
    # all is what it is told, not to set become
    write_host_vars(fleet.inventory, 'f5', {'ansible_user': 'nosuchuser', 'nix_platform': 'nixos'})
    write_host_vars(fleet.inventory, 'd1', {'ansible_become': False})
    run = fleet.deploy()
    assert run.rc != 0, run

    # f1: the unit that failed is in the message, after the one-line cause
    activate = run.result(ACTIVATE, 'f1')
    assert activate['status'] == 'failed', activate
    res = activate['result']
    lines = res['msg'].split('\n')
    assert 'the activation exited with code 4 (some units failed)' in lines[0], res['msg']
    assert lines[0] == 'f1: rolled back: the activation exited with code 4 (some units failed):'
    assert res['rolled_back'] is True, res
    assert '  warning: the following units failed: lab-f1.service' in lines[1:], res['msg']
    # said once: the result holds the unit's line in msg only
    assert json.dumps(res).count('the following units failed') == 1, res
    assert res['phase'] == 'activate' and res['connection_lost'] is False, res
    # rolled back: f1 runs v1 again
    assert lab.active('f1') == before['f1']

    # f2: healthy, switched
    activate = run.result(ACTIVATE, 'f2')
    assert activate['status'] == 'ok' and activate['result']['changed'], activate
    assert activate['result']['state'] == 'done', activate
    assert lab.active('f2') == activate['result']['new']['path'] != before['f2']

    # f3: a refused login, named so at eval, before its build: failed (not
    # unreachable, not lost)
    evaluated = run.result(EVAL, 'f3')
    assert evaluated['status'] == 'failed', evaluated
    msg = evaluated['result']['msg']
    address = lab.host('f3')['address']
    lines = msg.split('\n')
    assert lines[0].startswith('f3: ssh login refused for root@%s: key or user (Permission denied ('
                               % address), msg
    assert lines[0].endswith('nothing was built or copied for it'), msg
    # the way out on a line of its own
    assert len(lines) == 2 and 'ansible_ssh_private_key_file' in lines[1], msg
    assert 'authorized_keys' in lines[1] and 'ansible_user' in lines[1], msg
    assert 'connection lost' not in msg, msg
    assert evaluated['result']['connection_lost'] is False, evaluated
    assert not built(run, 'f3') and not run.results(COPY, 'f3')
    assert not run.results(ACTIVATE, 'f3')
    assert lab.active('f3') == before['f3']

    # f5: the wrong user, named, refused the same way
    evaluated = run.result(EVAL, 'f5')
    assert evaluated['status'] == 'failed', evaluated
    msg = evaluated['result']['msg']
    assert msg.startswith('f5: ssh login refused for nosuchuser@%s: key or user' % (
        lab.host('f5')['address'])), msg
    assert not built(run, 'f5') and lab.active('f5') == before['f5']

    # f4: nothing listens at its port: unreachable, the port named
    evaluated = run.result(EVAL, 'f4')
    assert evaluated['status'] == 'unreachable', evaluated
    msg = evaluated['result']['msg']
    address = lab.host('f4')['address']
    assert 'connection refused' in msg, msg
    assert 'nothing listens on port %d of %s: check ansible_port' % (CLOSED_PORT, address) in msg
    assert not built(run, 'f4') and not run.results(COPY, 'f4')
    assert lab.active('f4') == before['f4']

    # d1: darwin as its deploy user, no become: refused at eval, by the rule
    # its activation would have refused it with after the build and copy
    evaluated = run.result(EVAL, 'd1')
    assert evaluated['status'] == 'failed', evaluated
    msg = evaluated['result']['msg']
    assert msg.startswith('d1: activating a darwin system needs root, but this runs as deploy: '
                          'connect as root or set become'), msg
    assert 'ansible_become' in msg and 'ansible_user is deploy' in msg, msg
    assert not built(run, 'd1') and not run.results(COPY, 'd1')
    assert lab.active('d1') == before['d1']

    outcomes = run.outcomes()
    assert outcomes['f2'] == 'switched', outcomes
    assert outcomes['f3'].startswith('FAILED at eval: ssh login refused for root@'), outcomes
    assert 'unreachable' not in outcomes['f3'], outcomes
    assert outcomes['d1'].startswith('FAILED at eval: activating a darwin system needs root'), \
        outcomes
    assert outcomes['f1'].startswith('FAILED: rolled back'), outcomes
    # the recap agrees: f3 and d1 failed, f4 alone unreachable
    assert 'unreachable=1' in recap_line(run, 'f4'), run
    for host in ('f3', 'f5', 'd1'):
        assert 'failed=1' in recap_line(run, host), run
        assert 'unreachable=0' in recap_line(run, host), run


def recap_line(run, host):
    """The PLAY RECAP line of ``host``."""
    return [line for line in run.stdout.splitlines()
            if line.startswith(host + ' ') and ' unreachable=' in line][-1]


def test_a_dry_activation_shows_what_it_would_do(fleet):
    """nix_goal=dry-activate: NixOS's dry activation (what would restart) is
    in the result's msg and its dry_activate lines, not only in log_tail
    (-v); nothing changes."""
    lab = fleet.lab
    active = lab.active('f2')
    fleet.flake.set_config('f2', version='v3')
    run = fleet.deploy('-l', 'f2', '-e', 'nix_goal=dry-activate')
    assert run.rc == 0, run
    res = run.result(ACTIVATE, 'f2')['result']
    lines = res['msg'].split('\n')
    assert lines[0].startswith('dry activation of /nix/store/') and lines[0].endswith(
        '(exit code 0):'), res['msg']
    assert '  would restart the following units: lab-f2.service' in lines[1:], res['msg']
    assert 'would restart the following units: lab-f2.service' in res['dry_activate'], res
    assert res['changed'] is False and res['would_change'] is True, res
    assert lab.active('f2') == active
    # the closing line counts f2 as a host a real activation would change
    assert 'nixdeploy: 1 host: 0 failed, 0 changed, 1 would change, 0 unchanged' in run.stdout, run


def test_a_goal_a_platform_lacks_is_refused_before_the_build(fleet):
    """``-e nix_goal=boot`` on a NixOS host and a nix-darwin one (with
    become): nix-darwin has no boot goal, said at eval, nothing built for
    it; the NixOS host sets its boot default."""
    lab = fleet.lab
    write_host_vars(fleet.inventory, 'd1', {})
    before = lab.active('d1')
    run = fleet.deploy('-l', 'f2,d1', '-e', 'nix_goal=boot')
    assert run.rc != 0, run
    evaluated = run.result(EVAL, 'd1')
    assert evaluated['status'] == 'failed', evaluated
    msg = evaluated['result']['msg']
    assert msg.startswith('d1: darwin supports the goals switch, not boot (nix_goal is boot for '
                          'this host)'), msg
    assert not built(run, 'd1') and not run.results(COPY, 'd1') and lab.active('d1') == before
    assert run.result(ACTIVATE, 'f2')['status'] == 'ok', run
    outcomes = run.outcomes()
    assert outcomes['d1'].startswith('FAILED at eval: darwin supports the goals switch'), outcomes
