# expect: services.pulsewire.secrets.grafanaAdminPasswordFile points into the Nix store, which is world-readable.
# A secret file in the Nix store fails the module's assertion, as nixpkgs' build would.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire
  { services.pulsewire.secrets.grafanaAdminPasswordFile = "${builtins.storeDir}/0000-password"; }).system.stateVersion
