# First-boot secrets: the pulsewire-secrets oneshot creates every secret the
# operator did not supply (services.pulsewire.secrets.*File) as a random value
# in services.pulsewire.secrets.directory, owned by root, never in the Nix
# store, never admin/admin. It runs before InfluxDB, Grafana and the uploader;
# those receive the values through systemd LoadCredential.
#
# The one exception to "root only": the InfluxDB module's preStart (running as
# the influxdb2 user) reads the uploader and Grafana token files to write them
# into its database, so those two are group-readable by influxdb2 and the
# directory is traversable (not listable) by that group.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pulsewire;
  scfg = cfg.secrets;
  paths = import ./lib/secret-paths.nix cfg;

  # The InfluxDB module reads provisioned token files as its own user.
  influxGroup = if cfg.influxdb.enable then "influxdb2" else null;

  # Every secret this host needs: option, file, group that may read it (or null).
  wanted =
    lib.optionals cfg.influxdb.enable [
      {
        option = "influxAdminPasswordFile";
        path = paths.influxAdminPassword;
        group = null;
      }
      {
        option = "influxAdminTokenFile";
        path = paths.influxAdminToken;
        group = null;
      }
    ]
    ++ lib.optional (cfg.influxdb.enable || cfg.uploader.enable) {
      option = "influxUploaderTokenFile";
      path = paths.influxUploaderToken;
      group = influxGroup;
    }
    ++ lib.optional (cfg.influxdb.enable || cfg.grafana.enable) {
      option = "influxGrafanaTokenFile";
      path = paths.influxGrafanaToken;
      group = influxGroup;
    }
    ++ lib.optionals cfg.grafana.enable [
      {
        option = "grafanaAdminPasswordFile";
        path = paths.grafanaAdminPassword;
        group = null;
      }
      {
        option = "grafanaSecretKeyFile";
        path = paths.grafanaSecretKey;
        group = null;
      }
    ];

  generated = lib.filter (s: scfg.${s.option} == null) wanted;

  consumers =
    lib.optional cfg.influxdb.enable "influxdb2.service"
    ++ lib.optional cfg.grafana.enable "grafana.service"
    ++ lib.optional cfg.uploader.enable "pulsewire-uploader.service";

  script = pkgs.writeShellScript "pulsewire-secrets" ''
    set -euo pipefail
    umask 0077
    dir=${lib.escapeShellArg scfg.directory}
    mkdir -p "$dir"
    chown root:${if cfg.influxdb.enable then "influxdb2" else "root"} "$dir"
    chmod ${if cfg.influxdb.enable then "0710" else "0700"} "$dir"

    # 30 random bytes -> 40 URL-safe characters.
    generate() {
      local file=$1 group=$2
      if [ ! -s "$file" ]; then
        head -c 30 /dev/urandom | base64 -w0 | tr '+/' '-_' > "$file.tmp"
        mv "$file.tmp" "$file"
        echo "generated $file"
      fi
      chown "root:$group" "$file"
      if [ "$group" = root ]; then chmod 0400 "$file"; else chmod 0440 "$file"; fi
    }

    ${lib.concatMapStrings (s: ''
      generate ${lib.escapeShellArg s.path} ${if s.group == null then "root" else s.group}
    '') generated}
  '';
in
{
  config = lib.mkIf (wanted != [ ]) {
    assertions = map (s: {
      assertion = scfg.${s.option} == null || !(lib.hasPrefix builtins.storeDir (toString scfg.${s.option}));
      message = "services.pulsewire.secrets.${s.option} points into the Nix store, which is world-readable.";
    }) wanted;

    systemd.services.pulsewire-secrets = {
      description = "Pulsewire: generate missing secrets (first boot)";
      wantedBy = [ "multi-user.target" ];
      before = consumers;
      requiredBy = consumers;
      path = [ pkgs.coreutils ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = script;
        PrivateNetwork = true;
        ProtectHome = true;
        ProtectSystem = "strict";
        # The parent, because the directory itself may not exist yet.
        ReadWritePaths = [ (builtins.dirOf scfg.directory) ];
      };
    };
  };
}
