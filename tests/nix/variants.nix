# Checks on renders for deployments other than the appliance: brokers spread
# over three hosts (the `brokerList` override the NixOS module passes) and a
# one-broker development host (replication clamped to what exists).
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/variants.nix { }'   (=> true)
# Builtins only: takes (and ignores) the lib the other checks take.
{ ... }:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  base = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);

  multi = import ../../nixos/lib/pulsewire.nix {
    brokerList = map (id: {
      inherit id;
      host = "10.0.0.${toString id}";
      port = 9092;
      controllerPort = 9093;
    }) [ 1 2 3 ];
  };
  multiSettings = map (b: multi.brokerSettings {
    inherit (b) id;
    logDir = "/var/lib/kafka";
  }) multi.brokers;

  single = import ../../nixos/lib/pulsewire.nix {
    pipelineData = base // {
      kafka = base.kafka // {
        brokers = 1;
      };
    };
  };
  singleSettings = single.brokerSettings {
    id = 1;
    logDir = "/d";
  };
in
h.run [
  (check "multi-host: voters name every host" (
    (builtins.head multiSettings)."controller.quorum.voters"
    == "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093"
  ))
  (check "multi-host: identical voters on every broker" (
    builtins.length (h.unique' (map (s: s."controller.quorum.voters") multiSettings)) == 1
  ))
  (check "multi-host: each broker advertises its own host" (
    map (s: s."advertised.listeners") multiSettings == [
      "PLAINTEXT://10.0.0.1:9092"
      "PLAINTEXT://10.0.0.2:9092"
      "PLAINTEXT://10.0.0.3:9092"
    ]
  ))
  (check "multi-host: bootstrap servers span the hosts" (
    multi.bootstrapServers == "10.0.0.1:9092,10.0.0.2:9092,10.0.0.3:9092"
  ))
  (check "unknown broker id throws" (
    !(builtins.tryEval (multi.brokerSettings {
      id = 7;
      logDir = "/d";
    })."node.id").success
  ))
  (check "one broker: replication clamped to 1" (
    singleSettings."default.replication.factor" == "1"
    && singleSettings."offsets.topic.replication.factor" == "1"
    && singleSettings."min.insync.replicas" == "1"
    && singleSettings."transaction.state.log.min.isr" == "1"
  ))
  (check "one broker: topics RF 1, min.insync 1" (
    builtins.all (t: t.replicationFactor == 1 && t.configs."min.insync.replicas" == "1") single.topics
  ))
  (check "one broker: worker internal topics RF 1" (
    (single.connectWorkerSettings { pluginPath = "/p"; })."offset.storage.replication.factor" == "1"
  ))
]
