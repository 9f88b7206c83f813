# InfluxDB 2: nixpkgs' services.influxdb2 runs the server; Pulsewire sets it
# up itself, with provisioning/influxdb/setup (the script the local stack runs
# too): the org and bucket from pipeline.toml, the rollup bucket, the operator
# login, a write-only token for the uploader and a read-only one for Grafana.
#
# Not nixpkgs' provisioning: it passes the admin password and token as
# arguments (`influx setup --password/--token` on first boot, the token to its
# provisioning tool on every start), readable by any local user in
# /proc/<pid>/cmdline, and it sets up a server that already listens, so anyone
# who reaches it first could complete the setup. Here:
#
#   pulsewire-influxdb-setup (before influxdb2, at every boot) starts influxd on
#   the same data in a private network namespace that nothing else can reach,
#   runs the setup script with every secret in a file (request bodies and
#   headers, never argv), and stops it. InfluxDB's API cannot take a chosen
#   token, so the clients' tokens are InfluxDB's own: the job's root step
#   copies them into the secrets directory (0400 root), from where systemd
#   hands them to the uploader, Grafana and pulsewire-influxdb-ready.
#   influxdb2 then starts set up, without /debug/pprof and /metrics.
#   pulsewire-influxdb-ready waits until both tokens really work; the uploader
#   and Grafana start after it.
#
# The batch layer: the rollup tasks (rendered from provisioning/influxdb/
# rollup.flux) are synced by the pulsewire-influxdb-tasks unit.
#
# TLS (influxdb.tls): influxd serves https only with the operator's
# certificate and key, both outside the Nix store. They reach influxd by
# LoadCredential, not by giving the influxdb2 user the files: the key can
# stay root-only where the operator keeps it, systemd copies it for this
# unit alone into /run/credentials/influxdb2.service (no other unit or user
# can read it), and nothing has to chown the operator's files. The clients
# on this host (uploader, Grafana, the ready and tasks oneshots) get caFile
# the same way. The setup's private influxd stays plain HTTP: it is
# reachable from its own network namespace only.
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
  inherit (render.influxdb) org bucket rollups;
  secrets = import ./lib/secret-paths.nix cfg;
  inherit (import ./lib/hardening.nix) common oneshot limits;

  # influxd's own memory: its cache and index grow with the data kept
  # (pipeline.toml's 30 days of a few sensors is well under 1 GB); the
  # setup's private influxd holds an empty or small store for a few seconds.
  influxdLimits = limits {
    memoryMax = "2G";
    tasksMax = 512;
  };

  # The scripts and the api.bash they source, as one directory.
  scripts = ../provisioning/influxdb;

  # What the setup script sets up: the renderer's facts, with the retentions
  # of the options.
  facts = pkgs.writeText "pulsewire-influxdb.json" (
    builtins.toJSON (
      removeAttrs render.influxdb [ "rollups" ]
      // {
        retention_seconds = icfg.retention;
        rollups = removeAttrs rollups [ "tasks" ] // {
          retention_seconds = icfg.rollupRetention;
        };
      }
    )
  );

  # Where each client token ends up: one per render.influxdb.auths entry.
  tokenSecrets = {
    pulsewire-uploader = secrets.influxUploaderToken;
    pulsewire-grafana = secrets.influxGrafanaToken;
  };

  privateUrl = "http://127.0.0.1:${toString icfg.port}";

  tls = icfg.tls;
  # Where systemd puts influxdb2's credentials; influxd's settings name them
  # (its configuration file cannot expand $CREDENTIALS_DIRECTORY).
  influxdCredentials = "/run/credentials/influxdb2.service";
  # A oneshot `name` that talks to InfluxDB, with its CA as a credential
  # that its curl trusts (CURL_CA_BUNDLE: api.bash, the ready script).
  withCa =
    name: unit:
    if tls.caFile == null then
      unit
    else
      unit
      // {
        environment = unit.environment or { } // {
          CURL_CA_BUNDLE = "/run/credentials/${name}.service/influx-ca";
        };
        serviceConfig = unit.serviceConfig // {
          LoadCredential = unit.serviceConfig.LoadCredential ++ [ "influx-ca:${tls.caFile}" ];
        };
      };

  # The TLS files as options name them, for the checks below.
  tlsFiles = lib.filterAttrs (_: file: file != null) {
    inherit (tls) certFile keyFile caFile;
  };

  # As the influxdb2 user, in a network namespace of its own: influxd on the
  # store's data, set up through its API, then stopped.
  setupScript = pkgs.writeShellScript "pulsewire-influxdb-setup" ''
    set -euo pipefail
    # (--tls-cert= --tls-key=: plain HTTP here, whatever influxdb2's settings say.)
    influxd --bolt-path "$STATE_DIRECTORY/influxd.bolt" --engine-path "$STATE_DIRECTORY/engine" \
      --http-bind-address 127.0.0.1:${toString icfg.port} --tls-cert= --tls-key= \
      --reporting-disabled --log-level warn &
    influxd=$!
    trap 'kill "$influxd"; wait "$influxd" || true' EXIT
    deadline=$((SECONDS + 120))
    until curl -sf -o /dev/null ${privateUrl}/health; do
      if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$influxd" 2>/dev/null; then
        echo "pulsewire-influxdb-setup: influxd did not answer /health" >&2
        exit 1
      fi
      sleep 0.5
    done
    bash ${scripts}/setup ${privateUrl} "$PULSEWIRE_INFLUXDB_FACTS" \
      "$CREDENTIALS_DIRECTORY/admin-password" "$CREDENTIALS_DIRECTORY/admin-token" \
      "$RUNTIME_DIRECTORY/%s"
  '';

  # As root: the tokens InfluxDB made, into the root-only secrets directory.
  installTokens = pkgs.writeShellScript "pulsewire-influxdb-tokens" ''
    set -euo pipefail
    ${lib.concatStrings (
      lib.mapAttrsToList (name: path: ''
        install -m 0400 -o root -g root "$RUNTIME_DIRECTORY/${name}" ${lib.escapeShellArg path}
      '') tokenSecrets
    )}
  '';

  tokenCredentials = lib.mapAttrsToList (name: path: "${name}:${path}") tokenSecrets;

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
  config = lib.mkMerge [
    {
      # Wherever the options are set (also on a host whose uploader or Grafana
      # reaches another host's InfluxDB).
      assertions =
        lib.mapAttrsToList (name: file: {
          assertion = lib.hasPrefix "/" file && !lib.hasPrefix builtins.storeDir file;
          message = "services.pulsewire.influxdb.tls.${name} (${file}) must be an absolute path outside the Nix store, which is world-readable.";
        }) tlsFiles
        ++ [
          {
            assertion = tls.enable -> tls.certFile != null && tls.keyFile != null;
            message = "services.pulsewire.influxdb.tls.enable needs tls.certFile and tls.keyFile.";
          }
          {
            assertion = (tls.enable || tls.caFile != null) -> lib.hasPrefix "https://" icfg.url;
            message = "services.pulsewire.influxdb.url (${icfg.url}) must be https:// with tls.enable or tls.caFile.";
          }
        ];
    }
    (lib.mkIf icfg.enable {
      assertions = map (option: {
        assertion = cfg.secrets.${option} == null;
        message = "services.pulsewire.secrets.${option}: on the host that runs InfluxDB, InfluxDB makes this token at first boot (its API cannot take a chosen one) and pulsewire-influxdb-setup keeps it in ${cfg.secrets.directory}; copy it from there to the hosts that need it.";
      }) [ "influxUploaderTokenFile" "influxGrafanaTokenFile" ];

      services.influxdb2 = {
        enable = true;
        settings = {
          http-bind-address = "${icfg.address}:${toString icfg.port}";
          reporting-disabled = true;
          # Neither debugging nor internal metrics for whoever reaches the port.
          pprof-disabled = true;
          metrics-disabled = true;
        }
        // lib.optionalAttrs tls.enable {
          tls-cert = "${influxdCredentials}/tls-cert";
          tls-key = "${influxdCredentials}/tls-key";
        };
      };

      networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ icfg.port ];

      systemd.services.pulsewire-influxdb-setup = {
        description = "Pulsewire: set InfluxDB up, unreachable from outside (org, buckets, tokens)";
        wantedBy = [ "multi-user.target" ];
        before = [ "influxdb2.service" ];
        requiredBy = [ "influxdb2.service" ];
        after = [ "pulsewire-secrets.service" ];
        requires = [ "pulsewire-secrets.service" ];
        # influxd reads the same configuration as influxdb2's own unit.
        environment = removeAttrs config.systemd.services.influxdb2.environment [ "PATH" ] // {
          PULSEWIRE_INFLUXDB_FACTS = facts;
        };
        path = [
          config.services.influxdb2.package
          pkgs.bash
          pkgs.curl
          pkgs.jq
          pkgs.coreutils
        ];
        serviceConfig = common // influxdLimits // {
          Type = "oneshot";
          RemainAfterExit = true;
          DynamicUser = false;
          User = "influxdb2";
          Group = "influxdb2";
          StateDirectory = "influxdb2";
          RuntimeDirectory = "pulsewire-influxdb-setup";
          # Its own loopback only: nobody else can reach this influxd.
          PrivateNetwork = true;
          ExecStart = setupScript;
          ExecStartPost = "+${installTokens}";
          LoadCredential = [
            "admin-password:${secrets.influxAdminPassword}"
            "admin-token:${secrets.influxAdminToken}"
          ];
          TimeoutStartSec = "300s";
        };
      };

      # nixpkgs' unit has its own static user and a looser syscall filter
      # (@system-service); the rest of the common sandbox is added.
      systemd.services.influxdb2 = {
        after = [ "pulsewire-influxdb-setup.service" ];
        requires = [ "pulsewire-influxdb-setup.service" ];
        serviceConfig = removeAttrs common [ "DynamicUser" ] // influxdLimits // {
          SystemCallFilter = lib.mkForce common.SystemCallFilter;
          LoadCredential = lib.optionals tls.enable [
            "tls-cert:${tls.certFile}"
            "tls-key:${tls.keyFile}"
          ];
        };
      };

      systemd.services.pulsewire-influxdb-tasks = oneshot (withCa "pulsewire-influxdb-tasks" {
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
            "${scripts}/sync-tasks"
            icfg.url
            org
            "%d/admin-token"
            (pkgs.writeText "pulsewire-influxdb-tasks.json" (builtins.toJSON rollups.tasks))
          ];
          LoadCredential = [ "admin-token:${secrets.influxAdminToken}" ];
        };
      });

      systemd.services.pulsewire-influxdb-ready = oneshot (withCa "pulsewire-influxdb-ready" {
        description = "Pulsewire: wait until InfluxDB accepts the uploader's and Grafana's tokens";
        requires = [ "influxdb2.service" ];
        path = [ pkgs.curl ];
        serviceConfig = {
          ExecStart = readyScript;
          RuntimeDirectory = "pulsewire-influxdb-ready";
          LoadCredential = tokenCredentials;
          TimeoutStartSec = "660s";
        };
      });
    })
  ];
}
