# expect: A definition for option `services.pulsewire.influxdb.port' is not of type `16 bit unsigned integer
# A value of the wrong type in a services.pulsewire option is refused with nixpkgs' own error.
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
    services.pulsewire.influxdb.port = "8086";
  }
]).systemd.services.pulsewire-uploader.serviceConfig.ExecStart
