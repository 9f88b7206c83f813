# Where each Pulsewire secret lives: the operator-given file
# (services.pulsewire.secrets.<name>File), or the file the pulsewire-secrets
# oneshot generates in services.pulsewire.secrets.directory, named after the
# secret in kebab case (influxAdminPassword: influx-admin-password).
# Takes config.services.pulsewire; builtins only.
cfg:
let
  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);
  kebab = builtins.replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (
    map (c: "-" + c) (chars "abcdefghijklmnopqrstuvwxyz")
  );
  pick =
    name:
    let
      given = cfg.secrets."${name}File";
    in
    if given != null then toString given else "${cfg.secrets.directory}/${kebab name}";
in
builtins.listToAttrs (
  map (name: {
    inherit name;
    value = pick name;
  }) [
    "influxAdminPassword"
    "influxAdminToken"
    "influxUploaderToken"
    "influxGrafanaToken"
    "grafanaAdminPassword"
    "grafanaSecretKey"
    "connectRestPassword"
  ]
)
