# The source `configurations` (_inventory_sources.SOURCES): one host per
# configuration name, in the platforms' order (a name in two outputs is
# the first's: _inventory_hosts keeps a name once). Only the names are read,
# which inventory.nix lists for every source. Called by inventory.nix.
{ configurations, configOutputs, ... }:
{
  found = _: builtins.any (output: configurations.${output} != [ ]) configOutputs;
  map = _: {
    nodes = { };
    order = builtins.concatMap (output: configurations.${output}) configOutputs;
  };
}
