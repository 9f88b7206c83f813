# The four Pulsewire stages as systemd services:
#
#   pulsewire-simulator   appends CSV lines to the readings file Connect tails
#   pulsewire-aggregator  heartrate.raw -> heartrate.readings (+ heartrate.dlq)
#   pulsewire-processor   heartrate.readings -> heartrate.stats
#   pulsewire-uploader    heartrate.stats -> InfluxDB 2
#
# The three consuming stages run `instances` units each (pulsewire-<stage>,
# then pulsewire-<stage>-2, ...), one consumer group per stage sharing the
# input's partitions; each instance is named <host name>-<N> (--instance: the
# aggregator's and processor's transactional.id ends with it) and serves
# metrics on a port of its own.
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
  inherit (import ./lib/hardening.nix) native limits;
  secrets = import ./lib/secret-paths.nix cfg;

  # Local units a Kafka-facing stage waits for (none when brokers are remote).
  kafkaDeps =
    map (id: "pulsewire-kafka-${toString id}.service") (lib.optionals kcfg.enable kcfg.localBrokers)
    ++ lib.optional kcfg.createTopics "pulsewire-kafka-topics.service";

  # Instance N of a consuming stage is unit render.unitName, named
  # render.instanceName <host> N; the simulator runs once.
  instances = name: if builtins.elem name render.scalableStages then cfg.${name}.instances else 1;

  stage =
    name:
    {
      description,
      deps ? [ ],
      serviceConfig ? { },
    }:
    let
      scfg = cfg.${name};
      unit = instance: {
        name = render.unitName name instance;
        value =
          let
            # argv, environment and stop timeout: the same function the local stack runs.
            command = render.serviceCommand name {
              binDir = "${cfg.package}/bin";
              pipelinePath = "${cfg.pipelineFile}";
              readingsFile = cfg.connect.file;
              influxUrl = cfg.influxdb.url;
              # %d is this unit's credentials directory.
              influxTokenFile = "%d/influx-token";
              # InfluxDB's CA (influxdb.tls.caFile), a credential like the token.
              influxCaFile = if cfg.influxdb.tls.caFile == null then null else "%d/influx-ca";
              replayFile = if cfg.simulator.replayFile == null then null else "${cfg.simulator.replayFile}";
              inherit (scfg) metricsAddress logLevel extraArgs;
              inherit instance;
              inherit (config.networking) hostName;
            };
          in
          {
            inherit description;
            wantedBy = [ "multi-user.target" ];
            after = [ "network-online.target" ] ++ deps;
            wants = [ "network-online.target" ] ++ deps;
            environment = command.environment // scfg.environment;
            serviceConfig =
              native
              // limits { inherit (scfg) memoryMax tasksMax; }
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
    lib.mkIf scfg.enable (builtins.listToAttrs (map unit (render.range 1 (instances name))));

  # Every enabled instance's metrics address, for the uniqueness assertion.
  metricsAddresses = lib.concatMap (
    name:
    lib.optionals cfg.${name}.enable (
      map (render.instanceAddress cfg.${name}.metricsAddress) (render.range 1 (instances name))
    )
  ) render.stages;
in
{
  config = lib.mkIf (lib.any (s: cfg.${s}.enable) [
    "simulator"
    "aggregator"
    "processor"
    "uploader"
  ]) {
    assertions = [
      {
        assertion = lib.allUnique metricsAddresses;
        message = "services.pulsewire: two stage instances would serve metrics on one address (${lib.concatStringsSep ", " metricsAddresses}); instance N listens on its stage's metricsAddress port + ${toString render.instancePortStride} × (N - 1)";
      }
      {
        assertion = config.networking.hostName != "";
        message = "services.pulsewire: networking.hostName is empty; the stages' instance names (and transactional ids) and Connect's cluster are derived from it, so set it, unique per host";
      }
    ];

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
        serviceConfig.LoadCredential = [
          "influx-token:${secrets.influxUploaderToken}"
        ]
        ++ lib.optional (cfg.influxdb.tls.caFile != null) "influx-ca:${cfg.influxdb.tls.caFile}";
      })
    ];
  };
}
