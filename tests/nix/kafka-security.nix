# Kafka's multi-host security: the renders of nixos/lib/kafka-security.nix
# (listeners, principals, ACLs, client settings) and its module
# nixos/kafka-security.nix on nixpkgs' module system (a broker host, a stage
# host of the same cluster, the refusals).
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/kafka-security.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  topic = key: pipeline.topics.${key}.name;
  contains = needle: hay: builtins.match ".*${lib.escapeRegex needle}.*" hay != null;

  s = import ../../nixos/lib/kafka-security.nix { };
  files = s.storeFiles "/tls";
  brokers = map (b: s.brokerSettings {
    inherit (b) id;
    logDir = "/data";
    files = files "broker";
  }) (import ../../nixos/lib/pulsewire.nix { }).brokers;

  # What the ACLs let each principal do: { principal = { "Read topic" = [ names ]; ... }; }
  allowed =
    principal: op: type:
    lib.sort lib.lessThan (
      map (a: a.name) (
        lib.filter (a: a.principal == principal && a.resourceType == type && lib.elem op a.operations) s.acls
      )
    );
  sorted = lib.sort lib.lessThan;

  # Three hosts: brokers on 10.0.0.1, a stage host 10.0.0.2.
  clusterBrokers = [
    {
      id = 1;
      host = "10.0.0.1";
      port = 9092;
      controllerPort = 9093;
    }
  ];
  inherit (h) package;
  base = [
    ../../nixos
    { services.pulsewire.package = package; }
  ];
  brokerHost = extra: nixos.eval (
    base
    ++ [
      {
        services.pulsewire = {
          kafka.enable = true;
          kafka.brokers = clusterBrokers;
          kafka.security.enable = true;
          kafka.peers = [ "10.0.0.2" ];
          connect.enable = true;
        };
      }
      extra
    ]
  );
  a = brokerHost { };
  aNft = brokerHost { networking.nftables.enable = true; };
  aOpen = brokerHost { services.pulsewire.kafka.openFirewall = true; };
  b = nixos.eval (
    base
    ++ [
      {
        services.pulsewire = {
          kafka.brokers = clusterBrokers;
          kafka.security.enable = true;
          kafka.security.directory = "/etc/pulsewire-kafka-tls";
          kafka.peers = [ "10.0.0.1" ];
          aggregator.enable = true;
          processor.enable = true;
          processor.instances = 2;
        };
      }
    ]
  );
  plain = nixos.eval (base ++ [ { services.pulsewire.enable = true; } ]);
  ua = a.systemd.services;
  ub = b.systemd.services;
  # A unit's Kafka credentials (other credentials, e.g. Connect's REST password, aside).
  creds = unit: sorted (lib.filter (c: lib.hasPrefix "kafka" c) unit.serviceConfig.LoadCredential);
  credsOf = dir: principal: sorted (s.loadCredentials dir principal);
in
h.run [
  (check "render: every listener of every broker is SSL, the controller's too" (
    lib.all (
      p:
      p."listener.security.protocol.map" == "SSL:SSL,CONTROLLER:SSL"
      && lib.hasPrefix "SSL://" p.listeners
      && contains ",CONTROLLER://" p.listeners
      && p."inter.broker.listener.name" == "SSL"
      && p."advertised.listeners" == builtins.replaceStrings [ ",CONTROLLER://" ] [ "" ] (lib.head (lib.splitString ",CONTROLLER" p.listeners))
    ) brokers
  ))
  (check "render: client certificates required, KRaft authorizer, deny without ACL" (
    lib.all (
      p:
      p."ssl.client.auth" == "required"
      && p."authorizer.class.name" == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
      && p."allow.everyone.if.no.acl.found" == "false"
      && p."super.users" == "User:admin;User:broker"
      && p."ssl.keystore.location" == "/tls/broker.pem"
      && p."ssl.truststore.location" == "/tls/ca.crt"
    ) brokers
  ))
  (check "render: short principals from the subject, no DEFAULT rule" (
    s.principalMappingRules == "RULE:^CN=([a-z]+),O=pulsewire$/$1/" && !(contains "DEFAULT" s.principalMappingRules)
  ))
  (check "render: the broker certificate names each broker host" (
    s.brokerSubjectAltNames == "IP:127.0.0.1"
    && (import ../../nixos/lib/kafka-security.nix {
      pulsewire = import ../../nixos/lib/pulsewire.nix {
        brokerList = [
          { id = 1; host = "10.0.0.1"; port = 9092; controllerPort = 9093; }
          { id = 2; host = "kafka-2.lan"; port = 9092; controllerPort = 9093; }
        ];
      };
    }).brokerSubjectAltNames == "IP:10.0.0.1,DNS:kafka-2.lan"
  ))
  (check "acls: aggregator reads raw, writes readings and the DLQ" (
    allowed "aggregator" "Read" "topic" == [ (topic "raw") ]
    && allowed "aggregator" "Write" "topic" == sorted [ (topic "readings") (topic "dlq") ]
  ))
  (check "acls: processor reads readings and its changelog, writes stats, DLQ, changelog" (
    allowed "processor" "Read" "topic" == sorted [ (topic "readings") (topic "processor_state") ]
    && allowed "processor" "Write" "topic" == sorted [ (topic "stats") (topic "dlq") (topic "processor_state") ]
  ))
  (check "acls: uploader reads stats, writes the DLQ only" (
    allowed "uploader" "Read" "topic" == [ (topic "stats") ] && allowed "uploader" "Write" "topic" == [ (topic "dlq") ]
  ))
  (check "acls: each stage its own group and transactional ids" (
    allowed "aggregator" "Read" "group" == [ pipeline.services.aggregator.group_id ]
    && allowed "processor" "Read" "group" == [ pipeline.services.processor.group_id ]
    && allowed "uploader" "Read" "group" == [ pipeline.services.uploader.group_id ]
    && allowed "aggregator" "Write" "transactional-id" == [ "${pipeline.services.aggregator.transactional_id_prefix}-" ]
    && allowed "processor" "Write" "transactional-id" == [ "${pipeline.services.processor.transactional_id_prefix}-" ]
    && allowed "uploader" "Write" "transactional-id" == [ ]
  ))
  (check "acls: Connect writes raw and owns only its own topics, group and ids" (
    allowed "connect" "Write" "topic" == sorted [ (topic "raw") pipeline.connect.group_id ]
    && allowed "connect" "Read" "topic" == [ pipeline.connect.group_id ]
    && allowed "connect" "Read" "group" == [ pipeline.connect.group_id ]
  ))
  (check "acls: no wildcard, no ACL for the super users, every principal known" (
    lib.all (a: a.name != "*" && lib.elem a.principal s.principals && !(lib.elem a.principal s.superUsers)) s.acls
  ))
  (check "acls: rendered as kafka-acls arguments" (
    s.aclArgs (lib.head s.acls) == [
      "--add"
      "--allow-principal"
      "User:aggregator"
      "--operation"
      "Read"
      "--topic"
      (topic "raw")
      "--resource-pattern-type"
      "literal"
    ]
  ))
  (check "render: a stage's librdkafka properties, paths only" (
    (s.stageEnvironment (files "processor")).PULSEWIRE_KAFKA_PROPERTIES
    == "security.protocol=ssl,ssl.ca.location=/tls/ca.crt,ssl.certificate.location=/tls/processor.crt,ssl.key.location=/tls/processor.key"
  ))
  (check "render: Connect's worker and its connector's clients as `connect`" (
    let
      w = s.connectWorkerSettings {
        pluginPath = "/p";
        files = files "connect";
      };
    in
    lib.all (prefix: w."${prefix}security.protocol" == "SSL" && w."${prefix}ssl.keystore.location" == "/tls/connect.pem") [
      ""
      "producer."
      "consumer."
      "admin."
    ]
  ))
  (check "module: off by default, brokers PLAINTEXT, no TLS unit" (
    !(plain.systemd.services ? pulsewire-kafka-tls)
    && contains "listener.security.protocol.map=PLAINTEXT:PLAINTEXT" plain.environment.etc."pulsewire/kafka-1.properties".source.text
  ))
  (check "module: broker host assertions hold" (nixos.failedAssertions a == [ ]))
  (check "module: the broker's properties are the secured render" (
    let
      t = a.environment.etc."pulsewire/kafka-1.properties".source.text;
    in
    contains "ssl.client.auth=required" t
    && contains "listeners=SSL://10.0.0.1:9092,CONTROLLER://10.0.0.1:9093" t
    && contains "ssl.keystore.location=/run/credentials/pulsewire-kafka-1.service/kafka.pem" t
  ))
  (check "module: each unit loads its own principal's files, after the TLS unit" (
    creds ua.pulsewire-kafka-1 == credsOf "/var/lib/pulsewire-kafka-tls" "broker"
    && creds ua.pulsewire-connect == credsOf "/var/lib/pulsewire-kafka-tls" "connect"
    && creds ua.pulsewire-kafka-topics == credsOf "/var/lib/pulsewire-kafka-tls" "admin"
    && creds ua.pulsewire-kafka-acls == credsOf "/var/lib/pulsewire-kafka-tls" "admin"
    && creds ub.pulsewire-processor-2 == credsOf "/etc/pulsewire-kafka-tls" "processor"
    && creds ub.pulsewire-aggregator == credsOf "/etc/pulsewire-kafka-tls" "aggregator"
    && lib.all (u: lib.elem "pulsewire-kafka-tls.service" u.requires && lib.elem "pulsewire-kafka-tls.service" u.after) [
      ua.pulsewire-kafka-1
      ua.pulsewire-connect
      ub.pulsewire-aggregator
    ]
  ))
  (check "module: the broker host generates the CA, the stage host only checks its files" (
    contains "pulsewire-kafka-tls-generate" (toString ua.pulsewire-kafka-tls.serviceConfig.ExecStart.text)
    && !(contains "pulsewire-kafka-tls-generate" ub.pulsewire-kafka-tls.serviceConfig.ExecStart.text)
    && contains "processor.pem" ub.pulsewire-kafka-tls.serviceConfig.ExecStart.text
    && !(contains "connect.pem" ub.pulsewire-kafka-tls.serviceConfig.ExecStart.text)
    && ua.pulsewire-kafka-tls.serviceConfig.StateDirectoryMode == "0700"
  ))
  (check "module: the ACL oneshot applies every ACL as the admin, from a properties file" (
    let
      t = ua.pulsewire-kafka-acls.serviceConfig.ExecStart.text;
    in
    contains "--command-config ${builtins.storeDir}" t
    && lib.all (a: contains (lib.escapeShellArgs (s.aclArgs a)) t) s.acls
    && !(ub ? pulsewire-kafka-acls)
  ))
  (check "module: the topics oneshot runs as the admin" (
    contains "--command-config" ua.pulsewire-kafka-topics.serviceConfig.ExecStart.text
  ))
  (check "module: stages speak TLS from their credentials, to loopback and the peers only" (
    lib.all (u: contains "ssl.certificate.location=%d/kafka.crt" u.environment.PULSEWIRE_KAFKA_PROPERTIES
      && u.serviceConfig.IPAddressAllow == [ "localhost" "10.0.0.1" ]
      && u.serviceConfig.IPAddressDeny == [ "any" ]) [
      ub.pulsewire-aggregator
      ub.pulsewire-processor
      ub.pulsewire-processor-2
    ]
  ))
  (check "module: the firewall admits the peers to the broker ports (iptables and nftables)" (
    a.networking.firewall.extraCommands
    == "iptables -A nixos-fw -p tcp -s 10.0.0.2 -m multiport --dports 9092,9093 -j nixos-fw-accept\n"
    && aNft.networking.firewall.extraInputRules == "ip saddr 10.0.0.2 tcp dport { 9092,9093 } accept\n"
    && !(lib.elem 9092 a.networking.firewall.allowedTCPPorts)
    && b.networking.firewall.extraCommands == ""
  ))
  (check "module: openFirewall with security is refused" (
    lib.any (m: contains "kafka.openFirewall opens the Kafka ports to every source" m) (nixos.failedAssertions aOpen)
  ))
]
