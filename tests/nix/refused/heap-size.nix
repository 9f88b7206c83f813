# expect: A definition for option `services.pulsewire.connect.heap' is not of type `string matching the pattern [0-9]+[kKmMgG]'
# A JVM heap the unit's memory limit cannot be derived from is refused at evaluation.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire
  { services.pulsewire.connect.heap = "lots"; }).systemd.services.pulsewire-connect.serviceConfig.MemoryMax
