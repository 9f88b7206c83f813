# expect: A definition for option `services.pulsewire.influxdb.port' is not of type `16 bit unsigned integer
# A value of the wrong type in a services.pulsewire option is refused with nixpkgs' own error.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire
  { services.pulsewire.influxdb.port = "8086"; }).systemd.services.pulsewire-uploader.serviceConfig.ExecStart
