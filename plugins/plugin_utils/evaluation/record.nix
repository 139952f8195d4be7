# Calls a flake's outputs as Nix does, for an evaluation whose reads are
# recorded (_eval_record.py, docs/eval-cache.md).
#
# Why not Nix's own call: every attribute of `self` that says which commit
# this is (rev, shortRev, lastModified, narHash, outPath, ...) is wrapped so
# that forcing it prints a trace line with a marker nobody can guess: a host
# whose answer used one of them is seen to depend on it, which no file read
# shows. Everything else is Nix's own: the inputs (follows, non-flake inputs,
# their lock) and the values of `self`'s attributes come from
# builtins.getFlake of the same locked reference.
#
# ref:    a locked flake reference of the pinned content, read through the
#         file system (a `path:` store copy on Nix versions that read git
#         through their own accessor)
# sub:    the flake's folder inside its source ("" at the top)
# info:   attributes of the source as Nix gives them for the flake the run
#         pinned (a git checkout's rev, revCount...), or null: the ref's own
# marker: the start of the trace line of a forced attribute
{ ref, sub, info, marker }:
let
  real = builtins.getFlake ref;
  root = real.sourceInfo.outPath;
  # the pinned flake's own attributes where given: exactly those, with the
  # store copy's path
  plainInfo = if info == null then real.sourceInfo else info // { outPath = root; };
  flake = import (root + (if sub == "" then "" else "/" + sub) + "/flake.nix");
  seen = name: value: builtins.trace "${marker}${name}" value;
  sourceInfo = builtins.mapAttrs seen plainInfo;
  self = builtins.mapAttrs
    (name: value:
      if name == "outputs" then outputs
      else if name == "inputs" then value
      else if name == "sourceInfo" then sourceInfo
      # a subflake's outPath is its folder on newer Nix: Nix's own value
      else if name == "outPath" then seen name value
      else if plainInfo ? ${name} then sourceInfo.${name}
      else if name == "_type" then value
      else if outputs ? ${name} then outputs.${name}
      # a name only Nix's own call has: its value, seen as forced
      else seen name value)
    (if info == null then real
     else builtins.removeAttrs real
       (builtins.filter (n: n != "outPath") (builtins.attrNames real.sourceInfo))
       // builtins.removeAttrs info [ "outPath" ]);
  outputs = flake.outputs (real.inputs // { inherit self; });
in
# Nix fetches the pinned source first (a newer Nix hashes all of it again to
# check its narHash): what it reads for that is not what a host's answer
# read, and the line after it ends it (_eval_record: the flake's own
# flake.nix, which that fetch parsed, is recorded as read all the same)
builtins.seq root (builtins.trace "${marker}@setup" outputs)
