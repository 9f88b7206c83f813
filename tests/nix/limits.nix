# Memory and task limits (nixos/lib/hardening.nix, the stages' memoryMax/tasksMax
# options): every Pulsewire unit of the appliance sets both MemoryMax and TasksMax,
# each JVM unit's limit is derived from its heap and sits above heap + metaspace +
# direct memory, and a stage's limits follow its options.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/limits.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  hardening = import ../../nixos/lib/hardening.nix;
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);

  eval =
    extra:
    nixos.eval [
      ../../nixos
      ../../nixos/appliance.nix
      {
        services.pulsewire.package = nixos.pkgs.writeText "pulsewire" "";
        services.pulsewire.simulator.replayFile = ../../provisioning/data/seed-readings.csv;
      }
      extra
    ];
  appliance = eval { };
  units = appliance.systemd.services;
  # And nixpkgs' influxdb2 unit, which Pulsewire configures (influxdb.nix).
  pulsewireUnits = lib.filter (lib.hasPrefix "pulsewire-") (builtins.attrNames units) ++ [ "influxdb2" ];
  sc = name: units.${name}.serviceConfig;

  # "1392M" -> 1392
  mib =
    s:
    let
      m = builtins.match "([0-9]+)M" s;
    in
    if m == null then throw "not a size in M: ${s}" else lib.toInt (builtins.head m);
  heapOpts = name: units.${name}.environment.KAFKA_HEAP_OPTS;
  # The JVM's own caps, read from its flags.
  flag =
    name: re:
    let
      m = builtins.match ".*-XX:${re}=([0-9]+)m.*" (heapOpts name);
    in
    if m == null then throw "${name}: no -XX:${re} in KAFKA_HEAP_OPTS" else lib.toInt (builtins.head m);
  xmx =
    name: lib.toInt (builtins.head (builtins.match ".*-Xmx([0-9]+)m.*" (heapOpts name)));
  jvmUnits = [
    "pulsewire-kafka-1"
    "pulsewire-kafka-2"
    "pulsewire-kafka-3"
    "pulsewire-kafka-topics"
    "pulsewire-connect"
  ];

  bigger = eval {
    services.pulsewire.kafka.heap = "2g";
    services.pulsewire.processor.memoryMax = "1G";
    services.pulsewire.processor.tasksMax = 99;
  };
in
h.run [
  (check "the appliance has its Pulsewire units (stages, brokers, Connect, watch, oneshots)" (
    builtins.length pulsewireUnits >= 14
  ))
  (check "every Pulsewire unit sets MemoryMax and TasksMax" (
    let
      missing = lib.filter (u: !((sc u) ? MemoryMax && (sc u) ? TasksMax)) pulsewireUnits;
    in
    missing == [ ] || throw "units without MemoryMax or TasksMax: ${toString missing}"
  ))
  (check "JVM units: MemoryMax = heap + metaspace + direct memory + code cache + rest, all capped by flags" (
    builtins.all (
      u:
      mib (sc u).MemoryMax == xmx u + builtins.foldl' builtins.add 0 (builtins.attrValues hardening.jvmNative)
      && mib (sc u).MemoryMax > xmx u + flag u "MaxMetaspaceSize" + flag u "MaxDirectMemorySize"
      && (sc u).TasksMax == 512
    ) jvmUnits
  ))
  (check "brokers and Connect: the heap is the pipeline's" (
    xmx "pulsewire-kafka-1" == lib.toInt (lib.removeSuffix "m" pipeline.kafka.heap)
    && xmx "pulsewire-connect" == lib.toInt (lib.removeSuffix "m" pipeline.connect.heap)
    && (sc "pulsewire-kafka-1").MemoryMax == "1392M"
    && (sc "pulsewire-connect").MemoryMax == "1264M"
  ))
  (check "a bigger broker heap raises the brokers' limit with it" (
    bigger.systemd.services.pulsewire-kafka-2.serviceConfig.MemoryMax == "2928M"
    && lib.hasInfix "-Xmx2g" bigger.systemd.services.pulsewire-kafka-2.environment.KAFKA_HEAP_OPTS
  ))
  (check "stages: the limits are their options' defaults" (
    (sc "pulsewire-processor").MemoryMax == "512M"
    && (sc "pulsewire-processor").TasksMax == 256
    && (sc "pulsewire-aggregator").MemoryMax == "256M"
    && (sc "pulsewire-uploader").MemoryMax == "256M"
    && (sc "pulsewire-simulator").MemoryMax == "64M"
  ))
  (check "stages: an operator's memoryMax and tasksMax reach the unit" (
    bigger.systemd.services.pulsewire-processor.serviceConfig.MemoryMax == "1G"
    && bigger.systemd.services.pulsewire-processor.serviceConfig.TasksMax == 99
  ))
  (check "scripts (register, watch, secrets, InfluxDB oneshots): the script limits" (
    builtins.all (u: (sc u).MemoryMax or null == "64M" && (sc u).TasksMax or null == 32) [
      "pulsewire-connect-register"
      "pulsewire-connect-watch"
      "pulsewire-secrets"
      "pulsewire-influxdb-ready"
      "pulsewire-influxdb-tasks"
    ]
  ))
  (check "heap sizes: 512m, 1g, 2048k in MiB" (
    map hardening.heapMiB [
      "512m"
      "1g"
      "2048k"
    ] == [
      512
      1024
      2
    ]
  ))
]
