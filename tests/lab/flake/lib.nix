# Builds the fleet's outputs from fleet.json. No nixpkgs: every derivation is
# a plain `derivation` whose builder is busybox.
# `part = "cost"` gives the evaluation-cost functions alone, so that
# tests/lab/heavy.py times the very same Nix work (no flake, no store).
{ fleet, busyboxDir, part ? "outputs" }:
let
  inherit (builtins) attrNames filter listToAttrs map mapAttrs genList foldl' toString;
  system = fleet.system;

  # A large library shared by every configuration, evaluated once per Nix
  # process, like nixpkgs: cost grows with fleet.heavy.
  heavy =
    if (fleet.heavy or 0) == 0 then 0
    else foldl' (acc: x: acc + x.v) 0
      (genList (i: { v = builtins.bitAnd i 255; s = toString i; }) fleet.heavy);

  busybox = derivation {
    name = "busybox";
    inherit system;
    # busybox picks the applet from argv[0]'s name: it must be "busybox"
    builder = "${busyboxDir}/busybox";
    args = [ "sh" "-e" "${./build-busybox.sh}" ];
    bb = "${busyboxDir}/busybox";
  };

  # Closure padding: `count` paths of `bytes` bytes each, shared by every
  # configuration with the same seed, so a new version can reuse them.
  extras = cfg:
    genList
      (i: derivation {
        name = "lab-extra-${cfg.extra_seed or "base"}-${toString i}";
        inherit system;
        builder = "${busybox}/bin/sh";
        args = [ "-e" "${./build-extra.sh}" ];
        PATH = "${busybox}/bin";
        size = toString ((cfg.extra_bytes or 0) / (if (cfg.extra_paths or 0) == 0 then 1 else cfg.extra_paths));
        seed = cfg.extra_seed or "base";
      })
      (cfg.extra_paths or 0);

  # Real-sized closures without building them (issue 22): `eval_paths` small
  # text files made at EVALUATION time (builtins.toFile: no builder runs),
  # about `eval_bytes` bytes each (default 2048; sha256 hex lines, so about
  # half of it compresses), shared by every configuration with the same
  # `eval_seed`, `eval_paths` and `eval_bytes`, as the nixpkgs part of real
  # systems is. They reference each other as a tree (file i references files
  # 2i+1 and 2i+2; file 0 is the root the system refers to), so they form a
  # dependency graph as packages do and the system's closure holds all of
  # them. Built once per Nix process per seed (an attribute set keyed by
  # seed, count and size), not once per configuration.
  # `eval_own`: that many small files of this configuration and version alone
  # (its /etc, units, ...), so a new version of a real-sized system adds a
  # few KB and hosts differ from each other by a few KB.
  evalText = seed: i: bytes:
    builtins.substring 0 bytes (builtins.concatStringsSep "" (genList
      (j: builtins.hashString "sha256" "${seed}/${toString i}/${toString j}" + "\n")
      (bytes / 65 + 1)));
  evalTree = seed: count: bytes:
    let
      file = i: builtins.toFile "lab-pkg-${seed}-${toString i}"
        ("lab package ${toString i} of ${seed}\n"
          + builtins.concatStringsSep "" (map (c: "depends ${file c}\n")
              (filter (c: c < count) [ (2 * i + 1) (2 * i + 2) ]))
          + evalText seed i bytes);
    in
    file 0;
  evalKey = cfg: "${cfg.eval_seed or "base"}-${toString (cfg.eval_paths or 0)}-${toString (cfg.eval_bytes or 2048)}";
  evalTrees = listToAttrs (map
    (cfg: {
      name = evalKey cfg;
      value = evalTree (cfg.eval_seed or "base") cfg.eval_paths (cfg.eval_bytes or 2048);
    })
    (filter (cfg: (cfg.eval_paths or 0) > 0) (builtins.attrValues fleet.configurations)));
  evalPaths = name: cfg:
    (if (cfg.eval_paths or 0) > 0 then [ evalTrees.${evalKey cfg} ] else [ ])
    ++ genList
      (i: builtins.toFile "lab-own-${name}-${cfg.version or "1"}-${toString i}"
        ("lab ${name} version ${cfg.version or "1"} own file ${toString i}\n"
          + evalText "${name}-${cfg.version or "1"}" i (cfg.eval_bytes or 2048)))
      (cfg.eval_own or 0);

  # What a NixOS system boots: one kernel package (bzImage, initrd, modules)
  # per kernel_version and one systemd per systemd_version, shared by every
  # configuration with the same versions, so a new version of a system keeps
  # its kernel unless the knob changes (what reboot detection compares).
  bootPart = kind: version: derivation {
    name = "lab-${kind}-${version}";
    inherit system kind version;
    builder = "${busybox}/bin/sh";
    args = [ "-e" "${./build-boot.sh}" ];
    PATH = "${busybox}/bin";
  };
  kernelOf = cfg: bootPart "linux" (cfg.kernel_version or "6.6.1");
  systemdOf = cfg: bootPart "systemd" (cfg.systemd_version or "255");

  # Per-configuration evaluation cost, on top of the shared library.
  evalCost = cfg:
    foldl' (acc: x: acc + x) 0 (genList (i: i) (cfg.eval_cost or 0));

  # Systems that cost what real ones cost (issue 45): a real NixOS system
  # takes 1-65 s and 0.5-4.5 GB to evaluate. CPU and memory are separate
  # knobs so tests/lab/heavy.py can turn seconds and MB into each.
  cost = rec {
    # CPU: one iteration hashes the same 64 KiB. Hashing allocates almost
    # nothing, so CPU work does not also fill the GC heap with garbage
    # (which would hide the memory knob below Nix's 384 MB initial heap);
    # chunks of 1000 keep the iteration list itself small.
    pad = builtins.concatStringsSep "" (genList (i: "0123456789abcdef") 4096);
    burnChunk = k: foldl'
      (acc: i: acc + builtins.stringLength (builtins.hashString "sha256" pad)) 0
      (genList (i: i) k);
    burn = n: foldl'
      (acc: c: acc + burnChunk (if n - c * 1000 < 1000 then n - c * 1000 else 1000)) 0
      (genList (c: c) ((n + 999) / 1000));
    # Memory: 4096 small attribute sets per unit (about 1 MB on Nix 2.8,
    # x86_64; heavy.py measures it), as a module system's config is made of.
    # They are returned, not folded away: whoever holds the result (the
    # system, the fleet) keeps them reachable, as the evaluated config of
    # every system stays reachable from the flake's outputs.
    hold = tag: units: genList (i: { inherit i; s = "${tag}-${toString i}"; }) (units * 4096);
    # forces every element and its string; filter allocates next to nothing
    # per element, so the peak RSS is mostly what stays held
    force = xs: builtins.length (filter (x: x.s == "") xs) + builtins.length xs;
  };

  # Shared by every configuration and evaluated once per Nix process (a
  # top-level binding, as a nixpkgs is): its held part stays reachable for
  # the process's life. null without the knobs, so systems stay as before.
  sharedWork = fleet.shared_work or 0;
  sharedMb = fleet.shared_mb or 0;
  sharedCost =
    if sharedWork == 0 && sharedMb == 0 then null
    else rec {
      held = cost.hold "shared" sharedMb;
      stamp = "shared work=${toString sharedWork} mb=${toString sharedMb}: "
        + toString (cost.burn sharedWork + cost.force held);
    };

  # This configuration's own cost. The stamp names the knobs, so changing
  # one changes the derivation; it is folded into an env string, so
  # evaluating the drvPath must do the work.
  ownCost = name: cfg:
    let work = cfg.eval_work or 0; mb = cfg.eval_mb or 0; in
    if work == 0 && mb == 0 && sharedCost == null then null
    else rec {
      held = cost.hold name mb;
      stamp = (if sharedCost == null then "" else sharedCost.stamp + "; ")
        + "own work=${toString work} mb=${toString mb}: "
        + toString (cost.burn work + cost.force held);
    };

  mkSystem = name: cfg:
    let
      own = ownCost name cfg;
      buildSeconds = cfg.build_seconds or 0;
      drv = derivation ({
        name = "${cfg.platform}-system-${name}-${cfg.version or "1"}";
        inherit system;
        builder = "${busybox}/bin/sh";
        args = [ "-e" "${./build-system.sh}" ];
        PATH = "${busybox}/bin";
        inherit busybox;
        activateLib = "${./activate.sh}";
        platform = cfg.platform;
        configName = name;
        version = cfg.version or "1";
        behaviour = cfg.behaviour or "ok";
        slowSeconds = toString (cfg.slow_seconds or 6);
        # sh run by the fake activation (as the activating user), e.g. to
        # show a test what the activation could read
        onActivate = cfg.on_activate or "";
        # nix-darwin: "legacy" (an activate-user, as before 2025), "deprecated"
        # (its 2025 stub) or none; home-manager: a file it links into $HOME
        activateUser = cfg.activate_user or "";
        homeFile = cfg.home_file or "";
        brokenBuild = if cfg.broken_build or false then "1" else "";
        # NixOS only: boot parts, switch inhibitors (name -> value, as
        # system.switch.inhibitors), units `systemctl is-active` reports
        # failed, and the status busybox httpd answers (none: no httpd)
        kernel = if cfg.platform == "nixos" then kernelOf cfg else "";
        systemd = if cfg.platform == "nixos" then systemdOf cfg else "";
        inhibitorsJson = builtins.toJSON (cfg.inhibitors or { });
        inhibitorLines = builtins.concatStringsSep "\n"
          (builtins.attrValues (mapAttrs (k: v: "${k}\t${toString v}") (cfg.inhibitors or { })));
        failedUnits = builtins.concatStringsSep " " (cfg.failed_units or [ ]);
        httpStatus = if cfg ? http_status && cfg.http_status != null then toString cfg.http_status else "";
        httpPort = toString (cfg.http_port or 80);
        # the padding, built (extra_*) and evaluated (eval_*), is written
        # into the system so its closure holds it
        extras = extras cfg ++ evalPaths name cfg;
        evalStamp = toString (heavy + evalCost cfg);
      }
      # the new knobs add attributes only when set: a fleet without them
      # keeps the very derivations it had before
      // (if own == null then { } else { labCost = own.stamp; })
      # a build of minutes, as real systems take: sleep, then the usual
      # builder (so broken_build still fails, after the wait)
      // (if buildSeconds == 0 then { } else {
        buildSeconds = toString buildSeconds;
        args = [ "-e" "-c" "sleep \"$buildSeconds\"; . ${./build-system.sh}" ];
      }));
    in
    # A broken configuration fails evaluation the way a bad module does: a
    # missing attribute, reported by Nix with file and line.
    if cfg.broken_eval or false then cfg.lab.this_option_does_not_exist
    # the system holds its config's memory, so it stays reachable from the
    # flake's outputs for the rest of the Nix process, as a real one's does
    else if own == null || own.held == [ ] then drv
    else drv // { labHeld = own.held; };

  configsOf = platform:
    let names = filter (n: fleet.configurations.${n}.platform == platform)
      (attrNames fleet.configurations);
    in listToAttrs (map (n: { name = n; value = fleet.configurations.${n}; }) names);

  hosts = fleet.hosts;
  hostsOn = platform: filter (n: (hosts.${n}.platform or "nixos") == platform) (attrNames hosts);

  profileFor = h: {
    nixos = { name = "system"; user = "root"; };
    darwin = { name = "system"; user = "root"; };
    nix-on-droid = { name = "nix-on-droid"; user = h.user or "app"; };
    home-manager = { name = "home"; user = h.user or "app"; };
  }.${h.platform or "nixos"};

  systemOf = h:
    let c = h.configuration; p = h.platform or "nixos"; in
    if p == "nixos" then outputs.nixosConfigurations.${c}.config.system.build.toplevel
    else if p == "darwin" then outputs.darwinConfigurations.${c}.system
    else if p == "nix-on-droid" then outputs.nixOnDroidConfigurations.${c}.activationPackage
    else outputs.homeConfigurations.${c}.activationPackage;

  outputs = {
    nixosConfigurations = mapAttrs
      (n: cfg: { config.system.build.toplevel = mkSystem n cfg; config.networking.hostName = n; })
      (configsOf "nixos");
    darwinConfigurations = mapAttrs (n: cfg: { system = mkSystem n cfg; }) (configsOf "darwin");
    nixOnDroidConfigurations = mapAttrs (n: cfg: { activationPackage = mkSystem n cfg; })
      (configsOf "nix-on-droid");
    homeConfigurations = mapAttrs (n: cfg: { activationPackage = mkSystem n cfg; })
      (configsOf "home-manager");

    # The fleet's inventory as pure data, as people keep it beside their roles.
    inventory = mapAttrs
      (n: h: {
        targetHost = h.address;
        targetUser = h.user;
        targetPort = h.port or 22;
        tags = h.tags or [ ];
        platform = h.platform or "nixos";
        system = h.system or system;
        configuration = h.configuration;
      } // (if h ? role then { inherit (h) role; } else { })
        // (h.extra or { }))
      hosts;

    # The same NixOS hosts as a colmena hive (colmena deploys NixOS only).
    colmena = {
      meta = { description = "lab fleet"; nixpkgs = { }; };
    } // listToAttrs (map
      (n: {
        name = n;
        value = { name, nodes, ... }: {
          deployment = {
            targetHost = hosts.${n}.address;
            targetUser = hosts.${n}.user;
            targetPort = hosts.${n}.port or 22;
            tags = hosts.${n}.tags or [ ];
          };
        };
      })
      (hostsOn "nixos"));

    # The same hosts as deploy-rs nodes, one profile each.
    deploy.nodes = mapAttrs
      (n: h: {
        hostname = h.address;
        sshUser = h.user;
        sshOpts = [ "-p" (toString (h.port or 22)) ];
        profiles.${(profileFor h).name} = {
          user = (profileFor h).user;
          path = systemOf h;
        };
        profilesOrder = [ (profileFor h).name ];
      })
      hosts;
  };
in
if part == "cost" then cost else outputs
