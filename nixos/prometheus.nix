# The appliance's health view: nixpkgs' services.prometheus scraping every
# stage's /metrics and the Prometheus JMX exporter agent loaded into every local
# broker and the Connect worker (KAFKA_JMX_OPTS; rules in
# provisioning/prometheus/kafka-jmx.yml), with the pipeline's alert rules.
# Scrape targets and rules come from ./lib/prometheus.nix, which the local stack
# renders too. Grafana shows the rules and the pipeline dashboard through the
# Prometheus datasource (grafana.nix). Options: services.pulsewire.prometheus.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pulsewire;
  pcfg = cfg.prometheus;
  render = import ./lib/render.nix cfg;

  monitoring = import ./lib/prometheus.nix {
    pulsewire = render;
    instances = lib.genAttrs render.scalableStages (stage: cfg.${stage}.instances);
    simulator = cfg.simulator.enable;
    brokerIds = if cfg.kafka.enable then cfg.kafka.localBrokers else [ ];
    inherit (pcfg) scrapeInterval rateWindow alerts;
  };

  # Not packaged by nixpkgs: the agent's jar from Maven Central, pinned by the
  # hash pipeline.toml names (the local stack checks the same one).
  jmxAgent = pkgs.fetchurl {
    inherit (monitoring.jmxExporter) url sha256;
  };
  jmxRules = ../provisioning/prometheus/kafka-jmx.yml;
  jmxOption =
    port:
    monitoring.jmxAgentOption {
      jar = jmxAgent;
      rules = jmxRules;
      inherit port;
    };

  brokerAgents = map (id: {
    name = "pulsewire-kafka-${toString id}";
    # KAFKA_JMX_OPTS (kafka-run-class.sh) only enables local JMX by default;
    # the agent reads the platform MBean server in-process.
    value.environment.KAFKA_JMX_OPTS = jmxOption (monitoring.brokerJmxPort id);
  }) cfg.kafka.localBrokers;
in
{
  config = lib.mkIf pcfg.enable {
    services.prometheus = {
      enable = true;
      inherit (pcfg) listenAddress port retentionTime;
      globalConfig = {
        scrape_interval = pcfg.scrapeInterval;
        evaluation_interval = pcfg.scrapeInterval;
      };
      scrapeConfigs =
        builtins.filter (job: job.static_configs != [ ])
          (
            map (
              job:
              if job.job_name == "kafka-connect" && !cfg.connect.enable then job // { static_configs = [ ]; } else job
            ) monitoring.scrapeConfigs
          );
      rules = [ (builtins.toJSON monitoring.rules) ];
    };

    systemd.services = lib.mkMerge [
      (lib.mkIf cfg.kafka.enable (builtins.listToAttrs brokerAgents))
      (lib.mkIf cfg.connect.enable {
        pulsewire-connect.environment.KAFKA_JMX_OPTS = jmxOption monitoring.connectJmxPort;
      })
    ];
  };
}
