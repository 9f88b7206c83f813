# expect: services.pulsewire: networking.hostName is empty
# The instance names and Connect's cluster come from the host name: an empty one is refused.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire
  { networking.hostName = ""; }).system.stateVersion
