# First-boot secrets: the pulsewire-secrets oneshot creates every secret the
# operator did not supply (services.pulsewire.secrets.*File) as a random value
# in services.pulsewire.secrets.directory: never in the Nix store, never
# admin/admin. It runs before InfluxDB, Grafana and the uploader.
#
# Every secret file, generated or supplied, may be root-only (0400 root:root,
# in a 0700 root directory): no service opens one itself. systemd reads each
# (as root) into the consuming unit's credentials (LoadCredential), where only
# that unit's user can read it: /run/credentials/<unit>/<name>. That includes
# the InfluxDB setup, which runs as the influxdb2 user and makes the clients'
# tokens itself (see influxdb.nix). services.pulsewire.secrets.files records owner and mode of
# each file for tests/nix/secrets.nix, which proves every opener can read it.
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
  hardening = import ./lib/hardening.nix;

  # Every secret this host needs: the option that may supply it and its file.
  wanted =
    lib.optionals cfg.influxdb.enable [
      {
        option = "influxAdminPasswordFile";
        path = paths.influxAdminPassword;
      }
      {
        option = "influxAdminTokenFile";
        path = paths.influxAdminToken;
      }
    ]
    # With InfluxDB on this host, InfluxDB makes the clients' tokens
    # (pulsewire-influxdb-setup, influxdb.nix); elsewhere the operator's file
    # names the token of the InfluxDB host.
    ++ lib.optional (cfg.influxdb.enable || cfg.uploader.enable) {
      option = "influxUploaderTokenFile";
      path = paths.influxUploaderToken;
      madeByInfluxdb = cfg.influxdb.enable;
    }
    ++ lib.optional (cfg.influxdb.enable || cfg.grafana.enable) {
      option = "influxGrafanaTokenFile";
      path = paths.influxGrafanaToken;
      madeByInfluxdb = cfg.influxdb.enable;
    }
    ++ lib.optionals cfg.grafana.enable [
      {
        option = "grafanaAdminPasswordFile";
        path = paths.grafanaAdminPassword;
      }
      {
        option = "grafanaSecretKeyFile";
        path = paths.grafanaSecretKey;
      }
    ]
    ++ lib.optional cfg.connect.enable {
      option = "connectRestPasswordFile";
      path = paths.connectRestPassword;
    };

  generated = lib.filter (s: scfg.${s.option} == null && !(s.madeByInfluxdb or false)) wanted;

  # The generated files and their directory, as the script below leaves them.
  # An operator's file is taken to be as strict (root-only); nothing needs more.
  rootOnly = path: mode: {
    inherit path mode;
    owner = "root";
    group = "root";
  };
  files = [ (rootOnly scfg.directory "0700") ] ++ map (s: rootOnly s.path "0400") wanted;

  consumers =
    lib.optionals cfg.influxdb.enable [
      "pulsewire-influxdb-setup.service"
      "influxdb2.service"
    ]
    ++ lib.optional cfg.grafana.enable "grafana.service"
    ++ lib.optional cfg.uploader.enable "pulsewire-uploader.service"
    ++ lib.optionals cfg.connect.enable [
      "pulsewire-connect.service"
      "pulsewire-connect-register.service"
      "pulsewire-connect-watch.service"
    ];

  script = pkgs.writeShellScript "pulsewire-secrets" ''
    set -euo pipefail
    umask 0077
    dir=${lib.escapeShellArg scfg.directory}
    mkdir -p "$dir"
    chown root:root "$dir"
    chmod 0700 "$dir"

    # 30 random bytes -> 40 URL-safe characters.
    generate() {
      local file=$1
      if [ ! -s "$file" ]; then
        head -c 30 /dev/urandom | base64 -w0 | tr '+/' '-_' > "$file.tmp"
        mv "$file.tmp" "$file"
        echo "generated $file"
      fi
      chown root:root "$file"
      chmod 0400 "$file"
    }

    ${lib.concatMapStrings (s: ''
      generate ${lib.escapeShellArg s.path}
    '') generated}
  '';
in
{
  config = lib.mkIf (wanted != [ ]) {
    services.pulsewire.secrets.files = files;

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
      serviceConfig = hardening.root // hardening.scriptLimits // {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = script;
        # The parent, because the directory itself may not exist yet.
        ReadWritePaths = [ (builtins.dirOf scfg.directory) ];
      };
    };
  };
}
