# Pure renderer of the appliance's health view: Prometheus' scrape configuration
# and the alert rules, written once for nixos/prometheus.nix and the local stack
# (tests/local/pulsewire_stack/monitoring.py). Only `builtins`.
#
#   let
#     l = import ./pulsewire.nix { pipelineFile = ../../provisioning/pipeline.toml; };
#     p = import ./prometheus.nix { pulsewire = l; };
#   in p.config      # prometheus.yml as an attrset (toJSON is valid YAML)
#
# Targets: every stage instance's /metrics (job `pulsewire-stages`, labels `stage`
# and `unit`), the JMX exporter agent in every broker (job `kafka-brokers`, labels
# `broker` and `unit`) and in Connect (job `kafka-connect`). The ports are
# pipeline.toml's ([services.*].metrics_port, [prometheus]).
{
  # nixos/lib/pulsewire.nix, imported (with its port offset).
  pulsewire,
  # Instances of each scalable stage (services.pulsewire.<stage>.instances).
  instances ? { },
  # Whether the simulator runs (and so is scraped).
  simulator ? true,
  # Ids of the brokers whose agent to scrape (default: every broker).
  brokerIds ? null,
  scrapeInterval ? "15s",
  # The window of every rate() on the dashboard and in the alerts.
  rateWindow ? "5m",
  # Overrides of `alertDefaults` (per alert: `for`, and `threshold` where it has one).
  alerts ? { },
}:
rec {
  l = pulsewire;
  inherit rateWindow scrapeInterval;
  prom = l.pipeline.prometheus;

  brokerJmxPort = id: prom.broker_jmx_port_base + id - 1;
  connectJmxPort = prom.connect_jmx_port;

  # The JVM option that loads the JMX exporter agent, serving on loopback.
  jmxAgentOption =
    {
      jar,
      rules,
      port,
    }:
    "-javaagent:${jar}=127.0.0.1:${toString port}:${rules}";

  jmxExporter = {
    version = prom.jmx_exporter_version;
    sha256 = prom.jmx_exporter_sha256;
    url = "https://repo1.maven.org/maven2/io/prometheus/jmx/jmx_prometheus_javaagent/${prom.jmx_exporter_version}/jmx_prometheus_javaagent-${prom.jmx_exporter_version}.jar";
  };

  instancesOf = stage: if instances ? ${stage} then instances.${stage} else 1;

  scrapedStages = builtins.filter (s: simulator || s != "simulator") l.stages;

  stageTargets = builtins.concatLists (
    map (
      stage:
      map (n: {
        targets = [ "127.0.0.1:${toString (l.instancePort stage n)}" ];
        labels = {
          inherit stage;
          unit = l.unitName stage n;
        };
      }) (l.range 1 (if builtins.elem stage l.scalableStages then instancesOf stage else 1))
    ) scrapedStages
  );

  scrapedBrokers =
    if brokerIds == null then l.brokers else builtins.filter (b: builtins.elem b.id brokerIds) l.brokers;

  # Each host scrapes the agents of its own brokers, which listen on loopback.
  brokerTargets = map (b: {
    targets = [ "127.0.0.1:${toString (brokerJmxPort b.id)}" ];
    labels = {
      broker = toString b.id;
      unit = "pulsewire-kafka-${toString b.id}";
    };
  }) scrapedBrokers;

  scrapeConfigs = [
    {
      job_name = "pulsewire-stages";
      static_configs = stageTargets;
    }
    {
      job_name = "kafka-brokers";
      static_configs = brokerTargets;
    }
    {
      job_name = "kafka-connect";
      static_configs = [
        {
          targets = [ "127.0.0.1:${toString connectJmxPort}" ];
          labels.unit = "pulsewire-connect";
        }
      ];
    }
  ];

  # How long a condition must hold before its alert fires, and the thresholds.
  alertDefaults = {
    stageDown.for = "1m";
    brokerDown.for = "1m";
    connectorTaskNotRunning.for = "2m";
    underReplicated = {
      for = "5m";
      threshold = 0;
    };
    lagGrowing = {
      for = "10m";
      # Records behind, summed over the group's partitions.
      threshold = 1000;
    };
    dlqRate = {
      for = "5m";
      # Records per second into the dead-letter topic, per reason.
      threshold = 1;
    };
    stageWaiting = {
      for = "1m";
      # Seconds a stage has retried the same batch (InfluxDB) or session (Kafka).
      threshold = 300;
    };
  };

  alert = name: alertDefaults.${name} // (if alerts ? ${name} then alerts.${name} else { });

  num = toString;

  connector = l.connectorName;

  # Every alert: `signal` is what it watches (the e2e suite checks it returns
  # series), `expr` fires. Summaries say where to look.
  alertRules = [
    {
      alert = "PulsewireStageDown";
      signal = ''up{job="pulsewire-stages"}'';
      expr = ''up{job="pulsewire-stages"} == 0'';
      for = (alert "stageDown").for;
      summary = "{{ $labels.stage }} ({{ $labels.instance }}) is not answering on /metrics: journalctl -u {{ $labels.unit }}";
    }
    {
      alert = "PulsewireBrokerDown";
      signal = ''up{job="kafka-brokers"}'';
      expr = ''up{job="kafka-brokers"} == 0'';
      for = (alert "brokerDown").for;
      summary = "Kafka broker {{ $labels.broker }} is down: journalctl -u {{ $labels.unit }}";
    }
    {
      alert = "PulsewireConnectorTaskNotRunning";
      signal = ''kafka_connect_task_status{connector="${connector}"}'';
      expr = ''absent(kafka_connect_task_status{connector="${connector}",status="running"})'';
      for = (alert "connectorTaskNotRunning").for;
      summary = "The file connector's task is not running (paused, failed or Connect down): no line of the readings file is read. journalctl -u pulsewire-connect -u pulsewire-connect-watch";
    }
    {
      alert = "PulsewireUnderReplicatedPartitions";
      signal = "kafka_server_replicamanager_underreplicatedpartitions";
      expr = "kafka_server_replicamanager_underreplicatedpartitions > ${num (alert "underReplicated").threshold}";
      for = (alert "underReplicated").for;
      summary = "Broker {{ $labels.broker }} leads {{ $value }} under-replicated partitions: a broker is down or behind. journalctl -u pulsewire-kafka-1 -u pulsewire-kafka-2 -u pulsewire-kafka-3";
    }
    {
      alert = "PulsewireLagGrowing";
      signal = "sum by (group) (pulsewire_consumer_lag)";
      expr = "sum by (group) (pulsewire_consumer_lag) > ${num (alert "lagGrowing").threshold} and sum by (group) (delta(pulsewire_consumer_lag[${rateWindow}])) >= 0";
      for = (alert "lagGrowing").for;
      summary = "Consumer group {{ $labels.group }} is {{ $value }} records behind and not catching up: journalctl -u {{ $labels.group }}";
    }
    {
      alert = "PulsewireDlqRate";
      signal = "sum by (reason) (rate(pulsewire_rejected_total[${rateWindow}]))";
      expr = "sum by (reason) (rate(pulsewire_rejected_total[${rateWindow}])) > ${num (alert "dlqRate").threshold}";
      for = (alert "dlqRate").for;
      summary = "{{ $value }} records/s go to the dead-letter topic as {{ $labels.reason }}: look at the records (heartrate.dlq) and journalctl -u pulsewire-aggregator -u pulsewire-processor -u pulsewire-uploader";
    }
    {
      alert = "PulsewireStageWaiting";
      signal = "pulsewire_waiting_seconds";
      expr = "pulsewire_waiting_seconds > ${num (alert "stageWaiting").threshold}";
      for = (alert "stageWaiting").for;
      summary = "{{ $labels.stage }} ({{ $labels.instance }}) has been waiting {{ $value }} s for {{ $labels.for }}, retrying without progress; input older than the topics' retention (14 days) is lost: journalctl -u {{ $labels.unit }}";
    }
  ];

  rules = {
    groups = [
      {
        name = "pulsewire";
        rules = map (r: {
          inherit (r) alert expr for;
          labels.severity = "warning";
          annotations.summary = r.summary;
        }) alertRules;
      }
    ];
  };

  # A whole prometheus.yml (the local stack; the NixOS module sets the parts
  # through services.prometheus' options).
  config =
    { ruleFiles }:
    {
      global = {
        scrape_interval = scrapeInterval;
        evaluation_interval = scrapeInterval;
      };
      rule_files = ruleFiles;
      scrape_configs = scrapeConfigs;
    };
}
