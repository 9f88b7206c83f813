# Evaluates the two-host VM test tests/vm/kafka-security.nix as far as it can be
# without nixpkgs: each node's configuration on nixpkgs' module system (as the
# test driver builds them, with qemu-vm's options and the other nodes' addresses),
# and its test script, rendered from them.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/vm-kafka-security.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  contains = needle: hay: builtins.match ".*${lib.escapeRegex needle}.*" hay != null;

  self.nixosModules.default = {
    imports = [ ../../nixos ];
    services.pulsewire.package = nixos.pkgs.writeText "pulsewire" "";
  };
  test = import ../../tests/vm/kafka-security.nix { inherit self; } { inherit lib; };
  # The test driver's addresses: 192.168.1.<n> on the test network.
  addresses = {
    brokers = "192.168.1.1";
    outsider = "192.168.1.2";
    stages = "192.168.1.3";
  };
  fakeNodes = lib.mapAttrs (_: ip: { networking.primaryIPAddress = ip; }) addresses;
  node =
    name:
    (nixos.nixosSystem {
      modules = [
        ./lib/upstream/qemu-vm.nix
        test.nodes.${name}
      ];
      specialArgs.nodes = fakeNodes;
    }).config;
  brokers = node "brokers";
  stages = node "stages";
  script = test.testScript { nodes = fakeNodes; };
  # Every broker's client port, then every controller port.
  clientPorts = map (i: pipeline.kafka.plaintext_port_base + 2 * i) (lib.range 0 (pipeline.kafka.brokers - 1));
  ports = clientPorts ++ map (p: p + 1) clientPorts;
in
h.run [
  (check "vm kafka-security: both hosts' assertions hold" (
    nixos.failedAssertions brokers == [ ] && nixos.failedAssertions stages == [ ]
  ))
  (check "vm kafka-security: brokers host runs every broker, secured, the stage host none" (
    lib.all (i: brokers.systemd.services ? "pulsewire-kafka-${toString i}") (lib.range 1 pipeline.kafka.brokers)
    && contains "listeners=SSL://192.168.1.1:9092" brokers.environment.etc."pulsewire/kafka-1.properties".source.text
    && !(stages.systemd.services ? pulsewire-kafka-1)
    && stages.systemd.services ? pulsewire-aggregator
  ))
  (check "vm kafka-security: the broker host generates, the stage host takes files" (
    brokers.services.pulsewire.kafka.security.generate && !stages.services.pulsewire.kafka.security.generate
  ))
  (check "vm kafka-security: the firewall admits the stage host only" (
    contains "-s 192.168.1.3 " brokers.networking.firewall.extraCommands
    && !(contains "192.168.1.2" brokers.networking.firewall.extraCommands)
    && stages.systemd.services.pulsewire-aggregator.serviceConfig.IPAddressAllow == [ "localhost" "192.168.1.1" ]
  ))
  (check "vm kafka-security: the script probes every listener and names real topics" (
    contains "for port in [${lib.concatMapStringsSep ", " toString ports}]:" script
    && contains "${pipeline.topics.stats.name}=TOPIC_AUTHORIZATION_FAILED" script
    && contains "outsider.fail" script
  ))
]
