# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleets on real networks (issue 78): every source, evaluated by real Nix.

Small flakes evaluated through the plugin's program (inventory.nix) and
mapped by _inventory_hosts, one or more per source: what each source's
``targetHost``/``hostname``, ``sshOptions``/``sshOpts`` and an inventory
entry's ``targetHosts`` become (``ansible_host``, ``nix_target_hosts``, the
ssh args of the host's group), an inventory entry filling a colmena or
deploy-rs node's gaps, and each refusal naming the node and the field.
"""

import functools
import os
import shutil
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
if 'ansible_collections.nixdeploy.fleet' not in sys.modules:
    sys.path.insert(0, REPO)
    from tests.collection import collections_path  # noqa: E402
    sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory, _inventory_error, _inventory_hosts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (  # noqa: E402
    NixCommand, NixOptions)

InventoryError = _inventory_error.InventoryError
needs_nix = pytest.mark.skipif(shutil.which('nix') is None, reason='needs nix')


def refused(check, *args):
    with pytest.raises(InventoryError) as err:
        check(*args)
    return str(err.value)


# ---- real flakes: every source -----------------------------------------------------

INVENTORY = r'''
{
  outputs = { self }: {
    inventory = {
      web = { targetHosts = [ "10.0.0.5" "[fd00::5]" "web.tailnet.ts.net" ];
              targetUser = "deploy";
              sshOptions = [ "-o" "ProxyJump=admin@bastion.example" ]; };
      api = { targetHost = "10.0.0.6"; targetHosts = [ "10.0.0.6" "fd00::6" ];
              sshOptions = [ "-J" "admin@bastion.example" "-l" "ops" "-p" "2200" ]; };
      v6 = { targetHost = "[2001:db8::5]"; };
      v6bare = { host = "2001:db8::7"; sshOptions = [ "-o" "ProxyJump=a.example,b.example" ]; };
      noopts = { hostname = "10.0.0.8"; sshOptions = [ ]; };
      zone = { targetHost = "fe80::1%eth0"; };
      conflict = { targetHost = "10.0.0.9"; targetHosts = [ "10.0.0.5" "10.0.0.9" ]; };
      userat = { targetHost = "root@[2001:db8::5]"; };
      withport = { targetHost = "[2001:db8::5]:2222"; };
      khc = { targetHost = "10.0.0.10"; sshOptions = [ "-o" "StrictHostKeyChecking=no" ]; };
      cmd = { targetHost = "10.0.0.11"; sshOptions = [ "-o" "ProxyCommand=nc %h %p" ]; };
      badlist = { targetHosts = [ "10.0.0.12" "fe80::1%eth0" ]; };
    };
  };
}
'''

# A raw hive (modules, defaults merged) and the inventory entries of two of
# its nodes filling their gaps.
RAW_HIVE = r'''
{
  outputs = { self }: {
    colmena = {
      meta = { };
      defaults = { deployment.sshOptions = [ "-o" "ConnectTimeout=5" ]; };
      web = { deployment = { targetHost = "[2001:db8::10]";
                             sshOptions = [ "-o" "ProxyJump=admin@bastion.example" ]; }; };
      jump = { deployment = { targetHost = "10.0.1.2"; sshOptions = [ "-J" "bastion" "-l" "ops" ]; }; };
      gaps = { deployment.tags = [ "edge" ]; };
      v6 = { deployment.targetHost = "2001:db8::11"; };
      clash = { deployment.targetHost = "10.0.1.9"; };
      zone = { deployment.targetHost = "fe80::1%eth0"; };
      cmd = { deployment = { targetHost = "10.0.1.3";
                             sshOptions = [ "-o" "ProxyCommand=ssh -W %h:%p bastion" ]; }; };
      khc = { deployment = { targetHost = "10.0.1.4";
                             sshOptions = [ "-o" "UserKnownHostsFile=/dev/null" ]; }; };
    };
    inventory = {
      gaps = { targetHosts = [ "10.0.1.5" "[fd00::1:5]" ]; sshOptions = [ "-J" "inv-bastion" ]; };
      web = { sshOptions = [ "-J" "not-used" ]; };
      clash = { targetHosts = [ "10.0.1.6" ]; };
    };
    nixosConfigurations = { web = throw "system forced"; };
  };
}
'''

# colmena's makeHive output: deploymentConfig holds every option, defaults
# included (targetHost = the name, sshOptions = [ ]).
MADE_HIVE = r'''
{
  outputs = { self }: {
    colmenaHive = {
      __schema = "v0";
      deploymentConfig = {
        n1 = { targetHost = "n1"; targetPort = null; targetUser = "root"; tags = [ ];
               sshOptions = [ ]; keys = { }; };
        n2 = { targetHost = "[2001:db8::20]"; targetPort = null; targetUser = "root"; tags = [ ];
               sshOptions = [ "-J" "bastion.example" ]; keys = { }; };
      };
      toplevel = { n1 = throw "system forced"; n2 = throw "system forced"; };
    };
    inventory.n1 = { targetHosts = [ "10.0.2.1" "fd00::2:1" ]; sshOptions = [ "-J" "jump" ]; };
  };
}
'''

DEPLOY_RS = r'''
{
  outputs = { self }: {
    deploy = {
      sshUser = "deploy";
      nodes = let profiles.system = { user = "root"; path = throw "profile path forced"; }; in {
        jump = { hostname = "10.0.3.1"; inherit profiles; sshOpts = [ "-J" "bastion" "-p" "2222" ]; };
        chain = { hostname = "[2001:db8::30]"; inherit profiles;
                  sshOpts = [ "-o" "ProxyJump=a.example,admin@b.example:2200" ]; };
        gaps = { hostname = "10.0.3.2"; inherit profiles; };
        bare = { hostname = "2001:db8::31"; inherit profiles; };
        first = { hostname = "10.0.3.3"; inherit profiles; };
        clash = { hostname = "10.0.3.4"; inherit profiles; };
        khc = { hostname = "10.0.3.5"; inherit profiles; sshOpts = [ "-o" "StrictHostKeyChecking=no" ]; };
        cmd = { hostname = "10.0.3.6"; inherit profiles; sshOpts = [ "-o" "KnownHostsCommand=/bin/x" ]; };
        zone = { hostname = "fe80::1%eth0"; inherit profiles; };
      };
    };
    inventory = {
      gaps = { sshOptions = [ "-J" "inv-bastion" "-p" "2200" ]; };
      first = { targetHosts = [ "10.0.3.3" "fd00::3:3" ]; };
      clash = { targetHosts = [ "fd00::3:4" "10.0.3.4" ]; };
    };
  };
}
'''


@pytest.fixture(scope='module')
def flakes(tmp_path_factory):
    made = {}
    for name, text in (('inventory', INVENTORY), ('raw-hive', RAW_HIVE),
                       ('made-hive', MADE_HIVE), ('deploy-rs', DEPLOY_RS)):
        folder = tmp_path_factory.mktemp(name)
        (folder / 'flake.nix').write_text(textwrap.dedent(text), encoding='utf-8')
        made[name] = 'path:%s' % folder
    return made


@functools.lru_cache(maxsize=None)
def evaluated(flake, source):
    """The program's JSON for one parse, as the plugin evaluates it."""
    runner = NixCommand(NixOptions(options={'substituters': ''}))
    return runner.json('eval', _inventory.eval_args(runner.outputs(flake), source),
                       'nix eval of the inventory', flake_command=True)


def mapped(flake, source, strict=False):
    result = _inventory_hosts.build_inventory(evaluated(flake, source), flake, strict=strict)
    return dict((h.name, h) for h in result.hosts), result


def connection(host):
    """What the rest of the collection reads of a host: its address, user,
    port, ssh args (its group's), and the addresses in order."""
    return (host.vars.get('ansible_host'), host.vars.get('ansible_user'),
            host.vars.get('ansible_port'), host.vars.get('nix_ssh_common_args'),
            host.vars.get('nix_target_hosts'))


def skipped(result):
    return dict((name, reason) for name, reason in result.skipped)


def group_args(result, host):
    """The ansible_ssh_common_args of the host's ssh group (None: none)."""
    found = [result.group_vars[g]['ansible_ssh_common_args'] for g in host.groups
             if g in result.group_vars]
    assert len(found) <= 1
    return found[0] if found else None


@needs_nix
def test_inventory_entries(flakes):
    got, result = mapped(flakes['inventory'], 'inventory')
    assert sorted(got) == ['api', 'noopts', 'v6', 'v6bare', 'web']
    assert connection(got['web']) == (
        '10.0.0.5', 'deploy', None, '-o ProxyJump=admin@bastion.example',
        ['10.0.0.5', 'fd00::5', 'web.tailnet.ts.net'])
    # -l and -p of sshOptions give the user and port; targetHost is the list's first
    assert connection(got['api']) == (
        '10.0.0.6', 'ops', 2200, '-o ProxyJump=admin@bastion.example', ['10.0.0.6', 'fd00::6'])
    assert connection(got['v6']) == ('2001:db8::5', None, None, None, None)
    assert connection(got['v6bare']) == (
        '2001:db8::7', None, None, '-o ProxyJump=a.example,b.example', None)
    assert connection(got['noopts']) == ('10.0.0.8', None, None, None, None)
    # the ssh args are the group's ansible_ssh_common_args, never a host var
    for host in got.values():
        assert 'ansible_ssh_common_args' not in host.vars
        assert group_args(result, host) == host.vars.get('nix_ssh_common_args')
    # hosts behind the same options share their group
    assert set(got['web'].groups) & set(got['api'].groups)


@needs_nix
def test_inventory_refusals_name_the_node_and_field(flakes):
    _got, result = mapped(flakes['inventory'], 'inventory')
    reasons = skipped(result)
    assert sorted(reasons) == ['badlist', 'cmd', 'conflict', 'khc', 'userat', 'withport', 'zone']
    assert reasons['zone'].startswith(
        "refused address 'fe80::1%eth0' from targetHost: it holds an IPv6 zone index")
    assert reasons['conflict'] == (
        "refused address '10.0.0.9' from targetHost: it is not the first of targetHosts "
        "['10.0.0.5', '10.0.0.9']: give the address once, or first in that list")
    assert reasons['badlist'].startswith(
        "refused address 'fe80::1%eth0' from targetHosts[1]: it holds an IPv6 zone index")
    assert reasons['userat'].startswith(
        "refused address 'root@[2001:db8::5]' from targetHost: it is no host name: it holds a user")
    assert reasons['withport'].startswith(
        "refused address '[2001:db8::5]:2222' from targetHost: it holds a port ([address]:port)")
    assert reasons['khc'].startswith(
        "refused ssh option 'StrictHostKeyChecking=no' from sshOptions: it turns host key "
        "checking off")
    assert reasons['cmd'].startswith(
        "refused ssh option 'ProxyCommand=nc %h %p' from sshOptions: it can run a command on "
        "this controller (ProxyCommand)")
    assert "skipped inventory node zone: refused address 'fe80::1%eth0'" in '\n'.join(
        result.messages())


@needs_nix
def test_strict_fails_naming_the_source_node_and_field(flakes):
    message = refused(mapped, flakes['inventory'], 'inventory', True)
    # the first refused node in flake order (names sorted)
    assert message.startswith("inventory node badlist: refused address 'fe80::1%eth0' from "
                              "targetHosts[1]: "), message


@needs_nix
def test_colmena_raw_hive(flakes):
    got, result = mapped(flakes['raw-hive'], 'colmena')
    assert sorted(got) == ['gaps', 'jump', 'v6', 'web']
    # sshOptions of defaults and node are concatenated, as the module system does
    assert connection(got['web']) == (
        '2001:db8::10', 'root', None, '-o ConnectTimeout=5 -o ProxyJump=admin@bastion.example', None)
    assert got['web'].vars['nix_node']['deployment']['sshOptions'] == [
        '-o', 'ConnectTimeout=5', '-o', 'ProxyJump=admin@bastion.example']
    # -l in sshOptions is the user when the node gives no targetUser
    assert connection(got['jump']) == (
        '10.0.1.2', 'ops', None, '-o ConnectTimeout=5 -o ProxyJump=bastion', None)
    assert connection(got['v6']) == ('2001:db8::11', 'root', None, '-o ConnectTimeout=5', None)
    # the inventory entry fills the gaps: its targetHosts (no targetHost in the
    # hive) ... but the hive's own sshOptions (defaults') win over the entry's
    assert connection(got['gaps']) == (
        '10.0.1.5', 'root', None, '-o ConnectTimeout=5', ['10.0.1.5', 'fd00::1:5'])
    reasons = skipped(result)
    assert sorted(reasons) == ['clash', 'cmd', 'khc', 'zone']
    assert reasons['clash'] == (
        "refused address '10.0.1.9' from deployment.targetHost: it is not the first of "
        "inventory.targetHosts ['10.0.1.6']: give the address once, or first in that list")
    assert reasons['zone'].startswith(
        "refused address 'fe80::1%eth0' from deployment.targetHost: it holds an IPv6 zone index")
    assert reasons['cmd'].startswith(
        "refused ssh option 'ProxyCommand=ssh -W %h:%p bastion' from deployment.sshOptions: it "
        "can run a command on this controller (ProxyCommand)")
    assert reasons['khc'].startswith(
        "refused ssh option 'UserKnownHostsFile=/dev/null' from deployment.sshOptions: it turns "
        "host key checking off")
    assert "skipped colmena node cmd: refused ssh option 'ProxyCommand=ssh -W %h:%p bastion' " \
        "from deployment.sshOptions" in '\n'.join(result.messages())


@needs_nix
def test_colmena_made_hive_defaults_leave_room_for_the_inventory_entry(flakes):
    got, result = mapped(flakes['made-hive'], 'colmena')
    assert not result.skipped
    # makeHive says targetHost = the name and sshOptions = [ ] for a node
    # that sets neither: the inventory entry's targetHosts and sshOptions fill them
    assert connection(got['n1']) == (
        '10.0.2.1', 'root', None, '-o ProxyJump=jump', ['10.0.2.1', 'fd00::2:1'])
    assert connection(got['n2']) == ('2001:db8::20', 'root', None, '-o ProxyJump=bastion.example',
                                     None)


@needs_nix
def test_deploy_rs_nodes(flakes):
    got, result = mapped(flakes['deploy-rs'], 'deploy-rs')
    assert sorted(got) == ['bare', 'chain', 'first', 'gaps', 'jump']
    assert connection(got['bare']) == ('2001:db8::31', 'deploy', None, None, None)
    assert connection(got['jump']) == ('10.0.3.1', 'deploy', 2222, '-o ProxyJump=bastion', None)
    assert connection(got['chain']) == (
        '2001:db8::30', 'deploy', None, '-o ProxyJump=a.example,admin@b.example:2200', None)
    # a node without sshOpts: the inventory entry's sshOptions fill the gap
    assert connection(got['gaps']) == ('10.0.3.2', 'deploy', 2200, '-o ProxyJump=inv-bastion', None)
    assert connection(got['first']) == ('10.0.3.3', 'deploy', None, None, ['10.0.3.3', 'fd00::3:3'])
    # sshOpts no longer become ansible_ssh_extra_args: one variable for every source
    assert not any('ansible_ssh_extra_args' in h.vars for h in got.values())
    reasons = skipped(result)
    assert sorted(reasons) == ['clash', 'cmd', 'khc', 'zone']
    assert reasons['clash'] == (
        "refused address '10.0.3.4' from hostname: it is not the first of inventory.targetHosts "
        "['fd00::3:4', '10.0.3.4']: give the address once, or first in that list")
    assert reasons['khc'].startswith(
        "refused ssh option 'StrictHostKeyChecking=no' from sshOpts: it turns host key checking off")
    assert reasons['cmd'].startswith(
        "refused ssh option 'KnownHostsCommand=/bin/x' from sshOpts: it can run a command")
    assert reasons['zone'].startswith("refused address 'fe80::1%eth0' from hostname: it holds an "
                                      "IPv6 zone index")
    assert "skipped deploy-rs node khc: refused ssh option 'StrictHostKeyChecking=no' from " \
        "sshOpts" in '\n'.join(result.messages())


def test_a_tag_never_takes_an_ssh_group_name():
    """A tag mapped to the very name of an ssh group: the ssh group steps aside."""
    args = '-o ProxyJump=bastion'
    name = _inventory_hosts.build_inventory({
        'source': 'inventory', 'attribute': ['inventory'], 'configurations': {},
        'nodes': {'a': {'targetHost': '10.0.0.1', 'sshOptions': ['-J', 'bastion']}}},
        'path:/f').group_vars.popitem()[0]
    result = _inventory_hosts.build_inventory({
        'source': 'inventory', 'attribute': ['inventory'], 'configurations': {},
        'nodes': {'a': {'targetHost': '10.0.0.1', 'sshOptions': ['-J', 'bastion']},
                  'b': {'targetHost': '10.0.0.2', 'tags': [name]}}}, 'path:/f')
    assert result.group_vars == {name + '_': {'ansible_ssh_common_args': args}}
    assert [h.groups for h in result.hosts] == [['nixos', name + '_'], ['nixos', name]]
