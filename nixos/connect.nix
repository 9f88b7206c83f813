# Kafka Connect in distributed mode (pulsewire-connect) with the
# FileStreamSource connector, registered idempotently by the
# pulsewire-connect-register oneshot. nixpkgs has no Connect module; the
# worker runs the distribution's connect-distributed.sh with properties
# rendered by ./lib/pulsewire.nix.
#
# The readings file (services.pulsewire.connect.file) lives in a directory
# owned by the static `pulsewire` user: the simulator (or any other writer)
# appends to it as that user, the worker reads it through the group.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pulsewire;
  ccfg = cfg.connect;
  kcfg = cfg.kafka;
  render = import ./lib/render.nix cfg;
  inherit (import ./lib/hardening.nix)
    jvm
    jvmMemoryOpts
    common
    scriptLimits
    ;
  kafka = kcfg.package;

  # Since Kafka 3.2 the file connectors are not on the worker's classpath;
  # plugin.path gets a directory holding just that jar.
  filePlugin = pkgs.runCommand "pulsewire-connect-file-plugin" { } ''
    mkdir -p $out
    ln -s ${kafka}/libs/connect-file-*.jar $out/
  '';

  workerProperties = pkgs.writeText "pulsewire-connect-worker.properties" (
    render.toProperties (render.connectWorkerSettings {
      pluginPath = "${filePlugin}";
      inherit (ccfg) cluster;
    } // ccfg.settings)
  );

  connectorJson = pkgs.writeText "pulsewire-connector.json" (render.connectorJson { file = ccfg.file; });

  restUrl = "http://${render.kafka.host}:${toString render.connect.rest_port}";

  # Where the register and watch scripts find this host's connector.
  connectorEnvironment = {
    CONNECT_URL = restUrl;
    CONNECTOR_NAME = (render.connectNames ccfg.cluster).connectorName;
  };

  log4jOpts = import ./lib/kafka-logging.nix {
    inherit lib pkgs kafka;
    loggers."org.reflections" = "ERROR";
  };

  readingsDir = builtins.dirOf ccfg.file;

  brokerDeps =
    map (id: "pulsewire-kafka-${toString id}.service") (lib.optionals kcfg.enable kcfg.localBrokers)
    ++ lib.optional kcfg.createTopics "pulsewire-kafka-topics.service";

  # The same script the local stack registers its connector with.
  registerScript = pkgs.writeShellScript "pulsewire-connect-register" (
    builtins.readFile ../provisioning/connect/register
  );
  # ... and watches it with.
  watchScript = pkgs.writeShellScript "pulsewire-connect-watch" (
    builtins.readFile ../provisioning/connect/watch
  );
in
{
  config = lib.mkMerge [
    (lib.mkIf (ccfg.enable || cfg.simulator.enable) {
      users.users.pulsewire = {
        isSystemUser = true;
        group = "pulsewire";
        description = "Pulsewire readings file owner";
      };
      users.groups.pulsewire = { };
      # The append-only readings file: written by `pulsewire`, read by the group.
      systemd.tmpfiles.rules = [ "d ${readingsDir} 0750 pulsewire pulsewire - -" ];
    })

    (lib.mkIf ccfg.enable {
      systemd.services.pulsewire-connect = {
        description = "Pulsewire Kafka Connect worker (distributed, FileStreamSource)";
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ] ++ brokerDeps;
        wants = [ "network-online.target" ] ++ brokerDeps;
        environment = {
          KAFKA_HEAP_OPTS = jvmMemoryOpts ccfg.heap;
          KAFKA_LOG4J_OPTS = log4jOpts;
          EXTRA_ARGS = "-name connectDistributed";
        };
        serviceConfig = jvm ccfg.heap // {
          ExecStart = "${kafka}/bin/connect-distributed.sh ${workerProperties}";
          # Reads the readings file through the group. PrivateUsers would hide
          # the supplementary group inside the user namespace.
          SupplementaryGroups = [ "pulsewire" ];
          PrivateUsers = false;
          Restart = "on-failure";
          RestartSec = "5s";
          SuccessExitStatus = "0 143";
          TimeoutStopSec = "60s";
        };
      };

      # For the operator (and the tests): the rendered worker and connector configuration.
      environment.etc."pulsewire/connect-worker.properties".source = workerProperties;
      environment.etc."pulsewire/connector.json".source = connectorJson;

      systemd.services.pulsewire-connect-register = {
        description = "Pulsewire: register the FileStreamSource connector (idempotent)";
        wantedBy = [ "multi-user.target" ];
        after = [ "pulsewire-connect.service" ];
        wants = [ "pulsewire-connect.service" ];
        path = [
          pkgs.curl
          pkgs.jq
          pkgs.coreutils
        ];
        environment = connectorEnvironment // {
          CONNECTOR_CONFIG = "${connectorJson}";
          REGISTER_TIMEOUT = "600";
        };
        serviceConfig = common // scriptLimits // {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = registerScript;
          TimeoutStartSec = "900s";
        };
      };

      # Every 30 s: report a FAILED connector task in the journal (with its
      # worker and trace) and restart it, at most 3 times an hour; report a
      # missing or paused connector (provisioning/connect/watch).
      systemd.services.pulsewire-connect-watch = {
        description = "Pulsewire: report and restart a failed Kafka Connect task";
        after = [ "pulsewire-connect-register.service" ];
        path = [
          pkgs.curl
          pkgs.jq
          pkgs.coreutils
        ];
        environment = connectorEnvironment;
        serviceConfig = common // scriptLimits // {
          Type = "oneshot";
          ExecStart = watchScript;
          # The restart times, kept across runs ($STATE_DIRECTORY).
          StateDirectory = "pulsewire-connect-watch";
          TimeoutStartSec = "60s";
        };
      };
      systemd.timers.pulsewire-connect-watch = {
        description = "Pulsewire: check the Kafka Connect connector every 30 s";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnActiveSec = "2min";
          OnUnitActiveSec = "30s";
        };
      };
    })
  ];
}
