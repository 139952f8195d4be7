# The source `colmena` (_inventory_sources.SOURCES): a hive's nodes, each
# node's `deployment` options (params.fields; params.listFields concatenated)
# and `deployment.keys` (params.keyFields) as data, never a system. A hive
# made by colmena's makeHive is read from its deploymentConfig; a raw hive's
# modules are called with stubs and merged as the module system would for
# these options. _inventory_colmena.py maps a node. Called by inventory.nix.
{ data, params, ... }:
let
  inherit (builtins) attrNames concatMap elem filter foldl' functionArgs head
    isAttrs isFunction isList isPath listToAttrs mapAttrs tryEval;

  colmenaFields = params.fields;
  # listOf options (tags, sshOptions): the winning definitions concatenated
  listFields = params.listFields;
  keyFields = params.keyFields;
  reserved = [ "meta" "network" "defaults" ];
  # colmena's makeHive output: its deployment options evaluated already
  isMade = hive: isAttrs hive && hive ? __schema && hive ? deploymentConfig;

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

  deploymentOf = deps:
    let
      fieldDefs = f: concatMap (d:
        if isAttrs d.value && d.value ? ${f} then defsOf d.value.${f} else [ ]) deps;
      merge = f: defs:
        let winners = winning defs; in
        if elem f listFields then concatMap (d: d.value) winners
        else (foldl' (a: d: d) (head winners) winners).value;
    in
    listToAttrs (concatMap (f:
      let defs = fieldDefs f; in
      if defs == [ ] then [ ] else [ { name = f; value = merge f defs; } ]) colmenaFields);

  # deployment.keys, an attrsOf submodule: the winning definitions of the
  # whole set, then per key and per field its own winning definition.
  keysOf = deps:
    let
      sets = winning (concatMap (d:
        if isAttrs d.value && d.value ? keys then defsOf d.value.keys else [ ]) deps);
      names = attrNames (foldl' (a: s: a // (if isAttrs s.value then s.value else { })) { } sets);
      specDefs = k: concatMap (s:
        if isAttrs s.value && s.value ? ${k} then defsOf s.value.${k} else [ ]) sets;
      fieldDefs = k: f: concatMap (s:
        if isAttrs s.value && s.value ? ${f} then defsOf s.value.${f} else [ ]) (specDefs k);
      field = defs:
        let winners = winning defs; in (foldl' (a: d: d) (head winners) winners).value;
    in
    listToAttrs (map (k: {
      name = k;
      value = listToAttrs (concatMap (f:
        let defs = fieldDefs k f; in
        if defs == [ ] then [ ] else [ { name = f; value = field defs; } ]) keyFields);
    }) names);

  # tryEval keeps one node's missing argument from failing the whole parse,
  # and keys that do not evaluate from costing the node its deployment.
  safeNode = value: keys:
    let
      r = tryEval (builtins.deepSeq value value);
      k = tryEval (builtins.deepSeq keys keys);
    in
    if !r.success then { error = true; }
    else { deployment = r.value; }
      // (if k.success then { keys = k.value; } else { keysError = true; });

  nullFree = spec: listToAttrs (concatMap (f:
    if isAttrs spec && spec ? ${f} && spec.${f} != null
    then [ { name = f; value = spec.${f}; } ] else [ ])
    keyFields);

  nodesOf = hive:
    let
      hiveMeta = hive.meta or hive.network or { };
      # lib only when the hive pins nixpkgs as a set or flake; forced only if
      # a node's module actually uses it.
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

      deploymentDefs = name: modules:
        concatMap (m: defsOf (m.deployment or (m.config or { }).deployment or { }))
          (map (callModule name) modules);

      hiveModules = name:
        let n = hive.${name}; in
        (if hive ? defaults then [ hive.defaults ] else [ ])
        ++ (if isList n then n else [ n ]);
    in
    if isMade hive then
      mapAttrs (name: dep: safeNode (data (listToAttrs (map (f: { name = f; value = dep.${f}; })
        (filter (f: dep ? ${f}) colmenaFields))))
        (data (mapAttrs (_: nullFree) (dep.keys or { })))) hive.deploymentConfig
    else
      listToAttrs (map (name:
        let deps = deploymentDefs name (hiveModules name); in
        { inherit name; value = safeNode (data (deploymentOf deps)) (data (keysOf deps)); })
        (filter (n: !(elem n reserved) && builtins.substring 0 2 n != "__") (attrNames hive)));
in
{
  found = value: value != null;
  map = hive: {
    nodes = nodesOf hive;
    madeHive = isMade hive;
  };
}
