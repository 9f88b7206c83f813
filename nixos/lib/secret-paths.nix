# Where each Pulsewire secret lives: the operator-given file, or the file the
# pulsewire-secrets oneshot generates in services.pulsewire.secrets.directory.
# Takes config.services.pulsewire; builtins only.
cfg:
let
  pick = option: file: if cfg.secrets.${option} != null then toString cfg.secrets.${option} else "${cfg.secrets.directory}/${file}";
in
{
  influxAdminPassword = pick "influxAdminPasswordFile" "influx-admin-password";
  influxAdminToken = pick "influxAdminTokenFile" "influx-admin-token";
  influxUploaderToken = pick "influxUploaderTokenFile" "influx-uploader-token";
  influxGrafanaToken = pick "influxGrafanaTokenFile" "influx-grafana-token";
  grafanaAdminPassword = pick "grafanaAdminPasswordFile" "grafana-admin-password";
  grafanaSecretKey = pick "grafanaSecretKeyFile" "grafana-secret-key";
}
