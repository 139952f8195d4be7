# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluated flake's nodes as Ansible hosts: host vars and groups.

``build_inventory()`` turns the JSON of ``inventory.nix`` (``_inventory``)
into hosts in flake order: each node's fields come from the Python mapper of
its source's row (``_inventory_sources.SOURCES``: ``_inventory_fields`` for
inventory data and configurations, ``_inventory_colmena``,
``_inventory_deploy_rs``), and one mapping, the same for every source, makes
them the host's variables (``ansible_*``, ``nix_*``) and groups (platform,
system, role, tags).

A node's ssh options (every source's, through one allow-list) become
``ansible_ssh_common_args`` as a GROUP variable, of one group per distinct
set of options (``ssh_options_<digest>``), and the host variable
``nix_ssh_common_args``. Ansible ranks an inventory plugin's host
variables above the operator's ``group_vars/`` files (below
``host_vars/``), so a host variable would override the ``group_vars/all.yml``
that says which known_hosts file ssh checks; an inventory group variable
ranks below both, and the operator's value wins as it does for any other
inventory. Pure Python: the unit tests map JSON without Nix too.
"""

import hashlib
import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    DEFAULT_PLATFORM, GROUP_NAMES, PLATFORMS, attr_string, system_attr_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_checks import (
    check_connection, check_host_name, node_label)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_colmena import (
    DEFAULT_HIVE_KEYS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_fields import (
    configured_platform, inventory_fields, port_number, str_list)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_network import (
    joined)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_sources import (
    source_row)


_INVALID_GROUP_CHARS = re.compile(r'[^A-Za-z0-9_]')
_RESERVED_GROUPS = ('all', 'ungrouped')


def group_name(text):
    """A tag, role or system as an Ansible group name.

    Every character outside ``[A-Za-z0-9_]`` becomes ``_`` (``batch-vps`` ->
    ``batch_vps``, ``x86_64-linux`` -> ``x86_64_linux``), a leading digit gets
    a ``_`` prefix and ``all``/``ungrouped`` become ``tag_all``/``tag_ungrouped``.
    """
    name = _INVALID_GROUP_CHARS.sub('_', u'%s' % (text,))
    if not name:
        return None
    if name[0].isdigit():
        name = '_' + name
    if name in _RESERVED_GROUPS:
        name = 'tag_' + name
    return name


class InventoryHost:
    """One host of the inventory as Ansible gets it: its name, variables and
    groups (the target itself, reached, is ``host/_host.Host``)."""

    def __init__(self, name, variables, groups):
        self.name = name
        self.vars = variables
        self.groups = groups

    def __repr__(self):
        return 'InventoryHost(%r, groups=%r)' % (self.name, self.groups)


class Result:
    """Hosts in flake order plus the nodes skipped and why, and the groups
    that carry variables (``group_vars``: group -> {var: value})."""

    def __init__(self, source):
        self.source = source
        self.hosts = []
        self.skipped = []  # (name, reason)
        self.warnings = []
        self.group_vars = {}

    def messages(self):
        """Every warning of the mapping, one line each (node names and values
        from the flake escaped): a skipped node first as ``skipped <source> node
        <name>: <reason>``."""
        return (['skipped %s node %s: %s' % (self.source, node_label(name), reason)
                 for name, reason in self.skipped] + list(self.warnings))


def _platform(value):
    if value in (None, ''):
        return DEFAULT_PLATFORM
    text = u'%s' % value
    for name, group in GROUP_NAMES.items():
        if text in (name, group):
            return name
    raise InventoryError('unknown platform %r (known: %s)' % (text, ', '.join(sorted(PLATFORMS))))


def _node_fields(raw, row, name, node):
    """(fields, extra host vars) of one node, by its source's mapper; the
    entry of its name in the inventory data fills the gaps."""
    inv = (raw.get('inventory') or {}).get(name)
    inv_fields = inventory_fields(inv, 'inventory.') if isinstance(inv, dict) else {}
    return row.fields(raw, name, node, inv_fields, configured_platform(raw, name))


def _names(raw):
    """The nodes' names in the source's order (its mapper's ``order``, else
    the nodes'), each once."""
    names, seen = [], set()
    for name in raw.get('order') or list(raw.get('nodes') or {}):
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def build_inventory(raw, flake, strict=False, address_optional=None, hive_keys=DEFAULT_HIVE_KEYS):
    """Map the JSON of ``inventory.nix`` to a ``Result``.

    A node that cannot be mapped (no address, bad port, unknown platform),
    whose name is no host name a terminal, a file path or a git ref can take
    (``_inventory_checks.check_host_name``) or whose connection fields could
    turn into ssh options (``_inventory_checks``) raises ``InventoryError``
    under ``strict`` and is skipped otherwise. ``hive_keys``: the kinds of
    colmena keys mapped (``_inventory_colmena.HIVE_KEY_KINDS``).
    """
    source = raw.get('source')
    row = source_row(source)
    result = Result(source)
    # configurations connect to their name when no address is given
    # (ssh_config); a colmena node's mapper makes its name its address
    if address_optional is None:
        address_optional = row.address_optional
    nodes = raw.get('nodes') or {}
    for name in _names(raw):
        node = nodes.get(name)
        try:
            fields, extra = _node_fields(raw, row, name, node)
            if not fields.get('address') and not address_optional:
                raise InventoryError('it has no address (targetHost, host, hostname or ips)')
            # no address: Ansible's ssh connects to the host name itself
            check_connection(fields, name, name_is_address=not fields.get('address'))
            # after what reaches ssh (a name that is the address is refused
            # as one): the name is every message's and file's host name
            check_host_name(name)
            if row.keys:
                keys, warnings = row.keys(name, node, hive_keys)
                if keys:
                    extra['nix_keys'] = keys
                result.warnings.extend(warnings)
                # secrets stay out of nix_node, which is there for everyone to read
                node = dict((k, v) for k, v in node.items() if k not in row.private)
            host = _host(name, fields, extra, node, raw, flake)
        except InventoryError as exc:
            if strict:
                raise InventoryError('%s node %s: %s' % (source, node_label(name), exc))
            result.skipped.append((name, u'%s' % exc))
            continue
        result.hosts.append(host)
    check_group_names(result.hosts)
    _ssh_groups(result)
    return result


def check_group_names(hosts):
    """Refuse a group (made by a tag, role, system or platform) of the name
    of a host. Ansible keeps hosts and groups in one namespace: ansible-core
    stops the whole parse with "can't add group to itself", naming neither,
    when the host is its own tag, and silently makes a host a group of
    another otherwise. No other name is made up: the user's ``-l`` patterns
    and group_vars files name the group by the tag."""
    names = set(host.name for host in hosts)
    for host in hosts:
        for group in host.groups:
            if group in names:
                kind, value = _group_origin(host, group)
                raise InventoryError(
                    'host %s: its %s %s makes the group %s, which is also the name of a host, and '
                    'Ansible cannot have a group and a host of one name: rename the %s or the host'
                    % (node_label(host.name), kind, node_label(value), node_label(group), kind))


def _group_origin(host, group):
    """What of ``host`` made ``group``: (``tag``, the tag as the flake says it)."""
    for tag in host.vars.get('nix_tags') or ():
        if group_name(tag) == group:
            return 'tag', tag
    role, system = host.vars.get('nix_role'), host.vars.get('nix_system')
    if role and group_name('role_%s' % role) == group:
        return 'role', role
    if system and group_name(system) == group:
        return 'system', system
    return 'platform', host.vars.get('nix_platform')


def _ssh_groups(result):
    """Each distinct ``nix_ssh_common_args`` becomes a group of its hosts
    that holds it as ``ansible_ssh_common_args`` (below the operator's
    group_vars/ and host_vars/ files: the module's docstring). Its name is
    ``ssh_options_`` and a digest of the options, one no tag, role or system
    group of the inventory holds."""
    taken = set(group for host in result.hosts for group in host.groups)
    for host in result.hosts:
        args = host.vars.get('nix_ssh_common_args')
        if not args:
            continue
        group = 'ssh_options_' + hashlib.sha256(args.encode('utf-8')).hexdigest()[:10]
        while group in taken or result.group_vars.get(group, {}).get(
                'ansible_ssh_common_args', args) != args:
            group += '_'
        result.group_vars[group] = {'ansible_ssh_common_args': args}
        host.groups.append(group)


def _host(name, fields, extra, node, raw, flake):
    platform = _platform(fields.get('platform'))
    configuration = fields.get('configuration')
    if 'nix_attr' in fields:
        nix_attr = fields['nix_attr']
    else:
        configuration = configuration or name
        nix_attr = attr_string(system_attr_path(platform, configuration))
    tags = str_list(fields.get('tags'))
    role = fields.get('role')
    system = fields.get('system')
    variables = {}
    if fields.get('address'):
        variables['ansible_host'] = u'%s' % fields['address']
    if fields.get('user'):
        variables['ansible_user'] = u'%s' % fields['user']
    port = port_number(fields.get('port'))
    if port:
        variables['ansible_port'] = port
    if fields.get('target_hosts'):
        # the host's addresses in order; ansible_host is the first
        variables['nix_target_hosts'] = [u'%s' % h for h in fields['target_hosts']]
    if fields.get('ssh_args'):
        # ansible_ssh_common_args of the host's group (_ssh_groups)
        variables['nix_ssh_common_args'] = joined(fields['ssh_args'])
    variables.update({
        'nix_source': raw['source'],
        'nix_platform': platform,
        'nix_system': system,
        'nix_attr': nix_attr,
        'nix_flake': flake,
        'nix_tags': tags,
        'nix_role': role,
        'nix_configuration': configuration,
        'nix_node': node,
    })
    variables.update(extra)
    groups = [GROUP_NAMES[platform]]
    if system:
        groups.append(group_name(system))
    if role:
        groups.append(group_name('role_%s' % role))
    for tag in tags:
        groups.append(group_name(tag))
    ordered = []
    for group in groups:
        if group and group not in ordered:
            ordered.append(group)
    return InventoryHost(name, variables, ordered)
