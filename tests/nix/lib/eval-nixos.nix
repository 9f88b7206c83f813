# Evaluates NixOS modules with nixpkgs' real module system (lib.evalModules from the
# `lib` given: real types, mkIf/mkMerge/priorities, assertions), on top of stand-ins
# for what lives outside nixpkgs' lib/: the upstream NixOS options our modules set
# (./upstream/*.nix, each declared with its nixpkgs 25.11 type and citing the file it
# mirrors) and a few packages (./pkgs.nix).
#
#   let nixos = import ./eval-nixos.nix { inherit lib; };
#   in (nixos.eval [ ../../nixos { services.pulsewire.enable = true; } ]).systemd.services
{ lib }:
let
  pkgs = import ./pkgs.nix { inherit lib; };

  upstream = [
    ./upstream/misc.nix
    ./upstream/users.nix
    ./upstream/networking.nix
    ./upstream/environment.nix
    ./upstream/systemd.nix
    ./upstream/virtualisation.nix
    ./upstream/influxdb2.nix
    ./upstream/grafana.nix
    ./upstream/prometheus.nix
  ];

  # What nixpkgs' lib.nixosSystem gives: the evaluated configuration (config, options, ...).
  nixosSystem =
    {
      modules,
      specialArgs ? { },
      ...
    }:
    lib.evalModules {
      modules = upstream ++ modules ++ [ { _module.args.pkgs = lib.mkDefault pkgs; } ];
      specialArgs = {
        modulesPath = "/modulesPath";
      }
      // specialArgs;
    };
in
rec {
  inherit pkgs nixosSystem;

  # The merged `config` of the modules.
  eval = modules: (nixosSystem { inherit modules; }).config;

  # The failed assertions' messages of an evaluated config (what nixpkgs would
  # refuse to build with).
  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # The config, or the error nixpkgs' system.build.toplevel throws on failed
  # assertions (nixos/modules/system/activation/top-level.nix).
  build =
    modules:
    let
      config = (nixosSystem { inherit modules; }).config;
      failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
    in
    if failed == [ ] then config else throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}";

  # `build` of the whole Pulsewire module (../../nixos, everything enabled, a
  # stand-in package) with `extra` on top: what tests/nix/refused/ evaluates.
  buildPulsewire =
    extra:
    build [
      ../../../nixos
      {
        services.pulsewire.package = pkgs.writeText "pulsewire" "";
        services.pulsewire.enable = true;
      }
      extra
    ];
}
