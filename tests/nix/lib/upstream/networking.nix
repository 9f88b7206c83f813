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

  commonOptions = direction: {
    allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
      apply = canonicalizePortList;
      example = [
        22
        80
      ];
      description = "TCP ports accepting ${direction} connections.";
    };
    allowedTCPPortRanges = mkOption {
      type = types.listOf (types.attrsOf types.port);
      default = [ ];
      example = [
        {
          from = 8999;
          to = 9003;
        }
      ];
      description = "TCP port ranges ({ from; to; }) accepting ${direction} connections.";
    };
    allowedUDPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
      apply = canonicalizePortList;
      example = [ 53 ];
      description = "UDP ports accepting ${direction} packets.";
    };
    allowedUDPPortRanges = mkOption {
      type = types.listOf (types.attrsOf types.port);
      default = [ ];
      description = "UDP port ranges ({ from; to; }) accepting ${direction} packets.";
    };
  };
in
{
  options.networking.firewall = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to enable the stateful firewall.";
    };

    trustedInterfaces = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Interfaces whose incoming traffic is accepted unconditionally.";
    };

    interfaces = mkOption {
      type = types.attrsOf (types.submodule [ { options = commonOptions "incoming"; } ]);
      default = { };
      description = "Ports opened on one interface only.";
    };
  }
  // commonOptions "incoming";

  # upstream: loopback is always trusted when the firewall is on
  config = lib.mkIf config.networking.firewall.enable {
    networking.firewall.trustedInterfaces = [ "lo" ];
  };
}
