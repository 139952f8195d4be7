# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ONE table: the inventory's sources, where each is found in the flake and
how its nodes become hosts.

A row is a source the plugin's ``source`` option names. Its fields say
where it is looked for (attribute paths of the flake's outputs, the first
its Nix mapper finds, in order), the error when it is asked for and absent,
and its mapper on each side: the Nix file beside this one that reads its
nodes as data (``inventory.nix`` calls it) and the Python function that
makes one node's fields (``_inventory_hosts`` calls it). ``auto`` takes the
first row the flake has, in the table's order. The code that differs by
source reads these fields; nothing compares a source's name. A new source
is a row, a ``source-<name>.nix`` and a fields function
(docs/architecture.md, "a new inventory source").
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_colmena import (
    COLMENA_FIELDS, COLMENA_KEY_FIELDS, COLMENA_LIST_FIELDS, colmena_fields, colmena_keys)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory import (
    _inventory_deploy_rs)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_fields import (
    configurations_fields, entry_fields)

AUTO = 'auto'


class InventorySource:
    """One row: a source of the inventory.

    ``attributes``: the attribute paths it is looked for at, in order (the
    option ``attribute`` replaces them); None: the outputs themselves (no
    attribute). ``shown``: how one path reads in a message, ``missing``: the
    words for it absent (``{}``: the paths shown). ``nix``: its Nix mapper,
    a file beside this one, ``nix_params``: the data that mapper reads.
    ``fields(raw, name, node, inv_fields, configured)``: one node's (fields,
    extra host vars). ``fills_gaps``: its entries fill the gaps of another
    source's node of their name. ``address_optional``: a node without an
    address connects to its name. ``keys(name, node, hive_keys)``: the
    node's secrets as (``nix_keys``, warnings), and ``private`` the node's
    fields that hold them, kept out of ``nix_node``.
    """

    __slots__ = ('name', 'attributes', 'shown', 'missing', 'nix', 'nix_params', 'fields',
                 'fills_gaps', 'address_optional', 'keys', 'private', 'in_auto')

    def __init__(self, name, attributes, missing, nix, fields, shown='{}', nix_params=None,
                 fills_gaps=False, address_optional=False, keys=None, private=(), in_auto=True):
        self.name, self.attributes, self.missing, self.shown = name, attributes, missing, shown
        self.nix, self.nix_params, self.fields = nix, dict(nix_params or {}), fields
        self.fills_gaps, self.address_optional = fills_gaps, address_optional
        self.keys, self.private = keys, tuple(private)
        self.in_auto = in_auto

    def looked_for(self, attributes, config_outputs):
        """Where it is looked for, as a message says it: its paths shown, or
        the configuration outputs for a source of the outputs themselves."""
        if attributes is None:
            return ', '.join(config_outputs)
        return ', '.join(self.shown.format('.'.join(path)) for path in attributes)

    def __repr__(self):
        return 'InventorySource(%r)' % (self.name,)


SOURCES = (
    InventorySource(
        'inventory', [['inventory']], 'inventory attribute {}', 'source-inventory.nix',
        entry_fields, fills_gaps=True),
    InventorySource(
        'colmena', [['colmenaHive'], ['colmena']], 'colmena hive ({})', 'source-colmena.nix',
        colmena_fields, nix_params={'fields': COLMENA_FIELDS, 'listFields': COLMENA_LIST_FIELDS,
                                    'keyFields': sorted(COLMENA_KEY_FIELDS)},
        keys=colmena_keys, private=('keys', 'keysError')),
    InventorySource(
        'deploy-rs', [['deploy']], 'deploy-rs nodes ({})', 'source-deploy-rs.nix',
        _inventory_deploy_rs.deploy_rs_fields, shown='{}.nodes'),
    # never missing: a flake without configurations has no host of them.
    # Not for auto: its hosts have no tags, no addresses and the login user,
    # which a flake whose inventory sits outside `outputs` would deploy as
    # silently; the inventory file asks for it (source: configurations)
    InventorySource(
        'configurations', None, None, 'source-configurations.nix', configurations_fields,
        address_optional=True, in_auto=False),
)

# the plugin's choices for its option source
CHOICES = (AUTO,) + tuple(row.name for row in SOURCES)


def source_row(name):
    """The row of the source ``name``; InventoryError for no source."""
    for row in SOURCES:
        if row.name == name:
            return row
    raise InventoryError('unknown source %r (one of %s)' % (name, ', '.join(CHOICES)))
