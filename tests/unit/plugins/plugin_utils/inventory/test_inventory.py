# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure mapping of plugin_utils/inventory/_inventory_hosts.py (each
source's Python mapper: _inventory_fields.py, _inventory_colmena.py,
_inventory_deploy_rs.py): the Nix program's JSON -> hosts and groups, many
cases without Nix; and the attribute option's reading.

The JSON shapes here (``raw``) are what inventory.nix returns:
test_inventory_nix.py evaluates it with real Nix and checks that.
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

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (  # noqa: E402
    PLATFORM_ORDER, PLATFORMS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (  # noqa: E402
    _inventory as inv, _inventory_checks as _checks, _inventory_error, _inventory_hosts)

InventoryError = _inventory_error.InventoryError
FLAKE = 'path:/srv/fleet'
CONFIGS = {'nixosConfigurations': [], 'darwinConfigurations': [],
           'nixOnDroidConfigurations': [], 'homeConfigurations': []}


def raw(source, nodes, inventory=None, configurations=None, **extra):
    configs = dict(CONFIGS)
    configs.update(configurations or {})
    data = {'source': source, 'nodes': nodes, 'inventory': inventory,
            'configurations': configs, 'madeHive': False, 'deploy': None,
            'attribute': {'inventory': ['inventory'], 'colmena': ['colmena'],
                          'deploy-rs': ['deploy']}.get(source)}
    if source == 'configurations':
        # as source-configurations.nix lists them: the platforms' order
        data['order'] = [name for platform in PLATFORM_ORDER
                         for name in configs[PLATFORMS[platform]['output']]]
    data.update(extra)
    return data


def hosts(result):
    return dict((h.name, h) for h in result.hosts)


# ---- group names -----------------------------------------------------------

@pytest.mark.parametrize('text, group', [
    ('batch-vps', 'batch_vps'),
    ('x86_64-linux', 'x86_64_linux'),
    ('prod', 'prod'),
    ('@infra.eu', '_infra_eu'),
    ('2024', '_2024'),
    ('all', 'tag_all'),
    ('ungrouped', 'tag_ungrouped'),
    (u'caf\xe9', 'caf_'),
    ('', None),
])
def test_group_name(text, group):
    assert _inventory_hosts.group_name(text) == group


# ---- the Nix expression ------------------------------------------------------

@pytest.mark.parametrize('value, path', [
    (None, None),
    ('', None),
    ('inventory', ['inventory']),
    ('fleet.hosts', ['fleet', 'hosts']),
    ('fleet."a.b".c', ['fleet', 'a.b', 'c']),
    (['x', 'y.z'], ['x', 'y.z']),
])
def test_parse_attribute(value, path):
    assert inv.parse_attribute(value) == path


def test_unknown_source():
    with pytest.raises(InventoryError, match='unknown source'):
        inv.program_params('nixops')
    with pytest.raises(InventoryError, match='unknown source'):
        _inventory_hosts.build_inventory(raw('nixops', {}), FLAKE)


def test_check_flake_refuses_a_fragment():
    with pytest.raises(InventoryError, match='attribute option'):
        inv.check_flake('github:o/r#inventory')
    assert inv.check_flake('git+file:///r?dir=sub') == 'git+file:///r?dir=sub'


def test_eval_args_select_outputs_root():
    args = inv.eval_args(['path:/x#.'], 'auto')
    assert args[:2] == ['--json', 'path:/x#.']
    assert args[2] == '--apply'


# ---- source: inventory ---------------------------------------------------------

def test_inventory_host_vars_and_groups():
    node = {'targetHost': '10.0.0.1', 'targetUser': 'deploy', 'port': 2222,
            'tags': ['batch-vps', 'prod'], 'role': 'web', 'system': 'x86_64-linux',
            'extra': {'rack': 3}}
    result = _inventory_hosts.build_inventory(raw('inventory', {'web1': node}), FLAKE)
    host = hosts(result)['web1']
    assert host.vars['ansible_host'] == '10.0.0.1'
    assert host.vars['ansible_user'] == 'deploy'
    assert host.vars['ansible_port'] == 2222
    assert host.vars['nix_platform'] == 'nixos'
    assert host.vars['nix_system'] == 'x86_64-linux'
    assert host.vars['nix_attr'] == 'nixosConfigurations.web1.config.system.build.toplevel'
    assert host.vars['nix_flake'] == FLAKE
    assert host.vars['nix_tags'] == ['batch-vps', 'prod']
    assert host.vars['nix_role'] == 'web'
    assert host.vars['nix_configuration'] == 'web1'
    assert host.vars['nix_node'] is node
    assert host.vars['nix_source'] == 'inventory'
    assert host.groups == ['nixos', 'x86_64_linux', 'role_web', 'batch_vps', 'prod']


@pytest.mark.parametrize('node, address, user', [
    ({'targetHost': 'a', 'host': 'b', 'hostname': 'c', 'ips': ['d']}, 'a', None),
    ({'host': 'b', 'hostname': 'c', 'ips': ['d'], 'user': 'u', 'sshUser': 's'}, 'b', 'u'),
    ({'hostname': 'c', 'ips': ['d'], 'sshUser': 's'}, 'c', 's'),
    ({'ips': ['192.0.2.7', '192.0.2.8'], 'targetUser': 't', 'user': 'u'}, '192.0.2.7', 't'),
])
def test_inventory_address_and_user_precedence(node, address, user):
    host = hosts(_inventory_hosts.build_inventory(raw('inventory', {'h': node}), FLAKE))['h']
    assert host.vars['ansible_host'] == address
    assert host.vars.get('ansible_user') == user


def test_shared_configuration_and_platforms():
    nodes = {
        'vps1': {'host': 'a', 'configuration': 'vps', 'tags': 'single-tag'},
        'vps2': {'host': 'b', 'configuration': 'vps'},
        'mac': {'host': 'c', 'platform': 'darwin'},
        'phone': {'host': 'd', 'platform': 'nix_on_droid'},
        'alice': {'host': 'e', 'platform': 'home-manager', 'configuration': 'alice@e'},
    }
    result = hosts(_inventory_hosts.build_inventory(raw('inventory', nodes), FLAKE))
    assert result['vps1'].vars['nix_attr'] == result['vps2'].vars['nix_attr'] == \
        'nixosConfigurations.vps.config.system.build.toplevel'
    assert result['vps1'].vars['nix_tags'] == ['single-tag']
    assert result['mac'].vars['nix_attr'] == 'darwinConfigurations.mac.system'
    assert result['mac'].groups == ['darwin']
    assert result['phone'].vars['nix_platform'] == 'nix-on-droid'
    assert result['phone'].groups == ['nix_on_droid']
    assert result['alice'].vars['nix_attr'] == 'homeConfigurations."alice@e".activationPackage'
    assert result['alice'].groups == ['home_manager']


def test_node_without_address_is_skipped_or_strict_error():
    nodes = {'ok': {'host': 'a'}, 'lost': {'tags': ['x']}}
    result = _inventory_hosts.build_inventory(raw('inventory', nodes), FLAKE)
    assert [h.name for h in result.hosts] == ['ok']
    assert result.skipped[0][0] == 'lost'
    assert 'no address' in result.skipped[0][1]
    with pytest.raises(InventoryError, match='inventory node lost: it has no address'):
        _inventory_hosts.build_inventory(raw('inventory', nodes), FLAKE, strict=True)


@pytest.mark.parametrize('node, message', [
    ({'host': 'a', 'port': 'ssh'}, 'not a number'),
    ({'host': 'a', 'port': 70000}, 'out of range'),
    ({'host': 'a', 'port': '22 -oX'}, "refused port '22 -oX' from port: it is not a number"),
    ({'host': 'a', 'sshPort': True}, 'from sshPort: it is not a number'),
    ({'host': 'a', 'platform': 'windows'}, 'unknown platform'),
    ('just a string', 'not an attribute set'),
])
def test_bad_nodes(node, message):
    result = _inventory_hosts.build_inventory(raw('inventory', {'bad': node}), FLAKE)
    assert not result.hosts
    assert message in result.skipped[0][1]
    with pytest.raises(InventoryError, match=message):
        _inventory_hosts.build_inventory(raw('inventory', {'bad': node}), FLAKE, strict=True)


# ---- source: colmena -----------------------------------------------------------

def test_colmena_defaults_follow_colmena():
    nodes = {
        'web1': {'deployment': {'targetHost': '10.0.0.1', 'targetUser': 'deploy',
                                'targetPort': 2222, 'tags': ['batch-vps']}},
        'bare': {'deployment': {}},
        'local': {'deployment': {'targetHost': None}},
        'nouser': {'deployment': {'targetUser': None}},
        'broken': {'error': True},
    }
    result = _inventory_hosts.build_inventory(raw('colmena', nodes,
                                                  configurations={'nixosConfigurations': ['web1']}), FLAKE)
    got = hosts(result)
    assert sorted(got) == ['bare', 'nouser', 'web1']
    assert got['web1'].vars['ansible_port'] == 2222
    assert got['web1'].vars['nix_attr'] == 'nixosConfigurations.web1.config.system.build.toplevel'
    assert got['web1'].groups == ['nixos', 'batch_vps']
    # colmena's defaults: targetHost = the node name, targetUser = root
    assert got['bare'].vars['ansible_host'] == 'bare'
    assert got['bare'].vars['ansible_user'] == 'root'
    assert 'ansible_user' not in got['nouser'].vars
    # no nixosConfigurations.bare and a raw hive: nothing to deploy
    assert got['bare'].vars['nix_attr'] is None
    skipped = dict(result.skipped)
    assert 'no address' in skipped['local']
    assert 'more than data' in skipped['broken']


def test_colmena_made_hive_toplevel():
    data = raw('colmena', {'n1': {'deployment': {'targetHost': 'h', 'tags': []}}},
               madeHive=True, attribute=['colmenaHive'])
    host = hosts(_inventory_hosts.build_inventory(data, FLAKE))['n1']
    assert host.vars['nix_attr'] == 'colmenaHive.toplevel.n1'


def test_colmena_merges_inventory_data():
    nodes = {'web1': {'deployment': {'tags': []}}}
    inventory = {'web1': {'targetHost': '10.0.0.9', 'user': 'ops', 'tags': ['prod'],
                          'role': 'web', 'system': 'aarch64-linux', 'configuration': 'web'}}
    data = raw('colmena', nodes, inventory,
               configurations={'nixosConfigurations': ['web', 'web1']})
    host = hosts(_inventory_hosts.build_inventory(data, FLAKE))['web1']
    assert host.vars['ansible_host'] == '10.0.0.9'
    assert host.vars['ansible_user'] == 'ops'
    assert host.vars['nix_tags'] == ['prod']
    assert host.vars['nix_configuration'] == 'web'
    assert host.groups == ['nixos', 'aarch64_linux', 'role_web', 'prod']


def test_colmena_keys_become_nix_keys():
    """deployment.keys in colmena's spelling -> nix_keys in the collection's;
    secrets never in nix_node; content in the Nix store warned about."""
    keys = {
        'db': {'keyCommand': ['pass', 'show', 'db'], 'user': 'postgres', 'group': 'postgres',
               'permissions': '0400', 'destDir': '/var/keys', 'uploadAt': 'post-activation',
               'name': 'db.pass', 'text': None, 'keyFile': None, 'path': '/var/keys/db.pass'},
        'tls': {'keyFile': '/home/ops/secrets/tls.key'},
        'inline': {'text': 'in the store'},
        'literal': {'keyFile': '/nix/store/0a4-source/secrets/x'},
        'odd': 'not a spec',
    }
    nodes = {'web1': {'deployment': {'targetHost': 'h'}, 'keys': keys},
             'web2': {'deployment': {'targetHost': 'h2'}, 'keysError': True},
             'web3': {'deployment': {'targetHost': 'h3'}, 'keys': {}}}
    result = _inventory_hosts.build_inventory(raw('colmena', nodes), FLAKE,
                                              hive_keys=['text', 'keyFile', 'keyCommand'])
    got = hosts(result)
    assert got['web1'].vars['nix_keys'] == {
        'db': {'command': ['pass', 'show', 'db'], 'user': 'postgres', 'group': 'postgres',
               'mode': '0400', 'dest_dir': '/var/keys', 'upload_at': 'post-activation',
               'name': 'db.pass'},
        'tls': {'src': '/home/ops/secrets/tls.key'},
        'inline': {'text': 'in the store'},
        'literal': {'src': '/nix/store/0a4-source/secrets/x'},
    }
    for name in got:
        assert got[name].vars['nix_node'] == {'deployment': {'targetHost': got[name].vars['ansible_host']}}
    assert 'nix_keys' not in got['web2'].vars and 'nix_keys' not in got['web3'].vars
    warnings = '\n'.join(result.warnings)
    assert 'colmena node web1, key inline: its text is in the Nix store' in warnings
    assert 'colmena node web1, key literal: keyFile /nix/store/0a4-source/secrets/x is in the Nix store' in warnings
    assert 'colmena node web2: its deployment.keys do not evaluate as data' in warnings
    assert 'tls' not in warnings and 'key db' not in warnings
    # the mapped specs are valid nix_keys specs
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys
    specs = _keys.normalize_keys(got['web1'].vars['nix_keys'])
    assert [(k.key, k.path, k.source) for k in specs] == [
        ('db', '/var/keys/db.pass', 'command'), ('inline', '/run/keys/inline', 'text'),
        ('literal', '/run/keys/literal', 'src'), ('tls', '/run/keys/tls', 'src')]


def test_colmena_key_commands_and_files_only_by_choice():
    """By default only text keys are mapped: a keyCommand (a command run here)
    or keyFile (a file read here) from the flake is left out, each named in a
    warning with the option that maps it; [] maps none."""
    keys = {'db': {'keyCommand': ['pass', 'show', 'db'], 'keyFile': None},
            'tls': {'keyFile': '/home/ops/.ssh/id_ed25519', 'destDir': '/tmp'},
            'inline': {'text': 'in the store'}}
    nodes = {'web1': {'deployment': {'targetHost': 'h'}, 'keys': keys}}
    result = _inventory_hosts.build_inventory(raw('colmena', nodes), FLAKE)
    assert hosts(result)['web1'].vars['nix_keys'] == {'inline': {'text': 'in the store'}}
    warnings = result.messages()
    assert ('colmena node web1, key db: its keyCommand is left out: the flake chose a command for '
            'this controller to run; list keyCommand in the inventory option hive_keys to map it') in warnings
    assert ("colmena node web1, key tls: its keyFile is left out: the flake chose a file of this "
            "controller ('/home/ops/.ssh/id_ed25519') to read and upload; list keyFile in the "
            "inventory option hive_keys to map it") in warnings
    only_files = _inventory_hosts.build_inventory(raw('colmena', nodes), FLAKE, hive_keys=['keyFile'])
    assert sorted(hosts(only_files)['web1'].vars['nix_keys']) == ['tls']
    assert any('key inline: its text is left out: hive_keys does not list text' in w
               for w in only_files.warnings)
    none = _inventory_hosts.build_inventory(raw('colmena', nodes), FLAKE, hive_keys=[])
    assert 'nix_keys' not in hosts(none)['web1'].vars
    assert len(none.warnings) == 3


def test_skip_messages_name_node_field_and_value():
    """The warning lines the plugin prints (after 'nixdeploy.fleet.nix: ')."""
    nodes = {'ok': {'host': 'a'}, 'evil': {'host': '-oProxyCommand=touch /tmp/x'},
             'bad\nname': {'host': 'a', 'user': 'x\x1by'}}
    result = _inventory_hosts.build_inventory(raw('inventory', nodes), FLAKE)
    assert [h.name for h in result.hosts] == ['ok']
    assert result.messages() == [
        "skipped inventory node evil: refused address '-oProxyCommand=touch /tmp/x' from host: "
        "it begins with '-', which ssh reads as an option",
        "skipped inventory node 'bad\\nname': refused ssh user 'x\\x1by' from user: "
        "it holds a control or format character",
    ]
    with pytest.raises(InventoryError) as err:
        _inventory_hosts.build_inventory(raw('inventory', nodes), FLAKE, strict=True)
    assert str(err.value) == ("inventory node evil: refused address '-oProxyCommand=touch /tmp/x' "
                              "from host: it begins with '-', which ssh reads as an option")


@pytest.mark.parametrize('source, nodes, extra, message', [
    ('colmena', {'-oProxyCommand=x': {'deployment': {}}}, {},
     "skipped colmena node -oProxyCommand=x: refused address '-oProxyCommand=x' from the node name "
     "(colmena's default targetHost)"),
    ('colmena', {'n': {'deployment': {'targetUser': '-l'}}}, {},
     "skipped colmena node n: refused ssh user '-l' from deployment.targetUser"),
    ('colmena', {'n': {'deployment': {}}}, {'inventory': {'n': {'hostname': 'a b'}}},
     "skipped colmena node n: refused address 'a b' from inventory.hostname"),
    # a jump host passes (test_every_source_takes_a_plain_jump_host), but ssh
    # hands its hops to /bin/sh: one the shell or ssh's % expansion would read is refused
    ('deploy-rs', {'n': {'hostname': 'h', 'sshOpts': ['-o', 'ProxyJump=b;touch /tmp/x']}}, {},
     "skipped deploy-rs node n: refused ssh option 'ProxyJump=b;touch /tmp/x' from sshOpts: its "
     "hop 'b;touch /tmp/x': its host is no host name"),
    ('deploy-rs', {'n': {'hostname': 'h'}}, {'deploy': {'sshOpts': ['-J', '$(id)@b']}},
     "skipped deploy-rs node n: refused ssh option '-J $(id)@b' from deploy.sshOpts: its hop "
     "'$(id)@b': its user is no user name"),
    ('colmena', {'n': {'deployment': {'targetHost': 'h', 'sshOptions': ['-J', 'b%h']}}}, {},
     "skipped colmena node n: refused ssh option '-J b%h' from deployment.sshOptions: its hop "
     "'b%h': its host is no host name"),
    ('inventory', {'n': {'host': 'h', 'sshOptions': ['-o', 'ProxyJump=x$HOME@b']}}, {},
     "skipped inventory node n: refused ssh option 'ProxyJump=x$HOME@b' from sshOptions: its hop "
     "'x$HOME@b': its user is no user name"),
    ('inventory', {'n': {'host': 'fe80::1%eth0'}}, {},
     "skipped inventory node n: refused address 'fe80::1%eth0' from host: it holds an IPv6 zone "
     "index (the part after %): a zone cannot be carried in a Nix store URI"),
    ('deploy-rs', {'n': {'hostname': 'h', 'profiles': {'p': {'sshUser': '-x'}}}}, {},
     "skipped deploy-rs node n: refused ssh user '-x' from profiles.p.sshUser"),
    ('configurations', {}, {'configurations': {'homeConfigurations': ['u@-oX']}},
     "skipped configurations node u@-oX: refused address '-oX' from the host part of the "
     "configuration name user@host"),
    ('configurations', {}, {'configurations': {'homeConfigurations': ['-l@h']}},
     "skipped configurations node -l@h: refused ssh user '-l' from the user part of the "
     "configuration name user@host"),
    ('configurations', {}, {'configurations': {'nixosConfigurations': ['-oX']}},
     "skipped configurations node -oX: refused address '-oX' from the host name (no address "
     "given: ssh connects to it)"),
])
def test_every_source_checks_what_reaches_ssh(source, nodes, extra, message):
    result = _inventory_hosts.build_inventory(raw(source, nodes, **extra), FLAKE)
    assert not result.hosts
    assert result.messages()[0].startswith(message), result.messages()


@pytest.mark.parametrize('source, nodes, extra', [
    ('inventory', {'n': {'host': 'h', 'sshOptions': ['-J', 'admin@bastion']}}, {}),
    ('colmena', {'n': {'deployment': {'targetHost': 'h',
                                      'sshOptions': ['-o', 'ProxyJump=admin@bastion']}}}, {}),
    ('deploy-rs', {'n': {'hostname': 'h', 'sshOpts': ['-Jadmin@bastion']}}, {}),
    ('deploy-rs', {'n': {'hostname': 'h'}}, {'deploy': {'sshOpts': ['-J', 'admin@bastion']}}),
])
def test_every_source_takes_a_plain_jump_host(source, nodes, extra):
    """A jump host of plain hops passes in every source's ssh options, as
    ``-o ProxyJump=``: the host var nix_ssh_common_args and the
    ansible_ssh_common_args of its ssh group, never a host's ssh args."""
    result = _inventory_hosts.build_inventory(raw(source, nodes, **extra), FLAKE, strict=True)
    (host,) = result.hosts
    assert host.vars['nix_ssh_common_args'] == '-o ProxyJump=admin@bastion'
    assert 'ansible_ssh_common_args' not in host.vars
    assert 'ansible_ssh_extra_args' not in host.vars
    (group,) = [g for g in host.groups if g in result.group_vars]
    assert group.startswith('ssh_options_')
    assert result.group_vars[group] == {'ansible_ssh_common_args': '-o ProxyJump=admin@bastion'}


# Host names a terminal, a file path or a git ref cannot take: a '/', an ESC,
# a bidi override, a newline; and one that prints a forged summary line.
BAD_NAMES = ['bad/name', 'a\x1bb', '\u202eevil', 'x\ny', 'e\n\x1b[2K\x1b[32mweb1 switched', '']


def _one_node_per_source(name):
    """(source, raw) pairs: the node ``name`` beside a good node ``ok`` in
    each source's own shape (flake inventory data, a colmena hive, deploy-rs
    nodes, configuration names), each with an address of its own (a name
    that is the address is refused as an address first)."""
    return [
        ('inventory', raw('inventory', {name: {'host': '10.0.0.9'}, 'ok': {'host': '10.0.0.1'}})),
        ('colmena', raw('colmena', {name: {'deployment': {'targetHost': '10.0.0.9'}},
                                    'ok': {'deployment': {'targetHost': '10.0.0.1'}}})),
        ('deploy-rs', raw('deploy-rs', {name: {'hostname': '10.0.0.9'},
                                        'ok': {'hostname': '10.0.0.1'}})),
        ('configurations', raw('configurations', {}, configurations={
            'nixosConfigurations': [name, 'ok']},
            inventory={name: {'host': '10.0.0.9'}, 'ok': {'host': '10.0.0.1'}})),
    ]


@pytest.mark.parametrize('name', BAD_NAMES)
def test_a_host_name_that_is_not_printable_or_holds_a_slash_is_refused(name):
    """Skipped with a warning that names it escaped (the rest of the fleet
    comes out); with strict, the parse fails. Every source alike."""
    for source, data in _one_node_per_source(name):
        result = _inventory_hosts.build_inventory(data, FLAKE)
        assert [h.name for h in result.hosts] == ['ok'], (source, result.hosts)
        (message,) = [m for m in result.messages() if 'host name' in m]
        wanted = "skipped %s node %s: refused host name %r from the node name" % (
            source, _checks.node_label(name), name)
        assert message.startswith(wanted), message
        assert not any(c in message for c in '\x1b\n\u202e'), message
        with pytest.raises(InventoryError) as err:
            _inventory_hosts.build_inventory(data, FLAKE, strict=True)
        assert str(err.value).startswith('%s node %s: refused host name'
                                         % (source, _checks.node_label(name))), str(err.value)


@pytest.mark.parametrize('name', ['web1', 'web-1.example.org', 'app@web1', 'host_1', 'nœud'])
def test_printable_host_names_pass(name):
    result = _inventory_hosts.build_inventory(
        raw('inventory', {name: {'host': '10.0.0.9'}}), FLAKE, strict=True)
    assert [h.name for h in result.hosts] == [name]


@pytest.mark.parametrize('nodes, message', [
    # the host's own tag: ansible-core's "can't add group to itself"
    ({'web1': {'host': '10.0.0.1', 'tags': ['vps', 'web1']}, 'web2': {'host': '10.0.0.2'}},
     'host web1: its tag web1 makes the group web1, which is also the name of a host'),
    # another host's name, mapped (web-2 -> web_2): a host made a group silently
    ({'web1': {'host': '10.0.0.1', 'tags': ['web-2']}, 'web_2': {'host': '10.0.0.2'}},
     'host web1: its tag web-2 makes the group web_2, which is also the name of a host'),
    ({'role_db': {'host': '10.0.0.1'}, 'db1': {'host': '10.0.0.2', 'role': 'db'}},
     'host db1: its role db makes the group role_db'),
    ({'darwin': {'host': '10.0.0.1'}, 'mac': {'host': '10.0.0.2', 'platform': 'darwin'}},
     'host mac: its platform darwin makes the group darwin'),
])
def test_a_group_of_a_hosts_name_fails_the_inventory_naming_both(nodes, message):
    """strict or not: no node can be left out to make it right."""
    for strict in (False, True):
        with pytest.raises(InventoryError) as err:
            _inventory_hosts.build_inventory(raw('inventory', nodes), FLAKE, strict=strict)
        assert str(err.value).startswith(message), str(err.value)
        assert str(err.value).endswith('Ansible cannot have a group and a host of one name: '
                                       'rename the %s or the host' % message.split()[3])


def test_cache_request_digest():
    argv = ['nix', 'eval', '--option', 'access-tokens', 'github.com=SECRET', '--json']
    digest = inv.request_digest(argv, {'nix_options': {'access-tokens': 'github.com=SECRET'}})
    assert len(digest) == 64 and 'SECRET' not in digest
    assert digest == inv.request_digest(list(argv), {'nix_options': {'access-tokens': 'github.com=SECRET'}})
    # an option that changes only outside the argv still changes the digest
    assert digest != inv.request_digest(argv, {'nix_options': {'access-tokens': 'github.com=OTHER'}})


# ---- source: deploy-rs -----------------------------------------------------------

def test_deploy_rs_node_with_profiles():
    node = {'hostname': 'db.example', 'sshOpts': ['-p', '2200', '-o', 'ConnectTimeout 7', '-4C'],
            'profilesOrder': ['home'],
            'profiles': {'system': {'user': 'root'}, 'home': {'user': 'alice'},
                         'apps': {'sshUser': 'apps', 'profilePath': '/p'}}}
    data = raw('deploy-rs', {'db': node}, deploy={'sshUser': 'deploy'})
    result = _inventory_hosts.build_inventory(data, FLAKE)
    host = hosts(result)['db']
    assert host.vars['ansible_host'] == 'db.example'
    assert host.vars['ansible_user'] == 'deploy'
    assert host.vars['ansible_port'] == 2200
    # sshOpts become the ssh args of every source: the host var
    # nix_ssh_common_args and its ssh group's ansible_ssh_common_args (which
    # the operator's group_vars/ and host_vars/ override), not ansible_ssh_extra_args
    assert host.vars['nix_ssh_common_args'] == '-o ConnectTimeout=7 -4C'
    assert 'ansible_ssh_extra_args' not in host.vars
    assert 'ansible_ssh_common_args' not in host.vars
    assert [result.group_vars[g] for g in host.groups if g in result.group_vars] == [
        {'ansible_ssh_common_args': '-o ConnectTimeout=7 -4C'}]
    assert [p['name'] for p in host.vars['nix_profiles']] == ['home', 'apps', 'system']
    apps = host.vars['nix_profiles'][1]
    assert apps == {'name': 'apps', 'attr': 'deploy.nodes.db.profiles.apps.path', 'user': 'root',
                    'ssh_user': 'apps', 'profile_path': '/p'}
    # no db configuration in any output: the system profile is what deploys
    assert host.vars['nix_attr'] == 'deploy.nodes.db.profiles.system.path'
    assert host.vars['nix_platform'] == 'nixos'


def test_deploy_rs_prefers_configuration_of_same_name():
    node = {'hostname': 'm', 'profiles': {'system': {}}}
    data = raw('deploy-rs', {'mac': node}, configurations={'darwinConfigurations': ['mac']})
    host = hosts(_inventory_hosts.build_inventory(data, FLAKE))['mac']
    assert host.vars['nix_platform'] == 'darwin'
    assert host.vars['nix_attr'] == 'darwinConfigurations.mac.system'
    assert 'ansible_user' not in host.vars


def test_deploy_rs_without_system_profile_has_no_attr():
    data = raw('deploy-rs', {'x': {'hostname': 'x', 'profiles': {'hm': {'user': 'a'}}}})
    host = hosts(_inventory_hosts.build_inventory(data, FLAKE))['x']
    assert host.vars['nix_attr'] is None


def test_deploy_rs_inventory_says_which_system():
    data = raw('deploy-rs', {'p1': {'hostname': 'p1', 'profiles': {}}},
               inventory={'p1': {'platform': 'nix-on-droid', 'configuration': 'phone',
                                 'tags': ['phones']}})
    host = hosts(_inventory_hosts.build_inventory(data, FLAKE))['p1']
    assert host.vars['nix_attr'] == 'nixOnDroidConfigurations.phone.activationPackage'
    assert host.groups == ['nix_on_droid', 'phones']


# ---- source: configurations ---------------------------------------------------------

def test_configurations_one_host_per_name():
    data = raw('configurations', {}, inventory={'web1': {'host': '10.0.0.1', 'tags': ['t']}},
               configurations={'nixosConfigurations': ['web1', 'both'],
                               'darwinConfigurations': ['mac', 'both'],
                               'homeConfigurations': ['alice@laptop']})
    result = _inventory_hosts.build_inventory(data, FLAKE)
    assert [h.name for h in result.hosts] == ['web1', 'both', 'mac', 'alice@laptop']
    got = hosts(result)
    assert got['web1'].vars['ansible_host'] == '10.0.0.1'
    assert got['web1'].groups == ['nixos', 't']
    # no address: Ansible connects to the name (ssh_config, DNS)
    assert 'ansible_host' not in got['mac'].vars
    assert got['mac'].vars['nix_attr'] == 'darwinConfigurations.mac.system'
    assert got['both'].vars['nix_platform'] == 'nixos'
    assert got['alice@laptop'].vars['ansible_user'] == 'alice'
    assert got['alice@laptop'].vars['ansible_host'] == 'laptop'


# ---- the sources' table -------------------------------------------------------

def test_no_code_compares_a_source_name():
    """What differs by source is a field of its row (_inventory_sources):
    no comparison with a source's name in the inventory's Python or Nix."""
    import ast
    import re
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (
        _inventory_sources)
    names = set(row.name for row in _inventory_sources.SOURCES)
    folder = os.path.dirname(os.path.realpath(inv.__file__))
    plugin = os.path.join(REPO, 'plugins', 'inventory', 'nix.py')
    compared = []
    for path in [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if f.endswith(('.py', '.nix'))] + [plugin]:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        if path.endswith('.py'):
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Compare):
                    for side in [node.left] + node.comparators:
                        if isinstance(side, ast.Constant) and side.value in names:
                            compared.append((path, node.lineno))
        elif path.endswith('.nix'):
            compared += [(path, m) for m in re.findall(r'[!=]=\s*"([^"]+)"', text) if m in names]
    assert not compared
    assert len(names) == 4
