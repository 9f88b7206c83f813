# Pure renderer of Kafka's multi-host security: mutual TLS on every listener,
# one certificate (and so one principal) per client, the KRaft authorizer and
# the ACLs each principal needs, as data.
#
# It extends the base renderer (./pulsewire.nix, passed in so both see the
# same brokers and port offset) and uses `builtins` only, like it: the NixOS
# modules (nixos/kafka-security.nix), the local stack (`tests/local/stack up
# --secure-kafka`) and tests/nix/kafka-security.nix evaluate the same values.
#
# Files. A TLS directory (`storeFiles`) holds the CA certificate `ca.crt` and,
# per principal P, `P.key` (PKCS#8, unencrypted: the file's mode protects it),
# `P.crt` (signed by the CA) and `P.pem` (key then certificate: the PEM key
# store Kafka's Java side reads). provisioning/kafka/generate-tls writes it.
# Every renderer below takes the four paths one process sees (`files`):
# the TLS directory's own on the local stack, the unit's credentials on NixOS.
{
  pulsewire ? import ./pulsewire.nix { },
}:
let
  p = pulsewire.pipeline;
  topic = key: p.topics.${key}.name;
  stage = name: p.services.${name};
  unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
in
rec {
  # The certificate subject of each principal; the CA's is not a principal.
  organization = "pulsewire";
  principals = [
    "admin"
    "broker"
    "connect"
    "aggregator"
    "processor"
    "uploader"
  ];
  caSubject = "/O=${organization}/CN=pulsewire-kafka-ca";
  subject = principal: "/O=${organization}/CN=${principal}";

  # Kafka sees a certificate's subject as RFC 2253 (`CN=aggregator,O=pulsewire`)
  # and the rule makes it the short principal `User:aggregator`. There is no
  # DEFAULT rule: a certificate of any other shape (even one the CA signed)
  # fails authentication instead of becoming a principal of its own.
  principalMappingRules = "RULE:^CN=([a-z]+),O=${organization}$/$1/";
  superUsers = [
    "admin"
    "broker"
  ];
  user = principal: "User:${principal}";

  # The broker certificate names every broker host (clients check the host
  # name they connect to, and brokers connect to each other and to the
  # controllers with it): an IPv4 address as IP, anything else as DNS.
  sanOf = host: if builtins.match "[0-9.]+" host != null then "IP:${host}" else "DNS:${host}";
  brokerSubjectAltNames = builtins.concatStringsSep "," (
    map sanOf (unique (map (b: b.host) pulsewire.brokers))
  );

  storeFiles = dir: principal: {
    ca = "${dir}/ca.crt";
    cert = "${dir}/${principal}.crt";
    key = "${dir}/${principal}.key";
    pem = "${dir}/${principal}.pem";
  };

  # On NixOS a unit reads its principal's files from its credentials
  # directory (`dir`: /run/credentials/<unit>.service, or systemd's `%d`
  # where a unit setting takes specifiers), under these names;
  # `loadCredentials` is the unit's LoadCredential= from the TLS directory.
  credentialFiles = dir: {
    ca = "${dir}/kafka-ca.crt";
    cert = "${dir}/kafka.crt";
    key = "${dir}/kafka.key";
    pem = "${dir}/kafka.pem";
  };
  loadCredentials =
    tlsDir: principal:
    let
      from = storeFiles tlsDir principal;
      to = credentialFiles "";
    in
    map (f: "${builtins.substring 1 (-1) to.${f}}:${from.${f}}") [
      "ca"
      "cert"
      "key"
      "pem"
    ];
  unitCredentialFiles = unit: credentialFiles "/run/credentials/${unit}.service";

  # Java's side of TLS, shared by brokers and Java clients: PEM key and trust
  # stores, no store password.
  javaTls = files: {
    "ssl.keystore.type" = "PEM";
    "ssl.keystore.location" = files.pem;
    "ssl.truststore.type" = "PEM";
    "ssl.truststore.location" = files.ca;
  };

  # A broker: the base settings with every listener on SSL. Client,
  # inter-broker and controller listeners all require a client certificate.
  brokerSettings =
    {
      id,
      logDir,
      files,
    }:
    let
      b = pulsewire.brokerById id;
      hp = pulsewire.hostPort;
    in
    pulsewire.brokerSettings { inherit id logDir; }
    // javaTls files
    // {
      "listeners" = "SSL://${hp b.host b.port},CONTROLLER://${hp b.host b.controllerPort}";
      "advertised.listeners" = "SSL://${hp b.host b.port}";
      "listener.security.protocol.map" = "SSL:SSL,CONTROLLER:SSL";
      "inter.broker.listener.name" = "SSL";
      "ssl.client.auth" = "required";
      "ssl.principal.mapping.rules" = principalMappingRules;
      "authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
      "super.users" = builtins.concatStringsSep ";" (map user superUsers);
      "allow.everyone.if.no.acl.found" = "false";
    };

  brokerProperties = args: pulsewire.toProperties (brokerSettings args);

  # The ACLs: each principal may do only what its role needs. A stage reads
  # its input topic, writes its outputs (the DLQ and, for the processor, the
  # changelog it also restores from), joins its group (and the processor's
  # restore consumer's `<group>-restore`, hence prefixed) and commits under
  # its transactional ids `<prefix>-<instance>`. Connect owns its storage
  # topics, group and transactional ids (all named `<group_id>...`, also with
  # a host's cluster suffix) and writes the raw topic. The admin and the
  # brokers are super users and need none.
  acl = principal: resourceType: patternType: name: operations: {
    inherit
      principal
      resourceType
      patternType
      name
      operations
      ;
  };
  stageAcls =
    name:
    {
      input,
      outputs,
    }:
    [
      (acl name "topic" "literal" (topic input) [ "Read" ])
    ]
    ++ map (o: acl name "topic" "literal" (topic o) [ "Write" ]) outputs
    ++ [ (acl name "group" "prefixed" (stage name).group_id [ "Read" ]) ]
    ++ (
      if (stage name) ? transactional_id_prefix then
        [
          (acl name "transactional-id" "prefixed" "${(stage name).transactional_id_prefix}-" [
            "Write"
            "Describe"
          ])
        ]
      else
        [ ]
    );
  acls =
    stageAcls "aggregator" {
      input = "raw";
      outputs = [
        "readings"
        "dlq"
      ];
    }
    ++ stageAcls "processor" {
      input = "readings";
      outputs = [
        "stats"
        "dlq"
        "processor_state"
      ];
    }
    ++ [ (acl "processor" "topic" "literal" (topic "processor_state") [ "Read" ]) ]
    ++ stageAcls "uploader" {
      input = "stats";
      outputs = [ "dlq" ];
    }
    ++ [
      (acl "connect" "topic" "literal" (topic "raw") [
        "Write"
        "Describe"
      ])
      (acl "connect" "topic" "prefixed" p.connect.group_id [
        "Create"
        "Read"
        "Write"
        "Describe"
        "DescribeConfigs"
      ])
      (acl "connect" "group" "prefixed" p.connect.group_id [ "Read" ])
      # The tasks' `<group>-<connector>-<task>` and the config topic
      # leader's `connect-cluster-<group>` (KIP-618).
      (acl "connect" "transactional-id" "prefixed" p.connect.group_id [
        "Write"
        "Describe"
      ])
      (acl "connect" "transactional-id" "prefixed" "connect-cluster-${p.connect.group_id}" [
        "Write"
        "Describe"
      ])
      # KIP-618: the exactly-once source worker's producers are idempotent.
      (acl "connect" "cluster" "literal" "kafka-cluster" [ "IdempotentWrite" ])
    ];

  # Arguments of `kafka-acls.sh --bootstrap-server ... --command-config ADMIN`
  # adding one ACL (idempotent: an ACL that exists is left as it is).
  aclArgs =
    a:
    [
      "--add"
      "--allow-principal"
      (user a.principal)
    ]
    ++ builtins.concatLists (
      map (o: [
        "--operation"
        o
      ]) a.operations
    )
    ++ (if a.resourceType == "cluster" then [ "--cluster" ] else [ "--${a.resourceType}" a.name ])
    ++ [
      "--resource-pattern-type"
      a.patternType
    ];

  # A Java client (Connect, the admin tools) as `principal`: its properties
  # file, also given to the tools with --command-config.
  javaClientSettings = files: { "security.protocol" = "SSL"; } // javaTls files;
  javaClientProperties = files: pulsewire.toProperties (javaClientSettings files);

  # The Connect worker: its own clients and, prefixed, the connector's
  # producer, consumer and admin (KIP-618 fences with the admin) as `connect`.
  connectWorkerSettings =
    args:
    let
      client = javaClientSettings args.files;
      prefixed =
        prefix: builtins.listToAttrs (map (k: {
          name = "${prefix}.${k}";
          value = client.${k};
        }) (builtins.attrNames client));
    in
    pulsewire.connectWorkerSettings (builtins.removeAttrs args [ "files" ])
    // client
    // prefixed "producer"
    // prefixed "consumer"
    // prefixed "admin";

  connectWorkerProperties = args: pulsewire.toProperties (connectWorkerSettings args);

  # A stage (librdkafka) as its principal: the extra client properties it
  # reads from PULSEWIRE_KAFKA_PROPERTIES (`k=v,k=v`; paths only, no secret).
  librdkafkaSettings = files: {
    "security.protocol" = "ssl";
    "ssl.ca.location" = files.ca;
    "ssl.certificate.location" = files.cert;
    "ssl.key.location" = files.key;
  };
  stageEnvironment = files: {
    PULSEWIRE_KAFKA_PROPERTIES = builtins.concatStringsSep "," (
      let
        s = librdkafkaSettings files;
      in
      map (k: "${k}=${s.${k}}") (builtins.attrNames s)
    );
  };

  # The principal each stage service runs as (the simulator only writes a file).
  stagePrincipal = {
    aggregator = "aggregator";
    processor = "processor";
    uploader = "uploader";
  };

  # provisioning/kafka/generate-tls's settings, from the facts above.
  generateEnvironment = {
    KAFKA_TLS_PRINCIPALS = builtins.concatStringsSep " " principals;
    KAFKA_TLS_ORGANIZATION = organization;
    KAFKA_TLS_CA_SUBJECT = caSubject;
    KAFKA_TLS_BROKER_SAN = brokerSubjectAltNames;
  };
}
