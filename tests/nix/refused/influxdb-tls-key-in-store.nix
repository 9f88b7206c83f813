# expect: services.pulsewire.influxdb.tls.keyFile (/nix/store/0000-influxdb.key) must be an absolute path outside the Nix store, which is world-readable.
# InfluxDB's TLS key in the Nix store (world-readable) fails the module's assertion.
{
  lib ? import ../lib/nixpkgs-lib.nix,
}:
((import ../lib/eval-nixos.nix { inherit lib; }).buildPulsewire {
  services.pulsewire.influxdb.tls = {
    enable = true;
    certFile = "/var/lib/secrets/influxdb.crt";
    keyFile = "${builtins.storeDir}/0000-influxdb.key";
  };
}).system.stateVersion
