# Pure renderers for Pulsewire's Kafka side: broker server.properties, the topic
# list, the Connect worker properties and the FileStreamSource connector config.
#
# Everything is derived from provisioning/pipeline.toml with `builtins` only (no
# nixpkgs), so the NixOS modules, the local test stack (tests/local/) and the
# tests under tests/nix/ evaluate exactly the same values:
#
#   nix-instantiate --eval --strict -E \
#     '(import ./nixos/lib/pulsewire.nix { }).bootstrapServers'
#
# Every property value is a string; `toProperties` renders an attrset to the
# text of a .properties file. `serviceCommand` gives each stage service's
# command (argv, environment, stop timeout): nixos/pipeline.nix turns it into a
# unit, the local stack and bench/cluster execute it.
{
  pipelineFile ? ../../provisioning/pipeline.toml,
  # Optional override of the broker list, for brokers spread over several
  # hosts: [ { id = 1; host = "10.0.0.1"; port = 9092; controllerPort = 9093; } ... ].
  # null derives the list from [kafka] in pipeline.toml (all on one host).
  brokerList ? null,
  # Optional already-parsed pipeline (an attrset shaped like pipeline.toml),
  # used instead of pipelineFile; tests use it to render variants.
  pipelineData ? null,
  # Added to every port of the pipeline (brokers, controllers, Connect, store,
  # Grafana, metrics): a second stack on the same host (bench/cluster) uses 10000.
  portOffset ? 0,
}:
rec {
  declared =
    if pipelineData != null then pipelineData else builtins.fromTOML (builtins.readFile pipelineFile);

  shift = t: name: t // { ${name} = t.${name} + portOffset; };

  pipeline =
    if portOffset == 0 then
      declared
    else
      declared
      // {
        kafka = shift declared.kafka "plaintext_port_base";
        connect = shift declared.connect "rest_port";
        influxdb = shift declared.influxdb "port";
        grafana = shift declared.grafana "port";
        services = builtins.mapAttrs (_: s: shift s "metrics_port") declared.services;
      }
      // (
        if declared ? prometheus then
          {
            prometheus = shift (shift (shift declared.prometheus "port") "connect_jmx_port") "broker_jmx_port_base";
          }
        else
          { }
      );

  kafka = pipeline.kafka;

  clusterId = kafka.cluster_id;

  range = first: last: if first > last then [ ] else builtins.genList (i: first + i) (last - first + 1);

  min = a: b: if a < b then a else b;

  # Broker N (1-based) listens on plaintext_port_base + 2*(N-1), its controller on +1.
  brokers =
    if brokerList != null then
      brokerList
    else
      map (id: rec {
        inherit id;
        host = kafka.host;
        port = kafka.plaintext_port_base + 2 * (id - 1);
        controllerPort = port + 1;
      }) (range 1 kafka.brokers);

  brokerCount = builtins.length brokers;

  brokerById =
    id:
    let
      found = builtins.filter (b: b.id == id) brokers;
    in
    if found == [ ] then throw "pulsewire: no broker with id ${toString id}" else builtins.head found;

  hostPort = host: port: "${host}:${toString port}";

  bootstrapServers = builtins.concatStringsSep "," (map (b: hostPort b.host b.port) brokers);

  # Static KRaft quorum: the same string on every broker.
  controllerQuorumVoters = builtins.concatStringsSep "," (
    map (b: "${toString b.id}@${hostPort b.host b.controllerPort}") brokers
  );

  # Replication never asks for more replicas than there are brokers, so a
  # one-broker development host still works; the appliance has three.
  replicationFactor = min kafka.topic_defaults.replication_factor brokerCount;
  minInsyncReplicas = min kafka.topic_defaults.min_insync_replicas replicationFactor;

  brokerSettings =
    { id, logDir }:
    let
      b = brokerById id;
    in
    {
      "node.id" = toString b.id;
      "process.roles" = "broker,controller";
      "listeners" = "PLAINTEXT://${hostPort b.host b.port},CONTROLLER://${hostPort b.host b.controllerPort}";
      "advertised.listeners" = "PLAINTEXT://${hostPort b.host b.port}";
      "listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT";
      "controller.listener.names" = "CONTROLLER";
      "inter.broker.listener.name" = "PLAINTEXT";
      "controller.quorum.voters" = controllerQuorumVoters;
      "log.dirs" = logDir;
      "num.partitions" = toString kafka.topic_defaults.partitions;
      "default.replication.factor" = toString replicationFactor;
      "min.insync.replicas" = toString minInsyncReplicas;
      "offsets.topic.replication.factor" = toString replicationFactor;
      "transaction.state.log.replication.factor" = toString replicationFactor;
      "transaction.state.log.min.isr" = toString minInsyncReplicas;
      "auto.create.topics.enable" = "false";
      "unclean.leader.election.enable" = "false";
      "group.initial.rebalance.delay.ms" = "0";
    };

  # Java .properties text: keys sorted (attrNames is sorted), one key=value per line.
  escapeProperty = builtins.replaceStrings [ "\\" "\n" ] [ "\\\\" "\\n" ];
  toProperties =
    attrs:
    builtins.concatStringsSep "" (
      map (k: "${k}=${escapeProperty (toString attrs.${k})}\n") (builtins.attrNames attrs)
    );

  brokerProperties = args: toProperties (brokerSettings args);

  # Every [topics.*] table with [kafka.topic_defaults] applied, sorted by table key.
  topics = map (
    key:
    let
      t = kafka.topic_defaults // pipeline.topics.${key};
    in
    {
      inherit key;
      name = t.name;
      partitions = t.partitions;
      replicationFactor = min t.replication_factor brokerCount;
      configs = {
        "min.insync.replicas" = toString (min t.min_insync_replicas (min t.replication_factor brokerCount));
        "cleanup.policy" = t.cleanup_policy;
        "retention.ms" = toString t.retention_ms;
      }
      # Any further topic-level Kafka settings the table spells out.
      // (t.configs or { });
    }
  ) (builtins.attrNames pipeline.topics);

  topicByKey =
    key:
    builtins.head (builtins.filter (t: t.key == key) topics);

  # Arguments for `kafka-topics.sh --create --if-not-exists` for one topic.
  topicCreateArgs =
    t:
    [
      "--create"
      "--if-not-exists"
      "--topic"
      t.name
      "--partitions"
      (toString t.partitions)
      "--replication-factor"
      (toString t.replicationFactor)
    ]
    ++ builtins.concatLists (map (k: [ "--config" "${k}=${t.configs.${k}}" ]) (builtins.attrNames t.configs));

  # Arguments for `kafka-configs.sh --alter` that set the declared configs of an
  # existing topic (idempotent): --if-not-exists leaves an upgraded appliance's
  # topics with the configs they were created with.
  topicAlterArgs = t: [
    "--entity-type"
    "topics"
    "--entity-name"
    t.name
    "--alter"
    "--add-config"
    (builtins.concatStringsSep "," (map (k: "${k}=${t.configs.${k}}") (builtins.attrNames t.configs)))
  ];

  connect = pipeline.connect;

  # The names of one Connect cluster. The FileStreamSource reads a file local
  # to its worker's host (tasks.max = 1), so every host that runs Connect is a
  # cluster of its own: with `cluster` (the NixOS modules pass the host name
  # when the brokers span hosts) its group, storage topics and connector are
  # suffixed with it, and no other host's worker can join that group and be
  # handed the file's task. null keeps pipeline.toml's names (one host with
  # every broker, and the local stack).
  connectNames =
    cluster:
    let
      suffix = if cluster == null then "" else "-${cluster}";
    in
    {
      groupId = connect.group_id + suffix;
      configTopic = connect.config_topic + suffix;
      offsetTopic = connect.offset_topic + suffix;
      statusTopic = connect.status_topic + suffix;
      connectorName = connect.connector_name + suffix;
    };

  connectWorkerSettings =
    {
      pluginPath,
      cluster ? null,
    }:
    let
      names = connectNames cluster;
    in
    {
      "bootstrap.servers" = bootstrapServers;
      "group.id" = names.groupId;
      "listeners" = "HTTP://${hostPort kafka.host connect.rest_port}";
      "rest.advertised.host.name" = kafka.host;
      "rest.advertised.port" = toString connect.rest_port;
      "plugin.path" = pluginPath;
      # One CSV line in, the same bytes out: no schema envelope.
      "key.converter" = "org.apache.kafka.connect.storage.StringConverter";
      "value.converter" = "org.apache.kafka.connect.storage.StringConverter";
      # KIP-618: source tasks write records and their file offsets in one transaction.
      "exactly.once.source.support" = "enabled";
      # Any line the raw topic takes, the producer sends (pipeline.toml [topics.raw]).
      "producer.max.request.size" = (topicByKey "raw").configs."max.message.bytes";
      "config.storage.topic" = names.configTopic;
      "config.storage.replication.factor" = toString replicationFactor;
      "offset.storage.topic" = names.offsetTopic;
      "offset.storage.replication.factor" = toString replicationFactor;
      "offset.storage.partitions" = "3";
      "status.storage.topic" = names.statusTopic;
      "status.storage.replication.factor" = toString replicationFactor;
      "status.storage.partitions" = "3";
      "offset.flush.interval.ms" = "1000";
      # The REST API asks for basic auth (connectRestAuth below); the internal task
      # requests between workers are exempt and signed with the session key instead.
      "rest.extension.classes" = "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension";
    };

  connectWorkerProperties = args: toProperties (connectWorkerSettings args);

  connectorName = (connectNames null).connectorName;

  # Connect's REST login: one user whose password is the generated secret
  # connect-rest-password. The worker's PropertyFileLoginModule reads a
  # properties file `<user>=<password>` (written from the secret where the
  # worker starts) named by the JAAS file `jaas` renders. Beware: that module
  # lets everyone in when the file holds no user at all.
  connectRestAuth = {
    user = "pulsewire";
    jaas = usersFile: ''
      KafkaConnect {
        org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required
        file="${usersFile}";
      };
    '';
  };

  # Body of PUT /connectors/<connectorName>/config.
  connectorConfig =
    { file }:
    {
      "connector.class" = "org.apache.kafka.connect.file.FileStreamSourceConnector";
      "tasks.max" = "1";
      "file" = file;
      "topic" = (topicByKey "raw").name;
      # Refuse to start unless the connector really is exactly-once (KIP-618).
      "exactly.once.support" = "required";
      "key.converter" = "org.apache.kafka.connect.storage.StringConverter";
      "value.converter" = "org.apache.kafka.connect.storage.StringConverter";
    };

  connectorJson = args: builtins.toJSON (connectorConfig args);

  # The Kafka admin oneshots' (topics, ACLs) bash function `retry CMD...`: runs
  # CMD every 3 s until it succeeds; right after boot fewer than three brokers
  # may be registered and an RF 3 create is refused. Gives up, naming `unit`
  # and the command, 600 s after the script started.
  retryShell = unit: ''
    deadline=$((SECONDS + 600))
    retry() {
      until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
          echo "${unit}: giving up on: $*" >&2
          exit 1
        fi
        sleep 3
      done
    }
  '';

  # InfluxDB 2 as the pipeline sets it up: org, bucket and retention from
  # pipeline.toml, the operator's login, and one token per client with only the
  # access it needs (the uploader writes, Grafana reads). The NixOS module hands
  # this to services.influxdb2.provision (nixos/influxdb.nix), the local stack to
  # InfluxDB's setup and authorization API (tests/local/).
  influxdb = {
    inherit (pipeline.influxdb)
      port
      org
      bucket
      retention_seconds
      ;
    username = "admin";
    auths = {
      pulsewire-uploader = {
        description = "Pulsewire uploader: writes readings and statistics";
        readBuckets = [ ];
        writeBuckets = [ pipeline.influxdb.bucket ];
      };
      pulsewire-grafana = {
        description = "Grafana: reads the Pulsewire buckets";
        readBuckets = [
          pipeline.influxdb.bucket
          rollups.bucket
        ];
        writeBuckets = [ ];
      };
    };
    inherit rollups;
  };

  # The batch layer: the rollup bucket and one InfluxDB task per window length,
  # rendered from provisioning/influxdb/rollup.flux. Created idempotently by
  # provisioning/influxdb/sync-tasks (a unit on the appliance, the local stack).
  rollups = pipeline.influxdb.rollups // {
    tasks = map (every: rec {
      name = "pulsewire-rollup-${every}";
      flux =
        builtins.replaceStrings
          [ "@NAME@" "@EVERY@" "@LATENESS@" "@RAW_BUCKET@" "@ROLLUP_BUCKET@" "@ORG@" ]
          [
            name
            every
            pipeline.influxdb.rollups.lateness
            pipeline.influxdb.bucket
            pipeline.influxdb.rollups.bucket
            pipeline.influxdb.org
          ]
          (builtins.readFile ../../provisioning/influxdb/rollup.flux);
    }) pipeline.influxdb.rollups.windows;
  };

  # The targets file of the operator CLI, pulsewire-ctl (services/ctl/src/targets.rs):
  # where this host's pipeline runs. The NixOS module installs it as
  # /etc/pulsewire/ctl-targets.json, the local stack writes its own. It names
  # the file holding Connect's REST password, never the password.
  ctlTargets =
    {
      pipelinePath,
      connectPasswordFile,
      readingsFile ? connect.file,
      connectorName ? (connectNames null).connectorName,
      # Per consuming stage: how many instances run, and instance 1's metrics address.
      instances ? { },
      metricsAddresses ? { },
    }:
    {
      pipeline = pipelinePath;
      bootstrap_servers = bootstrapServers;
      readings_file = readingsFile;
      connect = {
        url = "http://${kafka.host}:${toString connect.rest_port}";
        inherit (connectRestAuth) user;
        password_file = connectPasswordFile;
        connector = connectorName;
      };
      metrics = builtins.listToAttrs (
        map (stage: {
          name = stage;
          value = map (instanceAddress (
            metricsAddresses.${stage} or "127.0.0.1:${toString pipeline.services.${stage}.metrics_port}"
          )) (range 1 (instances.${stage} or 1));
        }) scalableStages
      );
    };

  # Every TCP port the appliance listens on, for uniqueness checks and firewalls.
  servicePorts = {
    connect = connect.rest_port;
    influxdb = pipeline.influxdb.port;
    grafana = pipeline.grafana.port;
  }
  // builtins.listToAttrs (
    map (s: {
      name = "${s}-metrics";
      value = pipeline.services.${s}.metrics_port;
    }) (builtins.attrNames pipeline.services)
  );

  allPorts =
    builtins.concatLists (
      map (b: [
        b.port
        b.controllerPort
      ]) brokers
    )
    ++ builtins.attrValues servicePorts;

  # InfluxDB's URL on the host that runs it: https when it serves TLS
  # (services.pulsewire.influxdb.tls, the local stack's --store-tls).
  influxdbUrl =
    {
      tls ? false,
    }:
    "${if tls then "https" else "http"}://${kafka.host}:${toString pipeline.influxdb.port}";

  # One stage service's command, for the unit (nixos/pipeline.nix) and the
  # local stack (tests/local/) alike. Only paths differ between the two: the
  # binary directory, the readings file, the uploader's token FILE (never the
  # token: secrets stay out of argv and the environment) and the pipeline file
  # the services read (PULSEWIRE_PIPELINE).
  serviceCommand =
    stage:
    {
      binDir,
      pipelinePath,
      readingsFile ? connect.file,
      # The CA the uploader trusts for an https influxUrl (a file outside the
      # store); with it the default URL is https.
      influxCaFile ? null,
      influxUrl ? influxdbUrl { tls = influxCaFile != null; },
      influxTokenFile ? null,
      replayFile ? null,
      # The address of instance 1; instance N's port is derived (instanceAddress).
      metricsAddress ? "127.0.0.1:${toString pipeline.services.${stage}.metrics_port}",
      logLevel ? "info",
      extraArgs ? [ ],
      # Which instance of the stage (1-based) and the host it runs on: its
      # instance name, transactional.id and metrics port follow from them.
      instance ? 1,
      hostName ? "localhost",
    }:
    let
      transactional = builtins.elem stage transactionalStages;
      stageArgs = {
        simulator = [
          "--output"
          readingsFile
        ]
        ++ (if replayFile == null then [ ] else [ "--replay" replayFile ]);
        aggregator = [ ];
        processor = [ ];
        uploader =
          if influxTokenFile == null then
            throw "pulsewire: the uploader needs influxTokenFile"
          else
            [
              "--influx-url"
              influxUrl
              "--influx-token-file"
              influxTokenFile
            ]
            ++ (if influxCaFile == null then [ ] else [ "--influx-ca-file" influxCaFile ]);
      };
    in
    {
      argv = [
        "${binDir}/pulsewire-${stage}"
        "--metrics-addr"
        (instanceAddress metricsAddress instance)
      ]
      ++ (
        if transactional then
          [
            "--instance"
            (instanceName hostName instance)
          ]
        else
          [ ]
      )
      ++ stageArgs.${stage}
      ++ extraArgs;
      environment = {
        PULSEWIRE_BOOTSTRAP_SERVERS = bootstrapServers;
        PULSEWIRE_LOG_LEVEL = logLevel;
        PULSEWIRE_PIPELINE = pipelinePath;
      };
      # SIGTERM drains, flushes and commits before exiting 0 within this (seconds).
      stopTimeout = 60;
    };

  stages = [
    "simulator"
    "aggregator"
    "processor"
    "uploader"
  ];

  # The stages that consume in a group and so may run as several instances
  # sharing the input's partitions; the simulator writes the one file.
  scalableStages = [
    "aggregator"
    "processor"
    "uploader"
  ];

  # The stages that commit Kafka transactions: each instance needs its own
  # transactional.id, `<prefix>-<instance name>` (--instance).
  transactionalStages = [
    "aggregator"
    "processor"
  ];

  # Instance N of a stage on a host: `<host>-<N>`, unique over hosts and
  # instances, and stable across restarts (a restart fences its own zombie).
  instanceName = host: n: "${host}-${toString n}";

  # Instance N's unit: instance 1 keeps the stage's name.
  unitName = stage: n: if n == 1 then "pulsewire-${stage}" else "pulsewire-${stage}-${toString n}";

  # Instance N's metrics port: instance 1's plus (N-1) * instancePortStride,
  # a stride past every other port of the pipeline's metrics range.
  instancePortStride = 100;
  instancePort = stage: n: pipeline.services.${stage}.metrics_port + instancePortStride * (n - 1);
  instanceAddress =
    address: n:
    let
      parts = builtins.match "(.*):([0-9]+)" address;
    in
    if parts == null then
      throw "pulsewire: metrics address `${address}` is not host:port"
    else
      "${builtins.elemAt parts 0}:${
        toString (builtins.fromJSON (builtins.elemAt parts 1) + instancePortStride * (n - 1))
      }";
}
