# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet as the flake describes it: the one ``nix eval`` that reads it.

``eval_args()`` builds the single ``nix eval`` that reads only inventory data
(never a system): one ``--apply`` expression over the flake's outputs that
finds the source (an inventory attribute, a colmena hive, deploy-rs nodes or
the system configurations) and returns its nodes as JSON. The mapping of that
JSON to hosts is pure Python beside it: ``_inventory_hosts.build_inventory``
(with ``_inventory_fields``, ``_inventory_colmena`` and ``_inventory_deploy_rs``).
The inventory plugin stays a thin shell around these two.
"""

import hashlib
import json
import re

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import (
    PLATFORM_ORDER, PLATFORMS)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import nix_list, nix_string
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_config import (
    ACCEPTED_NOTE, accepts_flake_config, refused_note)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_stderr import (
    refused_flake_settings)

SOURCES = ('auto', 'inventory', 'colmena', 'deploy-rs', 'configurations')

# the platforms' outputs in the order they are searched (the table's)
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


class InventoryError(NixdeployError):
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
    (``NixCommand.outputs``, which differ by Nix version)."""
    return ['--json'] + list(outputs) + ['--apply', apply_expression(source, attribute)]


def check_flake(flake):
    """The flake reference alone: the attribute has an option of its own."""
    if '#' in flake:
        raise InventoryError('flake %r names an attribute: give the flake alone and the '
                             'attribute in the attribute option' % (flake,))
    return flake


def request_digest(argv, options):
    """The sha256 of one inventory evaluation's request: the nix argv and the
    Nix options it was made with.

    The inventory cache keeps this instead of the argv: ``nix_options`` may
    carry secrets (``access-tokens``) that must not sit in a cache file,
    while a changed option (or apply expression) must still miss the cache.
    The options count apart from the argv, so the digest changes with them
    however they reach Nix."""
    text = json.dumps([list(argv), options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def flake_config_warnings(stderr, flake, options, extra_args=()):
    """The warnings of one inventory evaluation about the flake's own
    ``nixConfig``: the settings Nix did not apply (its warnings in
    ``stderr``, dropped otherwise on success), or the operator's opting in
    (``options``: nix_options, ``extra_args``: nix_args)."""
    found = []
    refused = refused_flake_settings(stderr)
    if refused:
        found.append(refused_note(refused, flake))
    if accepts_flake_config(options, extra_args):
        found.append(ACCEPTED_NOTE)
    return found
