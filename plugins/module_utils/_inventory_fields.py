# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fields of one node, as every source's mapping reads them.

An inventory entry's own fields (address, user, port, tags, role, system,
platform, configuration) and the small readers behind them, shared by the
mapping of each source (``_inventory_hosts`` for inventory data and
configurations, ``_inventory_colmena``, ``_inventory_deploy_rs``): an entry of
the inventory attribute fills the gaps of a colmena or deploy-rs node of the
same name, so all of them read fields the same way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nixdeploy.fleet.plugins.module_utils._inventory import (
    PLATFORM_ORDER, InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import PLATFORMS


def _first(node, keys):
    for key in keys:
        value = node.get(key)
        if value not in (None, ''):
            return value
    return None


def str_list(value):
    """A value or list of values as a list of texts, empty ones left out."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value if v not in (None, '')]
    return [u'%s' % value]


def port_number(value):
    """A port as an int (None when not given); InventoryError when it is no port."""
    if value in (None, ''):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InventoryError('port %r is not a number' % (value,))
    if not 0 < port < 65536:
        raise InventoryError('port %r is out of range' % (value,))
    return port


def inventory_fields(node):
    """The common fields of one pure-data inventory entry."""
    if not isinstance(node, dict):
        raise InventoryError('entry is not an attribute set')
    ips = node.get('ips')
    address = _first(node, ('targetHost', 'host', 'hostname'))
    if address is None and isinstance(ips, list) and ips:
        address = ips[0]
    return {
        'address': address,
        'user': _first(node, ('targetUser', 'user', 'sshUser')),
        'port': port_number(_first(node, ('port', 'targetPort', 'sshPort'))),
        'tags': str_list(node.get('tags')),
        'role': _first(node, ('role',)),
        'system': _first(node, ('system',)),
        'platform': node.get('platform'),
        'configuration': _first(node, ('configuration',)),
    }


def merge_fields(own, extra):
    """Fields the source gives win; the inventory entry fills the gaps."""
    merged = dict(extra or {})
    for key, value in own.items():
        if key == 'tags':
            if value or not merged.get('tags'):
                merged['tags'] = value
        elif value is not None or key not in merged:
            merged[key] = value
    return merged


def configured_platform(raw, name):
    """The platform whose configurations output holds ``name``, or None."""
    for platform in PLATFORM_ORDER:
        if name in (raw.get('configurations') or {}).get(PLATFORMS[platform]['output'], []):
            return platform
    return None
