# expect: A definition for option `services.influxdb2.provision.initialSetup.retention' is not of type `unsigned integer, meaning >=0'
# A value of the wrong type given to an upstream option (here nixpkgs' influxdb2, as
# mirrored with its types in ../lib/upstream/influxdb2.nix) is refused with nixpkgs' own error.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire
  { services.influxdb2.provision.initialSetup.retention = lib.mkForce "30d"; }).services.influxdb2.provision.initialSetup.retention
