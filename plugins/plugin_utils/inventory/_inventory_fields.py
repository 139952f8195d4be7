# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fields of one node, as every source's mapping reads them.

An inventory entry's own fields (address, user, port, tags, role, system,
platform, configuration, its ordered addresses ``targetHosts`` and its
``sshOptions``) and the small readers behind them, shared by the
mapping of each source (``_inventory_colmena``, ``_inventory_deploy_rs``, and
here the two small ones: ``entry_fields`` for inventory data,
``configurations_fields`` for configuration names): an entry of the inventory
attribute fills the gaps of a colmena or deploy-rs node of the same name, so
all of them read fields the same way.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    PLATFORM_ORDER, PLATFORMS, user_at_host)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_checks import (
    check_port, check_target_hosts, ssh_opts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)


def _first(node, keys):
    """(key, value) of the first of ``keys`` that ``node`` gives, or (None, None)."""
    for key in keys:
        value = node.get(key)
        if value not in (None, ''):
            return key, value
    return None, None


def str_list(value):
    """A value or list of values as a list of texts, empty ones left out."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value if v not in (None, '')]
    return [u'%s' % value]


def port_number(value, origin='port'):
    """A port as an int (None when not given); InventoryError when it is no
    port (``_inventory_checks.check_port``: an integer or digits, 1..65535)."""
    return check_port(value, origin)


def ssh_options(value, origin):
    """(port, user, ssh args) of a node's ssh options (an argv list: colmena
    ``sshOptions``, deploy-rs ``sshOpts``, an entry's ``sshOptions``) through
    the allow-list (``_inventory_checks.ssh_opts``); each None when they
    give none (no options at all, or an empty list: colmena's default)."""
    if value is None or value == []:
        return None, None, None
    port, user, args = ssh_opts(value, origin)
    return port, user, (args or None)


def inventory_fields(node, prefix=''):
    """The common fields of one pure-data inventory entry, with ``origin``:
    the key each connection field was read from (``prefix`` before it, for an
    entry that fills the gaps of another source's node). ``targetHosts``
    gives the address when no single one is given; a port or user of
    ``sshOptions`` is used when the entry gives none of its own."""
    if not isinstance(node, dict):
        raise InventoryError('entry is not an attribute set')
    ips = node.get('ips')
    opt_port, opt_user, ssh_args = ssh_options(node.get('sshOptions'), prefix + 'sshOptions')
    hosts = node.get('targetHosts')
    if hosts is not None:
        hosts = check_target_hosts(hosts, prefix + 'targetHosts')
    address_key, address = _first(node, ('targetHost', 'host', 'hostname'))
    if address is None and hosts:
        address_key, address = 'targetHosts[0]', hosts[0]
    if address is None and isinstance(ips, list) and ips:
        address_key, address = 'ips[0]', ips[0]
    user_key, user = _first(node, ('targetUser', 'user', 'sshUser'))
    if user is None and opt_user:
        user_key, user = 'sshOptions', opt_user
    port_key, port = _first(node, ('port', 'targetPort', 'sshPort'))
    if port is None and opt_port:
        port_key, port = 'sshOptions', opt_port
    origin = dict((field, prefix + key) for field, key in
                  (('address', address_key), ('user', user_key), ('port', port_key),
                   ('target_hosts', 'targetHosts' if hosts else None),
                   ('ssh_args', 'sshOptions' if ssh_args else None)) if key)
    return {
        'address': address,
        'user': user,
        'port': port_number(port, origin.get('port', 'port')),
        'target_hosts': hosts,
        'ssh_args': ssh_args,
        'tags': str_list(node.get('tags')),
        'role': _first(node, ('role',))[1],
        'system': _first(node, ('system',))[1],
        'platform': node.get('platform'),
        'configuration': _first(node, ('configuration',))[1],
        'origin': origin,
    }


def merge_fields(source_fields, extra):
    """Fields the source gives win; the inventory entry fills the gaps.
    ``origin`` (where each connection field came from) follows the winner."""
    merged = dict(extra or {})
    origin = dict(merged.pop('origin', None) or {})
    source_origin = source_fields.get('origin') or {}
    for key, value in source_fields.items():
        if key == 'origin':
            continue
        if key == 'tags':
            if value or not merged.get('tags'):
                merged['tags'] = value
        elif value is not None or key not in merged:
            merged[key] = value
            origin.pop(key, None)
            if key in source_origin:
                origin[key] = source_origin[key]
    merged['origin'] = origin
    return merged


def configured_platform(raw, name):
    """The platform whose configurations output holds ``name``, or None."""
    for platform in PLATFORM_ORDER:
        if name in (raw.get('configurations') or {}).get(PLATFORMS[platform]['output'], []):
            return platform
    return None


def entry_fields(raw, name, node, inv_fields, configured):
    """(fields, extra host vars) of one entry of the inventory data: its own
    fields alone (a source's mapper, ``_inventory_sources``)."""
    return inventory_fields(node), {}


def configurations_fields(raw, name, node, inv_fields, configured):
    """(fields, extra host vars) of one system configuration: the platform
    whose output holds it, the inventory entry of its name filling the gaps."""
    name_fields = {'tags': []}
    if configured and user_at_host(configured) and '@' in name and not inv_fields.get('address'):
        # homeConfigurations."user@host" names its own target
        name_fields['user'], name_fields['address'] = name.split('@', 1)
        name_fields['origin'] = {'user': 'the user part of the configuration name user@host',
                                 'address': 'the host part of the configuration name user@host'}
    fields = merge_fields(name_fields, inv_fields)
    fields.setdefault('address', None)
    fields['platform'] = configured
    fields['configuration'] = name
    return fields, {}
