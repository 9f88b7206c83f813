# Stand-in for the firewall options our modules set, mirroring
#   nixos/modules/services/networking/firewall.nix @ 0192bb844360b5b42ebaf7f575f84d79910a5927
# (a 2025 copy: nftables/firewalld backends, filterOutput). The per-direction
# port options come from one helper (upstream's `commonOptions`) and exist both
# at networking.firewall.* and per interface; the port lists are sorted and
# deduplicated on read (upstream's `apply = canonicalizePortList`).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  canonicalizePortList = ports: lib.unique (builtins.sort builtins.lessThan ports);

  opt = type: default: description: mkOption { inherit type default description; };

  # A list of ports, or of port ranges ({ from; to; }), open to one protocol.
  ports =
    proto: what:
    opt (types.listOf types.port) [ ] "${proto} ports accepting ${what}." // {
      apply = canonicalizePortList;
    };
  portRanges = proto: what: opt (types.listOf (types.attrsOf types.port)) [ ] "${proto} port ranges ({ from; to; }) accepting ${what}.";

  commonOptions = direction: {
    allowedTCPPorts = ports "TCP" "${direction} connections" // {
      example = [
        22
        80
      ];
    };
    allowedTCPPortRanges = portRanges "TCP" "${direction} connections" // {
      example = [
        {
          from = 8999;
          to = 9003;
        }
      ];
    };
    allowedUDPPorts = ports "UDP" "${direction} packets" // {
      example = [ 53 ];
    };
    allowedUDPPortRanges = portRanges "UDP" "${direction} packets";
  };
in
{
  options.networking.firewall = {
    enable = opt types.bool true "Whether to enable the stateful firewall.";
    trustedInterfaces = opt (types.listOf types.str) [ ] "Interfaces whose incoming traffic is accepted unconditionally.";
    interfaces = opt (types.attrsOf (types.submodule [ { options = commonOptions "incoming"; } ])) { } "Ports opened on one interface only.";
    # nixos/modules/services/networking/firewall-iptables.nix (the default backend)
    extraCommands = opt types.lines "" "Additional shell commands executed as part of the firewall initialisation script (iptables backend).";
    # nixos/modules/services/networking/firewall-nftables.nix
    extraInputRules = opt types.lines "" "Additional nftables rules to be appended to the input-allow chain (nftables backend).";
  }
  // commonOptions "incoming";

  # nixos/modules/services/networking/nftables.nix
  options.networking.nftables.enable = opt types.bool false "Whether to enable nftables (and the firewall's nftables backend).";

  # upstream: loopback is always trusted when the firewall is on
  config = lib.mkIf config.networking.firewall.enable {
    networking.firewall.trustedInterfaces = [ "lo" ];
  };
}
