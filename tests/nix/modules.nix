# Evaluates the NixOS modules (nixos/*.nix) with nixpkgs' module system
# (./lib/eval-nixos.nix: real lib.evalModules and types, stand-ins with nixpkgs'
# types for the upstream options) and checks the wiring: the appliance as
# deployed, brokers split over hosts, and operator-supplied secrets.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/modules.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);

  inherit (h) package;
  base = [
    ../../nixos
    { services.pulsewire.package = package; }
  ];

  appliance = nixos.eval (
    base
    ++ [
      ../../nixos/appliance.nix
      { services.pulsewire.simulator.replayFile = ../../provisioning/data/seed-readings.csv; }
    ]
  );
  units = appliance.systemd.services;
  sc = name: units.${name}.serviceConfig;
  exec = name: toString (sc name).ExecStart;
  text = x: x.text;
  contains = needle: hay: builtins.match ".*${lib.escapeRegex needle}.*" hay != null;
  stages = [
    "simulator"
    "aggregator"
    "processor"
    "uploader"
  ];
  brokerUnits = map (i: "pulsewire-kafka-${toString i}") [ 1 2 3 ];
  assertionsHold = cfg: nixos.failedAssertions cfg == [ ];

  # A host running only broker 2 of a cluster spread over three hosts.
  split = nixos.eval (
    base
    ++ [
      {
        services.pulsewire = {
          kafka.enable = true;
          kafka.brokers = map (id: {
            inherit id;
            host = "10.0.0.${toString id}";
            port = 9092;
            controllerPort = 9093;
          }) [ 1 2 3 ];
          kafka.localBrokers = [ 2 ];
          kafka.openFirewall = true;
        };
      }
    ]
  );

  badLocal = nixos.eval (
    base
    ++ [
      {
        services.pulsewire.kafka.enable = true;
        services.pulsewire.kafka.localBrokers = [ 7 ];
      }
    ]
  );

  operatorSecrets = nixos.eval (
    base
    ++ [
      {
        services.pulsewire.enable = true;
        services.pulsewire.secrets.influxAdminTokenFile = "/run/secrets/influx-admin-token";
        services.pulsewire.secrets.grafanaAdminPasswordFile = "/nix/store/oops-password";
      }
    ]
  );
  secretsScript = cfg: text cfg.systemd.services.pulsewire-secrets.serviceConfig.ExecStart;
  # The names of the files pulsewire-secrets generates.
  secretsGenerated =
    cfg:
    map (m: baseNameOf (lib.head m)) (
      lib.filter (m: m != null) (map (builtins.match "generate ([^ ]+)") (lib.splitString "\n" (secretsScript cfg)))
    );
  # The operator CLI's targets file, as installed.
  ctlTargets =
    cfg: builtins.fromJSON (builtins.unsafeDiscardStringContext cfg.environment.etc."pulsewire/ctl-targets.json".source.text);
  # The appliance with two processors, and without the CLI.
  scaled = nixos.eval (base ++ [ ../../nixos/appliance.nix { services.pulsewire.processor.instances = 2; } ]);
  noCtl = nixos.eval (base ++ [ ../../nixos/appliance.nix { services.pulsewire.ctl.enable = false; } ]);
  # `--metrics-addr` of a stage unit's command line.
  metricsArg =
    cfg: unit:
    lib.head (builtins.match ".*--metrics-addr'? '?([0-9.:]+).*" (toString cfg.systemd.services.${unit}.serviceConfig.ExecStart));
in
h.run [
  (check "appliance: module assertions hold" (assertionsHold appliance))
  (check "appliance: every Pulsewire unit is declared" (
    builtins.all (u: units ? ${u}) (
      brokerUnits
      ++ map (s: "pulsewire-${s}") stages
      ++ [
        "pulsewire-kafka-topics"
        "pulsewire-connect"
        "pulsewire-connect-register"
        "pulsewire-secrets"
      ]
    )
  ))
  (check "brokers: own properties, state directory, heap, restart, exit 143" (
    builtins.all (
      u:
      contains "kafka-server-start.sh" (exec u)
      && contains "${u}.properties" (exec u)
      && (sc u).StateDirectory == u
      && (sc u).Restart == "on-failure"
      && (sc u).SuccessExitStatus == "0 143"
      && lib.hasPrefix "-Xms${pipeline.kafka.heap} -Xmx${pipeline.kafka.heap} " units.${u}.environment.KAFKA_HEAP_OPTS
    ) brokerUnits
  ))
  (check "brokers: storage formatted once, with the pipeline's cluster id" (
    builtins.all (
      u:
      contains "meta.properties" units.${u}.preStart
      && contains "--cluster-id ${pipeline.kafka.cluster_id}" units.${u}.preStart
    ) brokerUnits
  ))
  (check "brokers: log to the journal through the console appender" (
    contains "log4j2.configurationFile=" units.pulsewire-kafka-1.environment.KAFKA_LOG4J_OPTS
  ))
  (check "topics oneshot: after every broker, idempotent create of every topic" (
    let
      script = text (sc "pulsewire-kafka-topics").ExecStart;
    in
    (sc "pulsewire-kafka-topics").Type == "oneshot"
    && builtins.all (u: builtins.elem "${u}.service" units.pulsewire-kafka-topics.after) brokerUnits
    && builtins.all (t: contains "--topic ${t.name} " script) (builtins.attrValues pipeline.topics)
    && contains "--if-not-exists" script
    && contains "cleanup.policy=compact" script
  ))
  (check "connect: distributed worker reading the readings file through its group" (
    contains "connect-distributed.sh" (exec "pulsewire-connect")
    && contains "pulsewire-connect-worker.properties" (exec "pulsewire-connect")
    && builtins.elem "pulsewire" (sc "pulsewire-connect").SupplementaryGroups
    && (sc "pulsewire-connect").SuccessExitStatus == "0 143"
  ))
  (check "connect: worker properties: exactly-once, string converters, file plugin, RF 3" (
    let
      props = h.parseProperties appliance.environment.etc."pulsewire/connect-worker.properties".source.text;
    in
    props."exactly.once.source.support" == "enabled"
    && props."value.converter" == "org.apache.kafka.connect.storage.StringConverter"
    && contains "pulsewire-connect-file-plugin" props."plugin.path"
    && props."offset.storage.replication.factor" == "3"
    && props."bootstrap.servers" == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
  ))
  (check "connect: connector tails the pipeline file into the raw topic" (
    let
      c = builtins.fromJSON appliance.environment.etc."pulsewire/connector.json".source.text;
    in
    c.file == pipeline.connect.file && c.topic == pipeline.topics.raw.name
  ))
  (check "brokers: rendered properties with the shared quorum" (
    builtins.all (
      id:
      let
        props = h.parseProperties appliance.environment.etc."pulsewire/kafka-${toString id}.properties".source.text;
      in
      props."node.id" == toString id
      && props."controller.quorum.voters" == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
      && props."log.dirs" == "/var/lib/pulsewire-kafka-${toString id}/data"
    ) [ 1 2 3 ]
  ))
  (check "connect: registration PUTs the rendered connector config, retrying" (
    let
      script = text (sc "pulsewire-connect-register").ExecStart;
    in
    contains "-X PUT" script
    && contains "until" script
    # One host with every broker: pipeline.toml's connector name, as before clusters.
    && units.pulsewire-connect-register.environment.CONNECTOR_NAME == pipeline.connect.connector_name
    && units.pulsewire-connect-register.environment.CONNECT_URL == "http://127.0.0.1:${toString pipeline.connect.rest_port}"
    && units.pulsewire-connect-register.environment.CONNECTOR_CONFIG == "${appliance.environment.etc."pulsewire/connector.json".source}"
    && builtins.elem "pulsewire-connect.service" units.pulsewire-connect-register.after
  ))
  (check "connect watch: provisioning/connect/watch every 30 s by a timer, restart times in its state directory" (
    let
      timer = appliance.systemd.timers.pulsewire-connect-watch;
    in
    text (sc "pulsewire-connect-watch").ExecStart == builtins.readFile ../../provisioning/connect/watch
    && (sc "pulsewire-connect-watch").Type == "oneshot"
    && (sc "pulsewire-connect-watch").StateDirectory == "pulsewire-connect-watch"
    && units.pulsewire-connect-watch.environment.CONNECTOR_NAME == pipeline.connect.connector_name
    && units.pulsewire-connect-watch.environment.CONNECT_URL == units.pulsewire-connect-register.environment.CONNECT_URL
    && builtins.all (p: builtins.elem p units.pulsewire-connect-watch.path) [ nixos.pkgs.curl nixos.pkgs.jq ]
    && timer.timerConfig.OnUnitActiveSec == "30s"
    && builtins.elem "timers.target" timer.wantedBy
    && !(units.pulsewire-connect-watch ? wantedBy && units.pulsewire-connect-watch.wantedBy != [ ])
  ))
  (check "connect: REST API behind basic auth; the password a credential of the worker and its clients, never in argv" (
    let
      props = h.parseProperties appliance.environment.etc."pulsewire/connect-worker.properties".source.text;
      jaas = appliance.environment.etc."pulsewire/connect-jaas.conf".source;
      usersFile = "/run/pulsewire-connect/rest-users.properties";
      credential = [ "connect-rest-password:/var/lib/pulsewire-secrets/connect-rest-password" ];
      writeUsers = text (sc "pulsewire-connect").ExecStartPre;
      clients = [
        "pulsewire-connect-register"
        "pulsewire-connect-watch"
      ];
      secretFree = u: !(contains "pulsewire-secrets" (builtins.toJSON (units.${u}.environment // { x = exec u; })));
    in
    (props."rest.extension.classes" or null) == "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
    && units.pulsewire-connect.environment.KAFKA_OPTS == "-Djava.security.auth.login.config=${jaas}"
    && contains "KafkaConnect {" jaas.text
    && contains "org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required" jaas.text
    && contains "file=\"${usersFile}\";" jaas.text
    && (sc "pulsewire-connect").LoadCredential == credential
    && (sc "pulsewire-connect").RuntimeDirectory == "pulsewire-connect"
    && (sc "pulsewire-connect").RuntimeDirectoryMode == "0700"
    && contains "$(<\"$CREDENTIALS_DIRECTORY/connect-rest-password\")" writeUsers
    && contains "> ${usersFile}" writeUsers
    && builtins.all (
      u:
      (sc u).LoadCredential == credential
      && units.${u}.environment.CONNECT_USER == "pulsewire"
      && units.${u}.environment.CONNECT_PASSWORD_FILE == "%d/connect-rest-password"
      && contains "curl -K \"$auth\"" (text (sc u).ExecStart)
      && !(contains " -u " (text (sc u).ExecStart))
    ) clients
    && builtins.all secretFree ([ "pulsewire-connect" ] ++ clients)
    && builtins.all (u: builtins.elem "${u}.service" units.pulsewire-secrets.requiredBy) ([ "pulsewire-connect" ] ++ clients)
  ))
  (check "topics oneshot: sets every topic's declared configs on existing topics too" (
    let
      script = text (sc "pulsewire-kafka-topics").ExecStart;
    in
    contains "kafka-configs.sh" script
    && contains "--entity-name heartrate.raw --alter --add-config " script
    && contains "max.message.bytes=${pipeline.topics.raw.configs."max.message.bytes"}" script
    && contains "retention.ms=${toString pipeline.kafka.topic_defaults.retention_ms}" script
  ))
  (check "readings directory: owned by pulsewire, group-readable only" (
    builtins.elem "d ${builtins.dirOf pipeline.connect.file} 0750 pulsewire pulsewire - -" appliance.systemd.tmpfiles.rules
    && appliance.users.users.pulsewire.group == "pulsewire"
  ))
  (check "stages: Type=notify, watchdog, restart, sandboxed" (
    builtins.all (
      s:
      let
        c = sc "pulsewire-${s}";
      in
      c.Type == "notify"
      && c ? WatchdogSec
      && c.Restart == "on-failure"
      && c.RestartPreventExitStatus == "78"
      && c.ProtectSystem == "strict"
      && c.CapabilityBoundingSet == ""
      && c.PrivateDevices
      && c.NoNewPrivileges
      && builtins.elem "@system-service" c.SystemCallFilter
      && c.RestrictAddressFamilies == [
        "AF_INET"
        "AF_INET6"
        "AF_UNIX"
      ]
      && contains "${package}/bin/pulsewire-${s} --metrics-addr 127.0.0.1:${toString pipeline.services.${s}.metrics_port}" (exec "pulsewire-${s}")
    ) stages
  ))
  (check "stages: dynamic users, except the simulator (owner of the readings file)" (
    (sc "pulsewire-aggregator").DynamicUser
    && (sc "pulsewire-processor").DynamicUser
    && (sc "pulsewire-uploader").DynamicUser
    && (sc "pulsewire-simulator").User == "pulsewire"
    && !(sc "pulsewire-simulator").DynamicUser
  ))
  (check "stages: the environment names the pipeline file the services read" (
    builtins.all (
      s: builtins.match "/nix/store/[a-z0-9]{32}-pipeline.toml" units."pulsewire-${s}".environment.PULSEWIRE_PIPELINE != null
    ) stages
  ))
  (check "stages: the renderer's command, unchanged" (
    let
      render = import ../../nixos/lib/pulsewire.nix { };
    in
    builtins.all (
      s:
      let
        c = render.serviceCommand s {
          binDir = "${package}/bin";
          pipelinePath = units."pulsewire-${s}".environment.PULSEWIRE_PIPELINE;
          influxTokenFile = "%d/influx-token";
          replayFile = "${../../provisioning/data/seed-readings.csv}";
          hostName = "nixos";
        };
      in
      exec "pulsewire-${s}" == lib.escapeShellArgs c.argv
      && (sc "pulsewire-${s}").TimeoutStopSec == "60s"
      && units."pulsewire-${s}".environment == c.environment
    ) stages
  ))
  (check "simulator: replays the seed into the connector's file" (
    contains "--output ${pipeline.connect.file}" (exec "pulsewire-simulator")
    && contains "seed-readings.csv" (exec "pulsewire-simulator")
  ))
  (check "Kafka stages: ordered after brokers and topics" (
    builtins.all (
      s: builtins.elem "pulsewire-kafka-topics.service" units."pulsewire-${s}".after
    ) [ "aggregator" "processor" "uploader" ]
  ))
  (check "uploader: after InfluxDB accepts its token, token through LoadCredential" (
    builtins.elem "pulsewire-influxdb-ready.service" units.pulsewire-uploader.after
    && builtins.elem "pulsewire-influxdb-ready.service" units.pulsewire-uploader.wants
    && (sc "pulsewire-uploader").LoadCredential == [ "influx-token:/var/lib/pulsewire-secrets/influx-uploader-token" ]
    && contains "--influx-token-file %d/influx-token" (exec "pulsewire-uploader")
  ))
  (check "secrets: generated before InfluxDB, Grafana and the uploader" (
    let
      u = units.pulsewire-secrets;
    in
    builtins.all (c: builtins.elem c u.before && builtins.elem c u.requiredBy) [
      "pulsewire-influxdb-setup.service"
      "influxdb2.service"
      "grafana.service"
      "pulsewire-uploader.service"
    ]
    && builtins.elem "pulsewire-secrets.service" units.pulsewire-influxdb-setup.requires
    && builtins.elem "pulsewire-secrets.service" units.grafana.requires
  ))
  (check "secrets: every one generated into the root-only directory" (
    let
      script = secretsScript appliance;
    in
    secretsGenerated appliance == [
      "influx-admin-password"
      "influx-admin-token"
      "grafana-admin-password"
      "grafana-secret-key"
      "connect-rest-password"
    ]
    && contains "chmod 0700 \"$dir\"" script
    && contains "chmod 0400 \"$file\"" script
  ))
  (check "influxdb: set up by Pulsewire's script, org, buckets, retention and tokens from pipeline.toml" (
    let
      i = appliance.services.influxdb2;
      setup = units.pulsewire-influxdb-setup;
      facts = builtins.fromJSON setup.environment.PULSEWIRE_INFLUXDB_FACTS.text;
      script = text (sc "pulsewire-influxdb-setup").ExecStart;
    in
    i.enable
    && !i.provision.enable
    && facts.org == pipeline.influxdb.org
    && facts.bucket == pipeline.influxdb.bucket
    && facts.retention_seconds == pipeline.influxdb.retention_seconds
    && facts.rollups.bucket == pipeline.influxdb.rollups.bucket
    && facts.rollups.retention_seconds == pipeline.influxdb.rollups.retention_seconds
    && facts.auths.pulsewire-uploader.writeBuckets == [ pipeline.influxdb.bucket ]
    && facts.auths.pulsewire-uploader.readBuckets == [ ]
    && facts.auths.pulsewire-grafana.readBuckets == [
      pipeline.influxdb.bucket
      pipeline.influxdb.rollups.bucket
    ]
    && facts.auths.pulsewire-grafana.writeBuckets == [ ]
    && contains "/setup http://127.0.0.1:${toString pipeline.influxdb.port} \"$PULSEWIRE_INFLUXDB_FACTS\"" script
    && contains "\"$CREDENTIALS_DIRECTORY/admin-password\" \"$CREDENTIALS_DIRECTORY/admin-token\"" script
    && (sc "pulsewire-influxdb-setup").LoadCredential == [
      "admin-password:/var/lib/pulsewire-secrets/influx-admin-password"
      "admin-token:/var/lib/pulsewire-secrets/influx-admin-token"
    ]
    && i.settings.http-bind-address == "0.0.0.0:${toString pipeline.influxdb.port}"
    && i.settings.pprof-disabled
    && i.settings.metrics-disabled
  ))
  (check "influxdb: the setup's influxd runs before influxdb2, unreachable (private network), as influxdb2" (
    let
      setup = units.pulsewire-influxdb-setup;
      c = sc "pulsewire-influxdb-setup";
    in
    c.PrivateNetwork
    && c.User == "influxdb2"
    && c.StateDirectory == "influxdb2"
    && builtins.elem "influxdb2.service" setup.before
    && builtins.elem "influxdb2.service" setup.requiredBy
    && builtins.elem "pulsewire-influxdb-setup.service" units.influxdb2.requires
    && builtins.elem "pulsewire-influxdb-setup.service" units.influxdb2.after
    # influxdb2's own configuration file, not its PATH.
    && setup.environment.INFLUXD_CONFIG_PATH == units.influxdb2.environment.INFLUXD_CONFIG_PATH
  ))
  (check "influxdb: a root step (\"+\") takes InfluxDB's tokens into the secrets directory" (
    builtins.match "\\+/nix/store/[a-z0-9]+-pulsewire-influxdb-tokens" (sc "pulsewire-influxdb-setup").ExecStartPost != null
    && !(builtins.elem "influx-uploader-token" (secretsGenerated appliance))
    && !(builtins.elem "influx-grafana-token" (secretsGenerated appliance))
  ))
  (check "influxdb: an operator's client token on the InfluxDB host is refused, naming the option" (
    let
      withToken = nixos.eval (
        base
        ++ [
          {
            services.pulsewire.enable = true;
            services.pulsewire.secrets.influxUploaderTokenFile = "/run/secrets/t";
          }
        ]
      );
    in
    lib.any (lib.hasPrefix "services.pulsewire.secrets.influxUploaderTokenFile: on the host that runs InfluxDB") (
      nixos.failedAssertions withToken
    )
  ))
  (check "batch layer: the rollup bucket keeps pipeline.toml's long retention" (
    (builtins.fromJSON units.pulsewire-influxdb-setup.environment.PULSEWIRE_INFLUXDB_FACTS.text).rollups.retention_seconds
    == pipeline.influxdb.rollups.retention_seconds
  ))
  (check "batch layer: one task per window, synced after InfluxDB is ready, with the admin token as a credential" (
    let
      u = units.pulsewire-influxdb-tasks;
      tasksFile = builtins.head (builtins.match ".* '?(/nix/store/[^ ']*pulsewire-influxdb-tasks.json)'?$" (exec "pulsewire-influxdb-tasks"));
    in
    builtins.elem "pulsewire-influxdb-ready.service" u.after
    && (sc "pulsewire-influxdb-tasks").LoadCredential == [ "admin-token:/var/lib/pulsewire-secrets/influx-admin-token" ]
    && contains "sync-tasks" (exec "pulsewire-influxdb-tasks")
    && contains "%d/admin-token" (exec "pulsewire-influxdb-tasks")
    && builtins.isString tasksFile
    && map (w: "pulsewire-rollup-${w}") pipeline.influxdb.rollups.windows == [
      "pulsewire-rollup-1m"
      "pulsewire-rollup-1h"
      "pulsewire-rollup-1d"
    ]
  ))
  (check "grafana: secrets only through $__file{} and LoadCredential" (
    let
      g = appliance.services.grafana;
      ds = builtins.head g.provision.datasources.settings.datasources;
    in
    g.settings.security.admin_password == "$__file{/run/credentials/grafana.service/admin-password}"
    && g.settings.security.secret_key == "$__file{/run/credentials/grafana.service/secret-key}"
    && ds.secureJsonData.token == "$__file{/run/credentials/grafana.service/influx-token}"
    && builtins.length (sc "grafana").LoadCredential == 3
  ))
  (check "grafana: Flux datasource for the pipeline's org and bucket, dashboards provisioned" (
    let
      g = appliance.services.grafana;
      ds = builtins.head g.provision.datasources.settings.datasources;
      provider = builtins.head g.provision.dashboards.settings.providers;
    in
    ds.type == "influxdb"
    && ds.jsonData.version == "Flux"
    && ds.jsonData.organization == pipeline.influxdb.org
    && ds.jsonData.defaultBucket == pipeline.influxdb.bucket
    && ds.uid == "pulsewire-influxdb"
    && builtins.pathExists (provider.options.path + "/pulsewire-heartrate.json")
    && g.settings.server.http_addr == "0.0.0.0"
    && g.settings.server.http_port == pipeline.grafana.port
  ))
  (check "appliance: firewall opens exactly Grafana and InfluxDB" (
    builtins.sort builtins.lessThan appliance.networking.firewall.allowedTCPPorts
    == builtins.sort builtins.lessThan [
      pipeline.grafana.port
      pipeline.influxdb.port
    ]
  ))
  (check "appliance: VM forwards Grafana and InfluxDB to the host" (
    map (f: f.guest.port) appliance.virtualisation.vmVariant.virtualisation.forwardPorts == [
      pipeline.grafana.port
      pipeline.influxdb.port
    ]
  ))
  (check "appliance: the forwarded ports listen on the host's loopback only" (
    map (f: f.host.address) appliance.virtualisation.vmVariant.virtualisation.forwardPorts == [
      "127.0.0.1"
      "127.0.0.1"
    ]
  ))
  (check "grafana: after InfluxDB accepts its token" (
    builtins.elem "pulsewire-influxdb-ready.service" units.grafana.after
    && builtins.elem "pulsewire-influxdb-ready.service" units.grafana.wants
  ))
  (check "influxdb-ready: after InfluxDB, both tokens as credentials, none on a command line" (
    let
      u = units.pulsewire-influxdb-ready;
      script = text (sc "pulsewire-influxdb-ready").ExecStart;
    in
    builtins.elem "influxdb2.service" u.after
    && builtins.elem "influxdb2.service" u.requires
    && (sc "pulsewire-influxdb-ready").LoadCredential == [
      "pulsewire-grafana:/var/lib/pulsewire-secrets/influx-grafana-token"
      "pulsewire-uploader:/var/lib/pulsewire-secrets/influx-uploader-token"
    ]
    && contains "-H @\"$header\"" script
  ))
  (check "split cluster: only the local broker runs, with the shared quorum" (
    split.systemd.services ? pulsewire-kafka-2
    && !(split.systemd.services ? pulsewire-kafka-1)
    && !(split.systemd.services ? pulsewire-kafka-3)
    && assertionsHold split
    && builtins.sort builtins.lessThan split.networking.firewall.allowedTCPPorts == [ 9092 9093 ]
  ))
  (check "split cluster: broker 2 advertises its own host, shares the voters" (
    let
      props = h.parseProperties split.environment.etc."pulsewire/kafka-2.properties".source.text;
    in
    props."advertised.listeners" == "PLAINTEXT://10.0.0.2:9092"
    && props."controller.quorum.voters" == "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093"
    && props."node.id" == "2"
    && props."log.dirs" == "/var/lib/pulsewire-kafka-2/data"
  ))
  (check "bad localBrokers id fails an assertion" (!(assertionsHold badLocal)))
  (check "operator-given secrets are used, not generated" (
    let
      script = secretsScript operatorSecrets;
    in
    !(contains "influx-admin-token" script)
    && contains "influx-admin-password" script
    && builtins.elem "admin-token:/run/secrets/influx-admin-token" operatorSecrets.systemd.services.pulsewire-influxdb-setup.serviceConfig.LoadCredential
  ))
  (check "a secret in the Nix store fails an assertion" (!(assertionsHold operatorSecrets)))
  (check "ctl: pulsewire-ctl on the PATH, its targets are where the units run" (
    let
      t = ctlTargets appliance;
      register = units.pulsewire-connect-register;
    in
    builtins.elem package appliance.environment.systemPackages
    && t.pipeline == units.pulsewire-aggregator.environment.PULSEWIRE_PIPELINE
    && t.bootstrap_servers == units.pulsewire-aggregator.environment.PULSEWIRE_BOOTSTRAP_SERVERS
    && t.metrics == {
      aggregator = [ (metricsArg appliance "pulsewire-aggregator") ];
      processor = [ (metricsArg appliance "pulsewire-processor") ];
      uploader = [ (metricsArg appliance "pulsewire-uploader") ];
    }
    && t.metrics.processor == [ "127.0.0.1:${toString pipeline.services.processor.metrics_port}" ]
    && t.connect.url == register.environment.CONNECT_URL
    && t.connect.connector == register.environment.CONNECTOR_NAME
    && builtins.elem "connect-rest-password:${t.connect.password_file}" register.serviceConfig.LoadCredential
    && t.readings_file == appliance.services.pulsewire.connect.file
  ))
  (check "ctl: every instance's metrics address, no secret in the targets file" (
    let
      t = ctlTargets scaled;
      text = scaled.environment.etc."pulsewire/ctl-targets.json".source.text;
    in
    t.metrics.processor == [
      (metricsArg scaled "pulsewire-processor")
      (metricsArg scaled "pulsewire-processor-2")
    ]
    && lib.hasPrefix "/var/lib/pulsewire-secrets/" t.connect.password_file
    && !(contains "password\":\"" text)
  ))
  (check "ctl: disabled, neither on the PATH nor configured" (
    !(noCtl.environment.etc ? "pulsewire/ctl-targets.json")
    && !(builtins.elem package noCtl.environment.systemPackages)
  ))
]
