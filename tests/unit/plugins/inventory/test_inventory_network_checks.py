# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleets on real networks (issue 78): the checks of bastions and IPv6.

plugin_utils/inventory/_inventory_checks.py and _inventory_network.py alone:
IPv6 literals with or without brackets, zones refused, ``user@`` and
``:port`` refused, ProxyJump chains through the one allow-list every
source's ssh options take, and options that run a command or turn host key
checking off refused with their reason. test_inventory_network_sources.py
runs real flakes of every source through the same.
"""

import os
import shlex
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
if 'ansible_collections.nixdeploy.fleet' not in sys.modules:
    sys.path.insert(0, REPO)
    from tests.collection import collections_path  # noqa: E402
    sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (  # noqa: E402
    _host, _host_key_rules, _host_ssh)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory_checks as checks, _inventory_error, _inventory_network as network)

InventoryError = _inventory_error.InventoryError


def refused(check, *args):
    with pytest.raises(InventoryError) as err:
        check(*args)
    return str(err.value)


# ---- addresses -----------------------------------------------------------------

@pytest.mark.parametrize('given, address', [
    ('2001:db8::5', '2001:db8::5'),
    ('[2001:db8::5]', '2001:db8::5'),
    ('[fd00::5]', 'fd00::5'),
    ('[::1]', '::1'),
    ('::ffff:192.0.2.1', '::ffff:192.0.2.1'),
    ('10.0.0.5', '10.0.0.5'),
    ('host.tailnet.ts.net', 'host.tailnet.ts.net'),
])
def test_ipv6_with_or_without_brackets(given, address):
    assert checks.check_address(given, 'targetHost') == address
    # what the collection's own target check (the copy's URI) takes as it is
    assert _host.Host(address).address == address


def test_a_zone_is_refused_saying_why_and_what_instead():
    message = refused(checks.check_address, 'fe80::1%eth0', 'targetHost')
    assert message == (
        "refused address 'fe80::1%eth0' from targetHost: it holds an IPv6 zone index (the part "
        "after %): a zone cannot be carried in a Nix store URI (ssh://user@host), so nix copy "
        "could not reach the host; give a global or ULA (fd00::/8) address of the host, or an ssh "
        "config Host alias whose HostName is the link-local address")
    for zoned in ('[fe80::1%eth0]', 'fe80::1%enp0s31f6', '2001:db8::5%eth0'):
        assert 'a zone cannot be carried in a Nix store URI' in refused(
            checks.check_address, zoned, 'targetHost')
    # a link-local address without its zone cannot be reached at all
    assert 'it is a link-local IPv6 address, which the controller reaches only with a zone' in \
        refused(checks.check_address, 'fe80::1', 'hostname')


@pytest.mark.parametrize('given, reason', [
    ('root@[2001:db8::5]', 'it is no host name: it holds a user (user@host); give the address '
                           'alone, the user in its own field (targetUser, user, sshUser, -l)'),
    ('root@2001:db8::5', 'it holds a user (user@host)'),
    ('deploy@web1', 'it holds a user (user@host)'),
    ('[2001:db8::5]:2222', 'it holds a port ([address]:port): give the address alone, the port '
                           'in its own field (port, targetPort, sshPort, -p)'),
    ('web1:22', "it holds ':' but is no IPv6 address (a port goes in its own field"),
    ('10.0.0.5:22', "it holds ':' but is no IPv6 address"),
    ('[web1]', 'brackets hold an IPv6 address only'),
    ('[10.0.0.5]', 'brackets hold an IPv6 address only'),
    ('[2001:db8::5', "its '[' has no ']'"),
    ('[2001:db8::5]x', "it holds text after ']'"),
    ('[-oProxyCommand=x]', 'brackets hold an IPv6 address only'),
    ('[::1 -oX]', 'it holds whitespace'),
])
def test_address_forms_no_source_reads_are_refused(given, reason):
    message = refused(checks.check_address, given, 'targetHost')
    assert message.startswith("refused address %r from targetHost: " % given), message
    assert reason in message


def test_target_hosts_are_each_checked():
    assert checks.check_target_hosts(['10.0.0.5', '[fd00::5]', 'h.ts.net'], 'targetHosts') == \
        ['10.0.0.5', 'fd00::5', 'h.ts.net']
    assert refused(checks.check_target_hosts, ['10.0.0.5', 'fe80::1%eth0'], 'targetHosts') \
        .startswith("refused address 'fe80::1%eth0' from targetHosts[1]: it holds an IPv6 zone")
    assert refused(checks.check_target_hosts, [], 'targetHosts') == (
        "refused address list '[]' from targetHosts: it is empty: give one address or more, "
        "or leave it out")
    assert refused(checks.check_target_hosts, '10.0.0.5', 'targetHosts') == (
        "refused address list '10.0.0.5' from targetHosts: it is not a list of addresses")
    assert "from targetHosts[0]: it begins with '-'" in refused(
        checks.check_target_hosts, ['-oProxyCommand=x'], 'targetHosts')


# ---- ssh options: one allow-list, a bastion passes ----------------------------------

@pytest.mark.parametrize('opts, args', [
    (['-J', 'bastion'], ['-o', 'ProxyJump=bastion']),
    (['-Jadmin@bastion'], ['-o', 'ProxyJump=admin@bastion']),
    (['-o', 'ProxyJump=admin@bastion'], ['-o', 'ProxyJump=admin@bastion']),
    (['-oProxyJump admin@bastion.example:2222'], ['-o', 'ProxyJump=admin@bastion.example:2222']),
    (['-o', 'proxyjump=a,b'], ['-o', 'ProxyJump=a,b']),
    (['-o', 'ProxyJump=ops@a.example:22,ssh://b.example:2200,admin@[2001:db8::1]:22'],
     ['-o', 'ProxyJump=ops@a.example:22,ssh://b.example:2200,admin@[2001:db8::1]:22']),
    (['-o', 'ProxyJump=none'], ['-o', 'ProxyJump=none']),
    (['-J', 'bastion', '-o', 'ConnectTimeout=5', '-4'],
     ['-o', 'ProxyJump=bastion', '-o', 'ConnectTimeout=5', '-4']),
])
def test_a_jump_host_passes(opts, args):
    assert checks.ssh_opts(opts, 'sshOptions') == (None, None, args)
    # and turns no host key checking off
    assert _host_key_rules.args_problems(args) == []


@pytest.mark.parametrize('opts, reason', [
    (['-J', 'evil;touch /tmp/x'], "its hop 'evil;touch /tmp/x': its host is no host name"),
    (['-J', '$(id)@b'], "its hop '$(id)@b': its user is no user name"),
    (['-J', 'x$HOME@b'], 'its user is no user name'),
    (['-J', '-oProxyCommand=x'], "its hop '-oProxyCommand=x': its host is no host name"),
    (['-J', 'b%h'], 'its host is no host name'),
    (['-J', 'b:99999'], 'its port is not a number 1..65535'),
    (['-J', 'b:'], 'its port is not a number 1..65535'),
    (['-J', 'a,,b'], "its hop '': its host is no host name"),
    (['-J', '2001:db8::1'], 'an IPv6 address in a hop needs brackets'),
    (['-J', '[2001:db8::1],b'], 'an IPv6 address is taken in the last hop only'),
    (['-J', '[fe80::1%eth0]'], 'its brackets hold no IPv6 address ssh and Nix can reach'),
    (['-J', 'b\nProxyCommand x'], 'its host is no host name'),
    (['-J'], 'its value is missing'),
])
def test_a_jump_host_that_could_reach_the_shell_is_refused(opts, reason):
    message = refused(checks.ssh_opts, opts, 'sshOptions')
    assert message.startswith('refused ssh option '), message
    assert 'from sshOptions: ' in message and reason in message, message


@pytest.mark.parametrize('opts, message', [
    (['-o', 'StrictHostKeyChecking=no'],
     "refused ssh option 'StrictHostKeyChecking=no' from sshOptions: it turns host key checking "
     "off (StrictHostKeyChecking=no): ssh would trust whatever answers at the address, so the "
     "flake may not choose it"),
    (['-oUserKnownHostsFile=/dev/null'],
     "refused ssh option '-oUserKnownHostsFile=/dev/null' from sshOptions: it turns host key "
     "checking off (known_hosts files that hold no key: UserKnownHostsFile /dev/null): ssh would "
     "trust whatever answers at the address, so the flake may not choose it"),
    (['-o', 'stricthostkeychecking off'], 'it turns host key checking off'),
    (['-o', 'StrictHostKeyChecking=accept-new'],
     "refused ssh option 'StrictHostKeyChecking=accept-new' from sshOptions: it changes how ssh "
     "checks host keys (StrictHostKeyChecking), which is the controller's choice: set it in "
     "~/.ssh/config or ansible_ssh_common_args in group_vars/"),
    (['-o', 'ProxyCommand=ssh -W %h:%p bastion'],
     "refused ssh option 'ProxyCommand=ssh -W %h:%p bastion' from sshOptions: it can run a "
     "command on this controller (ProxyCommand), which the flake does not choose; set it in a "
     "file of yours: ~/.ssh/config or ansible_ssh_common_args in group_vars/"),
    (['-o', 'LocalCommand=id'], 'it can run a command on this controller (LocalCommand)'),
    (['-o', 'PermitLocalCommand=yes'], 'it can run a command on this controller (PermitLocalCommand)'),
    (['-o', 'KnownHostsCommand=/bin/x'], 'it can run a command on this controller (KnownHostsCommand)'),
    (['-o', 'Match exec "touch /tmp/x"'], 'it can run a command on this controller (Match)'),
    (['-F', '/tmp/cfg'], "refused ssh option '-F' from sshOptions: it names an ssh config file, "
                         "which can run commands (ProxyCommand, Match exec) and turn host key "
                         "checking off"),
    (['-o', 'Include=/tmp/cfg'], 'it includes ssh config files'),
    (['-i', '/root/.ssh/id_ed25519'], 'not on the allow-list of ssh options'),
])
def test_what_runs_a_command_or_turns_host_keys_off_says_so(opts, message):
    assert message in refused(checks.ssh_opts, opts, 'sshOptions')


@pytest.mark.parametrize('args', [
    ['-o', 'ProxyJump=admin@bastion'],
    ['-o', 'ProxyJump=a@[2001:db8::1]:22', '-o', 'ConnectTimeout=5', '-4C'],
])
def test_joined_args_split_back_item_for_item(args):
    text = network.joined(args)
    assert shlex.split(text) == args
    # as the collection splits ansible_ssh_common_args for the copy
    assert _host_ssh.split_ssh_args(text) == args
