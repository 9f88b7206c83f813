# The renderer (./pulsewire.nix) as the modules use it: the operator's
# pipeline file and broker list. (options.nix renders from the file alone:
# the broker list's own default comes from it.)
cfg:
import ./pulsewire.nix {
  inherit (cfg) pipelineFile;
  brokerList = cfg.kafka.brokers;
}
