# Grafana through nixpkgs' services.grafana: the Flux InfluxDB datasource
# (provisioning/grafana/datasource.json plus url, org, bucket and token filled
# in here) and the dashboards in provisioning/grafana/dashboards/. The admin
# password, secret_key and the InfluxDB read token reach Grafana through
# LoadCredential and Grafana's $__file{} provider, so none is in the store.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.pulsewire;
  gcfg = cfg.grafana;
  # The InfluxDB organization and bucket the datasource reads, from pipeline.toml.
  inherit ((import ./lib/render.nix cfg).pipeline.influxdb) org bucket;
  secrets = import ./lib/secret-paths.nix cfg;

  credentials = "/run/credentials/grafana.service";
  caFile = cfg.influxdb.tls.caFile;
  datasource = lib.foldl' lib.recursiveUpdate (lib.importJSON ../provisioning/grafana/datasource.json) [
    {
      url = cfg.influxdb.url;
      jsonData = {
        organization = org;
        defaultBucket = bucket;
      };
      secureJsonData.token = "$__file{${credentials}/influx-token}";
    }
    # InfluxDB over https with a CA of its own (influxdb.tls.caFile): Grafana
    # trusts only it, read from its credential like the token.
    (lib.optionalAttrs (caFile != null) {
      jsonData.tlsAuthWithCACert = true;
      secureJsonData.tlsCACert = "$__file{${credentials}/influx-ca}";
    })
  ];
  # The health view (prometheus.nix): the pipeline dashboard and the alert
  # rules read it. timeInterval lets $__rate_interval cover 4 scrapes.
  prometheusDatasource = lib.recursiveUpdate (lib.importJSON ../provisioning/grafana/prometheus-datasource.json) {
    url = "http://127.0.0.1:${toString cfg.prometheus.port}";
    jsonData.timeInterval = cfg.prometheus.scrapeInterval;
  };
in
{
  config = lib.mkIf gcfg.enable {
    services.grafana = {
      enable = true;
      settings = {
        server = {
          http_addr = gcfg.address;
          http_port = gcfg.port;
        };
        security = {
          admin_user = "admin";
          admin_password = "$__file{${credentials}/admin-password}";
          secret_key = "$__file{${credentials}/secret-key}";
          disable_gravatar = true;
        };
        users.allow_sign_up = false;
        analytics = {
          reporting_enabled = false;
          check_for_updates = false;
          check_for_plugin_updates = false;
        };
      };
      provision = {
        enable = true;
        datasources.settings = {
          apiVersion = 1;
          datasources = [ datasource ] ++ lib.optional cfg.prometheus.enable prometheusDatasource;
        };
        dashboards.settings = {
          apiVersion = 1;
          providers = [
            {
              name = "pulsewire";
              type = "file";
              disableDeletion = true;
              allowUiUpdates = false;
              options.path = ../provisioning/grafana/dashboards;
            }
          ];
        };
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ gcfg.port ];

    systemd.services.grafana = {
      # Starts once InfluxDB accepts its read token (influxdb.nix).
      after = [ "pulsewire-secrets.service" ] ++ lib.optional cfg.influxdb.enable "pulsewire-influxdb-ready.service";
      wants = lib.optional cfg.influxdb.enable "pulsewire-influxdb-ready.service";
      requires = [ "pulsewire-secrets.service" ];
      serviceConfig.LoadCredential = [
        "admin-password:${secrets.grafanaAdminPassword}"
        "secret-key:${secrets.grafanaSecretKey}"
        "influx-token:${secrets.influxGrafanaToken}"
      ]
      ++ lib.optional (caFile != null) "influx-ca:${caFile}";
    };
  };
}
