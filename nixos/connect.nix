# Kafka Connect in distributed mode (pulsewire-connect) with the
# FileStreamSource connector, registered idempotently by the
# pulsewire-connect-register oneshot. nixpkgs has no Connect module; the
# worker runs the distribution's connect-distributed.sh with properties
# rendered by ./lib/pulsewire.nix.
#
# The REST API asks for basic auth (BasicAuthSecurityRestExtension, user
# `pulsewire`, the generated secret connect-rest-password): every unit that
# talks to it gets the password by LoadCredential; the worker writes its users
# file from it (ExecStartPre) into its runtime directory, which the JAAS file
# in the store names.
#
# The readings file (services.pulsewire.connect.file) lives in a directory
# owned by the static `pulsewire` user: the simulator (or any other writer)
# appends to it as that user, the worker reads it through the group.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.pulsewire;
  ccfg = cfg.connect;
  kcfg = cfg.kafka;
  render = import ./lib/render.nix cfg;
  inherit (import ./lib/hardening.nix)
    jvm
    jvmMemoryOpts
    common
    scriptLimits
    ;
  kafka = kcfg.package;

  # Since Kafka 3.2 the file connectors are not on the worker's classpath;
  # plugin.path gets a directory holding just that jar.
  filePlugin = pkgs.runCommand "pulsewire-connect-file-plugin" { } ''
    mkdir -p $out
    ln -s ${kafka}/libs/connect-file-*.jar $out/
  '';

  security = import ./lib/kafka-security.nix { pulsewire = render; };
  workerArgs = {
    pluginPath = "${filePlugin}";
    inherit (ccfg) cluster;
  };
  workerProperties = pkgs.writeText "pulsewire-connect-worker.properties" (
    render.toProperties (
      (
        if kcfg.security.enable then
          # As principal `connect`, with this unit's credentials (./kafka-security.nix).
          security.connectWorkerSettings (workerArgs // { files = security.unitCredentialFiles "pulsewire-connect"; })
        else
          render.connectWorkerSettings workerArgs
      )
      // ccfg.settings
    )
  );

  connectorJson = pkgs.writeText "pulsewire-connector.json" (render.connectorJson { file = ccfg.file; });

  secrets = import ./lib/secret-paths.nix cfg;
  restAuth = render.connectRestAuth;
  # systemd's name of the password in each unit's credentials directory.
  passwordCredential = "connect-rest-password";
  loadPassword = [ "${passwordCredential}:${secrets.connectRestPassword}" ];
  # The register and watch scripts read it there (provisioning/connect/register).
  restClientEnv = {
    CONNECT_USER = restAuth.user;
    CONNECT_PASSWORD_FILE = "%d/${passwordCredential}";
  };

  runtimeDir = "pulsewire-connect";
  usersFile = "/run/${runtimeDir}/rest-users.properties";
  jaasFile = pkgs.writeText "pulsewire-connect-jaas.conf" (restAuth.jaas usersFile);
  # The worker's users file from the credential: a properties line, so a
  # backslash in the password is escaped. An empty password file would leave the
  # file without users, which the login module takes as "no auth": refused.
  writeUsers = pkgs.writeShellScript "pulsewire-connect-rest-users" ''
    set -euo pipefail
    umask 0077
    password=$(<"$CREDENTIALS_DIRECTORY/${passwordCredential}")
    case $password in
      "" | *$'\n'*)
        echo "pulsewire-connect: the Connect REST password (services.pulsewire.secrets.connectRestPasswordFile, ${secrets.connectRestPassword}) must be one non-empty line" >&2
        exit 1 ;;
    esac
    printf '%s=%s\n' ${restAuth.user} "''${password//\\/\\\\}" > ${usersFile}
  '';

  restUrl = "http://${render.kafka.host}:${toString render.connect.rest_port}";

  # Where the register and watch scripts find this host's connector.
  connectorEnvironment = {
    CONNECT_URL = restUrl;
    CONNECTOR_NAME = (render.connectNames ccfg.cluster).connectorName;
  };

  log4jOpts = import ./lib/kafka-logging.nix {
    inherit lib pkgs kafka;
    loggers."org.reflections" = "ERROR";
  };

  readingsDir = builtins.dirOf ccfg.file;

  brokerDeps =
    map (id: "pulsewire-kafka-${toString id}.service") (lib.optionals kcfg.enable kcfg.localBrokers)
    ++ lib.optional kcfg.createTopics "pulsewire-kafka-topics.service";

  # The same script the local stack registers its connector with.
  registerScript = pkgs.writeShellScript "pulsewire-connect-register" (
    builtins.readFile ../provisioning/connect/register
  );
  # ... and watches it with.
  watchScript = pkgs.writeShellScript "pulsewire-connect-watch" (
    builtins.readFile ../provisioning/connect/watch
  );
in
{
  config = lib.mkMerge [
    (lib.mkIf (ccfg.enable || cfg.simulator.enable) {
      users.users.pulsewire = {
        isSystemUser = true;
        group = "pulsewire";
        description = "Pulsewire readings file owner";
      };
      users.groups.pulsewire = { };
      # The append-only readings file: written by `pulsewire`, read by the group.
      systemd.tmpfiles.rules = [ "d ${readingsDir} 0750 pulsewire pulsewire - -" ];
    })

    (lib.mkIf ccfg.enable {
      systemd.services.pulsewire-connect = {
        description = "Pulsewire Kafka Connect worker (distributed, FileStreamSource)";
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ] ++ brokerDeps;
        wants = [ "network-online.target" ] ++ brokerDeps;
        environment = {
          KAFKA_HEAP_OPTS = jvmMemoryOpts ccfg.heap;
          KAFKA_LOG4J_OPTS = log4jOpts;
          EXTRA_ARGS = "-name connectDistributed";
          # The REST API's login (JAAS section KafkaConnect).
          KAFKA_OPTS = "-Djava.security.auth.login.config=${jaasFile}";
        };
        serviceConfig = jvm ccfg.heap // {
          LoadCredential = loadPassword;
          RuntimeDirectory = runtimeDir;
          RuntimeDirectoryMode = "0700";
          ExecStartPre = writeUsers;
          ExecStart = "${kafka}/bin/connect-distributed.sh ${workerProperties}";
          # Reads the readings file through the group. PrivateUsers would hide
          # the supplementary group inside the user namespace.
          SupplementaryGroups = [ "pulsewire" ];
          PrivateUsers = false;
          Restart = "on-failure";
          RestartSec = "5s";
          SuccessExitStatus = "0 143";
          TimeoutStopSec = "60s";
        };
      };

      # For the operator (and the tests): the rendered worker and connector configuration.
      environment.etc."pulsewire/connect-worker.properties".source = workerProperties;
      environment.etc."pulsewire/connector.json".source = connectorJson;
      environment.etc."pulsewire/connect-jaas.conf".source = jaasFile;

      systemd.services.pulsewire-connect-register = {
        description = "Pulsewire: register the FileStreamSource connector (idempotent)";
        wantedBy = [ "multi-user.target" ];
        after = [ "pulsewire-connect.service" ];
        wants = [ "pulsewire-connect.service" ];
        path = [
          pkgs.curl
          pkgs.jq
          pkgs.coreutils
        ];
        environment = connectorEnvironment // {
          CONNECTOR_CONFIG = "${connectorJson}";
          REGISTER_TIMEOUT = "600";
        }
        // restClientEnv;
        serviceConfig = common // scriptLimits // {
          LoadCredential = loadPassword;
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = registerScript;
          TimeoutStartSec = "900s";
        };
      };

      # Every 30 s: report a FAILED connector task in the journal (with its
      # worker and trace) and restart it, at most 3 times an hour; report a
      # missing or paused connector (provisioning/connect/watch).
      systemd.services.pulsewire-connect-watch = {
        description = "Pulsewire: report and restart a failed Kafka Connect task";
        after = [ "pulsewire-connect-register.service" ];
        path = [
          pkgs.curl
          pkgs.jq
          pkgs.coreutils
        ];
        environment = connectorEnvironment // restClientEnv;
        serviceConfig = common // scriptLimits // {
          LoadCredential = loadPassword;
          Type = "oneshot";
          ExecStart = watchScript;
          # The restart times, kept across runs ($STATE_DIRECTORY).
          StateDirectory = "pulsewire-connect-watch";
          TimeoutStartSec = "60s";
        };
      };
      systemd.timers.pulsewire-connect-watch = {
        description = "Pulsewire: check the Kafka Connect connector every 30 s";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnActiveSec = "2min";
          OnUnitActiveSec = "30s";
        };
      };
    })
  ];
}
