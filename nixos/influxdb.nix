# InfluxDB 2 through nixpkgs' services.influxdb2 provisioning: the org and
# bucket (with its retention) from pipeline.toml, the operator login, a
# write-only token for the uploader and a read-only token for Grafana.
#
# Who reads the secrets: nixpkgs' module hands the admin password and token to
# the unit through LoadCredential (systemd reads them as root), but its
# post-start provisioning opens every provision.users.<u>.passwordFile, and
# its preStart token manipulator every auths.<a>.tokenFile, itself, as the
# influxdb2 user. So each of those is given the unit's credential
# (/run/credentials/influxdb2.service/<name>, readable by influxdb2 only), never
# the root-only file of secrets.nix or of the operator.
#
# First boot: the module creates the tokens with random values, restarts
# itself and only then writes ours into its database. pulsewire-influxdb-ready
# waits until both tokens really work; the uploader and Grafana start after it.
#
# The batch layer: the rollup bucket (longer retention) is provisioned here, its
# tasks (rendered from provisioning/influxdb/rollup.flux) by the
# pulsewire-influxdb-tasks unit, which nixpkgs' module does not do.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pulsewire;
  icfg = cfg.influxdb;
  render = import ./lib/render.nix cfg;
  inherit (render.influxdb)
    org
    bucket
    retention_seconds
    username
    auths
    rollups
    ;
  secrets = import ./lib/secret-paths.nix cfg;
  inherit (import ./lib/hardening.nix) oneshot;

  credentials = "/run/credentials/influxdb2.service";
  # One credential per token of render.influxdb.auths, named like the auth.
  tokenCredentials = {
    pulsewire-uploader = secrets.influxUploaderToken;
    pulsewire-grafana = secrets.influxGrafanaToken;
  };

  # Asks InfluxDB with each token, by the header curl reads from a file (so no
  # token is on a command line), until the uploader's may write and Grafana's
  # may read the bucket.
  readyScript = pkgs.writeShellScript "pulsewire-influxdb-ready" ''
    set -euo pipefail
    url=${lib.escapeShellArg icfg.url}
    deadline=$((SECONDS + 600))

    # status TOKEN-NAME METHOD PATH: the HTTP status of one request with that token.
    status() {
      local header=$RUNTIME_DIRECTORY/$1.header
      printf 'Authorization: Token %s\n' "$(< "$CREDENTIALS_DIRECTORY/$1")" > "$header"
      curl -sS -o /dev/null -w '%{http_code}' -H @"$header" -X "$2" "$url$3" || true
    }

    write=${lib.escapeShellArg "/api/v2/write?org=${org}&bucket=${bucket}&precision=ns"}
    read=${lib.escapeShellArg "/api/v2/buckets?org=${org}&name=${bucket}"}
    until [ "$(status pulsewire-uploader POST "$write")" = 204 ] \
        && [ "$(status pulsewire-grafana GET "$read")" = 200 ]; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "pulsewire-influxdb-ready: the uploader's or Grafana's token still does not work at $url" >&2
        exit 1
      fi
      sleep 2
    done
    echo "InfluxDB accepts the uploader's and Grafana's tokens"
  '';
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
          inherit bucket username;
          retention = retention_seconds;
          # Read by systemd into the unit's credentials (admin-password, admin-token).
          passwordFile = secrets.influxAdminPassword;
          tokenFile = secrets.influxAdminToken;
        };
        # The module copies initialSetup.passwordFile here, and opens it as influxdb2.
        users.${username}.passwordFile = lib.mkForce "${credentials}/admin-password";
        organizations.${org} = {
          auths = lib.mapAttrs (name: auth: auth // { tokenFile = "${credentials}/${name}"; }) auths;
          buckets.${rollups.bucket} = {
            description = "Pulsewire rollups (batch layer)";
            retention = icfg.rollupRetention;
          };
        };
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ icfg.port ];

    systemd.services.influxdb2 = {
      after = [ "pulsewire-secrets.service" ];
      requires = [ "pulsewire-secrets.service" ];
      serviceConfig.LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") tokenCredentials;
    };

    systemd.services.pulsewire-influxdb-tasks = oneshot {
      description = "Pulsewire: create or update the InfluxDB rollup tasks (idempotent)";
      requires = [ "pulsewire-influxdb-ready.service" ];
      path = [
        pkgs.curl
        pkgs.jq
        pkgs.coreutils
      ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs [
          "${pkgs.bash}/bin/bash"
          "${../provisioning/influxdb/sync-tasks}"
          icfg.url
          org
          "%d/admin-token"
          (pkgs.writeText "pulsewire-influxdb-tasks.json" (builtins.toJSON rollups.tasks))
        ];
        LoadCredential = [ "admin-token:${secrets.influxAdminToken}" ];
      };
    };

    systemd.services.pulsewire-influxdb-ready = oneshot {
      description = "Pulsewire: wait until InfluxDB accepts the uploader's and Grafana's tokens";
      requires = [ "influxdb2.service" ];
      path = [ pkgs.curl ];
      serviceConfig = {
        ExecStart = readyScript;
        RuntimeDirectory = "pulsewire-influxdb-ready";
        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") tokenCredentials;
        TimeoutStartSec = "660s";
      };
    };
  };
}
