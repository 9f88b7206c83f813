# InfluxDB 2 through nixpkgs' services.influxdb2 provisioning: the org and
# bucket (with its retention) from pipeline.toml, the operator login, a write
# token for the uploader and a read token for Grafana. Token values come from
# the files of secrets.nix; the module writes them into its database on the
# restart it schedules after first creating them.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.pulsewire;
  icfg = cfg.influxdb;
  render = import ./lib/pulsewire.nix { pipelineFile = cfg.pipelineFile; };
  inherit (render.pipeline.influxdb) org bucket retention_seconds;
  secrets = import ./lib/secret-paths.nix cfg;
in
{
  config = lib.mkIf icfg.enable {
    services.influxdb2 = {
      enable = true;
      settings = {
        # host:port, never ":port": the module's provisioning derives its
        # client URL from this value (0.0.0.0 -> localhost).
        http-bind-address = "${icfg.address}:${toString icfg.port}";
        reporting-disabled = true;
      };
      provision = {
        enable = true;
        initialSetup = {
          organization = org;
          inherit bucket;
          username = "admin";
          retention = retention_seconds;
          passwordFile = secrets.influxAdminPassword;
          tokenFile = secrets.influxAdminToken;
        };
        organizations.${org}.auths = {
          pulsewire-uploader = {
            description = "Pulsewire uploader: writes readings and statistics";
            readBuckets = [ bucket ];
            writeBuckets = [ bucket ];
            tokenFile = secrets.influxUploaderToken;
          };
          pulsewire-grafana = {
            description = "Grafana: reads the Pulsewire bucket";
            readBuckets = [ bucket ];
            tokenFile = secrets.influxGrafanaToken;
          };
        };
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ icfg.port ];

    systemd.services.influxdb2 = {
      after = [ "pulsewire-secrets.service" ];
      requires = [ "pulsewire-secrets.service" ];
    };
  };
}
