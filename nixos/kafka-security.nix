# Kafka across hosts: mutual TLS on every listener, ACLs per principal and a
# firewall open to the peers only (services.pulsewire.kafka.security, off by
# default: the single-host appliance keeps its brokers on loopback PLAINTEXT).
#
# What is rendered comes from ./lib/kafka-security.nix (the local stack's
# `up --secure-kafka` runs the same): the brokers' listeners, the Connect
# worker's and the stages' client settings, the ACLs. This module adds the
# units and the wiring:
#
#   pulsewire-kafka-tls   first boot: a CA and one key and certificate per
#                         principal (provisioning/kafka/generate-tls) in
#                         `directory`, root-only; or checks that the
#                         operator's files are there
#   pulsewire-kafka-acls  applies the ACLs with the admin's certificate
#                         (kafka-acls --command-config: paths, no secret)
#
# Every Kafka client unit gets its principal's files by LoadCredential (only
# that unit's user can read them; nothing in the store): the brokers `broker`,
# the topic and ACL oneshots `admin`, Connect `connect`, each stage its own.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.pulsewire;
  kcfg = cfg.kafka;
  scfg = kcfg.security;
  render = import ./lib/render.nix cfg;
  security = import ./lib/kafka-security.nix { pulsewire = render; };
  inherit (import ./lib/hardening.nix) oneshot jvm jvmMemoryOpts;
  kafka = kcfg.package;

  allLocal = kcfg.enable && lib.all (b: lib.elem b.id kcfg.localBrokers) kcfg.brokers;

  brokerUnits = map (id: "pulsewire-kafka-${toString id}") (lib.optionals kcfg.enable kcfg.localBrokers);
  stageUnits = lib.concatMap (
    stage:
    lib.optionals cfg.${stage}.enable (
      map (render.unitName stage) (render.range 1 cfg.${stage}.instances)
    )
  ) render.scalableStages;

  # The principal of each Kafka client unit on this host.
  principalOf =
    lib.genAttrs brokerUnits (_: "broker")
    // lib.optionalAttrs kcfg.createTopics {
      pulsewire-kafka-topics = "admin";
      pulsewire-kafka-acls = "admin";
    }
    // lib.optionalAttrs cfg.connect.enable { pulsewire-connect = "connect"; }
    // lib.listToAttrs (
      lib.concatMap (
        stage:
        lib.optionals cfg.${stage}.enable (
          map (n: {
            name = render.unitName stage n;
            value = security.stagePrincipal.${stage};
          }) (render.range 1 cfg.${stage}.instances)
        )
      ) render.scalableStages
    );
  principalsHere = lib.unique (lib.attrValues principalOf);

  # Every file this host needs from the TLS directory.
  neededFiles = [ "ca.crt" ] ++ lib.concatMap (p: [ "${p}.crt" "${p}.key" "${p}.pem" ]) principalsHere;

  generateScript = pkgs.writeShellScript "pulsewire-kafka-tls-generate" (
    builtins.readFile ../provisioning/kafka/generate-tls
  );
  tlsScript = pkgs.writeShellScript "pulsewire-kafka-tls" ''
    set -euo pipefail
    ${lib.optionalString scfg.generate ''${generateScript} ${lib.escapeShellArg scfg.directory}''}
    missing=0
    for f in ${lib.escapeShellArgs neededFiles}; do
      if [ ! -r ${lib.escapeShellArg scfg.directory}/"$f" ]; then
        echo "pulsewire-kafka-tls: ${scfg.directory}/$f is missing (services.pulsewire.kafka.security.directory; copy it from the host that generated the CA)" >&2
        missing=1
      fi
    done
    exit "$missing"
  '';

  adminProperties = pkgs.writeText "pulsewire-kafka-admin.properties" (
    security.javaClientProperties (security.unitCredentialFiles "pulsewire-kafka-acls")
  );
  aclsHeap = "128m";
  aclsScript = pkgs.writeShellScript "pulsewire-kafka-acls" ''
    set -euo pipefail
    bootstrap=${lib.escapeShellArg render.bootstrapServers}
    ${render.retryShell "pulsewire-kafka-acls"}
    ${lib.concatMapStrings (a: ''
      retry ${kafka}/bin/kafka-acls.sh --bootstrap-server "$bootstrap" --command-config ${adminProperties} ${lib.escapeShellArgs (security.aclArgs a)} >/dev/null
    '') security.acls}
    echo "pulsewire-kafka-acls: ${toString (builtins.length security.acls)} ACLs present"
  '';

  localBrokerPorts = lib.concatMap (
    b:
    lib.optionals (kcfg.enable && lib.elem b.id kcfg.localBrokers) [
      b.port
      b.controllerPort
    ]
  ) kcfg.brokers;
  isIPv6 = lib.hasInfix ":";
  ports = lib.concatMapStringsSep "," toString localBrokerPorts;
in
{
  options.services.pulsewire.kafka = {
    security = {
      enable = lib.mkEnableOption ''
        Kafka's multi-host security: mutual TLS (client certificates) on every
        listener (client, inter-broker, controller), the KRaft authorizer with
        ACLs that give each principal (each stage, Connect, the admin) only its
        topics, groups and transactional ids, and the Kafka ports open to
        {option}`services.pulsewire.kafka.peers` only. Enable it on every host
        of a cluster whose brokers or stages span hosts. Off, the brokers speak
        PLAINTEXT without authentication: fit only for loopback'';
      directory = mkOption {
        type = types.str;
        default = "/var/lib/pulsewire-kafka-tls";
        description = ''
          Root-only directory of the TLS files: `ca.crt`, and per principal P
          (admin, broker, connect, aggregator, processor, uploader) `P.key`,
          `P.crt` and `P.pem` (key and certificate; see
          provisioning/kafka/generate-tls). A host needs the CA certificate and
          the files of the principals it runs; `ca.key` stays on the host that
          generated it. Systemd hands each unit its principal's files as
          credentials; no file enters the Nix store.
        '';
      };
      generate = mkOption {
        type = types.bool;
        default = allLocal;
        defaultText = lib.literalMD "true when every broker runs on this host";
        description = ''
          Generate the CA and every principal's key and certificate into
          {option}`directory` on first boot (missing files only; existing ones
          are kept). Exactly one host of a cluster generates; the others get
          copies of the files they need.
        '';
      };
    };
    peers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "10.0.0.2"
        "10.0.0.3/32"
      ];
      description = ''
        Addresses (or CIDR ranges) of the other hosts of the cluster: with
        security on, only they (and loopback) reach this host's broker and
        controller ports, and the stages may connect only to them and
        loopback.
      '';
    };
  };

  config = lib.mkIf scfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = !kcfg.openFirewall;
            message = "services.pulsewire.kafka.openFirewall opens the Kafka ports to every source; with kafka.security.enable the ports are open to kafka.peers only, so leave openFirewall off.";
          }
          {
            assertion = lib.hasPrefix "/" scfg.directory && !lib.hasPrefix builtins.storeDir scfg.directory;
            message = "services.pulsewire.kafka.security.directory (${scfg.directory}) must be an absolute path outside the Nix store: it holds private keys.";
          }
        ];

        systemd.services = lib.mkMerge [
          {
            pulsewire-kafka-tls = oneshot {
              description = "Pulsewire: Kafka's CA and per-principal keys and certificates";
              path = [
                pkgs.openssl
                pkgs.coreutils
              ];
              before = map (u: "${u}.service") (lib.attrNames principalOf);
              serviceConfig = {
                # Root writes the root-only directory; every unit reads its
                # own files from it through LoadCredential.
                DynamicUser = false;
                PrivateUsers = false;
                StateDirectory = lib.mkIf (scfg.directory == "/var/lib/pulsewire-kafka-tls") "pulsewire-kafka-tls";
                StateDirectoryMode = "0700";
                ReadWritePaths = lib.optional scfg.generate scfg.directory;
                ExecStart = tlsScript;
              };
            };
          }
          # Every Kafka client unit: its principal's files, after they exist.
          (lib.mapAttrs (unit: principal: {
            requires = [ "pulsewire-kafka-tls.service" ];
            after = [ "pulsewire-kafka-tls.service" ];
            serviceConfig.LoadCredential = security.loadCredentials scfg.directory principal;
          }) principalOf)
          # The stages speak TLS as their principal, to loopback and the peers only.
          (lib.genAttrs stageUnits (_: {
            environment = security.stageEnvironment (security.credentialFiles "%d");
            after = lib.optional kcfg.createTopics "pulsewire-kafka-acls.service";
            wants = lib.optional kcfg.createTopics "pulsewire-kafka-acls.service";
            serviceConfig = {
              IPAddressAllow = [ "localhost" ] ++ kcfg.peers;
              IPAddressDeny = [ "any" ];
            };
          }))
          (lib.optionalAttrs cfg.connect.enable {
            pulsewire-connect = {
              after = lib.optional kcfg.createTopics "pulsewire-kafka-acls.service";
              wants = lib.optional kcfg.createTopics "pulsewire-kafka-acls.service";
            };
          })
          (lib.optionalAttrs kcfg.createTopics {
            pulsewire-kafka-acls = oneshot {
              description = "Pulsewire: Kafka ACLs for each principal (idempotent)";
              wants = map (u: "${u}.service") brokerUnits;
              environment = {
                KAFKA_HEAP_OPTS = jvmMemoryOpts aclsHeap;
              };
              serviceConfig = jvm aclsHeap // {
                ExecStart = aclsScript;
                TimeoutStartSec = "900s";
              };
            };
          })
        ];

        # The brokers' ports, to the peers only (loopback is trusted anyway).
        networking.firewall = lib.mkIf (localBrokerPorts != [ ]) (
          if config.networking.nftables.enable then
            {
              extraInputRules = lib.concatMapStrings (peer: ''
                ${if isIPv6 peer then "ip6" else "ip"} saddr ${peer} tcp dport { ${ports} } accept
              '') kcfg.peers;
            }
          else
            {
              extraCommands = lib.concatMapStrings (peer: ''
                ${if isIPv6 peer then "ip6tables" else "iptables"} -A nixos-fw -p tcp -s ${peer} -m multiport --dports ${ports} -j nixos-fw-accept
              '') kcfg.peers;
            }
        );
      }
    ]
  );
}
