# The four Pulsewire stages as systemd services:
#
#   pulsewire-simulator   appends CSV lines to the readings file Connect tails
#   pulsewire-aggregator  heartrate.raw -> heartrate.readings (+ heartrate.dlq)
#   pulsewire-processor   heartrate.readings -> heartrate.stats
#   pulsewire-uploader    heartrate.stats -> InfluxDB 2
#
# Each is Type=notify (READY once connected, WATCHDOG pings from its main
# loop), restarts on failure or watchdog timeout, runs under its own dynamic
# user in a tight sandbox, and logs to the journal. The command line,
# environment and stop timeout come from serviceCommand in ./lib/pulsewire.nix
# (which the local stack runs too); topic names, group ids and the other
# pipeline.toml facts the services read from PULSEWIRE_PIPELINE.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.pulsewire;
  kcfg = cfg.kafka;
  render = import ./lib/render.nix cfg;
  inherit (import ./lib/hardening.nix) native;
  secrets = import ./lib/secret-paths.nix cfg;

  # Local units a Kafka-facing stage waits for (none when brokers are remote).
  kafkaDeps =
    map (id: "pulsewire-kafka-${toString id}.service") (lib.optionals kcfg.enable kcfg.localBrokers)
    ++ lib.optional kcfg.createTopics "pulsewire-kafka-topics.service";

  stage =
    name:
    {
      description,
      deps ? [ ],
      serviceConfig ? { },
    }:
    let
      scfg = cfg.${name};
      # argv, environment and stop timeout: the same function the local stack runs.
      command = render.serviceCommand name {
        binDir = "${cfg.package}/bin";
        pipelinePath = "${cfg.pipelineFile}";
        readingsFile = cfg.connect.file;
        influxUrl = cfg.influxdb.url;
        # %d is this unit's credentials directory.
        influxTokenFile = "%d/influx-token";
        replayFile = if cfg.simulator.replayFile == null then null else "${cfg.simulator.replayFile}";
        inherit (scfg) metricsAddress logLevel extraArgs;
      };
    in
    lib.mkIf scfg.enable {
      "pulsewire-${name}" = {
        inherit description;
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ] ++ deps;
        wants = [ "network-online.target" ] ++ deps;
        environment = command.environment // scfg.environment;
        serviceConfig =
          native
          // {
            Type = "notify";
            NotifyAccess = "main";
            # The services ping from their main loop at half this interval.
            WatchdogSec = "30s";
            Restart = "on-failure";
            RestartSec = "5s";
            # A stage that refuses to run (state and offsets do not match, an
            # input offset is gone) exits with EX_CONFIG and says why; a
            # restart cannot help (EXIT_REFUSED, services/runtime/src/runner/integrity.rs).
            RestartPreventExitStatus = "78";
            TimeoutStopSec = "${toString command.stopTimeout}s";
            ExecStart = lib.escapeShellArgs command.argv;
          }
          // serviceConfig;
      };
    };
in
{
  config = lib.mkIf (lib.any (s: cfg.${s}.enable) [
    "simulator"
    "aggregator"
    "processor"
    "uploader"
  ]) {
    systemd.services = lib.mkMerge [
      (stage "simulator" {
        description = "Pulsewire sensor simulator (appends CSV readings)";
        serviceConfig = {
          # The readings file belongs to the static `pulsewire` user so that
          # Connect can read it through the group (see connect.nix).
          DynamicUser = false;
          User = "pulsewire";
          Group = "pulsewire";
          ReadWritePaths = [ (builtins.dirOf cfg.connect.file) ];
          UMask = "0027";
        }
        # It talks to nobody but a local metrics scraper.
        // lib.optionalAttrs (lib.hasPrefix "127." cfg.simulator.metricsAddress) {
          IPAddressAllow = [ "localhost" ];
          IPAddressDeny = [ "any" ];
        };
      })

      (stage "aggregator" {
        description = "Pulsewire aggregator (raw CSV lines -> typed readings, bad lines -> DLQ)";
        deps = kafkaDeps;
      })

      (stage "processor" {
        description = "Pulsewire processor (exact running statistics per sensor and kind)";
        deps = kafkaDeps;
      })

      (stage "uploader" {
        description = "Pulsewire uploader (statistics -> InfluxDB 2)";
        deps =
          kafkaDeps
          ++ [ "pulsewire-secrets.service" ]
          # Starts once InfluxDB accepts its token (influxdb.nix).
          ++ lib.optional cfg.influxdb.enable "pulsewire-influxdb-ready.service";
        serviceConfig.LoadCredential = [ "influx-token:${secrets.influxUploaderToken}" ];
      })
    ];
  };
}
