# Calls a flake's outputs the way Nix's own flake call does, for an
# evaluation whose reads are recorded (_record.py, docs/eval-cache.md).
#
# Why not builtins.getFlake: getFlake parses flake.nix and calls the
# flake's `outputs` function before anything here runs, and Nix keeps what
# that call read in caches of its own process (a parsed file, a path
# already copied). A later read answered from those caches makes no system
# call, so strace would never see it. Here nothing of the flake is read
# before this expression reads it: the pinned store copy is taken as it is
# (a `path` fetch of a valid store path reads none of its files), the lock
# graph comes from the pin as data, and `outputs` is called once, below.
#
# What differs from Nix's call: every attribute of the source that says
# which commit this is (rev, shortRev, lastModified, narHash, outPath, ...)
# prints a trace line with a marker nobody can guess when it is forced, so
# a host whose answer used one of them is seen to depend on it. The values
# themselves are Nix's (the pin asked Nix for them).
#
# root:    the store path of the pinned content
# narHash: its NAR hash (a path fetch in pure mode needs one)
# sub:     the flake's folder inside its source ("" at the top)
# info:    the source's attributes as Nix gives them to `self`, but outPath
# lock:    the lock graph the pin read ({ nodes, root }), or null: no inputs
# marker:  the start of the trace line of a forced attribute
# layout:  "folder" where Nix (2.25+) makes a subflake's outPath its own
#          folder and resolves relative `path:` inputs from their parent;
#          "source" where outPath is the whole source's (Nix before that)
# adds:    what Nix's own call puts last on every node, whatever the
#          outputs define, as _flake_call.ask found it for this Nix:
#          { flake = names of inputs, outputs, sourceInfo, _type;
#            plain = names a non-flake input gets beside its source }
{ root, narHash, sub, info, lock, marker, layout, adds }:
let
  inherit (builtins) mapAttrs;
  seen = name: value: builtins.trace "${marker}${name}" value;
  folderLayout = layout == "folder";

  fetched = builtins.fetchTree { type = "path"; path = root; inherit narHash; };
  # the root's attributes as the flake sees them: each one traced when forced
  rootPlain = info // { outPath = fetched.outPath; };
  rootInfo = mapAttrs seen rootPlain;

  names = list: builtins.listToAttrs (map (name: { inherit name; value = null; }) list);
  flakeNames = names adds.flake;
  plainNames = names adds.plain;
  graph = if lock == null then { nodes = { root = { }; }; root = "root"; } else lock;
  nodes = graph.nodes;

  # an input named by a node's name, or a `follows` path from the root node
  nodeOf = spec: if builtins.isList spec then walk graph.root spec else spec;
  walk = name: path:
    if path == [ ] then name
    else walk (nodeOf nodes.${name}.inputs.${builtins.head path}) (builtins.tail path);

  # one node of the graph, as Nix's call makes it: its source, the folder
  # its flake.nix is in, and what the flakes that take it as an input see
  call = key: node:
    let
      isRoot = key == graph.root;
      locked = node.locked or { };
      # a `path:` input relative to its parent flake: Nix (2.25+) gives it
      # its parent's whole source and a folder under its parent's folder
      relative = !isRoot && folderLayout && (locked.type or "") == "path"
        && builtins.substring 0 1 (locked.path or "/") != "/";
      parent = made.${walk graph.root node.parent};
      # a source that is the pinned copy itself (the root, or a relative
      # input inside it): a path of it names this content, so its outPath
      # is traced wherever the flake's code forces it
      ours = isRoot || (relative && parent.ours);
      # the source: untraced, what this file reads with (importing
      # flake.nix forces no attribute of the flake's own), and as the
      # flake's code sees it
      plain = if isRoot then rootPlain
        else if relative then parent.plain
        else builtins.fetchTree (node.info or { } // removeAttrs locked [ "dir" ]);
      sourceInfo = if isRoot then rootInfo
        else if relative then parent.sourceInfo
        else plain;
      # what Nix puts after the folder it starts from: the relative path
      # as the lock has it ("./child"), or the source's `dir`
      subdir = if isRoot then sub else locked.dir or "";
      tail = if relative then (if locked.path == "" then "" else "/" + locked.path)
        else if subdir == "" then "" else "/" + subdir;
      # the flake's folder, untraced, and as the flake's code sees it (a
      # relative input's starts from its parent's, traced where that is)
      folder = (if relative then parent.folder else plain.outPath) + tail;
      outPath = (if relative then parent.outPath else sourceInfo.outPath) + tail;
      # where the folder layout gives a node its own folder as outPath
      own = if folderLayout then { inherit outPath; } else { };
      flake = import (folder + "/flake.nix");
      inputs = mapAttrs (_name: spec: made.${nodeOf spec}.result) (node.inputs or { });
      outputs = flake.outputs (inputs // { self = result; });
      # `//` keeps the positions of the outputs' own attributes, as Nix's
      # call does (builtins.unsafeGetAttrPos on self); the call's own names
      # come last and win over the outputs' (`inherit inputs;` in the
      # outputs is a common way to reach them from `nix repl`)
      result = outputs // sourceInfo // own // builtins.intersectAttrs flakeNames {
        inherit inputs outputs sourceInfo;
        _type = "flake";
      };
    in {
      # outputs: what the flake's function gave (the root's is the answer,
      # whatever names its result ends with)
      inherit ours plain sourceInfo folder outPath outputs;
      result = if node.flake or true
        then assert builtins.isFunction flake.outputs; result
        else sourceInfo // builtins.intersectAttrs plainNames { inherit sourceInfo; } // own;
    };

  made = mapAttrs call nodes;
in
made.${graph.root}.outputs
