# Every knob of services.pulsewire, in one place (the way simple-nixos-mailserver
# declares its whole namespace in one file). The component modules beside this
# file (kafka.nix, connect.nix, pipeline.nix, influxdb.nix, grafana.nix,
# secrets.nix) only implement what is declared here.
#
# Defaults come from provisioning/pipeline.toml through the pure renderer
# ./lib/pulsewire.nix, so names, ports and sizes are written once.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkEnableOption types;
  cfg = config.services.pulsewire;
  defaults = import ./lib/pulsewire.nix { pipelineFile = cfg.pipelineFile; };
  p = defaults.pipeline;

  brokerType = types.submodule {
    options = {
      id = mkOption {
        type = types.ints.positive;
        description = "KRaft node id of the broker (also its controller voter id).";
      };
      host = mkOption {
        type = types.str;
        description = "Address the broker binds and advertises; clients and the other brokers connect to it.";
      };
      port = mkOption {
        type = types.port;
        description = "Client (PLAINTEXT) listener port.";
      };
      controllerPort = mkOption {
        type = types.port;
        description = "KRaft controller listener port.";
      };
    };
  };

  # A component's switch: on with the whole pipeline unless set.
  componentEnable =
    description:
    mkOption {
      type = types.bool;
      default = cfg.enable;
      defaultText = lib.literalExpression "config.services.pulsewire.enable";
      inherit description;
    };

  # Where InfluxDB and Grafana listen for HTTP.
  listenAddress =
    what:
    mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address ${what} binds to.";
    };
  httpPort =
    what: default:
    mkOption {
      type = types.port;
      inherit default;
      description = "${what} HTTP port.";
    };

  # A JVM's heap (both -Xms and -Xmx), e.g. "512m"; the unit's MemoryMax is
  # derived from it (nixos/lib/hardening.nix, jvm).
  heapSize =
    default: description:
    mkOption {
      type = types.strMatching "[0-9]+[kKmMgG]";
      inherit default description;
    };

  # Extra Java properties, rendered after (so overriding) the generated ones.
  extraProperties =
    description:
    mkOption {
      type = types.attrsOf types.str;
      default = { };
      inherit description;
    };

  # Opening ports in networking.firewall: off unless asked for.
  openFirewallOption =
    description:
    mkOption {
      type = types.bool;
      default = false;
      inherit description;
    };

  # Each stage's systemd MemoryMax and TasksMax, sized from what it holds at
  # most (docs/delivery.md, "Memory and task limits", has the measurements):
  # librdkafka's bounded buffers (8 MB of read-ahead, 32 MB of producer queue;
  # services/runtime/src/runner/client.rs) and one batch of 20,000 records for
  # every Kafka stage, plus the processor's state table (max_states 10,000
  # full windows of 1,024 readings: ~170 MB). Threads: a tokio worker per CPU
  # and about 10 per librdkafka client.
  stageLimits = {
    simulator = {
      memoryMax = "64M";
      tasksMax = 64;
    };
    aggregator = {
      memoryMax = "256M";
      tasksMax = 256;
    };
    processor = {
      memoryMax = "512M";
      tasksMax = 256;
    };
    uploader = {
      memoryMax = "256M";
      tasksMax = 256;
    };
  };

  stageOptions = name: extra: {
    enable = componentEnable "Whether to run the pulsewire-${name} service.";
    memoryMax = mkOption {
      type = types.strMatching "[0-9]+[KMGT]?";
      default = stageLimits.${name}.memoryMax;
      description = "systemd MemoryMax of pulsewire-${name}: above it the kernel kills the service (and systemd restarts it).";
    };
    tasksMax = mkOption {
      type = types.ints.positive;
      default = stageLimits.${name}.tasksMax;
      description = "systemd TasksMax of pulsewire-${name}: the most threads it may run.";
    };
    metricsAddress = mkOption {
      type = types.str;
      default = "127.0.0.1:${toString p.services.${name}.metrics_port}";
      description = "Address of the Prometheus /metrics endpoint (`--metrics-addr`).";
    };
    logLevel = mkOption {
      type = types.str;
      default = "info";
      example = "info,librdkafka=debug";
      description = "Log filter (`PULSEWIRE_LOG_LEVEL`): a level or a tracing directive.";
    };
    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra command-line flags for pulsewire-${name} (see `pulsewire-${name} --help`).";
    };
    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        PULSEWIRE_KAFKA_PROPERTIES = "linger.ms=5";
      };
      description = "Extra environment variables (every flag has a `PULSEWIRE_*` fallback).";
    };
  }
  // extra;

  # How many instances of a consuming stage this host runs (see unitName,
  # instanceName and instanceAddress in ./lib/pulsewire.nix).
  instancesOption = name: {
    instances = mkOption {
      type = types.ints.positive;
      default = 1;
      example = 2;
      description = ''
        How many instances of pulsewire-${name} this host runs. They join one
        consumer group and share the input's partitions (more instances than
        partitions leaves the rest idle). Instance 1 is the unit
        `pulsewire-${name}`, instance N `pulsewire-${name}-N`; instance N is
        named `<networking.hostName>-N` (`--instance`, which a transactional
        stage's transactional.id ends with) and serves metrics on the port of
        {option}`metricsAddress` plus ${toString defaults.instancePortStride} × (N - 1).
      '';
    };
  };

  secretOption = name: what: {
    ${name} = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/${name}";
      description = ''
        File holding ${what}. null (the default) generates a random one on first
        boot into {option}`services.pulsewire.secrets.directory`. Never point this
        at a file in the Nix store.
      '';
    };
  };
in
{
  options.services.pulsewire = {
    enable = mkEnableOption "the whole Pulsewire pipeline on this host (brokers, Connect, the four stages, InfluxDB 2, Grafana)";

    package = mkOption {
      type = types.package;
      description = "The Pulsewire workspace package (pulsewire-simulator, -aggregator, -processor, -uploader). The flake's module sets it to its own `packages.default`.";
    };

    pipelineFile = mkOption {
      type = types.path;
      default = ../provisioning/pipeline.toml;
      defaultText = lib.literalExpression "./provisioning/pipeline.toml";
      description = "The pipeline description every default here is derived from; the services read it too (`PULSEWIRE_PIPELINE` in their environment).";
    };

    openFirewall = openFirewallOption "Open the firewall for exactly the Grafana and InfluxDB ports (and nothing else).";

    kafka = {
      enable = componentEnable "Whether to run Kafka brokers (those in {option}`localBrokers`) on this host.";
      package = lib.mkPackageOption pkgs "apacheKafka" { };
      clusterId = mkOption {
        type = types.strMatching "[A-Za-z0-9_-]{22}";
        default = defaults.clusterId;
        description = "KRaft cluster id (22-character base64url UUID), identical on every broker. Storage is formatted with it on first start only.";
      };
      brokers = mkOption {
        type = types.listOf brokerType;
        default = defaults.brokers;
        defaultText = lib.literalMD "three brokers on 127.0.0.1, ports 9092/9093, 9094/9095, 9096/9097 (from pipeline.toml)";
        example = lib.literalExpression ''
          [
            { id = 1; host = "10.0.0.1"; port = 9092; controllerPort = 9093; }
            { id = 2; host = "10.0.0.2"; port = 9092; controllerPort = 9093; }
            { id = 3; host = "10.0.0.3"; port = 9092; controllerPort = 9093; }
          ]
        '';
        description = ''
          Every broker of the cluster (all of them, on whichever host). They all
          have combined broker+controller roles and form a static KRaft quorum;
          the list must be identical on every host.
        '';
      };
      localBrokers = mkOption {
        type = types.listOf types.ints.positive;
        default = map (b: b.id) cfg.kafka.brokers;
        defaultText = lib.literalMD "every broker id (all brokers on this host)";
        example = [ 2 ];
        description = "Ids of the brokers that run on this host, one unit `pulsewire-kafka-<id>` each.";
      };
      heap = heapSize p.kafka.heap "JVM heap of each broker (`-Xms`/`-Xmx` via KAFKA_HEAP_OPTS).";
      settings = extraProperties "Extra server.properties entries for every local broker; they override the rendered ones." // {
        example = {
          "log.retention.hours" = "72";
        };
      };
      createTopics = mkOption {
        type = types.bool;
        default = cfg.kafka.enable && cfg.kafka.localBrokers != [ ];
        defaultText = lib.literalMD "true when brokers run here";
        description = "Run the idempotent `pulsewire-kafka-topics` oneshot that creates (and re-applies the configs of) the pipeline topics.";
      };
      openFirewall = openFirewallOption "Open the local brokers' client and controller ports (needed when brokers span hosts).";
    };

    connect = {
      enable = componentEnable "Whether to run the Kafka Connect distributed worker and register the FileStreamSource connector.";
      heap = heapSize p.connect.heap "JVM heap of the Connect worker.";
      file = mkOption {
        type = types.str;
        default = p.connect.file;
        description = "The CSV file the connector tails (and the simulator appends to). Append-only: rotating or truncating it breaks exactly-once ingestion.";
      };
      settings = extraProperties "Extra worker properties; they override the rendered ones.";
      cluster = mkOption {
        type = types.nullOr (types.strMatching "[A-Za-z0-9._-]+");
        # Every broker here: one host, one Connect cluster, under the names an
        # existing appliance already has (its file offsets stay valid).
        default =
          if cfg.kafka.enable && lib.all (b: lib.elem b.id cfg.kafka.localBrokers) cfg.kafka.brokers then
            null
          else
            config.networking.hostName;
        defaultText = lib.literalMD "`null` when every broker runs on this host, else `config.networking.hostName`";
        description = ''
          This host's Connect cluster: its worker's group.id, storage topics and
          connector name end with `-<cluster>` (`null`: pipeline.toml's names
          as they are). The connector reads {option}`file` on this host with
          one task, so each host that runs Connect must be a cluster of its
          own (the default on a host that shares its brokers with others: the
          host name); a worker of another host in the same group could be
          given the task and read its own, different file.
        '';
      };
    };

    simulator = stageOptions "simulator" {
      enable = componentEnable "Whether to run the simulated sensor fleet, appending CSV lines to {option}`services.pulsewire.connect.file`.";
      replayFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = lib.literalExpression "./provisioning/data/seed-readings.csv";
        description = "Replay this CSV file (`--replay`) instead of generating random readings.";
      };
    };
    aggregator = stageOptions "aggregator" (instancesOption "aggregator");
    processor = stageOptions "processor" (instancesOption "processor");
    uploader = stageOptions "uploader" (instancesOption "uploader");

    influxdb = {
      enable = componentEnable "Whether to run and provision InfluxDB 2 (services.influxdb2) for the pipeline.";
      address = listenAddress "InfluxDB";
      port = httpPort "InfluxDB" p.influxdb.port;
      url = mkOption {
        type = types.str;
        default = "${if cfg.influxdb.tls.enable then "https" else "http"}://127.0.0.1:${toString cfg.influxdb.port}";
        defaultText = lib.literalExpression ''"http://127.0.0.1:''${toString port}" (https with tls.enable)'';
        description = "URL the uploader, Grafana and the InfluxDB oneshots use to reach InfluxDB; with TLS its host must be a name of the certificate.";
      };
      # InfluxDB over TLS (nixos/influxdb.nix): for a store that uploaders or
      # Grafana reach across hosts. Files, never store paths: the key would
      # be world-readable there.
      tls = {
        enable = lib.mkEnableOption "HTTPS only for InfluxDB (influxd's tls-cert and tls-key), with certFile and keyFile; every client on this host then uses https and trusts caFile";
        certFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/var/lib/secrets/influxdb.crt";
          description = "PEM certificate influxd serves (a path outside the Nix store, read by systemd as root and handed to influxdb2 with LoadCredential). Its names must cover the host of {option}`services.pulsewire.influxdb.url`.";
        };
        keyFile = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "/var/lib/secrets/influxdb.key";
          description = "PEM private key of certFile (a path outside the Nix store; may stay root-only 0400: systemd hands it to influxdb2 alone with LoadCredential).";
        };
        caFile = mkOption {
          type = types.nullOr types.str;
          default = if cfg.influxdb.tls.enable then cfg.influxdb.tls.certFile else null;
          defaultText = lib.literalMD "certFile with `tls.enable` (a self-signed certificate, which must have `basicConstraints=CA:FALSE`: rustls refuses a CA certificate as a server's), else null";
          example = "/etc/pulsewire/influxdb-ca.crt";
          description = "PEM CA the clients of InfluxDB on this host trust for its https URL (the uploader, Grafana's datasource, the ready and tasks oneshots), a path outside the Nix store; only it is trusted. Set it with an https {option}`services.pulsewire.influxdb.url` on a host whose uploader or Grafana reaches another host's InfluxDB; null leaves each client to the public CAs it ships with.";
        };
      };
      retention = mkOption {
        type = types.ints.unsigned;
        default = p.influxdb.retention_seconds;
        defaultText = lib.literalMD "30 days (from pipeline.toml)";
        description = "Seconds the readings bucket keeps its points; 0 keeps them forever. Applied at every boot, also to a bucket that exists.";
      };
      rollupRetention = mkOption {
        type = types.ints.unsigned;
        default = p.influxdb.rollups.retention_seconds;
        defaultText = lib.literalMD "five years (from pipeline.toml)";
        description = "Seconds the rollup bucket (the batch layer: per-minute, hour and day statistics) keeps its points; 0 keeps them forever. The raw bucket keeps pipeline.toml's shorter retention.";
      };
    };

    grafana = {
      enable = componentEnable "Whether to run Grafana with the Pulsewire datasource and dashboard provisioned.";
      address = listenAddress "Grafana";
      port = httpPort "Grafana" p.grafana.port;
    };

    ctl.enable = componentEnable "Whether to put the operator CLI `pulsewire-ctl` (status per hop, the DLQ: list, show, replay) on the PATH, with its targets file /etc/pulsewire/ctl-targets.json. It reads Connect's REST password from its secret file, so `status` shows Connect's state when run as root.";

    prometheus =
      let
        alertDefaults = (import ./lib/prometheus.nix { pulsewire = defaults; }).alertDefaults;
        duration =
          what: default:
          mkOption {
            type = types.strMatching "[0-9]+(ms|s|m|h|d|w|y)";
            inherit default;
            description = "How long ${what} must hold before its alert fires (a Prometheus duration).";
          };
        threshold =
          what: default:
          mkOption {
            type = types.ints.unsigned;
            inherit default;
            description = "Threshold of ${what}.";
          };
      in
      {
        enable = componentEnable "Whether to run Prometheus scraping the stages, the brokers' and Connect's JMX exporter agents, with the pipeline's alert rules (shown in Grafana).";
        listenAddress = listenAddress "Prometheus";
        port = httpPort "Prometheus" p.prometheus.port;
        retentionTime = mkOption {
          type = types.str;
          default = "30d";
          description = "How long Prometheus keeps samples (--storage.tsdb.retention.time).";
        };
        scrapeInterval = mkOption {
          type = types.strMatching "[0-9]+(ms|s|m|h)";
          default = "15s";
          description = "How often every target is scraped and the rules evaluated.";
        };
        rateWindow = mkOption {
          type = types.strMatching "[0-9]+(s|m|h)";
          default = "5m";
          description = "The window of every rate() in the alert rules; at least 4 scrape intervals.";
        };
        alerts = {
          stageDown.for = duration "a stage not answering on /metrics" alertDefaults.stageDown.for;
          brokerDown.for = duration "a broker's agent not answering" alertDefaults.brokerDown.for;
          connectorTaskNotRunning.for = duration "the file connector's task not running" alertDefaults.connectorTaskNotRunning.for;
          underReplicated = {
            for = duration "under-replicated partitions" alertDefaults.underReplicated.for;
            threshold = threshold "under-replicated partitions per broker (fires above it)" alertDefaults.underReplicated.threshold;
          };
          lagGrowing = {
            for = duration "a group's lag above the threshold and not shrinking" alertDefaults.lagGrowing.for;
            threshold = threshold "a consumer group's lag in records (fires above it)" alertDefaults.lagGrowing.threshold;
          };
          dlqRate = {
            for = duration "the dead-letter rate above the threshold" alertDefaults.dlqRate.for;
            threshold = threshold "records per second into the DLQ, per reason (fires above it)" alertDefaults.dlqRate.threshold;
          };
          stageWaiting = {
            for = duration "a stage retrying without progress past the threshold" alertDefaults.stageWaiting.for;
            threshold = threshold "seconds a stage has retried InfluxDB or Kafka without progress (fires above it)" alertDefaults.stageWaiting.threshold;
          };
        };
      };

    secrets = {
      directory = mkOption {
        type = types.str;
        default = "/var/lib/pulsewire-secrets";
        description = "Root-only directory where missing secrets are generated on first boot (never in the Nix store).";
      };
      files = mkOption {
        type = types.listOf (
          types.submodule {
            options = {
              path = mkOption { type = types.str; };
              owner = mkOption { type = types.str; };
              group = mkOption { type = types.str; };
              mode = mkOption { type = types.strMatching "0[0-7]{3}"; };
            };
          }
        );
        default = [ ];
        internal = true;
        description = "Owner, group and mode of every secret file and of the secrets directory, as secrets.nix leaves them (operator-supplied files taken as root-only). Set by secrets.nix, read by the checks.";
      };
    }
    // secretOption "influxAdminPasswordFile" "the InfluxDB admin password"
    // secretOption "influxAdminTokenFile" "the InfluxDB operator token"
    // secretOption "influxUploaderTokenFile" "the InfluxDB write token of the uploader"
    // secretOption "influxGrafanaTokenFile" "the InfluxDB read token of Grafana"
    // secretOption "grafanaAdminPasswordFile" "the Grafana admin password"
    // secretOption "grafanaSecretKeyFile" "Grafana's secret_key"
    // secretOption "connectRestPasswordFile" "the password of Kafka Connect's REST API (user `pulsewire`)";
  };
}
