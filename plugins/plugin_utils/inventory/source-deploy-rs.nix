# The source `deploy-rs` (_inventory_sources.SOURCES): `deploy.nodes`, every
# node and profile field but a profile's `path`, which is never forced
# (forcing it would evaluate a system); `deploy`'s own generic settings
# beside them. _inventory_deploy_rs.py maps a node. Called by inventory.nix.
{ data, ... }:
let
  inherit (builtins) isAttrs mapAttrs removeAttrs;
in
{
  found = value: isAttrs value && value ? nodes;
  map = deploy: {
    nodes = mapAttrs (name: node:
      data (removeAttrs node [ "profiles" ]) // {
        profiles = mapAttrs (p: prof: data (removeAttrs prof [ "path" ])) (node.profiles or { });
      }) deploy.nodes;
    deploy = data (removeAttrs deploy [ "nodes" ]);
  };
}
