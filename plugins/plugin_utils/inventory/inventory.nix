# The inventory's one evaluation: `nix eval --json <flake>#. --apply F`, F
# made of this file by _inventory.apply_expression. It reads only inventory
# data, never a system, and returns the chosen source's nodes as JSON, which
# _inventory_hosts.build_inventory maps to hosts.
#
# Why the text is passed whole (as record.nix is): a pure evaluation may not
# import a file outside the store, and Nix refuses --arg/--argstr with a
# flake. So everything the user gave (the source, attribute names) arrives
# in `params`, decoded by builtins.fromJSON from one quoted string: data,
# never Nix code.
#
# params: wanted         the source asked for, or "auto"
#         sources        the table's rows (_inventory_sources.SOURCES), in the
#                        order auto tries them: { name; attributes (the paths
#                        looked at in order, null: the outputs themselves);
#                        missing (the error when it is asked for and absent);
#                        fillsGaps; inAuto (auto may take it); params (what
#                        its mapper reads) }
#         noSource       the error when auto finds none
#         configOutputs  the platforms' configuration outputs, in the table's order
# mappers: source name -> its mapper (source-<name>.nix beside this file), a
#         function of what every mapper may read, giving
#         { found = value: bool; map = value: { nodes; ... }; }
params: mappers: outputs:
let
  inherit (builtins) attrNames filter foldl' head isAttrs isFunction isList isPath
    listToAttrs mapAttrs;

  getPath = path: foldl' (acc: n:
    if isAttrs acc && acc ? ${n} then acc.${n} else null) outputs path;

  # A JSON-safe copy of user data: functions and derivations are not
  # inventory data (and forcing a derivation could evaluate a system).
  data = v:
    if isFunction v then null
    else if isPath v then toString v
    else if isList v then map data v
    else if isAttrs v then (if v ? outPath then null else mapAttrs (_: data) v)
    else v;

  # the names of every platform's configurations: every source's hosts may
  # deploy one of them (only the names are read)
  configurations = listToAttrs (map (o: {
    name = o;
    value = if isAttrs (outputs.${o} or null) then attrNames outputs.${o} else [ ];
  }) params.configOutputs);

  mapperOf = row: mappers.${row.name} {
    inherit data configurations;
    inherit (params) configOutputs;
    params = row.params;
  };

  paths = row: if row.attributes == null then [ null ] else row.attributes;
  # a row's source at one of its paths (null: the outputs themselves)
  at = row: path: {
    inherit row;
    mapper = mapperOf row;
    attribute = path;
    value = if path == null then outputs else getPath path;
  };

  # Where a row's source is: the first of its paths whose value its mapper
  # takes for the source, or null.
  locate = row:
    let found = filter (place: place.mapper.found place.value) (map (at row) (paths row));
    in if found == [ ] then null else head found;

  rowNamed = name: head (filter (row: row.name == name) params.sources);

  # auto: the first row found of those it may take, the later ones never
  # looked at. A source asked for must be found, but for a row that is
  # never missing (no configuration: no host of them).
  chosen =
    if params.wanted == "auto" then
      let first = foldl' (got: row: if got != null || !row.inAuto then got else locate row)
        null params.sources;
      in if first == null then throw params.noSource else first
    else
      let row = rowNamed params.wanted; got = locate row;
      in if got != null then got
      else if row.missing == null then at row (head (paths row))
      else throw row.missing;

  # the entries that fill the gaps of another source's nodes of their name
  gapRow = head (filter (row: row.fillsGaps) params.sources);
  gaps = if chosen.row.name == gapRow.name then null else locate gapRow;
in
# the chosen source must exist: its error comes before any output field
builtins.seq chosen ({
  source = chosen.row.name;
  inherit configurations;
  attribute = chosen.attribute;
  inventory = if gaps == null then null else (gaps.mapper.map gaps.value).nodes;
} // chosen.mapper.map chosen.value)
