# Checks on provisioning/grafana/: the datasource definition and the dashboard
# JSON parse, agree on the datasource uid, take bucket and kind from Grafana
# variables (never hard-coded), and repeat one panel over the sensors.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/grafana.nix { }'   (=> true)
# Builtins only: takes (and ignores) the lib the other checks take.
{ ... }:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  datasource = builtins.fromJSON (builtins.readFile ../../provisioning/grafana/datasource.json);
  dashboardDir = ../../provisioning/grafana/dashboards;
  dashboardFiles = builtins.filter (n: builtins.match ".*\\.json" n != null) (
    builtins.attrNames (builtins.readDir dashboardDir)
  );
  dashboard = builtins.fromJSON (builtins.readFile (dashboardDir + "/pulsewire-heartrate.json"));
  history = builtins.fromJSON (builtins.readFile (dashboardDir + "/pulsewire-history.json"));
  health = builtins.fromJSON (builtins.readFile (dashboardDir + "/pulsewire-pipeline.json"));
  healthTargets = builtins.concatLists (map (p: p.targets) health.panels);
  promDatasource = builtins.fromJSON (builtins.readFile ../../provisioning/grafana/prometheus-datasource.json);
  historyPanels = builtins.filter (p: p.type != "row") history.panels;
  historyQueries = map (p: (builtins.head p.targets).query) historyPanels ++ map (v: v.query) history.templating.list;
  linksTo = board: uid: builtins.any (l: l.url == "/d/${uid}") board.links;
  panels = builtins.filter (p: p.type != "row") dashboard.panels;
  targets = builtins.concatLists (map (p: p.targets) panels);
  queries = map (t: t.query) targets;
  variables = dashboard.templating.list;
  variable = name: builtins.head (builtins.filter (v: v.name == name) variables);
  contains = needle: hay: builtins.match ".*${needle}.*" hay != null;
in
h.run [
  (check "datasource: Flux InfluxDB with a fixed uid" (
    datasource.type == "influxdb" && datasource.jsonData.version == "Flux" && datasource.uid == "pulsewire-influxdb"
  ))
  (check "datasource: no secret, org or bucket written here (Nix fills them in)" (
    !(datasource ? secureJsonData) && !(datasource.jsonData ? organization) && !(datasource.jsonData ? defaultBucket)
  ))
  (check "three dashboard files, with stable uids" (
    dashboardFiles == [
      "pulsewire-heartrate.json"
      "pulsewire-history.json"
      "pulsewire-pipeline.json"
    ]
    && dashboard.uid == "pulsewire-heartrate"
    && history.uid == "pulsewire-history"
    && health.uid == "pulsewire-pipeline"
    && health.title == "Pulsewire — pipeline"
  ))
  (check "the heart-rate and pipeline dashboards link to each other" (
    linksTo dashboard health.uid && linksTo health dashboard.uid
  ))
  (check "pipeline: every panel and query reads the Prometheus datasource, rates over $__rate_interval" (
    promDatasource.type == "prometheus"
    && promDatasource.uid == "pulsewire-prometheus"
    && builtins.all (p: p.datasource.uid == promDatasource.uid) health.panels
    && builtins.all (t: t.datasource.uid == promDatasource.uid && t.expr != "") healthTargets
    && builtins.all (t: !(contains "rate\\(" t.expr) || contains "\\[\\$__rate_interval]" t.expr) healthTargets
  ))
  (check "pipeline: hops, lag, DLQ, commit and processing times, state, restore, brokers, replicas, connector, stages" (
    map (p: p.title) health.panels == [
      "Records/s into and out of every hop"
      "Consumer lag per group"
      "DLQ records/s by reason"
      "Commit time p99"
      "Processing time p50 / p99"
      "Records/s into Kafka by topic"
      "State keys"
      "Restore time"
      "Brokers up"
      "Under-replicated partitions"
      "Connector tasks running"
      "Stages up"
    ]
  ))
  (check "the heart-rate and history dashboards link to each other" (
    linksTo dashboard history.uid && linksTo history dashboard.uid
  ))
  (check "history: every query uses the provisioned datasource and finds the rollups beside v.defaultBucket" (
    builtins.all (p: p.datasource.uid == datasource.uid) historyPanels
    && builtins.all (q: contains "v\\.defaultBucket \\+ \"_rollups\"" q && !(contains "\"${pipeline.influxdb.bucket}" q)) historyQueries
    && pipeline.influxdb.rollups.bucket == pipeline.influxdb.bucket + "_rollups"
  ))
  (check "history: fleet overview, and per sensor the trend and the percentiles" (
    map (p: p.type) historyPanels == [ "table" "timeseries" "timeseries" ]
    && builtins.all (p: (p.repeat or null) == "sensor") (builtins.tail historyPanels)
  ))
  (check "every panel and query uses the provisioned datasource" (
    builtins.all (p: p.datasource.uid == datasource.uid) panels
    && builtins.all (t: t.datasource.uid == datasource.uid) targets
    && builtins.all (v: v.datasource.uid == datasource.uid) variables
  ))
  (check "queries read v.defaultBucket, never a hard-coded bucket" (
    builtins.all (q: contains "v\\.defaultBucket" q && !(contains "\"${pipeline.influxdb.bucket}\"" q)) (
      queries ++ map (v: v.query) variables
    )
  ))
  (check "queries select the measurement through the kind variable" (
    builtins.all (q: contains "r\\._measurement == \"\\$\\{kind}\"" q) queries
    && (variable "kind").current.value == "heart_rate"
    && builtins.hasAttr (variable "kind").current.value pipeline.kinds
  ))
  (check "fleet stats: sensors, max, min, mean, latest sample" (
    map (p: p.title) (builtins.filter (p: p.type == "stat") panels) == [
      "Sensors"
      "Max"
      "Min"
      "Mean"
      "Latest sample"
    ]
  ))
  (check "one panel repeated over the sensor variable, showing value/mean/min/max" (
    let
      repeated = builtins.filter (p: (p.repeat or null) == "sensor") panels;
      q = (builtins.head (builtins.head repeated).targets).query;
    in
    builtins.length repeated == 1
    && (variable "sensor").multi
    && (variable "sensor").includeAll
    && contains "r\\.sensor_id == \"\\$\\{sensor}\"" q
    && builtins.all (f: contains "\"${f}\"" q) [ "value" "mean" "min" "max" ]
  ))
  (check "panel ids unique" (h.unique (map (p: p.id) dashboard.panels)))
]
