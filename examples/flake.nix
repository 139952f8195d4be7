# flake.nix
{
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
    nix-darwin.url = "github:nix-darwin/nix-darwin/nix-darwin-24.11";
  };

  outputs = { self, nixpkgs, nix-darwin }: {
    # Your systems, as you build them today (hosts/*.nix are your modules).
    nixosConfigurations.web1 = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [ ./hosts/web1.nix ];
    };
    nixosConfigurations.web2 = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [ ./hosts/web2.nix ];
    };
    darwinConfigurations.mac = nix-darwin.lib.darwinSystem {
      system = "aarch64-darwin";
      modules = [ ./hosts/mac.nix ];
    };

    # The fleet, beside the systems and inside `outputs`: the inventory plugin
    # reads this attribute set. Each host deploys the configuration of its own
    # name (`configuration = "..."` picks another) over ssh as `targetUser`;
    # without one, as your own login name on the controller (Ansible's
    # default), not as root as with colmena. Tags become Ansible groups.
    inventory = {
      web1 = { targetHost = "web1"; targetUser = "root"; tags = [ "vps" "prod" ]; };
      web2 = { targetHost = "web2"; targetUser = "root"; tags = [ "vps" "hk" ]; };
      # nix-darwin activates as root: a non-root user gets become (group_vars/darwin.yml)
      mac = { targetHost = "mac"; targetUser = "deploy"; platform = "darwin"; };
    };
  };
}
