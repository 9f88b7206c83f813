# Kafka in KRaft mode: one systemd unit per local broker (pulsewire-kafka-<id>),
# combined broker+controller roles, a static quorum shared by every broker, and
# the pulsewire-kafka-topics oneshot that creates the pipeline topics.
#
# nixpkgs' services.apache-kafka runs exactly one broker per host under one
# fixed unit name, so the units are declared here, with the same java entry
# point (the distribution's kafka-server-start.sh) and the properties rendered
# by ./lib/pulsewire.nix from provisioning/pipeline.toml.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pulsewire;
  kcfg = cfg.kafka;
  render = import ./lib/render.nix cfg;
  kafka = kcfg.package;

  unitName = id: "pulsewire-kafka-${toString id}";
  stateDir = id: "/var/lib/${unitName id}";
  logDir = id: "${stateDir id}/data";

  # With kafka.security (./kafka-security.nix): every listener on mutual TLS,
  # the authorizer, this unit's credentials as key and trust stores.
  security = import ./lib/kafka-security.nix { pulsewire = render; };
  secure = kcfg.security.enable;

  propertiesFile =
    id:
    let
      args = {
        inherit id;
        logDir = logDir id;
      };
    in
    pkgs.writeText "${unitName id}.properties" (
      render.toProperties (
        (
          if secure then
            security.brokerSettings (args // { files = security.unitCredentialFiles (unitName id); })
          else
            render.brokerSettings args
        )
        // kcfg.settings
      )
    );

  # The topic oneshot's tools as the admin, when secured.
  adminArgs = lib.optionalString secure "--command-config ${pkgs.writeText "pulsewire-kafka-topics-admin.properties" (
    security.javaClientProperties (security.unitCredentialFiles "pulsewire-kafka-topics")
  )}";

  # Everything to stdout, so journald has it (`journalctl -u pulsewire-kafka-1`).
  log4jOpts = import ./lib/kafka-logging.nix { inherit lib pkgs kafka; };

  javaEnvironment = heap: {
    KAFKA_HEAP_OPTS = jvmMemoryOpts heap;
    KAFKA_LOG4J_OPTS = log4jOpts;
    # Without -loggc: no GC log files, journald has what matters.
    EXTRA_ARGS = "-name kafkaServer";
  };

  inherit (import ./lib/hardening.nix) jvm jvmMemoryOpts;

  # The topics oneshot's kafka-topics/kafka-configs JVMs.
  topicsHeap = "128m";

  localBrokerUnits = map (id: "${unitName id}.service") kcfg.localBrokers;

  brokerUnit = id: {
    name = unitName id;
    value = {
      description = "Pulsewire Kafka broker ${toString id} (KRaft broker+controller)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = javaEnvironment kcfg.heap;
      # Format the storage with the shared cluster id on the first start only:
      # meta.properties is what kafka-storage writes, and what a formatted
      # log dir must never lose.
      preStart = ''
        if [ ! -e ${logDir id}/meta.properties ]; then
          mkdir -p ${logDir id}
          ${kafka}/bin/kafka-storage.sh format \
            --cluster-id ${lib.escapeShellArg kcfg.clusterId} \
            --config ${propertiesFile id}
        fi
      '';
      serviceConfig = jvm kcfg.heap // {
        ExecStart = "${kafka}/bin/kafka-server-start.sh ${propertiesFile id}";
        StateDirectory = unitName id;
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        RestartSec = "5s";
        # The JVM exits 143 on SIGTERM after a clean shutdown.
        SuccessExitStatus = "0 143";
        TimeoutStopSec = "120s";
        LimitNOFILE = 65536;
      };
    };
  };

  topicScript = pkgs.writeShellScript "pulsewire-kafka-topics" ''
    set -euo pipefail
    bootstrap=${lib.escapeShellArg render.bootstrapServers}
    ${render.retryShell "pulsewire-kafka-topics"}

    ${lib.concatMapStrings (t: ''
      echo "topic ${t.name}: ensure present"
      retry ${kafka}/bin/kafka-topics.sh --bootstrap-server "$bootstrap" ${adminArgs} ${lib.escapeShellArgs (render.topicCreateArgs t)}
      echo "topic ${t.name}: apply configs"
      retry ${kafka}/bin/kafka-configs.sh --bootstrap-server "$bootstrap" ${adminArgs} ${lib.escapeShellArgs (render.topicAlterArgs t)}
    '') render.topics}
    echo "pulsewire-kafka-topics: all ${toString (builtins.length render.topics)} topics present"
  '';
in
{
  config = lib.mkIf kcfg.enable {
    assertions = [
      {
        assertion = lib.all (id: lib.any (b: b.id == id) kcfg.brokers) kcfg.localBrokers;
        message = "services.pulsewire.kafka.localBrokers names an id that is not in services.pulsewire.kafka.brokers.";
      }
      {
        assertion = lib.length (lib.unique (map (b: b.id) kcfg.brokers)) == lib.length kcfg.brokers;
        message = "services.pulsewire.kafka.brokers: node ids must be unique.";
      }
    ];

    systemd.services =
      lib.listToAttrs (map brokerUnit kcfg.localBrokers)
      // lib.optionalAttrs kcfg.createTopics {
        pulsewire-kafka-topics = {
          description = "Pulsewire: create the pipeline topics (idempotent)";
          wantedBy = [ "multi-user.target" ];
          after = localBrokerUnits;
          wants = localBrokerUnits;
          environment = {
            KAFKA_HEAP_OPTS = jvmMemoryOpts topicsHeap;
            KAFKA_LOG4J_OPTS = log4jOpts;
          };
          serviceConfig = jvm topicsHeap // {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = topicScript;
            TimeoutStartSec = "900s";
          };
        };
      };

    networking.firewall.allowedTCPPorts = lib.mkIf kcfg.openFirewall (
      lib.concatMap (
        b:
        lib.optionals (lib.elem b.id kcfg.localBrokers) [
          b.port
          b.controllerPort
        ]
      ) kcfg.brokers
    );

    environment.systemPackages = [ kafka ];
    # For the operator (and the tests): what each local broker runs with.
    environment.etc = lib.listToAttrs (
      map (id: {
        name = "pulsewire/kafka-${toString id}.properties";
        value.source = propertiesFile id;
      }) kcfg.localBrokers
    );
  };
}
