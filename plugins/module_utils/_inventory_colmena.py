# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A colmena hive's node as an Ansible host: its deployment options and keys.

The ``--apply`` expression (``_inventory``) reads each node's ``deployment``
options (``COLMENA_FIELDS``) and ``deployment.keys`` (``COLMENA_KEY_FIELDS``)
as data; here they become the host's fields, following colmena's own
defaults, and ``nix_keys`` specs. The keys are secrets: they never go into
``nix_node``, which is there for everyone to read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nixdeploy.fleet.plugins.module_utils._inventory import (
    COLMENA_KEY_FIELDS, InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._inventory_fields import (
    merge_fields, port_number, str_list)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import attr_string


def colmena_fields(raw, name, node, inv_fields, configured):
    """(fields, extra host vars) of one colmena node; ``inv_fields``: the
    inventory entry of the same name, which fills the gaps."""
    if node.get('error'):
        raise InventoryError('its colmena deployment options need more than data '
                             '(pkgs, config, nodes or lib without meta.nixpkgs)')
    dep = node.get('deployment') or {}
    own = {
        'address': dep.get('targetHost') if 'targetHost' in dep else (inv_fields.get('address') or name),
        'user': dep.get('targetUser') if 'targetUser' in dep else (inv_fields.get('user') or 'root'),
        'port': port_number(dep.get('targetPort')),
        'tags': str_list(dep.get('tags')),
    }
    fields = merge_fields(own, inv_fields)
    fields['platform'] = 'nixos'
    nixos = (raw.get('configurations') or {}).get('nixosConfigurations', [])
    configuration = inv_fields.get('configuration') or name
    if configuration in nixos:
        fields['configuration'] = configuration
    else:
        # no nixosConfigurations entry: the hive's own toplevel, if any
        fields['configuration'] = None
        fields['nix_attr'] = (attr_string(list(raw['attribute']) + ['toplevel', name])
                              if raw.get('madeHive') else None)
    return fields, {}


def colmena_keys(name, node):
    """A colmena node's ``deployment.keys`` as ``nix_keys`` specs, and warnings.

    Field names change (keyFile -> src, keyCommand -> command, destDir ->
    dest_dir, permissions -> mode, uploadAt -> upload_at); values are kept
    as they are, so nix_keys validates them and names the key when one is
    wrong. Content in the Nix store (inline ``text``, a ``keyFile`` path
    literal) still works, with a warning: every user of the machine that
    evaluated the hive can read it there.
    """
    warnings = []
    if (node or {}).get('keysError'):
        warnings.append('colmena node %s: its deployment.keys do not evaluate as data '
                        '(they need pkgs, config or lib without meta.nixpkgs, or throw); '
                        'no keys are mapped for it' % name)
        return {}, warnings
    keys = {}
    for key_name, spec in sorted(((node or {}).get('keys') or {}).items()):
        if not isinstance(spec, dict):
            continue
        mapped = dict((COLMENA_KEY_FIELDS[f], v) for f, v in spec.items()
                      if f in COLMENA_KEY_FIELDS and v is not None)
        if 'text' in mapped:
            warnings.append('colmena node %s, key %s: its text is in the Nix store (the hive is '
                            'evaluated from there, readable by every user of this machine); '
                            'move it to an ansible-vault value of nix_keys or a keyFile outside '
                            'the flake' % (name, key_name))
        src = mapped.get('src')
        if isinstance(src, str) and src.startswith('/nix/store/'):
            warnings.append('colmena node %s, key %s: keyFile %s is in the Nix store (a path '
                            'literal in the flake is copied there, readable by every user of '
                            'this machine); give it as a string path outside the flake'
                            % (name, key_name, src))
        keys[key_name] = mapped
    return keys, warnings
