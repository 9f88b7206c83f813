# Several instances of each consuming stage, and several hosts: the units,
# instance names (transactional ids), metrics addresses and Connect clusters
# the modules derive. The Rust side of the instance name is tested in
# services/runtime/src/config/tests.rs, the whole on real Kafka in
# tests/local/e2e/test_scale.py.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/scale.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  port = s: pipeline.services.${s}.metrics_port;

  host =
    name: extra:
    nixos.eval [
      ../../nixos
      {
        services.pulsewire.package = nixos.pkgs.writeText "pulsewire" "";
        services.pulsewire.enable = true;
        networking.hostName = name;
      }
      extra
    ];
  twice = host "host-a" {
    services.pulsewire = {
      aggregator.instances = 2;
      processor.instances = 2;
      uploader.instances = 2;
    };
  };
  units = twice.systemd.services;
  exec = unit: toString units.${unit}.serviceConfig.ExecStart;
  argAfter =
    flag: unit:
    let
      argv = lib.splitString " " (exec unit);
      at = lib.lists.findFirstIndex (a: a == flag) null argv;
    in
    if at == null then null else builtins.elemAt argv (at + 1);
  scaled = [
    "aggregator"
    "processor"
    "uploader"
  ];
  worker = cfg: cfg.environment.etc."pulsewire/connect-worker.properties".source;
  props =
    cfg:
    builtins.listToAttrs (
      map (
        l:
        let
          kv = builtins.match "([^=]+)=(.*)" l;
        in
        {
          name = builtins.elemAt kv 0;
          value = builtins.elemAt kv 1;
        }
      ) (builtins.filter (l: l != "") (lib.splitString "\n" (worker cfg).text))
    );
  # Two hosts sharing the brokers, one each here; and a host with them all.
  a = props (host "host-a" { services.pulsewire.kafka.localBrokers = [ 1 ]; });
  b = props (host "host-b" { services.pulsewire.kafka.localBrokers = [ 2 ]; });
  alone = host "host-a" { };
in
h.run [
  (check "instances: two units per consuming stage, the first keeps the stage's name" (
    builtins.all (s: units ? "pulsewire-${s}" && units ? "pulsewire-${s}-2" && !(units ? "pulsewire-${s}-3")) scaled
    && units ? pulsewire-simulator
    && !(units ? pulsewire-simulator-2)
  ))
  (check "instances: distinct instance names (so transactional ids) with the host name, one group" (
    builtins.all (
      s:
      argAfter "--instance" "pulsewire-${s}" == "host-a-1"
      && argAfter "--instance" "pulsewire-${s}-2" == "host-a-2"
      # The group is the pipeline's: no instance sets its own.
      && argAfter "--group-id" "pulsewire-${s}-2" == null
    ) [ "aggregator" "processor" ]
    && argAfter "--instance" "pulsewire-uploader-2" == null
  ))
  (check "instances: distinct metrics addresses, derived from the stage's" (
    builtins.all (
      s:
      argAfter "--metrics-addr" "pulsewire-${s}" == "127.0.0.1:${toString (port s)}"
      && argAfter "--metrics-addr" "pulsewire-${s}-2" == "127.0.0.1:${toString (port s + 100)}"
    ) scaled
    && nixos.failedAssertions twice == [ ]
  ))
  (check "instances: the second unit is the first's but for its instance" (
    builtins.all (
      s:
      units."pulsewire-${s}-2".environment == units."pulsewire-${s}".environment
      && units."pulsewire-${s}-2".after == units."pulsewire-${s}".after
      && units."pulsewire-${s}-2".serviceConfig.Type == "notify"
    ) scaled
  ))
  (check "instances: metrics addresses that collide are refused" (
    nixos.failedAssertions (host "host-a" {
      services.pulsewire.aggregator.instances = 2;
      services.pulsewire.processor.metricsAddress = "127.0.0.1:${toString (port "aggregator" + 100)}";
    }) != [ ]
  ))
  (check "connect: each host's worker is a Connect cluster of its own" (
    a."group.id" == "${pipeline.connect.group_id}-host-a"
    && b."group.id" == "${pipeline.connect.group_id}-host-b"
    && builtins.all (k: a.${k} != b.${k}) [
      "group.id"
      "config.storage.topic"
      "offset.storage.topic"
      "status.storage.topic"
    ]
    && (host "host-b" { services.pulsewire.kafka.localBrokers = [ 2 ]; })
      .systemd.services.pulsewire-connect-register.environment.CONNECTOR_NAME
    == "${pipeline.connect.connector_name}-host-b"
  ))
  (check "connect: the watch asks for the connector the register unit registered" (
    let
      u = (host "host-b" { services.pulsewire.kafka.localBrokers = [ 2 ]; }).systemd.services;
    in
    u.pulsewire-connect-watch.environment.CONNECTOR_NAME == u.pulsewire-connect-register.environment.CONNECTOR_NAME
    && u.pulsewire-connect-watch.environment.CONNECTOR_NAME == "${pipeline.connect.connector_name}-host-b"
  ))
  (check "connect: a host with every broker keeps pipeline.toml's names (an upgrade keeps its file offsets)" (
    (props alone)."group.id" == pipeline.connect.group_id
    && (props alone)."offset.storage.topic" == pipeline.connect.offset_topic
    && alone.systemd.services.pulsewire-connect-register.environment.CONNECTOR_NAME == pipeline.connect.connector_name
  ))
]
