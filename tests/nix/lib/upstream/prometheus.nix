# Stand-in for nixpkgs' services.prometheus module:
#   nixos/modules/services/monitoring/prometheus/default.nix (nixpkgs 25.11).
# The options nixos/prometheus.nix sets, with their nixpkgs types and defaults.
# `scrapeConfigs` keeps the fields we set of nixpkgs' scrape_config/static_config
# submodules (job_name, static_configs.targets/labels); nixpkgs' own has more,
# each nullable and dropped from the rendered file when null. Of its `config`,
# nothing is mirrored: the checks read the options' values.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  staticConfig = types.submodule {
    options = {
      targets = mkOption { type = types.listOf types.str; };
      labels = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
    };
  };
  scrapeConfig = types.submodule {
    options = {
      job_name = mkOption { type = types.str; };
      static_configs = mkOption {
        type = types.nullOr (types.listOf staticConfig);
        default = null;
      };
    };
  };
in
{
  options.services.prometheus = {
    enable = lib.mkEnableOption "Prometheus monitoring daemon";
    listenAddress = mkOption {
      type = types.str;
      default = "0.0.0.0";
    };
    port = mkOption {
      type = types.port;
      default = 9090;
    };
    retentionTime = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    globalConfig = mkOption {
      type = types.submodule {
        options = {
          scrape_interval = mkOption {
            type = types.nullOr types.str;
            default = null;
          };
          evaluation_interval = mkOption {
            type = types.nullOr types.str;
            default = null;
          };
        };
      };
      default = { };
    };
    scrapeConfigs = mkOption {
      type = types.listOf scrapeConfig;
      default = [ ];
    };
    rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
  };
}
