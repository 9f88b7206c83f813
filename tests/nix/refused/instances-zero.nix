# expect: A definition for option `services.pulsewire.processor.instances' is not of type `positive integer, meaning >0
# Zero instances of a stage is refused by the option's type (disable the stage instead).
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire
  { services.pulsewire.processor.instances = 0; }).systemd.services.pulsewire-processor.serviceConfig.ExecStart
