{
  # The lab's fleet: real derivations built from busybox, shaped like each
  # platform's real outputs. fleet.json (written by tests/lab/fixtures.py)
  # says which hosts and configurations exist and how each system behaves.
  description = "nixdeploy.fleet lab fleet";

  outputs = { self }:
    let
      fleet = builtins.fromJSON (builtins.readFile ./fleet.json);
    in
    import ./lib.nix { inherit fleet; busyboxDir = ./busybox; };
}
