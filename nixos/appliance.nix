# The Pulsewire appliance: the whole pipeline on one host (three brokers,
# Connect, the four stages with the simulated fleet, InfluxDB 2, Grafana),
# Grafana and InfluxDB reachable from outside on exactly their two ports.
# `nix run .#vm` boots this in QEMU with those ports forwarded to the host's
# loopback (127.0.0.1) only.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.pulsewire;
in
{
  services.pulsewire = {
    enable = true;
    simulator.enable = lib.mkDefault true;
    influxdb.address = "0.0.0.0";
    grafana.address = "0.0.0.0";
    openFirewall = true;
  };

  # The modules open exactly the Grafana and InfluxDB ports (openFirewall).
  networking.firewall.enable = true;

  # Only used by `nix run .#vm` (config.system.build.vm).
  virtualisation.vmVariant = {
    virtualisation = {
      memorySize = 6144;
      cores = 4;
      diskSize = 8192;
      graphics = false;
      forwardPorts = [
        {
          from = "host";
          # Loopback only: without an address QEMU binds every host interface.
          host.address = "127.0.0.1";
          host.port = cfg.grafana.port;
          guest.port = cfg.grafana.port;
        }
        {
          from = "host";
          # Loopback only: without an address QEMU binds every host interface.
          host.address = "127.0.0.1";
          host.port = cfg.influxdb.port;
          guest.port = cfg.influxdb.port;
        }
      ];
    };
    # A console login for poking around the VM (`journalctl -u pulsewire-*`).
    services.getty.autologinUser = "root";
  };

  system.stateVersion = lib.mkDefault "25.11";
}
