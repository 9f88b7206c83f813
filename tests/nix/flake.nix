# Evaluates flake.nix's outputs with a stand-in nixpkgs input (the real `lib`
# plus ./lib/eval-nixos.nix as lib.nixosSystem) and checks what an operator
# runs: `nixos-rebuild switch --flake .` finds the configuration named after
# the host, and that configuration is the appliance.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/flake.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };

  nixpkgs = {
    lib = lib // {
      inherit (nixos) nixosSystem;
    };
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
      _:
      nixos.pkgs
      // {
        callPackage = _path: _args: nixos.pkgs.writeText "pulsewire" "";
      }
    );
  };
  flake = (import ../../flake.nix).outputs {
    self = flake;
    inherit nixpkgs;
  };
  configurations = flake.nixosConfigurations;
  names = builtins.attrNames configurations;
  config = configurations.${lib.head names}.config;
in
h.run [
  (check "one NixOS configuration, named after its host (nixos-rebuild switch --flake .)" (
    builtins.length names == 1 && config.networking.hostName == lib.head names
  ))
  (check "the configuration is the appliance, its module assertions hold" (
    config.services.pulsewire.enable
    && config.services.pulsewire.simulator.enable
    && config.networking.firewall.enable
    && nixos.failedAssertions config == [ ]
  ))
]
