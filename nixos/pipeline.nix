# The four Pulsewire stages as systemd services:
#
#   pulsewire-simulator   appends CSV lines to the readings file Connect tails
#   pulsewire-aggregator  heartrate.raw -> heartrate.readings (+ heartrate.dlq)
#   pulsewire-processor   heartrate.readings -> heartrate.stats
#   pulsewire-uploader    heartrate.stats -> InfluxDB 2
#
# Each is Type=notify (READY once connected, WATCHDOG pings from its main
# loop), restarts on failure or watchdog timeout, runs under its own dynamic
# user in a tight sandbox, and logs to the journal. Topic names, group ids and
# the other pipeline.toml facts are the binaries' own defaults.
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.pulsewire;
  kcfg = cfg.kafka;
  render = import ./lib/pulsewire.nix {
    pipelineFile = cfg.pipelineFile;
    brokerList = kcfg.brokers;
  };
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
      args ? [ ],
      deps ? [ ],
      environment ? { },
      serviceConfig ? { },
    }:
    let
      scfg = cfg.${name};
    in
    lib.mkIf scfg.enable {
      "pulsewire-${name}" = {
        inherit description;
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ] ++ deps;
        wants = [ "network-online.target" ] ++ deps;
        environment = {
          PULSEWIRE_BOOTSTRAP_SERVERS = render.bootstrapServers;
          PULSEWIRE_LOG_LEVEL = scfg.logLevel;
        }
        // environment
        // scfg.environment;
        serviceConfig =
          native
          // {
            Type = "notify";
            NotifyAccess = "main";
            # The services ping from their main loop at half this interval.
            WatchdogSec = "30s";
            Restart = "on-failure";
            RestartSec = "5s";
            # SIGTERM drains, flushes and commits before exiting 0.
            TimeoutStopSec = "60s";
            ExecStart = lib.escapeShellArgs (
              [
                "${cfg.package}/bin/pulsewire-${name}"
                "--metrics-addr"
                scfg.metricsAddress
              ]
              ++ args
              ++ scfg.extraArgs
            );
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
        args = [
          "--output"
          cfg.connect.file
        ]
        ++ lib.optionals (cfg.simulator.replayFile != null) [
          "--replay"
          "${cfg.simulator.replayFile}"
        ];
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
        args = [
          "--influx-url"
          cfg.influxdb.url
          # %d is this unit's credentials directory.
          "--influx-token-file"
          "%d/influx-token"
        ];
        serviceConfig.LoadCredential = [ "influx-token:${secrets.influxUploaderToken}" ];
      })
    ];
  };
}
