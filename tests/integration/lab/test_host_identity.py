"""A host proves it is itself at every one of its addresses (lab ``hkey``,
real ssh and Nix, ONE run of ``nixdeploy.fleet.deploy``):

- ``desktop``: a plain host, which now holds the laptop's old address;
- ``laptop``: its ``ansible_host`` is dead (the lab's known_hosts holds its
  key there, as a user's does), its next address is the desktop's (its old
  DHCP lease), its last its own: the desktop's key is refused there, named,
  and the laptop is deployed at its own address;
- ``phone``: the same, with only the desktop's address after its dead one,
  ssh's ``accept-new`` and a known_hosts file of its own that holds its key
  under its name: unreachable, and no key is added to that file;
- ``mover``: its new system leaves its address for one no host has, and
  the desktop's address comes first in its list: the activation's next
  login (``next_address``) refuses the desktop and confirms the mover at
  its new address, with its own key (known at its first address only).
  Its launch session, left on its old address, ends by ssh's keepalive
  (its host vars: 1 s, 4 unanswered) rather than by the launch's own bound
  for a host that may move (``MOVING_LAUNCH_TIMEOUT``, 20 s, which
  test_networks_deploy.py's ``mv`` waits out): what this test proves is
  the next login's choice of address, not that bound.

Nothing of the others reaches the desktop, whose own deploy in the same
run switches to its own system.
"""

import os

import pytest

from tests.deploy_fleet import DeployFleet, prepare, write_host_vars, write_inventory
from tests.lab.lab import sh

pytestmark = pytest.mark.lab

HOSTS = [{'name': 'desktop'}, {'name': 'laptop', 'dead_first': True},
         {'name': 'phone', 'dead_first': True}, {'name': 'mover', 'listen_any': True}]
# where the mover's new system moves it: an address of the lab bridge no host has
MOVED_TO = 249
EVAL = 'nixdeploy.fleet.deploy : Evaluate the system of each host'


def host_key(lab, name):
    with open(os.path.join(lab.host(name)['dir'], 'ssh_host_ed25519_key.pub')) as handle:
        return ' '.join(handle.read().split()[:2])


@pytest.fixture(scope='module')
def moved_fleet(make_lab, tmp_path_factory):
    lab = make_lab('hkey', HOSTS)
    base = str(tmp_path_factory.mktemp('hkey'))
    flake, secret = prepare(lab, os.path.join(base, 'flake'))
    desktop = lab.host('desktop')['address']
    hosts = flake.data['hosts']
    for name, fallbacks in (('laptop', [desktop, lab.host('laptop')['address']]),
                            ('phone', [desktop])):
        dead = lab.host(name)['dead_address']
        hosts[name]['extra'] = {'targetHost': dead, 'targetHosts': [dead] + fallbacks}
    mover = lab.host('mover')['address']
    moved = '%s.%d' % (mover.rsplit('.', 1)[0], MOVED_TO)
    hosts['mover']['extra'] = {'targetHosts': [mover, desktop, moved]}
    flake.save()
    # the old address goes first: Linux drops an address's secondaries with it
    flake.set_config(flake.config_of('mover'), on_activate=(
        'ip addr del %s/24 dev eth0 2>/dev/null; ip addr add %s/24 dev eth0 2>/dev/null; true'
        % (mover, moved)))
    inventory = write_inventory(os.path.join(base, 'inventory'), lab, flake, secret)
    # the phone's own known_hosts: its key under its name only, new keys accepted
    phone_known = os.path.join(base, 'known_hosts.phone')
    with open(phone_known, 'w') as handle:
        handle.write('phone %s\n' % host_key(lab, 'phone'))
    write_host_vars(inventory, 'phone', {'ansible_ssh_common_args': (
        '-o UserKnownHostsFile=%s -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes'
        % phone_known)})
    # the mover's ssh gives up on a dead link after 4-5 s (nothing else
    # sets ServerAlive*: the launch session would hang on its old address
    # until the launch's own bound); answered within 4 s at any load here
    write_host_vars(inventory, 'mover', {
        'ansible_ssh_extra_args': '-o ServerAliveInterval=1 -o ServerAliveCountMax=4'})
    fleet = DeployFleet(lab, flake, inventory, base)
    fleet.phone_known, fleet.moved = phone_known, moved
    yield fleet
    # the mover back where the lab knows it (its namespace stays the lab's to remove)
    sh(['ip', '-n', lab.host('mover')['netns'], 'addr', 'add', '%s/24' % mover, 'dev', 'eth0'],
       check=False)


def profiles(lab, name):
    return sorted(lab.run_in(name, ['ls', '/nix/var/nix/profiles']).stdout.split())


def test_an_address_held_by_another_host_is_refused_and_the_next_one_tried(moved_fleet):
    lab, flake = moved_fleet.lab, moved_fleet.flake
    flake.set_all(version='k1')
    desktop = lab.host('desktop')['address']
    with open(moved_fleet.phone_known) as handle:
        phone_known = handle.read()
    before = profiles(lab, 'desktop')
    run = moved_fleet.deploy()
    outcomes = run.outcomes()
    summary = run.summary()
    # the desktop: its own system, one new generation, none of the others'
    assert outcomes['desktop'] == 'switched', outcomes
    assert lab.active('desktop') == summary['desktop']['path']
    new = [p for p in profiles(lab, 'desktop') if p not in before]
    assert len([p for p in new if p.startswith('system-')]) == 1, (before, new)
    for name in ('laptop', 'phone', 'mover'):
        out_path = run.result(EVAL, name)['result']['out_path']
        assert out_path != summary['desktop']['path']
        assert not lab.store_has('desktop', out_path), name
    # Ansible's exit code for an unreachable host (the phone), nothing failed
    assert run.rc == 4, run
    # the laptop: the desktop's key refused at its old address, named;
    # deployed at its own address
    assert outcomes['laptop'] == 'switched', outcomes
    assert lab.active('laptop') == summary['laptop']['path']
    laptop = run.result(EVAL, 'laptop')['result']
    assert laptop['address'] == lab.host('laptop')['address'], laptop
    tried = laptop['probe']['tried']
    assert [t['address'] for t in tried] == [lab.host('laptop')['dead_address'], desktop], tried
    assert tried[1]['reason'] == 'not its host key', tried
    assert tried[1]['said'] == '%s answered with the key of `desktop`, not `laptop`' % desktop
    # the phone: no address of its own answers: unreachable, named; its
    # accept-new added no key for the desktop's address
    assert outcomes['phone'].startswith('UNREACHABLE: phone is unreachable at each of its 2 '
                                        'addresses: '), outcomes
    assert outcomes['phone'].endswith(
        '%s answered with a key not known for `phone`' % desktop), outcomes
    assert run.result(EVAL, 'phone')['status'] == 'unreachable'
    with open(moved_fleet.phone_known) as handle:
        assert handle.read() == phone_known
    # the mover: moved by its new system, confirmed at its new address, not
    # at the desktop's, which came first in its list
    assert outcomes['mover'] == 'switched', outcomes
    assert lab.active('mover') == summary['mover']['path']
    shown = lab.run_in('mover', ['ip', '-o', 'addr', 'show', 'dev', 'eth0']).stdout
    assert moved_fleet.moved + '/24' in shown, shown
