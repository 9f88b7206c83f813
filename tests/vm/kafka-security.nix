# The multi-host VM test of Kafka's security (flake output
# checks.<system>.kafka-security): three brokers and Connect on `brokers`,
# the aggregator on `stages`, and `outsider`, a host that is no peer.
# With services.pulsewire.kafka.security on both hosts it proves
#   - a client without a certificate of the cluster's CA is refused by every
#     broker listener, client and controller;
#   - the aggregator's principal is refused on another stage's topic
#     (TOPIC_AUTHORIZATION_FAILED), while the aggregator on `stages` works:
#     a line appended on `brokers` comes back from heartrate.readings;
#   - the firewall lets the peer reach the broker ports and not the outsider.
# The stage host gets its files (the CA certificate, the aggregator's key and
# certificate) copied from the broker host, as an operator would.
#
# Called from flake.nix: pkgs.testers.runNixOSTest (import ./tests/vm/kafka-security.nix { inherit self; })
# tests/nix/vm-kafka-security.nix evaluates both hosts' configurations.
{ self }:
{ lib, ... }:
let
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  ids = lib.range 1 pipeline.kafka.brokers;
  port = id: pipeline.kafka.plaintext_port_base + 2 * (id - 1);
  clientPorts = map port ids;
  controllerPorts = map (id: port id + 1) ids;
  tlsDir = "/var/lib/pulsewire-kafka-tls";
  stageTls = "/etc/pulsewire-kafka-tls";
  topic = key: pipeline.topics.${key}.name;

  # Every host: the same broker list (on `brokers`) and security on.
  cluster =
    { nodes, pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];
      services.pulsewire.kafka.brokers = map (id: {
        inherit id;
        host = nodes.brokers.networking.primaryIPAddress;
        port = port id;
        controllerPort = port id + 1;
      }) ids;
      services.pulsewire.kafka.security.enable = true;
      networking.firewall.enable = true;
      environment.systemPackages = [
        pkgs.apacheKafka
        pkgs.openssl
      ];
      virtualisation.memorySize = 4096;
    };
in
{
  name = "pulsewire-kafka-security";

  nodes.brokers =
    { nodes, ... }:
    {
      imports = [ cluster ];
      services.pulsewire = {
        kafka.enable = true;
        connect.enable = true;
        kafka.peers = [ nodes.stages.networking.primaryIPAddress ];
      };
    };

  nodes.stages =
    { nodes, ... }:
    {
      imports = [ cluster ];
      services.pulsewire = {
        aggregator.enable = true;
        kafka.security.directory = stageTls;
        kafka.peers = [ nodes.brokers.networking.primaryIPAddress ];
      };
    };

  nodes.outsider = { };

  testScript =
    { nodes, ... }:
    let
      brokerIp = nodes.brokers.networking.primaryIPAddress;
    in
    ''
      import base64

      start_all()
      brokers.wait_for_unit("pulsewire-kafka-acls.service")
      brokers.wait_for_unit("pulsewire-connect-register.service")

      with subtest("the TLS files are root-only on the broker host"):
          brokers.succeed("test \"$(stat -c %a ${tlsDir})\" = 700")
          brokers.succeed("test \"$(stat -c %U:%a ${tlsDir}/ca.key)\" = root:600")

      with subtest("the stage host gets the CA certificate and the aggregator's files"):
          stages.succeed("install -d -m 0700 ${stageTls}")
          for name in ["ca.crt", "aggregator.crt", "aggregator.key", "aggregator.pem"]:
              data = brokers.succeed(f"base64 -w0 ${tlsDir}/{name}").strip()
              stages.succeed(f"echo {data} | base64 -d > ${stageTls}/{name} && chmod 0400 ${stageTls}/{name}")
          stages.succeed("systemctl restart pulsewire-kafka-tls.service pulsewire-aggregator.service")
          stages.wait_for_unit("pulsewire-aggregator.service")

      with subtest("a client without a certificate is refused by every listener"):
          for port in [${lib.concatMapStringsSep ", " toString (clientPorts ++ controllerPorts)}]:
              out = stages.succeed(
                  f"openssl s_client -connect ${brokerIp}:{port} -CAfile ${stageTls}/ca.crt "
                  "-ign_eof -brief </dev/null 2>&1 || true"
              )
              assert "alert bad certificate" in out, f"port {port} without a certificate: {out}"

      with subtest("the aggregator's principal is refused on another stage's topic"):
          stages.succeed(
              "printf 'security.protocol=SSL\\nssl.keystore.type=PEM\\nssl.keystore.location=${stageTls}/aggregator.pem\\n"
              "ssl.truststore.type=PEM\\nssl.truststore.location=${stageTls}/ca.crt\\n' > /root/aggregator.properties"
          )
          out = stages.succeed(
              "echo 1,heart_rate,2024-06-19T13:58:37Z,80 | kafka-console-producer.sh "
              "--bootstrap-server ${brokerIp}:${toString (port 1)} --topic ${topic "stats"} "
              "--command-config /root/aggregator.properties 2>&1 || true"
          )
          assert "${topic "stats"}=TOPIC_AUTHORIZATION_FAILED" in out, out

      with subtest("the aggregator on the stage host works under its own principal"):
          brokers.succeed("printf '%s\\n' '7,heart_rate,2024-06-19 13:58:37.074766,81' >> ${pipeline.connect.file}")
          brokers.succeed(
              "printf 'security.protocol=SSL\\nssl.keystore.type=PEM\\nssl.keystore.location=${tlsDir}/admin.pem\\n"
              "ssl.truststore.type=PEM\\nssl.truststore.location=${tlsDir}/ca.crt\\n' > /root/admin.properties"
          )
          brokers.wait_until_succeeds(
              "kafka-console-consumer.sh --bootstrap-server ${brokerIp}:${toString (port 1)} "
              "--topic ${topic "readings"} --from-beginning --isolation-level read_committed --timeout-ms 10000 "
              "--command-config /root/admin.properties 2>/dev/null | grep -q '\"value\":81'",
              timeout=180,
          )

      with subtest("the firewall admits the peer and not the outsider"):
          stages.succeed("timeout 5 bash -c '</dev/tcp/${brokerIp}/${toString (port 1)}'")
          for port in [${lib.concatMapStringsSep ", " toString (clientPorts ++ controllerPorts)}]:
              outsider.fail(f"timeout 5 bash -c '</dev/tcp/${brokerIp}/{port}'")
    '';
}
