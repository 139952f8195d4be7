# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet as the flake describes it: Nix extraction and pure mapping.

``eval_args()`` builds the single ``nix eval`` that reads only inventory data
(never a system); ``build_inventory()`` turns its JSON into hosts, host vars
and groups. The inventory plugin stays a thin shell around these two.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible_collections.nixdeploy.fleet.plugins.module_utils._nix import (
    nix_list, nix_string)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    GROUP_NAMES, PLATFORMS, attr_string, system_attr_path)

SOURCES = ('auto', 'inventory', 'colmena', 'deploy-rs', 'configurations')

# Platforms in the order their outputs are searched (a name found in two
# outputs belongs to the first).
PLATFORM_ORDER = ('nixos', 'darwin', 'nix-on-droid', 'home-manager')
CONFIG_OUTPUTS = [PLATFORMS[p]['output'] for p in PLATFORM_ORDER]

DEFAULT_INVENTORY_ATTR = ['inventory']
DEFAULT_HIVE_ATTRS = [['colmenaHive'], ['colmena']]
DEFAULT_DEPLOY_ATTR = ['deploy']

# The colmena deployment options read into nix_node. Keys are read apart
# (COLMENA_KEY_FIELDS) into nix_keys, never into nix_node.
COLMENA_FIELDS = ['targetHost', 'targetPort', 'targetUser', 'tags',
                  'buildOnTarget', 'allowLocalDeployment',
                  'replaceUnknownProfiles', 'privilegeEscalationCommand']

# colmena's deployment.keys.<name> fields -> nixdeploy.fleet.nix_keys fields.
COLMENA_KEY_FIELDS = {
    'text': 'text', 'keyFile': 'src', 'keyCommand': 'command', 'name': 'name',
    'destDir': 'dest_dir', 'user': 'user', 'group': 'group', 'permissions': 'mode',
    'uploadAt': 'upload_at',
}

# Evaluated with --apply over the flake outputs. @PARAMS@ is replaced by
# let-bindings whose values are Nix literals made by nix_string/nix_list.
_APPLY = r'''
outputs:
let
  @PARAMS@
  inherit (builtins) attrNames concatMap elem filter foldl' functionArgs head
    isAttrs isFunction isList isPath listToAttrs mapAttrs removeAttrs tryEval;

  getPath = path: foldl' (acc: n:
    if isAttrs acc && acc ? ${n} then acc.${n} else null) outputs path;
  showPath = path: builtins.concatStringsSep "." path;

  # A JSON-safe copy of user data: functions and derivations are not
  # inventory data (and forcing a derivation could evaluate a system).
  data = v:
    if isFunction v then null
    else if isPath v then toString v
    else if isList v then map data v
    else if isAttrs v then (if v ? outPath then null else mapAttrs (_: data) v)
    else v;

  configurations = listToAttrs (map (o: {
    name = o;
    value = if isAttrs (outputs.${o} or null) then attrNames outputs.${o} else [ ];
  }) configOutputs);

  inventory = getPath inventoryAttr;
  hiveFound = filter (p: getPath p != null) hiveAttrs;
  hiveAttr = if hiveFound == [ ] then null else head hiveFound;
  deploy = getPath deployAttr;

  source =
    if wanted != "auto" then wanted
    else if isAttrs inventory then "inventory"
    else if hiveAttr != null then "colmena"
    else if isAttrs deploy && deploy ? nodes then "deploy-rs"
    else if builtins.any (o: configurations.${o} != [ ]) configOutputs
    then "configurations"
    else throw ("nixdeploy.fleet.nix: the flake has no inventory data: none of "
      + builtins.concatStringsSep ", " (map showPath ([ inventoryAttr ] ++ hiveAttrs))
      + ", ${showPath deployAttr}.nodes or ${builtins.concatStringsSep ", " configOutputs}");

  need = what: ok: value:
    if ok then value else throw "nixdeploy.fleet.nix: the flake has no ${what}";

  # ---- colmena -----------------------------------------------------------
  hive = getPath hiveAttr;
  madeHive = isAttrs hive && hive ? __schema && hive ? deploymentConfig;
  hiveMeta = hive.meta or hive.network or { };
  reserved = [ "meta" "network" "defaults" ];
  # lib only when the hive pins nixpkgs as a set or flake; forced only if a
  # node's module actually uses it.
  hiveLib =
    let np = hiveMeta.nixpkgs or null; in
    if isAttrs np && np ? lib then np.lib
    else throw "nixdeploy.fleet.nix: 'lib' is unavailable (meta.nixpkgs is not a Nixpkgs set)";

  stubArgs = name:
    let
      missing = arg: throw "nixdeploy.fleet.nix: node ${name} needs '${arg}'";
      special = (hiveMeta.specialArgs or { })
        // ((hiveMeta.nodeSpecialArgs or { }).${name} or { });
    in special // {
      inherit name;
      nodeName = name;
      lib = hiveLib;
      nodes = missing "nodes";
      pkgs = missing "pkgs";
      config = missing "config";
      options = missing "options";
      modulesPath = missing "modulesPath";
    };

  # Call a module function with stubs for the arguments it names; the
  # stubs throw, so only a deployment that really needs them fails.
  callModule = name: m:
    let
      stub = stubArgs name;
      formals = functionArgs m;
      args = if formals == { } then stub else listToAttrs (concatMap (a:
        if stub ? ${a} then [ { name = a; value = stub.${a}; } ]
        else if formals.${a} then [ ]
        else [ { name = a; value = throw "nixdeploy.fleet.nix: node ${name} needs '${a}'"; } ])
        (attrNames formals));
    in
    if isPath m then callModule name (import m)
    else if isFunction m then m args
    else m;

  # Module-system definitions: mkDefault/mkForce priorities, mkIf, mkMerge.
  defsOf = v:
    if isAttrs v && v ? _type then
      (if v._type == "override" then map (d: d // { prio = v.priority; }) (defsOf v.content)
      else if v._type == "if" then (if v.condition then defsOf v.content else [ ])
      else if v._type == "order" then defsOf v.content
      else if v._type == "merge" then concatMap defsOf v.contents
      else [ { prio = 100; value = v; } ])
    else [ { prio = 100; value = v; } ];

  # The winning definitions: the lowest priority number, as the module system.
  winning = defs:
    let best = foldl' (a: d: if d.prio < a then d.prio else a) 9999 defs; in
    filter (d: d.prio == best) defs;

  deploymentDefs = name: modules:
    concatMap (m: defsOf (m.deployment or (m.config or { }).deployment or { }))
      (map (callModule name) modules);

  deploymentOf = deps:
    let
      fieldDefs = f: concatMap (d: if isAttrs d.value && d.value ? ${f} then defsOf d.value.${f} else [ ]) deps;
      merge = f: defs:
        let winners = winning defs; in
        if f == "tags" then concatMap (d: d.value) winners
        else (foldl' (a: d: d) (head winners) winners).value;
    in
    listToAttrs (concatMap (f:
      let defs = fieldDefs f; in
      if defs == [ ] then [ ] else [ { name = f; value = merge f defs; } ]) colmenaFields);

  # deployment.keys, an attrsOf submodule: the winning definitions of the
  # whole set, then per key and per field its own winning definition.
  keysOf = deps:
    let
      sets = winning (concatMap (d: if isAttrs d.value && d.value ? keys then defsOf d.value.keys else [ ]) deps);
      names = attrNames (foldl' (a: s: a // (if isAttrs s.value then s.value else { })) { } sets);
      specDefs = k: concatMap (s: if isAttrs s.value && s.value ? ${k} then defsOf s.value.${k} else [ ]) sets;
      fieldDefs = k: f: concatMap (s: if isAttrs s.value && s.value ? ${f} then defsOf s.value.${f} else [ ]) (specDefs k);
      field = defs: let winners = winning defs; in (foldl' (a: d: d) (head winners) winners).value;
    in
    listToAttrs (map (k: {
      name = k;
      value = listToAttrs (concatMap (f:
        let defs = fieldDefs k f; in
        if defs == [ ] then [ ] else [ { name = f; value = field defs; } ]) keyFields);
    }) names);

  hiveModules = name:
    let n = hive.${name}; in
    (if hive ? defaults then [ hive.defaults ] else [ ])
    ++ (if isList n then n else [ n ]);

  # tryEval keeps one node's missing argument from failing the whole parse,
  # and keys that do not evaluate from costing the node its deployment.
  safeNode = value: keys:
    let
      r = tryEval (builtins.deepSeq value value);
      k = tryEval (builtins.deepSeq keys keys);
    in
    if !r.success then { error = true; }
    else { deployment = r.value; } // (if k.success then { keys = k.value; } else { keysError = true; });

  nullFree = spec: listToAttrs (concatMap (f:
    if isAttrs spec && spec ? ${f} && spec.${f} != null then [ { name = f; value = spec.${f}; } ] else [ ])
    keyFields);

  colmenaNodes =
    if madeHive then
      mapAttrs (name: dep: safeNode (data (listToAttrs (map (f: { name = f; value = dep.${f}; })
        (filter (f: dep ? ${f}) colmenaFields))))
        (data (mapAttrs (_: nullFree) (dep.keys or { })))) hive.deploymentConfig
    else
      listToAttrs (map (name:
        let deps = deploymentDefs name (hiveModules name); in
        { inherit name; value = safeNode (data (deploymentOf deps)) (data (keysOf deps)); })
        (filter (n: !(elem n reserved) && builtins.substring 0 2 n != "__") (attrNames hive)));

  # ---- deploy-rs: everything but profiles.*.path (never forced) ------------
  deployNodes = mapAttrs (name: node:
    data (removeAttrs node [ "profiles" ]) // {
      profiles = mapAttrs (p: prof: data (removeAttrs prof [ "path" ])) (node.profiles or { });
    }) deploy.nodes;

  # The chosen source must exist; checked before any output field is built.
  sourceFound =
    if source == "inventory" then
      need "inventory attribute ${showPath inventoryAttr}" (isAttrs inventory) true
    else if source == "colmena" then
      need "colmena hive (${builtins.concatStringsSep ", " (map showPath hiveAttrs)})" (hiveAttr != null) true
    else if source == "deploy-rs" then
      need "deploy-rs nodes (${showPath deployAttr}.nodes)" (isAttrs deploy && deploy ? nodes) true
    else if source == "configurations" then true
    else throw "nixdeploy.fleet.nix: unknown source ${source}";

  nodes =
    if source == "inventory" then mapAttrs (_: data) inventory
    else if source == "colmena" then colmenaNodes
    else if source == "deploy-rs" then deployNodes
    else { };
in
builtins.seq sourceFound {
  inherit source configurations nodes;
  inventory = if source != "inventory" && isAttrs inventory then mapAttrs (_: data) inventory else null;
  attribute =
    if source == "inventory" then inventoryAttr
    else if source == "colmena" then hiveAttr
    else if source == "deploy-rs" then deployAttr
    else null;
  madeHive = source == "colmena" && madeHive;
  deploy = if source == "deploy-rs" then data (removeAttrs deploy [ "nodes" ]) else null;
}
'''


class InventoryError(Exception):
    """The inventory data cannot be mapped (bad option or bad data)."""


def parse_attribute(value):
    """An attribute option (``a.b`` or a list) as a list of names, or None."""
    if value in (None, '', []):
        return None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    parts = []
    for part in re.findall(r'"((?:[^"\\]|\\.)*)"|([^.]+)', str(value)):
        parts.append(part[0].replace('\\"', '"') if part[0] else part[1])
    return parts


def apply_expression(source='auto', attribute=None):
    """The ``--apply`` function for one parse; every user value is quoted."""
    if source not in SOURCES:
        raise InventoryError('unknown source %r (one of %s)' % (source, ', '.join(SOURCES)))
    attr = parse_attribute(attribute)
    inventory_attr = attr if attr and source in ('auto', 'inventory') else DEFAULT_INVENTORY_ATTR
    hive_attrs = [attr] if attr and source == 'colmena' else DEFAULT_HIVE_ATTRS
    deploy_attr = attr if attr and source == 'deploy-rs' else DEFAULT_DEPLOY_ATTR
    params = [
        'wanted = %s;' % nix_string(source),
        'inventoryAttr = %s;' % nix_list(inventory_attr),
        'hiveAttrs = [ %s ];' % ' '.join('(%s)' % nix_list(p) for p in hive_attrs),
        'deployAttr = %s;' % nix_list(deploy_attr),
        'configOutputs = %s;' % nix_list(CONFIG_OUTPUTS),
        'colmenaFields = %s;' % nix_list(COLMENA_FIELDS),
        'keyFields = %s;' % nix_list(sorted(COLMENA_KEY_FIELDS)),
    ]
    return _APPLY.replace('@PARAMS@', '\n  '.join(params))


def eval_args(outputs, source='auto', attribute=None):
    """Arguments after ``nix eval`` (the NixOptions supply the rest).

    ``outputs``: the arguments naming the flake's outputs set
    (``Runner.outputs``, which differ by Nix version)."""
    return ['--json'] + list(outputs) + ['--apply', apply_expression(source, attribute)]


def check_flake(flake):
    """The flake reference alone: the attribute has an option of its own."""
    if '#' in flake:
        raise InventoryError('flake %r names an attribute: give the flake alone and the '
                             'attribute in the attribute option' % (flake,))
    return flake


# ---- mapping -------------------------------------------------------------

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


class Host:
    """One Ansible host: its name, variables and groups."""

    def __init__(self, name, variables, groups):
        self.name = name
        self.vars = variables
        self.groups = groups

    def __repr__(self):
        return 'Host(%r, groups=%r)' % (self.name, self.groups)


class Result:
    """Hosts in flake order plus the nodes skipped and why."""

    def __init__(self, source):
        self.source = source
        self.hosts = []
        self.skipped = []  # (name, reason)
        self.warnings = []


def _first(node, keys):
    for key in keys:
        value = node.get(key)
        if value not in (None, ''):
            return value
    return None


def _str_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [u'%s' % v for v in value if v not in (None, '')]
    return [u'%s' % value]


def _platform(value):
    if value in (None, ''):
        return 'nixos'
    text = u'%s' % value
    for name, group in GROUP_NAMES.items():
        if text in (name, group):
            return name
    raise InventoryError('unknown platform %r (known: %s)' % (text, ', '.join(sorted(PLATFORMS))))


def _port(value):
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
        'port': _port(_first(node, ('port', 'targetPort', 'sshPort'))),
        'tags': _str_list(node.get('tags')),
        'role': _first(node, ('role',)),
        'system': _first(node, ('system',)),
        'platform': node.get('platform'),
        'configuration': _first(node, ('configuration',)),
    }


def _merge(own, extra):
    """Fields the source gives win; the inventory entry fills the gaps."""
    merged = dict(extra or {})
    for key, value in own.items():
        if key == 'tags':
            if value or not merged.get('tags'):
                merged['tags'] = value
        elif value is not None or key not in merged:
            merged[key] = value
    return merged


def _configured_platform(raw, name):
    for platform in PLATFORM_ORDER:
        if name in (raw.get('configurations') or {}).get(PLATFORMS[platform]['output'], []):
            return platform
    return None


def _split_ssh_opts(opts):
    """deploy-rs sshOpts: ``-p N`` becomes the port, the rest ssh args."""
    port, rest = None, []
    items = _str_list(opts)
    idx = 0
    while idx < len(items):
        item = items[idx]
        if item == '-p' and idx + 1 < len(items):
            port = items[idx + 1]
            idx += 2
            continue
        if item.startswith('-p') and item[2:].isdigit():
            port = item[2:]
        else:
            rest.append(item)
        idx += 1
    return port, rest


def _profiles(attr_base, name, node, generic):
    """deploy-rs profiles in deploy order: profilesOrder, then by name."""
    profiles = node.get('profiles') or {}
    order = [p for p in _str_list(node.get('profilesOrder')) if p in profiles]
    order += sorted(p for p in profiles if p not in order)
    result = []
    for pname in order:
        prof = profiles[pname] or {}
        result.append({
            'name': pname,
            'attr': attr_string(attr_base + ['nodes', name, 'profiles', pname, 'path']),
            'user': prof.get('user') or node.get('user') or generic.get('user') or 'root',
            'ssh_user': prof.get('sshUser') or node.get('sshUser') or generic.get('sshUser'),
            'profile_path': prof.get('profilePath'),
        })
    return result


def _node_fields(raw, name, node):
    """(fields, extra host vars) of one node of the evaluated source."""
    source = raw['source']
    extra = {}
    if source == 'inventory':
        return inventory_fields(node), extra
    inv = (raw.get('inventory') or {}).get(name)
    inv_fields = inventory_fields(inv) if isinstance(inv, dict) else {}
    configured = _configured_platform(raw, name)
    if source == 'colmena':
        if node.get('error'):
            raise InventoryError('its colmena deployment options need more than data '
                                 '(pkgs, config, nodes or lib without meta.nixpkgs)')
        dep = node.get('deployment') or {}
        own = {
            'address': dep.get('targetHost') if 'targetHost' in dep else (inv_fields.get('address') or name),
            'user': dep.get('targetUser') if 'targetUser' in dep else (inv_fields.get('user') or 'root'),
            'port': _port(dep.get('targetPort')),
            'tags': _str_list(dep.get('tags')),
        }
        fields = _merge(own, inv_fields)
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
        return fields, extra
    if source == 'deploy-rs':
        generic = raw.get('deploy') or {}
        port, ssh_args = _split_ssh_opts(node.get('sshOpts') or generic.get('sshOpts'))
        own = {
            'address': node.get('hostname'),
            'user': node.get('sshUser') or generic.get('sshUser'),
            'port': _port(port),
            'tags': [],
        }
        fields = _merge(own, inv_fields)
        profiles = _profiles(list(raw['attribute']), name, node, generic)
        extra['nix_profiles'] = profiles
        if ssh_args:
            # the ssh connection plugin splits ansible_ssh_extra_args with shlex
            extra['ansible_ssh_extra_args'] = ' '.join(shlex.quote(a) for a in ssh_args)
        if inv_fields.get('configuration') or inv_fields.get('platform'):
            pass  # the inventory entry says which system the node deploys
        elif configured:
            fields['platform'] = configured
            fields['configuration'] = name
        else:
            system = [p for p in profiles if p['name'] == 'system']
            fields['nix_attr'] = system[0]['attr'] if system else None
            fields['configuration'] = None
        return fields, extra
    if source == 'configurations':
        own = {'tags': []}
        if configured == 'home-manager' and '@' in name and not inv_fields.get('address'):
            # homeConfigurations."user@host" names its own target
            own['user'], own['address'] = name.split('@', 1)
        fields = _merge(own, inv_fields)
        fields.setdefault('address', None)
        fields['platform'] = configured
        fields['configuration'] = name
        return fields, extra
    raise InventoryError('unknown source %r' % (source,))


def _names(raw):
    if raw['source'] != 'configurations':
        return list(raw.get('nodes') or {})
    names, seen = [], set()
    for platform in PLATFORM_ORDER:
        for name in (raw.get('configurations') or {}).get(PLATFORMS[platform]['output'], []):
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


def build_inventory(raw, flake, strict=False, address_optional=None):
    """Map the JSON of ``apply_expression`` to a ``Result``.

    A node that cannot be mapped (no address, bad port, unknown platform)
    raises ``InventoryError`` under ``strict`` and is skipped otherwise.
    """
    source = raw.get('source')
    result = Result(source)
    # colmena nodes and configurations connect to their name when no address
    # is given (colmena's own default, ssh_config for configurations).
    if address_optional is None:
        address_optional = source == 'configurations'
    nodes = raw.get('nodes') or {}
    for name in _names(raw):
        node = nodes.get(name)
        try:
            fields, extra = _node_fields(raw, name, node)
            if not fields.get('address') and not address_optional:
                raise InventoryError('it has no address (targetHost, host, hostname or ips)')
            if source == 'colmena':
                keys, warnings = colmena_keys(name, node)
                if keys:
                    extra['nix_keys'] = keys
                result.warnings.extend(warnings)
                # secrets stay out of nix_node, which is there for everyone to read
                node = dict((k, v) for k, v in node.items() if k not in ('keys', 'keysError'))
            host = _host(name, fields, extra, node, raw, flake)
        except InventoryError as exc:
            if strict:
                raise InventoryError('%s node %s: %s' % (source, name, exc))
            result.skipped.append((name, u'%s' % exc))
            continue
        result.hosts.append(host)
    return result


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


def _host(name, fields, extra, node, raw, flake):
    platform = _platform(fields.get('platform'))
    configuration = fields.get('configuration')
    if 'nix_attr' in fields:
        nix_attr = fields['nix_attr']
    else:
        configuration = configuration or name
        nix_attr = attr_string(system_attr_path(platform, configuration))
    tags = _str_list(fields.get('tags'))
    role = fields.get('role')
    system = fields.get('system')
    variables = {}
    if fields.get('address'):
        variables['ansible_host'] = u'%s' % fields['address']
    if fields.get('user'):
        variables['ansible_user'] = u'%s' % fields['user']
    port = _port(fields.get('port'))
    if port:
        variables['ansible_port'] = port
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
    return Host(name, variables, ordered)
