# InfluxDB over TLS (services.pulsewire.influxdb.tls, nixos/influxdb.nix): off by
# default; on, influxd gets tls-cert/tls-key from its own credentials and every
# client on the host (uploader, Grafana, the ready and tasks oneshots) uses https
# and trusts the CA; a host without InfluxDB can point its uploader at another's.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/influxdb-tls.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };
  pipeline = builtins.fromTOML (builtins.readFile ../../provisioning/pipeline.toml);
  port = toString pipeline.influxdb.port;

  base = [
    ../../nixos
    ../../nixos/appliance.nix
    { services.pulsewire.package = nixos.pkgs.writeText "pulsewire" ""; }
  ];
  plain = nixos.eval base;
  tls = nixos.eval (
    base
    ++ [
      {
        services.pulsewire.influxdb.tls = {
          enable = true;
          certFile = "/var/lib/secrets/influxdb.crt";
          keyFile = "/var/lib/secrets/influxdb.key";
        };
      }
    ]
  );
  # A host whose uploader writes to another host's InfluxDB over https.
  uploaderOnly = nixos.eval (
    base
    ++ [
      {
        services.pulsewire.influxdb = {
          enable = false;
          url = "https://store.example:${port}";
          tls.caFile = "/etc/pulsewire/influxdb-ca.crt";
        };
        services.pulsewire.grafana.enable = false;
      }
    ]
  );
  failed = extra: nixos.failedAssertions (nixos.eval (base ++ [ extra ]));

  sc = config: name: config.systemd.services.${name}.serviceConfig;
  exec = config: name: toString (sc config name).ExecStart;
  contains = needle: hay: builtins.match ".*${lib.escapeRegex needle}.*" hay != null;
  datasource =
    config: builtins.head (builtins.filter (d: d.type == "influxdb") config.services.grafana.provision.datasources.settings.datasources);
  credentials = config: name: (sc config name).LoadCredential or [ ];
in
h.run [
  (check "default: plain HTTP on 127.0.0.1's URL, no TLS setting, no CA anywhere" (
    plain.services.pulsewire.influxdb.url == "http://127.0.0.1:${port}"
    && !(plain.services.influxdb2.settings ? tls-cert)
    && !(plain.services.influxdb2.settings ? tls-key)
    && credentials plain "influxdb2" == [ ]
    && !(contains "--influx-ca-file" (exec plain "pulsewire-uploader"))
    && contains "--influx-url http://127.0.0.1:${port} " (exec plain "pulsewire-uploader")
    && !(builtins.any (c: contains "influx-ca" c) (
      lib.concatMap (credentials plain) [
        "pulsewire-uploader"
        "grafana"
        "pulsewire-influxdb-ready"
        "pulsewire-influxdb-tasks"
      ]
    ))
    && !((datasource plain).jsonData ? tlsAuthWithCACert)
    && !(plain.systemd.services.pulsewire-influxdb-ready.environment ? CURL_CA_BUNDLE)
    && nixos.failedAssertions plain == [ ]
  ))
  (check "tls: influxd reads its certificate and key from its own credentials" (
    tls.services.influxdb2.settings.tls-cert == "/run/credentials/influxdb2.service/tls-cert"
    && tls.services.influxdb2.settings.tls-key == "/run/credentials/influxdb2.service/tls-key"
    && credentials tls "influxdb2" == [
      "tls-cert:/var/lib/secrets/influxdb.crt"
      "tls-key:/var/lib/secrets/influxdb.key"
    ]
    && (sc tls "influxdb2").User == "influxdb2"
    && nixos.failedAssertions tls == [ ]
  ))
  (check "tls: the setup's private influxd stays plain HTTP whatever influxdb2's settings say" (
    contains "--tls-cert= --tls-key=" (sc tls "pulsewire-influxdb-setup").ExecStart.text
    && contains "/setup http://127.0.0.1:${port} " (sc tls "pulsewire-influxdb-setup").ExecStart.text
  ))
  (check "tls: the uploader writes to https and trusts the certificate (the default caFile)" (
    tls.services.pulsewire.influxdb.url == "https://127.0.0.1:${port}"
    && tls.services.pulsewire.influxdb.tls.caFile == "/var/lib/secrets/influxdb.crt"
    && contains "--influx-url https://127.0.0.1:${port} --influx-token-file %d/influx-token --influx-ca-file %d/influx-ca" (
      exec tls "pulsewire-uploader"
    )
    && credentials tls "pulsewire-uploader" == [
      "influx-token:/var/lib/pulsewire-secrets/influx-uploader-token"
      "influx-ca:/var/lib/secrets/influxdb.crt"
    ]
  ))
  (check "tls: Grafana's datasource is https and trusts the CA from its credential" (
    let
      d = datasource tls;
    in
    d.url == "https://127.0.0.1:${port}"
    && d.jsonData.tlsAuthWithCACert
    && d.secureJsonData.tlsCACert == "$__file{/run/credentials/grafana.service/influx-ca}"
    && d.secureJsonData.token == "$__file{/run/credentials/grafana.service/influx-token}"
    && d.jsonData.version == "Flux"
    && builtins.elem "influx-ca:/var/lib/secrets/influxdb.crt" (credentials tls "grafana")
  ))
  (check "tls: the ready and tasks oneshots' curl trusts the CA (CURL_CA_BUNDLE) on the https URL" (
    builtins.all (
      unit:
      tls.systemd.services.${unit}.environment.CURL_CA_BUNDLE == "/run/credentials/${unit}.service/influx-ca"
      && builtins.elem "influx-ca:/var/lib/secrets/influxdb.crt" (credentials tls unit)
    ) [
      "pulsewire-influxdb-ready"
      "pulsewire-influxdb-tasks"
    ]
    && contains "url=https://127.0.0.1:${port}" (sc tls "pulsewire-influxdb-ready").ExecStart.text
    && contains "https://127.0.0.1:${port}" (exec tls "pulsewire-influxdb-tasks")
    && builtins.elem "admin-token:/var/lib/pulsewire-secrets/influx-admin-token" (credentials tls "pulsewire-influxdb-tasks")
  ))
  (check "a host without InfluxDB: its uploader trusts the given CA for the other host's https URL" (
    contains "--influx-url https://store.example:${port} --influx-token-file %d/influx-token --influx-ca-file %d/influx-ca" (
      exec uploaderOnly "pulsewire-uploader"
    )
    && builtins.elem "influx-ca:/etc/pulsewire/influxdb-ca.crt" (credentials uploaderOnly "pulsewire-uploader")
    && !(uploaderOnly.services.influxdb2.enable)
  ))
  (check "refused: TLS without its files, a CA with a plain URL, files in the Nix store" (
    failed { services.pulsewire.influxdb.tls.enable = true; } == [
      "services.pulsewire.influxdb.tls.enable needs tls.certFile and tls.keyFile."
    ]
    && failed { services.pulsewire.influxdb.tls.caFile = "/etc/ca.crt"; } == [
      "services.pulsewire.influxdb.url (http://127.0.0.1:${port}) must be https:// with tls.enable or tls.caFile."
    ]
    && failed {
      services.pulsewire.influxdb.tls = {
        enable = true;
        certFile = "/var/lib/secrets/influxdb.crt";
        keyFile = "${builtins.storeDir}/0000-influxdb.key";
      };
    } == [
      "services.pulsewire.influxdb.tls.keyFile (${builtins.storeDir}/0000-influxdb.key) must be an absolute path outside the Nix store, which is world-readable."
    ]
    && failed {
      services.pulsewire.influxdb.tls = {
        enable = true;
        certFile = "influxdb.crt";
        keyFile = "/var/lib/secrets/influxdb.key";
      };
    } == [
      "services.pulsewire.influxdb.tls.caFile (influxdb.crt) must be an absolute path outside the Nix store, which is world-readable."
      "services.pulsewire.influxdb.tls.certFile (influxdb.crt) must be an absolute path outside the Nix store, which is world-readable."
    ]
  ))
]
