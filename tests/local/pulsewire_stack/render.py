"""Every setting and command of the stack, from `nixos/lib/pulsewire.nix`: the pure renderer
the NixOS modules use, evaluated once with `nix-instantiate --eval --json`.

Only paths differ from the appliance: the stack's state directory, the Kafka plugin path,
the binaries' directory, the readings file, the uploader's token file, and the port offset.
A stack brought up with --secure-kafka renders Kafka's multi-host security on top, with
`nixos/lib/kafka-security.nix` as the NixOS modules do: its TLS files are under the state.
One brought up with --store-tls gives the uploader the store's https URL and its
certificate as the CA to trust (store_tls.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from .influx import token_path
from . import store_tls
from .settings import (CACHE, PIPELINE_FILE, PORT_OFFSET, PROM_RENDERER, RENDERER, REPO, SECRETS,
                       SECURITY_RENDERER, STATE, StackError, bin_dir, readings_file)
from .tls import tls_dir

_EXPR = r"""
{ renderer, promRenderer, securityRenderer, pipelineFile, portOffset, stateDir, cacheDir, pluginPath, file,
  binDir, tokenFile, instances, connectPasswordFile, tlsDir, storeCaFile }:
let
  l = import (/. + renderer) { pipelineFile = /. + pipelineFile; portOffset = builtins.fromJSON portOffset; };
  # The health view as the appliance renders it (nixos/prometheus.nix), with the stack's
  # short scrape interval and rate window, and alerts that fire at once (the e2e suite
  # makes them fire); the DLQ alert at any rate above 0.
  p = import (/. + promRenderer) {
    pulsewire = l;
    # `up` starts no simulator: the tests append to the file themselves.
    simulator = false;
    scrapeInterval = "2s";
    rateWindow = "30s";
    alerts = builtins.mapAttrs (_: a: a // { for = "0s"; }) (
      (import (/. + promRenderer) { pulsewire = l; }).alertDefaults // { dlqRate.threshold = 0; }
    );
  };
  jmxJar = "${cacheDir}/jmx_prometheus_javaagent-${p.jmxExporter.version}.jar";
  jmxRules = "${builtins.dirOf pipelineFile}/prometheus/kafka-jmx.yml";
  usersFile = "${stateDir}/connect-rest-users.properties";
  # --secure-kafka: the multi-host settings (nixos/lib/kafka-security.nix), the TLS files in tlsDir.
  secure = tlsDir != "";
  sec = import (/. + securityRenderer) { pulsewire = l; };
  files = sec.storeFiles tlsDir;
  # --store-tls: the store's certificate, which the uploader trusts (empty: plain http).
  influxCaFile = if storeCaFile == "" then null else storeCaFile;
  withPrincipal = stage: cmd:
    if secure && sec.stagePrincipal ? ${stage} then
      cmd // { environment = cmd.environment // sec.stageEnvironment (files sec.stagePrincipal.${stage}); }
    else cmd;
in {
  inherit (l) bootstrapServers clusterId connectorName topics influxdb;
  storeUrl = l.influxdbUrl { tls = influxCaFile != null; };
  brokers = map (b: b // {
    properties = let args = { id = b.id; logDir = "${stateDir}/kafka-${toString b.id}"; }; in
      if secure then sec.brokerProperties (args // { files = files "broker"; }) else l.brokerProperties args;
  }) l.brokers;
  monitoring = {
    inherit (p) jmxExporter rules alertRules rateWindow;
    inherit jmxJar;
    port = l.pipeline.prometheus.port;
    config = p.config { ruleFiles = [ "${stateDir}/prometheus/rules.yml" ]; };
    connectJmxPort = p.connectJmxPort;
    connectJmxOption = p.jmxAgentOption { jar = jmxJar; rules = jmxRules; port = p.connectJmxPort; };
    brokers = map (b: {
      inherit (b) id;
      jmxPort = p.brokerJmxPort b.id;
      jmxOption = p.jmxAgentOption { jar = jmxJar; rules = jmxRules; port = p.brokerJmxPort b.id; };
    }) l.brokers;
  };
  topicCreateArgs = map l.topicCreateArgs l.topics;
  topicAlterArgs = map l.topicAlterArgs l.topics;
  # The operator CLI's targets file (nixos/ctl.nix installs the appliance's): one
  # instance of each stage, as the stack starts them.
  ctlTargets = l.ctlTargets {
    pipelinePath = pipelineFile;
    inherit connectPasswordFile;
    readingsFile = file;
  };
  connectProperties =
    if secure then sec.connectWorkerProperties { inherit pluginPath; files = files "connect"; }
    else l.connectWorkerProperties { inherit pluginPath; };
  # The tools' --command-config (the admin's client properties; empty without --secure-kafka),
  # and the Java client properties of every principal, for the tests.
  inherit secure;
  adminProperties = if secure then sec.javaClientProperties (files "admin") else "";
  clientProperties = builtins.listToAttrs (map (p: { name = p; value = sec.javaClientProperties (files p); })
    sec.principals);
  aclArgs = map sec.aclArgs sec.acls;
  acls = sec.acls;
  tlsGenerateEnvironment = sec.generateEnvironment;
  connectorConfig = l.connectorConfig { inherit file; };
  restPort = l.connect.rest_port;
  # The REST API's basic auth (nixos/connect.nix): its user and the JAAS file naming the users file.
  connectRestUser = l.connectRestAuth.user;
  connectUsersFile = usersFile;
  connectJaas = l.connectRestAuth.jaas usersFile;
  # Each stage's command exactly as its unit runs it (nixos/pipeline.nix), with local paths.
  services = builtins.listToAttrs (map (stage: {
    name = stage;
    value = withPrincipal stage (l.serviceCommand stage {
      inherit binDir;
      pipelinePath = pipelineFile;
      readingsFile = file;
      influxTokenFile = tokenFile;
      inherit influxCaFile;
    }) // { metricsPort = l.pipeline.services.${stage}.metrics_port; };
  }) l.stages);
  # Instances 1..instances of each stage that may run several (nixos/pipeline.nix's units
  # pulsewire-<stage>, pulsewire-<stage>-2, ...), as the appliance's host "localhost" runs them.
  instances = builtins.listToAttrs (map (stage: {
    name = stage;
    value = map (n: withPrincipal stage (l.serviceCommand stage {
      inherit binDir;
      pipelinePath = pipelineFile;
      readingsFile = file;
      influxTokenFile = tokenFile;
      inherit influxCaFile;
      instance = n;
    }) // { metricsPort = l.instancePort stage n; }) (l.range 1 (builtins.fromJSON instances));
  }) l.scalableStages);
}
"""

# How many instances of each scalable stage the stack can start (services.start_service).
INSTANCES = 2

# The uploader's write-only token, as the appliance hands it over with LoadCredential.
UPLOADER_TOKEN = token_path(SECRETS, "pulsewire-uploader")

_rendered: dict | None = None


def render(fresh: bool = False) -> dict:
    """Everything the stack needs from the renderer, in one `nix-instantiate` call (cached;
    `fresh` evaluates again, e.g. once the Kafka plugin path is known)."""
    global _rendered
    if _rendered is not None and not fresh:
        return _rendered
    from . import kafka  # (kafka renders too: imported here, not at the top)

    try:
        plugin_path = kafka.kafka_dist(resolve=False).plugin_path
    except StackError:
        plugin_path = ""  # Kafka not resolved yet: nothing will start Connect from this rendering
    if not RENDERER.exists():
        raise StackError(f"{RENDERER} is missing: the local stack renders its settings with it")
    if shutil.which("nix-instantiate") is None:
        raise StackError("nix-instantiate not found: install Debian's nix-bin (apt-get install nix-bin)")
    args = {
        "renderer": RENDERER, "promRenderer": PROM_RENDERER, "cacheDir": CACHE, "pipelineFile": PIPELINE_FILE, "portOffset": PORT_OFFSET, "stateDir": STATE,
        "pluginPath": plugin_path, "file": readings_file(), "binDir": bin_dir(), "tokenFile": UPLOADER_TOKEN,
        "instances": INSTANCES, "connectPasswordFile": kafka.CONNECT_PASSWORD,
        "securityRenderer": SECURITY_RENDERER, "tlsDir": tls_dir() or "", "storeCaFile": store_tls.ca_file() or "",
    }
    cmd = ["nix-instantiate", "--eval", "--strict", "--json", "-E", _EXPR]
    for name, value in args.items():
        cmd += ["--argstr", name, str(value)]
    # nix-instantiate wants a writable state dir even for pure evaluation.
    env = dict(os.environ, NIX_STATE_DIR=str(CACHE / "nix-state"), HOME=os.environ.get("HOME", "/root"))
    (CACHE / "nix-state").mkdir(parents=True, exist_ok=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise StackError(f"rendering with {RENDERER.relative_to(REPO)} failed:\n{res.stderr.strip()}")
    _rendered = json.loads(res.stdout)
    return _rendered
