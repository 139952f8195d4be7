# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A colmena hive's node as an Ansible host: its deployment options and keys.

Its Nix mapper (``source-colmena.nix``) reads each node's ``deployment``
options (``COLMENA_FIELDS``) and ``deployment.keys`` (``COLMENA_KEY_FIELDS``)
as data; here they become the host's fields, following colmena's own
defaults, and ``nix_keys`` specs: those of the kinds the inventory option
``hive_keys`` lists (text only by default: a keyCommand or keyFile from the
flake would be a controller action the flake chose). The keys are secrets:
they never go into ``nix_node``, which is there for everyone to read.
"""

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    DEFAULT_PLATFORM, PLATFORMS, attr_string)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_checks import (
    node_label, shown)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_fields import (
    merge_fields, port_number, ssh_options, str_list)

# The colmena deployment options its Nix mapper reads into nix_node. Keys are
# read apart (COLMENA_KEY_FIELDS) into nix_keys, never into nix_node.
COLMENA_FIELDS = ['targetHost', 'targetPort', 'targetUser', 'tags', 'sshOptions',
                  'buildOnTarget', 'allowLocalDeployment',
                  'replaceUnknownProfiles', 'privilegeEscalationCommand']
# Those a raw hive's definitions concatenate (listOf, as the module system).
COLMENA_LIST_FIELDS = ['tags', 'sshOptions']

# colmena's deployment.keys.<name> fields -> nixdeploy.fleet.nix_keys fields.
COLMENA_KEY_FIELDS = {
    'text': 'text', 'keyFile': 'src', 'keyCommand': 'command', 'name': 'name',
    'destDir': 'dest_dir', 'user': 'user', 'group': 'group', 'permissions': 'mode',
    'uploadAt': 'upload_at',
}


def colmena_fields(raw, name, node, inv_fields, configured):
    """(fields, extra host vars) of one colmena node; ``inv_fields``: the
    inventory entry of the same name, which fills the gaps. ``sshOptions``
    go through the allow-list; a ``-l``/``-p`` there counts when the node
    gives no ``targetUser``/``targetPort``."""
    if node.get('error'):
        raise InventoryError('its colmena deployment options need more than data '
                             '(pkgs, config, nodes or lib without meta.nixpkgs)')
    dep = node.get('deployment') or {}
    opt_port, opt_user, ssh_args = ssh_options(dep.get('sshOptions'), 'deployment.sshOptions')
    origin = {'user': 'deployment.targetUser', 'port': 'deployment.targetPort',
              'ssh_args': 'deployment.sshOptions'}
    # makeHive's deploymentConfig gives every node targetHost = its name when
    # the hive says none: that default leaves room for the inventory entry's
    made_default = raw.get('madeHive') and dep.get('targetHost') == name
    if 'targetHost' in dep and not (made_default and inv_fields.get('address')):
        address, origin['address'] = dep.get('targetHost'), 'deployment.targetHost'
    elif inv_fields.get('address'):
        address = inv_fields['address']
        origin['address'] = (inv_fields.get('origin') or {}).get('address', 'inventory')
    else:
        # colmena's default: the node name is the address
        address, origin['address'] = name, "the node name (colmena's default targetHost)"
    if dep.get('targetUser') is not None:
        user = dep['targetUser']
    elif opt_user:
        user, origin['user'] = opt_user, 'deployment.sshOptions'
    elif 'targetUser' in dep:
        user = None  # null: the inventory entry's, if any
    elif inv_fields.get('user'):
        user = inv_fields['user']
        origin['user'] = (inv_fields.get('origin') or {}).get('user', 'inventory')
    else:
        user, origin['user'] = 'root', "colmena's default targetUser"
    node_fields = {
        'address': address,
        'user': user,
        'port': port_number(dep.get('targetPort'), origin['port']),
        'tags': str_list(dep.get('tags')),
        'ssh_args': ssh_args,
        'origin': origin,
    }
    if node_fields['port'] is None and opt_port:
        node_fields['port'], origin['port'] = opt_port, 'deployment.sshOptions'
    fields = merge_fields(node_fields, inv_fields)
    fields['platform'] = DEFAULT_PLATFORM
    known = (raw.get('configurations') or {}).get(PLATFORMS[DEFAULT_PLATFORM]['output'], [])
    configuration = inv_fields.get('configuration') or name
    if configuration in known:
        fields['configuration'] = configuration
    else:
        # no nixosConfigurations entry: the hive's own toplevel, if any
        fields['configuration'] = None
        fields['nix_attr'] = (attr_string(list(raw['attribute']) + ['toplevel', name])
                              if raw.get('madeHive') else None)
    return fields, {}


# What a hive key may make the controller do, by the field that gives its
# content: keyCommand runs a command here, keyFile reads a file here and
# uploads it; text is data the flake already holds. The inventory option
# hive_keys lists the kinds mapped (default: text only).
HIVE_KEY_KINDS = ('text', 'keyFile', 'keyCommand')
DEFAULT_HIVE_KEYS = ('text',)
_LEFT_OUT = {
    'keyCommand': 'the flake chose a command for this controller to run',
    'keyFile': 'the flake chose a file of this controller (%s) to read and upload',
    'text': 'hive_keys does not list text',
}


def _kind(spec):
    """The field that gives a key spec's content (text when none does)."""
    for kind in ('keyCommand', 'keyFile'):
        if spec.get(kind) is not None:
            return kind
    return 'text'


def colmena_keys(name, node, allowed=DEFAULT_HIVE_KEYS):
    """A colmena node's ``deployment.keys`` as ``nix_keys`` specs, and warnings.

    Only the kinds in ``allowed`` (``HIVE_KEY_KINDS``) are mapped: a
    ``keyCommand`` is a command the controller runs and a ``keyFile`` a file
    it reads, both chosen by whoever wrote any module of the flake, so they
    need the operator's choice (the option ``hive_keys``); a key left out is
    named in a warning with that option. Field names change (keyFile -> src,
    keyCommand -> command, destDir -> dest_dir, permissions -> mode, uploadAt
    -> upload_at); values are kept as they are, so nix_keys validates them
    and names the key when one is wrong. Content in the Nix store (inline
    ``text``, a ``keyFile`` path literal) still works, with a warning: every
    user of the machine that evaluated the hive can read it there.
    """
    warnings = []
    label = node_label(name)
    allowed = DEFAULT_HIVE_KEYS if allowed is None else allowed
    if (node or {}).get('keysError'):
        warnings.append('colmena node %s: its deployment.keys do not evaluate as data '
                        '(they need pkgs, config or lib without meta.nixpkgs, or throw); '
                        'no keys are mapped for it' % label)
        return {}, warnings
    keys = {}
    for key_name, spec in sorted(((node or {}).get('keys') or {}).items()):
        if not isinstance(spec, dict):
            continue
        where = 'colmena node %s, key %s' % (label, node_label(key_name))
        kind = _kind(spec)
        if kind not in allowed:
            why = _LEFT_OUT[kind] % (shown(spec.get('keyFile')),) if kind == 'keyFile' else _LEFT_OUT[kind]
            warnings.append('%s: its %s is left out: %s; list %s in the inventory option hive_keys '
                            'to map it' % (where, kind, why, kind))
            continue
        mapped = dict((COLMENA_KEY_FIELDS[f], v) for f, v in spec.items()
                      if f in COLMENA_KEY_FIELDS and v is not None)
        if 'text' in mapped:
            warnings.append('%s: its text is in the Nix store (the hive is '
                            'evaluated from there, readable by every user of this machine); '
                            'move it to an ansible-vault value of nix_keys or a keyFile outside '
                            'the flake' % where)
        src = mapped.get('src')
        if isinstance(src, str) and src.startswith('/nix/store/'):
            warnings.append('%s: keyFile %s is in the Nix store (a path '
                            'literal in the flake is copied there, readable by every user of '
                            'this machine); give it as a string path outside the flake'
                            % (where, node_label(src)))
        keys[key_name] = mapped
    return keys, warnings
