# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/inventory/_inventory_checks.py: what the flake may hand to ssh.

Hostile values for every field (an address, user or port that ssh would read
as an option, whitespace, control and format characters, characters no name
has, an IPv6 zone no Nix store URI can carry) and ssh options (deploy-rs
sshOpts, colmena and inventory sshOptions) beside the allow-list, ProxyJump
hops the shell would read included; real names and plain jump hosts stay
accepted.
The integration test test_nix_inventory_trust.py runs the same through the
plugin, nix eval and Ansible's ssh.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))))
if 'ansible_collections.nixdeploy.fleet' not in sys.modules:
    sys.path.insert(0, REPO)
    from tests.collection import collections_path  # noqa: E402
    sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host  # noqa: E402
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory_checks as checks, _inventory_error)

InventoryError = _inventory_error.InventoryError


# ---- addresses ---------------------------------------------------------------

GOOD_ADDRESSES = [
    'web1', 'web1.example.org', 'web1.example.org.', 'xn--bcher-kva.example', '_srv.example',
    'my_host', '10.0.0.1', '192.168.1.254', '::1', '2001:db8::42', 'fd00::1',
    '::ffff:192.0.2.1', '2001:DB8::A', 'a' * 253,
]


@pytest.mark.parametrize('address', GOOD_ADDRESSES)
def test_real_addresses_pass(address):
    assert checks.check_address(address, 'targetHost') == address
    # and the collection's own copy accepts what the inventory lets through
    assert _host.Host(address).address == address


@pytest.mark.parametrize('address, bare', [
    ('[::1]', '::1'), ('[2001:db8::42]', '2001:db8::42'), ('[2001:DB8::A]', '2001:DB8::A'),
])
def test_bracketed_ipv6_is_given_on_bare(address, bare):
    # ssh's argv and Nix's store URIs take an IPv6 literal without brackets
    assert checks.check_address(address, 'targetHost') == bare
    assert _host.Host(bare).address == bare


# the reason a zone index is refused (_inventory_network.ZONE)
NO_ZONE = ('it holds an IPv6 zone index (the part after %): a zone cannot be carried in a Nix '
           'store URI (ssh://user@host), so nix copy could not reach the host')


@pytest.mark.parametrize('address, reason', [
    ('-oProxyCommand=touch /tmp/x', "begins with '-', which ssh reads as an option"),
    ('-oProxyCommand=touch\t/tmp/x', "begins with '-'"),
    ('-l', "begins with '-'"),
    ('-', "begins with '-'"),
    ('host\nProxyCommand touch /tmp/x', 'holds whitespace'),
    ('host\rx', 'holds whitespace'),
    ('a b', 'holds whitespace'),
    (' host', 'holds whitespace'),
    ('host\t', 'holds whitespace'),
    ('\x1b[31mhost', 'control or format character'),
    ('host\x00', 'control or format character'),
    ('host\x7f', 'control or format character'),
    ('host\u2028x', 'holds whitespace'),
    ('host\x85x', 'holds whitespace'),
    ('host\x1cx', 'holds whitespace'),
    ('host\u202ex', 'control or format character'),
    ('host\u200bx', 'control or format character'),
    ('host\u00a0x', 'holds whitespace'),
    ('user@host', 'no host name'),
    ('host;touch', 'no host name'),
    ('$(touch /tmp/x)', 'holds whitespace'),
    ('$(id)', 'no host name'),
    ('`id`', 'no host name'),
    ('host/../x', 'no host name'),
    ('[::1', "its '[' has no ']'"),
    ('[::1]:22', 'it holds a port ([address]:port)'),
    ('[::1]-oX', "it holds text after ']'"),
    ('[web1]', 'no host name'),
    ("h'x", 'no host name'),
    ('h"x', 'no host name'),
    ('bücher.example', 'no host name'),
    ('.hidden', 'no host name'),
    ('a' * 254, 'no host name'),
    ('host:22', 'no IPv6 address'),
    ('::1:-oX', 'no IPv6 address'),
    ('fe80::1%-oX y', 'holds whitespace'),
    ('fe80::1%eth0', NO_ZONE),
    ('fe80::1%enp0s31f6', NO_ZONE),
    ('[fe80::1%eth0]', NO_ZONE),
    ('2001:db8::5%eth0', NO_ZONE),
    ('fe80::1%eth0/x', NO_ZONE),
    ('fe80::1%$(id)', NO_ZONE),
    ('fe80::1%', NO_ZONE),
    ('fe80::1', 'it is a link-local IPv6 address, which the controller reaches only with a zone'),
    ('', 'it is empty'),
    (None, 'not a string'),
    (22, 'not a string'),
    (['-oX'], 'not a string'),
])
def test_hostile_addresses_are_refused(address, reason):
    with pytest.raises(InventoryError) as err:
        checks.check_address(address, 'targetHost')
    message = str(err.value)
    assert message.startswith('refused address %r from targetHost: ' % (
        address if isinstance(address, str) else str(address),))
    assert reason in message
    # the value is shown escaped: no raw control character or line end reaches a warning
    assert message.isprintable()


# ---- users -------------------------------------------------------------------

@pytest.mark.parametrize('user', ['root', 'deploy', 'nix-on-droid', 'user.name', 'u_1', '_svc',
                                  'HOST$', '1000', 'a' * 256])
def test_real_users_pass(user):
    assert checks.check_user(user, 'targetUser') == user
    assert _host.Host('h', user=user).user == user


@pytest.mark.parametrize('user, reason', [
    ('-l', "begins with '-'"),
    ('-oProxyCommand=touch /tmp/x', "begins with '-'"),
    ('a b', 'holds whitespace'),
    ('root\n', 'holds whitespace'),
    ('ro\x1bot', 'control or format character'),
    ('u\u2029', 'holds whitespace'),
    ('alice@corp', 'no user name'),
    ('$(id)', 'no user name'),
    ('a;b', 'no user name'),
    ('%u', 'no user name'),
    ('${HOME}', 'no user name'),
    ('ädmin', 'no user name'),
    ('a' * 257, 'no user name'),
    ('', 'it is empty'),
    (0, 'not a string'),
])
def test_hostile_users_are_refused(user, reason):
    with pytest.raises(InventoryError) as err:
        checks.check_user(user, 'targetUser')
    assert str(err.value).startswith('refused ssh user ')
    assert reason in str(err.value)
    assert str(err.value).isprintable()


# ---- ports -------------------------------------------------------------------

@pytest.mark.parametrize('port, number', [(22, 22), ('2222', 2222), (65535, 65535), ('1', 1),
                                          (None, None), ('', None)])
def test_ports(port, number):
    assert checks.check_port(port, 'port') == number


@pytest.mark.parametrize('port, reason', [
    ('22 -oX', 'not a number'), ('22 -oProxyCommand=touch /tmp/x', 'not a number'),
    (' 22', 'not a number'), ('22\n', 'not a number'), ('-22', 'not a number'), ('+22', 'not a number'),
    ('2_2', 'not a number'), ('0x16', 'not a number'), ('\u0662\u0662', 'not a number'),
    ('ssh', 'not a number'), (22.0, 'not a number'), (True, 'not a number'), ([22], 'not a number'),
    ('123456', 'not a number'), (0, 'out of range'), ('0', 'out of range'), (65536, 'out of range'),
    (-1, 'out of range'), ('99999', 'out of range'),
])
def test_hostile_ports_are_refused(port, reason):
    with pytest.raises(InventoryError) as err:
        checks.check_port(port, 'port')
    assert str(err.value).startswith('refused port ')
    assert reason in str(err.value)


# ---- ssh options (deploy-rs sshOpts, colmena and inventory sshOptions) ------------

@pytest.mark.parametrize('opts, port, user, args', [
    ([], None, None, []),
    (['-p', '2222'], 2222, None, []),
    (['-p2222'], 2222, None, []),
    (['-o', 'Port=2222'], 2222, None, []),
    (['-oPort 2222', '-p', '2222'], 2222, None, []),
    (['-l', 'deploy'], None, 'deploy', []),
    (['-ldeploy'], None, 'deploy', []),
    (['-o', 'User=deploy'], None, 'deploy', []),
    (['-4'], None, None, ['-4']),
    (['-6', '-C', '-4Cq', '-a', '-k', '-x'], None, None, ['-6', '-C', '-4Cq', '-a', '-k', '-x']),
    (['-o', 'ConnectTimeout=10'], None, None, ['-o', 'ConnectTimeout=10']),
    (['-oconnecttimeout=10'], None, None, ['-o', 'ConnectTimeout=10']),
    (['-o', 'CONNECTTIMEOUT 10'], None, None, ['-o', 'ConnectTimeout=10']),
    (['-o', 'ConnectTimeout = 10'], None, None, ['-o', 'ConnectTimeout=10']),
    (['-o', '\tConnectTimeout\t10 '], None, None, ['-o', 'ConnectTimeout=10']),
    (['-o', 'ConnectionAttempts=3', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3'], None, None,
     ['-o', 'ConnectionAttempts=3', '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3']),
    (['-o', 'TCPKeepAlive=yes', '-o', 'Compression=no', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'],
     None, None, ['-o', 'TCPKeepAlive=yes', '-o', 'Compression=no', '-o', 'BatchMode=yes',
                  '-o', 'IdentitiesOnly=yes']),
    (['-o', 'AddressFamily=inet6', '-o', 'IPQoS=lowdelay', '-o', 'LogLevel=ERROR'], None, None,
     ['-o', 'AddressFamily=inet6', '-o', 'IPQoS=lowdelay', '-o', 'LogLevel=ERROR']),
    # a jump host of plain hops passes, -J spelled as -o ProxyJump=
    (['-o', 'ProxyJump=bastion'], None, None, ['-o', 'ProxyJump=bastion']),
    (['-J', 'bastion'], None, None, ['-o', 'ProxyJump=bastion']),
    (['-Jbastion'], None, None, ['-o', 'ProxyJump=bastion']),
    (['-J', 'ops@a.example:2222,ssh://b.example,admin@[2001:db8::1]:22', '-p', '2200'], 2200, None,
     ['-o', 'ProxyJump=ops@a.example:2222,ssh://b.example,admin@[2001:db8::1]:22']),
])
def test_allowed_ssh_opts(opts, port, user, args):
    assert checks.ssh_opts(opts, 'sshOpts') == (port, user, args)


@pytest.mark.parametrize('opts, refused', [
    (['-oProxyCommand=touch /tmp/x'], "ssh option '-oProxyCommand=touch /tmp/x'"),
    (['-o', 'ProxyCommand=touch /tmp/x'], "ssh option 'ProxyCommand=touch /tmp/x'"),
    (['-o', 'proxycommand touch /tmp/x'], "ssh option 'proxycommand touch /tmp/x'"),
    (['-o', 'ProxyCommand\ttouch'], 'ssh option'),
    # ssh hands a ProxyJump chain to /bin/sh (after its % expansion): a hop
    # with a shell character, a $ or a % is refused, whatever the spelling
    (['-o', 'ProxyJump=bastion;touch /tmp/x'],
     "ssh option 'ProxyJump=bastion;touch /tmp/x' from sshOpts: its hop 'bastion;touch /tmp/x': "
     "its host is no host name"),
    (['-J', '$(touch /tmp/x)@bastion'],
     "ssh option '-J $(touch /tmp/x)@bastion' from sshOpts: its hop '$(touch /tmp/x)@bastion': "
     "its user is no user name"),
    (['-Jbastion`id`'], "ssh option '-Jbastion`id`' from sshOpts: its hop 'bastion`id`'"),
    (['-J', 'x$HOME@bastion'], 'its user is no user name'),
    (['-J', 'bastion%h'], 'its host is no host name'),
    (['-J', 'a,b|id'], "its hop 'b|id': its host is no host name"),
    (['-J', '-oProxyCommand=x'], "its hop '-oProxyCommand=x': its host is no host name"),
    (['-o', 'ProxyJump=b\nProxyCommand x'], 'its host is no host name'),
    (['-J', '[2001:db8::1],b'], 'an IPv6 address is taken in the last hop only'),
    (['-J', 'bastion:0'], 'its port is not a number 1..65535'),
    (['-J'], "ssh option '-J' from sshOpts: its value is missing"),
    (['-o', 'LocalCommand=touch /tmp/x'], 'LocalCommand'),
    (['-o', 'PermitLocalCommand=yes'], 'PermitLocalCommand'),
    (['-o', 'KnownHostsCommand=/bin/x'], 'KnownHostsCommand'),
    (['-o', 'StrictHostKeyChecking=no'], "ssh option 'StrictHostKeyChecking=no'"),
    (['-o', 'stricthostkeychecking=accept-new'], 'stricthostkeychecking'),
    (['-o', 'UserKnownHostsFile=/dev/null'], 'UserKnownHostsFile'),
    (['-o', 'GlobalKnownHostsFile=/dev/null'], 'GlobalKnownHostsFile'),
    (['-o', 'UpdateHostKeys=yes'], 'UpdateHostKeys'),
    (['-o', 'HostKeyAlias=other'], 'HostKeyAlias'),
    (['-o', 'VerifyHostKeyDNS=yes'], 'VerifyHostKeyDNS'),
    (['-F', '/tmp/evil_config'], "ssh option '-F'"),
    (['-o', 'Include=/tmp/evil'], 'Include'),
    (['-o', 'Match=exec "touch /tmp/x"'], 'Match'),
    (['-o', 'RemoteCommand=id'], 'RemoteCommand'),
    (['-L', '8080:localhost:80'], "ssh option '-L'"),
    (['-R', '8080:localhost:80'], "ssh option '-R'"),
    (['-D', '1080'], "ssh option '-D'"),
    (['-W', 'h:22'], "ssh option '-W'"),
    (['-o', 'LocalForward=8080 localhost:80'], 'LocalForward'),
    (['-o', 'DynamicForward=1080'], 'DynamicForward'),
    (['-S', '/tmp/sock'], "ssh option '-S'"),
    (['-o', 'ControlPath=/tmp/sock'], 'ControlPath'),
    (['-o', 'ControlMaster=yes'], 'ControlMaster'),
    (['-E', '/etc/passwd'], "ssh option '-E'"),
    (['-i', '/root/.ssh/id_ed25519'], "ssh option '-i'"),
    (['-o', 'IdentityFile=/etc/shadow'], 'IdentityFile'),
    (['-o', 'CertificateFile=/x'], 'CertificateFile'),
    (['-o', 'PKCS11Provider=/tmp/evil.so'], 'PKCS11Provider'),
    (['-o', 'SecurityKeyProvider=/tmp/evil.so'], 'SecurityKeyProvider'),
    (['-o', 'ForwardAgent=yes'], 'ForwardAgent'),
    (['-A'], "ssh option '-A'"),
    (['-X'], "ssh option '-X'"),
    (['-4A'], "ssh option '-4A'"),
    (['-o', 'SendEnv=AWS_*'], 'SendEnv'),
    (['-o', 'SetEnv=A=B'], 'SetEnv'),
    (['-o', 'Hostname=-oProxyCommand=x'], 'Hostname'),
    (['-o', 'Tunnel=yes'], 'Tunnel'),
    (['-o', 'NoSuchOption=1'], 'NoSuchOption'),
    (['-o', '-oProxyCommand=x'], "ssh option '-oProxyCommand=x'"),
    (['-o'], "ssh option '-o' from sshOpts: its value is missing"),
    (['-p'], "ssh option '-p' from sshOpts: its value is missing"),
    (['-p', ''], "ssh option '-p' from sshOpts: its value is missing"),
    (['-o', 'Port='], "ssh option 'Port=' from sshOpts: its value is missing"),
    (['-oUser='], "ssh option '-oUser=' from sshOpts: its value is missing"),
    (['-o', 'ConnectTimeout\x1c10'], "ssh option 'ConnectTimeout\\x1c10'"),
    (['-o', 'ConnectTimeout\u200810'], 'not on the allow-list'),
    (['-o', 'ConnectTimeout=10 -oProxyCommand=x'], 'ConnectTimeout'),
    (['-o', 'ConnectTimeout=10\nProxyCommand x'], 'ConnectTimeout'),
    (['-o', 'LogLevel=${HOME}'], 'LogLevel'),
    (['-o', 'IPQoS=lowdelay throughput'], 'IPQoS'),
    (['-o', 'Compression=maybe'], 'Compression'),
    (['-p', '22 -oX'], "refused port '22 -oX'"),
    (['-p', '22', '-p', '2222'], "refused port '[22, 2222]' from sshOpts: they give more than one"),
    (['-l', '-oProxyCommand=x'], "refused ssh user '-oProxyCommand=x'"),
    (['-o', 'User=a b'], "refused ssh user 'a b'"),
    (['--', 'x'], "ssh option '--'"),
    (['host'], "ssh option 'host'"),
    (['-Gv'], "ssh option '-Gv'"),
    (['-v'], "ssh option '-v'"),
])
def test_refused_ssh_opts(opts, refused):
    with pytest.raises(InventoryError) as err:
        checks.ssh_opts(opts, 'sshOpts')
    message = str(err.value)
    assert message.startswith('refused '), message
    assert refused in message, message
    assert 'from sshOpts' in message
    assert message.isprintable()


def test_node_label():
    assert checks.node_label('web1') == 'web1'
    assert checks.node_label('alice@laptop') == 'alice@laptop'
    assert checks.node_label('a b') == "'a b'"
    assert checks.node_label('x\n[WARNING]: forged') == "'x\\n[WARNING]: forged'"
    assert checks.node_label('') == "''"


@pytest.mark.parametrize('name, reason', [
    ('bad/name', "it holds '/'"),
    ('../x', "it holds '/'"),
    ('a\x1bb', 'it holds a control character'),
    ('\u202eevil', 'a bidi control'),
    ('x\ny', 'a newline'),
    ('x\u2028y', 'it holds a control character'),
    ('x\x9b1A', 'it holds a control character'),
    ('', 'it is empty'),
    ('web\t1', 'it holds a control character'),
])
def test_host_names_a_terminal_file_or_ref_cannot_take(name, reason):
    with pytest.raises(InventoryError) as err:
        checks.check_host_name(name)
    message = str(err.value)
    assert message.startswith('refused host name %r from the node name' % name), message
    assert reason in message and message.isprintable(), message


@pytest.mark.parametrize('name', ['web1', 'alice@laptop', 'web 1', 'nœud', 'a:b', 'zero\u200dwidth',
                                  "{{ lookup('pipe', 'id') }}"])
def test_printable_host_names_pass_the_check(name):
    assert checks.check_host_name(name) == name


def test_check_connection_in_place():
    fields = {'address': 'h', 'user': 'deploy', 'port': '2222',
              'origin': {'address': 'targetHost', 'user': 'user', 'port': 'port'}}
    assert checks.check_connection(fields, 'n') is fields
    assert fields['port'] == 2222
    with pytest.raises(InventoryError, match="refused address '-oX' from the host name"):
        checks.check_connection({'address': None}, '-oX', name_is_address=True)
    # the name does not count when an address is given
    checks.check_connection({'address': 'h'}, '-oX', name_is_address=True)


def test_check_composed():
    checks.check_composed({'ansible_host': 'x'}, {'ansible_host': '10.0.0.1', 'ansible_user': '-l'})
    with pytest.raises(InventoryError, match="refused ssh user '-l' from compose ansible_user"):
        checks.check_composed({'ansible_user': 'x'}, {'ansible_user': '-l'})
    with pytest.raises(InventoryError, match="refused port '22 -oX' from compose ansible_port"):
        checks.check_composed({'ansible_port': 'x'}, {'ansible_port': '22 -oX'})
