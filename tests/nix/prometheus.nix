# The health view on nixpkgs' module system (./lib/eval-nixos.nix): Prometheus'
# options, the scrape targets and alert rules rendered by nixos/lib/prometheus.nix,
# the JMX exporter agent in the brokers and Connect, and Grafana's datasource.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/prometheus.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  inherit (h) package;
  eval =
    extra:
    nixos.eval [
      ../../nixos
      {
        services.pulsewire = {
          enable = true;
          inherit package;
        };
      }
      extra
    ];
  appliance = eval { };
  prom = appliance.services.prometheus;
  targetsOf = cfg: job: builtins.concatLists (map (s: s.targets) (jobOf cfg job).static_configs);
  jobOf = cfg: job: builtins.head (builtins.filter (j: j.job_name == job) cfg.services.prometheus.scrapeConfigs);
  rules = cfg: (builtins.fromJSON (builtins.head cfg.services.prometheus.rules)).groups;
  ruleOf = cfg: name: builtins.head (builtins.filter (r: r.alert == name) (builtins.head (rules cfg)).rules);
  contains = needle: hay: builtins.match ".*${lib.escapeRegex needle}.*" hay != null;
  jar = "jmx_prometheus_javaagent-${pipeline.prometheus.jmx_exporter_version}.jar";

  tuned = eval {
    services.pulsewire.aggregator.instances = 2;
    services.pulsewire.simulator.enable = false;
    services.pulsewire.prometheus = {
      listenAddress = "0.0.0.0";
      port = 9999;
      retentionTime = "90d";
      scrapeInterval = "5s";
      rateWindow = "1m";
      alerts.lagGrowing = {
        for = "3m";
        threshold = 50;
      };
      alerts.dlqRate.threshold = 7;
      alerts.stageDown.for = "30s";
    };
  };
in
h.run [
  (check "Prometheus on loopback, port and retention from the options, scrape interval everywhere" (
    prom.enable
    && prom.listenAddress == "127.0.0.1"
    && prom.port == pipeline.prometheus.port
    && prom.retentionTime == "30d"
    && prom.globalConfig.scrape_interval == "15s"
    && prom.globalConfig.evaluation_interval == "15s"
    && tuned.services.prometheus.listenAddress == "0.0.0.0"
    && tuned.services.prometheus.port == 9999
    && tuned.services.prometheus.retentionTime == "90d"
    && tuned.services.prometheus.globalConfig.scrape_interval == "5s"
  ))
  (check "every stage instance is scraped on its metrics port, labelled with its stage and unit" (
    targetsOf appliance "pulsewire-stages" == [
      "127.0.0.1:9304"
      "127.0.0.1:9301"
      "127.0.0.1:9302"
      "127.0.0.1:9303"
    ]
    && targetsOf tuned "pulsewire-stages" == [
      "127.0.0.1:9301"
      "127.0.0.1:9401"
      "127.0.0.1:9302"
      "127.0.0.1:9303"
    ]
    && map (s: s.labels) (jobOf tuned "pulsewire-stages").static_configs == [
      {
        stage = "aggregator";
        unit = "pulsewire-aggregator";
      }
      {
        stage = "aggregator";
        unit = "pulsewire-aggregator-2";
      }
      {
        stage = "processor";
        unit = "pulsewire-processor";
      }
      {
        stage = "uploader";
        unit = "pulsewire-uploader";
      }
    ]
  ))
  (check "every local broker's and Connect's JMX exporter agent is scraped" (
    targetsOf appliance "kafka-brokers" == [
      "127.0.0.1:9311"
      "127.0.0.1:9312"
      "127.0.0.1:9313"
    ]
    && targetsOf appliance "kafka-connect" == [ "127.0.0.1:9310" ]
  ))
  (check "a host of a cluster spread over hosts scrapes its own broker's agent, on loopback" (
    let
      split = eval {
        services.pulsewire.kafka.brokers = map (id: {
          inherit id;
          host = "10.0.0.${toString id}";
          port = 9092;
          controllerPort = 9093;
        }) [ 1 2 3 ];
        services.pulsewire.kafka.localBrokers = [ 2 ];
      };
    in
    targetsOf split "kafka-brokers" == [ "127.0.0.1:9312" ]
    && contains "=127.0.0.1:9312:" split.systemd.services.pulsewire-kafka-2.environment.KAFKA_JMX_OPTS
    && !(split.systemd.services ? pulsewire-kafka-1)
  ))
  (check "the agent runs in every broker and in Connect: the Maven Central jar by its hash, the rules file, loopback" (
    builtins.all (
      id:
      let
        opt = appliance.systemd.services."pulsewire-kafka-${toString id}".environment.KAFKA_JMX_OPTS;
      in
      contains "-javaagent:" opt
      && contains jar opt
      && contains "=127.0.0.1:${toString (9310 + id)}:" opt
      && contains "kafka-jmx.yml" opt
    ) [ 1 2 3 ]
    && contains "=127.0.0.1:9310:" appliance.systemd.services.pulsewire-connect.environment.KAFKA_JMX_OPTS
  ))
  (check "the jar is a fixed-output download from Maven Central with pipeline.toml's sha256" (
    let
      opt = appliance.systemd.services.pulsewire-kafka-1.environment.KAFKA_JMX_OPTS;
      agent = import ../../nixos/lib/prometheus.nix { pulsewire = import ../../nixos/lib/pulsewire.nix { pipelineFile = ../../provisioning/pipeline.toml; }; };
    in
    agent.jmxExporter.url == "https://repo1.maven.org/maven2/io/prometheus/jmx/jmx_prometheus_javaagent/1.0.1/${jar}"
    && agent.jmxExporter.sha256 == pipeline.prometheus.jmx_exporter_sha256
    && builtins.stringLength pipeline.prometheus.jmx_exporter_sha256 == 64
    && contains (builtins.substring 0 32 (builtins.hashString "sha256" pipeline.prometheus.jmx_exporter_sha256)) opt
  ))
  (check "seven alert rules, each with a summary that names where to look" (
    map (r: r.alert) (builtins.head (rules appliance)).rules == [
      "PulsewireStageDown"
      "PulsewireBrokerDown"
      "PulsewireConnectorTaskNotRunning"
      "PulsewireUnderReplicatedPartitions"
      "PulsewireLagGrowing"
      "PulsewireDlqRate"
      "PulsewireStageWaiting"
    ]
    && builtins.all (r: contains "journalctl -u" r.annotations.summary) (builtins.head (rules appliance)).rules
  ))
  (check "alert durations and thresholds come from the options" (
    (ruleOf appliance "PulsewireLagGrowing").for == "10m"
    && contains "> 1000 " (ruleOf appliance "PulsewireLagGrowing").expr
    && (ruleOf tuned "PulsewireLagGrowing").for == "3m"
    && contains "> 50 " (ruleOf tuned "PulsewireLagGrowing").expr
    && contains "[1m]" (ruleOf tuned "PulsewireLagGrowing").expr
    && contains "[1m])) > 7" (ruleOf tuned "PulsewireDlqRate").expr
    && (ruleOf tuned "PulsewireStageDown").for == "30s"
    && (ruleOf appliance "PulsewireStageDown").for == "1m"
    && contains ''connector="${pipeline.connect.connector_name}",status="running"'' (ruleOf appliance "PulsewireConnectorTaskNotRunning").expr
  ))
  (check "Grafana gets the Prometheus datasource beside InfluxDB's" (
    let
      ds = appliance.services.grafana.provision.datasources.settings.datasources;
      p = builtins.elemAt ds 1;
    in
    map (d: d.uid) ds == [
      "pulsewire-influxdb"
      "pulsewire-prometheus"
    ]
    && p.url == "http://127.0.0.1:9090"
    && p.jsonData.timeInterval == "15s"
  ))
  (check "without Prometheus: no agent in the JVMs, no datasource" (
    let
      off = eval { services.pulsewire.prometheus.enable = false; };
    in
    !off.services.prometheus.enable
    && !(off.systemd.services.pulsewire-kafka-1.environment ? KAFKA_JMX_OPTS)
    && builtins.length off.services.grafana.provision.datasources.settings.datasources == 1
  ))
]
