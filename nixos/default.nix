# The Pulsewire NixOS module (flake output nixosModules.default imports this
# and sets services.pulsewire.package). Options: ./options.nix. Enabling
# services.pulsewire turns on every component; each has its own enable.
{
  imports = [
    ./options.nix
    ./kafka.nix
    ./kafka-security.nix
    ./connect.nix
    ./pipeline.nix
    ./influxdb.nix
    ./grafana.nix
    ./prometheus.nix
    ./secrets.nix
    ./ctl.nix
  ];
}
