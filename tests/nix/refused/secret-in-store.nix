# expect: services.pulsewire.secrets.grafanaAdminPasswordFile points into the Nix store, which is world-readable.
# A secret file in the Nix store fails the module's assertion, as nixpkgs' build would.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
let
  nixos = import ../lib/eval-nixos.nix { inherit lib; };
in
(nixos.build [
  ../../../nixos
  {
    services.pulsewire.package = nixos.pkgs.writeText "pulsewire" "";
    services.pulsewire.enable = true;
    services.pulsewire.secrets.grafanaAdminPasswordFile = "${builtins.storeDir}/0000-password";
  }
]).system.stateVersion
