# The operator CLI, pulsewire-ctl (services/ctl), on the PATH: `pulsewire-ctl
# status` shows per hop whether it is up, its rates, lag and last error;
# `pulsewire-ctl dlq list|show|replay` reads and re-injects the dead-letter
# topic. Where everything runs comes from /etc/pulsewire/ctl-targets.json,
# rendered by ctlTargets in ./lib/pulsewire.nix (the local stack renders its
# own with the same function): this host's pipeline file, brokers, each stage
# instance's metrics address, the connector, and the *path* of Connect's REST
# password (root-only, so run it as root for Connect's state).
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.pulsewire;
  render = import ./lib/render.nix cfg;
  secrets = import ./lib/secret-paths.nix cfg;

  targets = render.ctlTargets {
    pipelinePath = "${cfg.pipelineFile}";
    connectPasswordFile = secrets.connectRestPassword;
    readingsFile = cfg.connect.file;
    connectorName = (render.connectNames cfg.connect.cluster).connectorName;
    instances = lib.genAttrs render.scalableStages (s: cfg.${s}.instances);
    metricsAddresses = lib.genAttrs render.scalableStages (s: cfg.${s}.metricsAddress);
  };
in
{
  config = lib.mkIf cfg.ctl.enable {
    environment.systemPackages = [ cfg.package ];
    environment.etc."pulsewire/ctl-targets.json".text = builtins.toJSON targets;
  };
}
