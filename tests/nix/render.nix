# Checks on the renders of nixos/lib/pulsewire.nix from provisioning/pipeline.toml.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/render.nix { }'   (=> true)
# Builtins only: takes (and ignores) the lib the other checks take.
{ ... }:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  p = import ../../nixos/lib/pulsewire.nix { };

  ids = map (b: b.id) p.brokers;
  settings = map (id: p.brokerSettings {
    inherit id;
    logDir = "/var/lib/pulsewire-kafka-${toString id}";
  }) ids;
  listenerPorts =
    s:
    map (l: builtins.elemAt (builtins.match ".*:([0-9]+)" l) 0) (
      builtins.filter builtins.isString (builtins.split "," s.listeners)
    );
  worker = p.connectWorkerSettings { pluginPath = "/nix/store/x-apache-kafka/libs/connect-file-4.1.1.jar"; };
  connector = p.connectorConfig { file = p.pipeline.connect.file; };
  topicNamed = n: builtins.head (builtins.filter (t: t.name == n) p.topics);
  rawName = p.pipeline.topics.raw.name;
  # Each stage's command as the local stack asks for it.
  local = {
    binDir = "/src/target/debug";
    pipelinePath = "/src/provisioning/pipeline.toml";
    readingsFile = "/src/state/readings.csv";
    influxTokenFile = "/src/state/secrets/uploader-token";
  };
  command = stage: p.serviceCommand stage local;
  shifted = import ../../nixos/lib/pulsewire.nix { portOffset = 10000; };
in
h.run [
  (check "three brokers rendered" (builtins.length p.brokers == 3))
  (check "three distinct node.ids" (
    h.unique (map (s: s."node.id") settings) && builtins.length settings == 3
  ))
  (check "node.id matches the broker id" (
    map (s: s."node.id") settings == map toString ids
  ))
  (check "identical controller.quorum.voters on every broker" (
    builtins.length (h.unique' (map (s: s."controller.quorum.voters") settings)) == 1
  ))
  (check "voters name every broker's controller port" (
    (builtins.head settings)."controller.quorum.voters"
    == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
  ))
  (check "combined broker,controller roles" (
    h.all (map (s: s."process.roles" == "broker,controller") settings)
  ))
  (check "unique ports across all listeners and services" (h.unique p.allPorts))
  (check "listener ports are the broker's port and controller port" (
    h.all (
      map (
        b:
        listenerPorts (p.brokerSettings {
          inherit (b) id;
          logDir = "/x";
        }) == [
          (toString b.port)
          (toString b.controllerPort)
        ]
      ) p.brokers
    )
  ))
  (check "advertised.listeners is the PLAINTEXT listener" (
    h.all (
      map (
        b:
        (p.brokerSettings {
          inherit (b) id;
          logDir = "/x";
        })."advertised.listeners" == "PLAINTEXT://${b.host}:${toString b.port}"
      ) p.brokers
    )
  ))
  (check "each broker has its own log.dirs" (h.unique (map (s: s."log.dirs") settings)))
  (check "replication settings for three brokers" (
    h.all (
      map (
        s:
        s."offsets.topic.replication.factor" == "3"
        && s."transaction.state.log.replication.factor" == "3"
        && s."transaction.state.log.min.isr" == "2"
        && s."default.replication.factor" == "3"
        && s."min.insync.replicas" == "2"
        && s."auto.create.topics.enable" == "false"
      ) settings
    )
  ))
  (check "all property values are strings" (
    h.all (map (s: h.all (map builtins.isString (builtins.attrValues s))) (settings ++ [ worker connector ]))
  ))
  (check "bootstrapServers lists every PLAINTEXT listener" (
    p.bootstrapServers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
  ))
  (check "toProperties renders sorted key=value lines that parse back" (
    p.toProperties {
      b = "2";
      a = "x:y=z";
    } == "a=x:y=z\nb=2\n"
    && h.parseProperties (p.brokerProperties {
      id = 1;
      logDir = "/d";
    }) == builtins.head settings // { "log.dirs" = "/d"; }
  ))
  (check "six topics from pipeline.toml" (builtins.length p.topics == 6))
  (check "every topic RF 3, 3 partitions, min.insync.replicas 2" (
    h.all (
      map (
        t: t.replicationFactor == 3 && t.partitions == 3 && t.configs."min.insync.replicas" == "2"
      ) p.topics
    )
  ))
  (check "topic names unique" (h.unique (map (t: t.name) p.topics)))
  (check "the DLQ replay markers topic is compacted (one marker per DLQ record)" (
    (topicNamed "heartrate.dlq-replayed").configs."cleanup.policy" == "compact"
  ))
  (check "processor state topic is compacted" (
    (topicNamed p.pipeline.topics.processor_state.name).configs."cleanup.policy" == "compact"
  ))
  (check "processor state topic rolls segments hourly so compaction runs" (
    (topicNamed p.pipeline.topics.processor_state.name).configs."segment.ms" == "3600000"
  ))
  (check "data topics use delete cleanup" (
    h.all (
      map (k: (topicNamed p.pipeline.topics.${k}.name).configs."cleanup.policy" == "delete") [
        "raw"
        "readings"
        "stats"
        "dlq"
      ]
    )
  ))
  (check "topicCreateArgs is idempotent and carries the configs" (
    let
      a = p.topicCreateArgs (topicNamed rawName);
    in
    builtins.elem "--if-not-exists" a && builtins.elem "min.insync.replicas=2" a
  ))
  (check "raw topic takes lines up to 8 MiB, and Connect's producer sends them" (
    let
      a = p.topicCreateArgs (topicNamed rawName);
    in
    builtins.elem "max.message.bytes=8388608" a && worker."producer.max.request.size" == "8388608"
  ))
  (check "every topic keeps 14 days on purpose" (
    builtins.all (t: t.configs."retention.ms" == "1209600000") p.topics
  ))
  (check "connector topic = raw topic" (connector.topic == rawName && rawName == "heartrate.raw"))
  (check "connector is FileStreamSource, one task, the pipeline file" (
    connector."connector.class" == "org.apache.kafka.connect.file.FileStreamSourceConnector"
    && connector."tasks.max" == "1"
    && connector.file == "/var/lib/pulsewire/readings.csv"
  ))
  (check "connector JSON round-trips" (
    builtins.fromJSON (p.connectorJson { file = "/f"; }) == p.connectorConfig { file = "/f"; }
  ))
  (check "worker has exactly.once.source.support=enabled" (
    worker."exactly.once.source.support" == "enabled"
  ))
  (check "worker uses StringConverter for key and value" (
    worker."key.converter" == "org.apache.kafka.connect.storage.StringConverter"
    && worker."value.converter" == "org.apache.kafka.connect.storage.StringConverter"
  ))
  (check "worker internal topics RF 3" (
    worker."config.storage.replication.factor" == "3"
    && worker."offset.storage.replication.factor" == "3"
    && worker."status.storage.replication.factor" == "3"
  ))
  (check "worker REST port and plugin.path" (
    worker.listeners == "HTTP://127.0.0.1:8083"
    && worker."plugin.path" == "/nix/store/x-apache-kafka/libs/connect-file-4.1.1.jar"
  ))
  (check "worker internal topics do not collide with pipeline topics" (
    h.unique (
      map (t: t.name) p.topics
      ++ [
        worker."config.storage.topic"
        worker."offset.storage.topic"
        worker."status.storage.topic"
      ]
    )
  ))
  (check "rollup tasks: one per window, every placeholder filled, raw bucket in, rollup bucket out" (
    map (t: t.name) p.influxdb.rollups.tasks == map (w: "pulsewire-rollup-${w}") p.pipeline.influxdb.rollups.windows
    && builtins.all (
      t:
      let
        has = re: builtins.length (builtins.split re t.flux) > 1;
      in
      !(has "@[A-Z_]+@")
      && has "from\\(bucket: \"${p.pipeline.influxdb.bucket}\"\\)"
      && has "to\\(bucket: \"${p.pipeline.influxdb.rollups.bucket}\", org: \"${p.pipeline.influxdb.org}\"\\)"
    ) p.influxdb.rollups.tasks
  ))
  (check "service commands: binary, metrics address from pipeline.toml, then the stage's flags" (
    map (s: (command s).argv) p.stages == [
      [ "/src/target/debug/pulsewire-simulator" "--metrics-addr" "127.0.0.1:9304" "--output" "/src/state/readings.csv" ]
      [ "/src/target/debug/pulsewire-aggregator" "--metrics-addr" "127.0.0.1:9301" "--instance" "localhost-1" ]
      [ "/src/target/debug/pulsewire-processor" "--metrics-addr" "127.0.0.1:9302" "--instance" "localhost-1" ]
      [
        "/src/target/debug/pulsewire-uploader"
        "--metrics-addr"
        "127.0.0.1:9303"
        "--influx-url"
        "http://127.0.0.1:8086"
        "--influx-token-file"
        "/src/state/secrets/uploader-token"
      ]
    ]
  ))
  (check "service commands: bootstrap servers, log level and the pipeline file in the environment" (
    builtins.all (
      s:
      (command s).environment == {
        PULSEWIRE_BOOTSTRAP_SERVERS = "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096";
        PULSEWIRE_LOG_LEVEL = "info";
        PULSEWIRE_PIPELINE = "/src/provisioning/pipeline.toml";
      }
    ) p.stages
  ))
  (check "service commands: 60 s to drain on SIGTERM" (builtins.all (s: (command s).stopTimeout == 60) p.stages))
  (check "service commands: a replay file and extra flags follow the stage's flags" (
    (p.serviceCommand "simulator" (local // { replayFile = "/seed.csv"; extraArgs = [ "--fast" ]; })).argv
    == [ "/src/target/debug/pulsewire-simulator" "--metrics-addr" "127.0.0.1:9304" "--output" "/src/state/readings.csv" "--replay" "/seed.csv" "--fast" ]
  ))
  (check "service commands: the uploader refuses to run without a token file" (
    !(builtins.tryEval (builtins.deepSeq (p.serviceCommand "uploader" (builtins.removeAttrs local [ "influxTokenFile" ])).argv true)).success
  ))
  (check "port offset: every port moves, names stay" (
    shifted.bootstrapServers == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    && shifted.allPorts == map (x: x + 10000) p.allPorts
    && shifted.connect.group_id == p.connect.group_id
    && (shifted.serviceCommand "processor" local).argv == [ "/src/target/debug/pulsewire-processor" "--metrics-addr" "127.0.0.1:19302" "--instance" "localhost-1" ]
    && (shifted.serviceCommand "uploader" local).environment.PULSEWIRE_BOOTSTRAP_SERVERS == shifted.bootstrapServers
  ))
  (check "instances: N's name, unit and metrics port follow from the host and N" (
    let
      second = s: p.serviceCommand s (local // { instance = 2; hostName = "host-a"; });
    in
    (second "aggregator").argv == [ "/src/target/debug/pulsewire-aggregator" "--metrics-addr" "127.0.0.1:9401" "--instance" "host-a-2" ]
    && (second "processor").argv == [ "/src/target/debug/pulsewire-processor" "--metrics-addr" "127.0.0.1:9402" "--instance" "host-a-2" ]
    # The uploader commits no transaction: a port of its own, no instance flag.
    && (second "uploader").argv == [ "/src/target/debug/pulsewire-uploader" "--metrics-addr" "127.0.0.1:9403" "--influx-url" "http://127.0.0.1:8086" "--influx-token-file" "/src/state/secrets/uploader-token" ]
    && map (p.unitName "processor") [ 1 2 3 ] == [ "pulsewire-processor" "pulsewire-processor-2" "pulsewire-processor-3" ]
    && p.instanceAddress "[::1]:9301" 3 == "[::1]:9501"
    && !(builtins.tryEval (p.instanceAddress "nowhere" 2)).success
  ))
  (check "connect: a cluster per host, pipeline.toml's names without one" (
    let
      worker = cluster: p.connectWorkerSettings { pluginPath = "/plugins"; inherit cluster; };
      a = worker "host-a";
      own = worker null;
    in
    a."group.id" == "pulsewire-connect-host-a"
    && a."config.storage.topic" == "pulsewire-connect-configs-host-a"
    && a."offset.storage.topic" == "pulsewire-connect-offsets-host-a"
    && a."status.storage.topic" == "pulsewire-connect-status-host-a"
    && (p.connectNames "host-a").connectorName == "pulsewire-readings-file-host-a"
    && own."group.id" == p.connect.group_id
    && own."offset.storage.topic" == p.connect.offset_topic
    && p.connectorName == p.connect.connector_name
  ))
]
