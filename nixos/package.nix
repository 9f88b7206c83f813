# The Pulsewire Cargo workspace: pulsewire-simulator, -aggregator, -processor,
# -uploader and the operator CLI pulsewire-ctl in one package.
#
# librdkafka: rdkafka-sys (version from Cargo.lock, e.g. 4.10.0+2.12.1) needs
# a librdkafka at least as new as the part after '+'. When nixpkgs' rdkafka is
# that new, link it dynamically the way nixpkgs' own Rust packages do
# (CARGO_FEATURE_DYNAMIC_LINKING, see vector). rdkafka-sys then asks pkg-config
# for rdkafka's cflags, which makes pkg-config resolve the Requires.private of
# rdkafka.pc: the libraries librdkafka was built with (zlib, libzstd, libssl,
# libcrypto, libcurl in nixpkgs' build). So the build takes rdkafka's own
# buildInputs too, whatever nixpkgs builds it with. Otherwise build the
# vendored copy: its mklove ./configure starts with #!/usr/bin/env, which the
# build sandbox lacks, so the shebangs of the vendored sources are patched first.
#
# TLS to the brokers (services.pulsewire.kafka.security): rdkafka's `ssl`
# feature links the system OpenSSL through openssl-sys, which finds it with
# pkg-config; so openssl is a build input either way.
{
  lib,
  rustPlatform,
  pkg-config,
  rdkafka,
  zlib,
  openssl,
  python3,
}:
let
  lock = builtins.fromTOML (builtins.readFile ../Cargo.lock);
  rdkafkaSys = lib.findFirst (p: p.name == "rdkafka-sys") (throw "Cargo.lock has no rdkafka-sys") lock.package;
  librdkafkaVersion = lib.last (lib.splitString "+" rdkafkaSys.version);
  systemRdkafka = lib.versionAtLeast rdkafka.version librdkafkaVersion;
  workspace = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).workspace.package;
in
rustPlatform.buildRustPackage {
  pname = "pulsewire";
  inherit (workspace) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../services
      ../provisioning
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "--workspace" ];

  nativeBuildInputs = [ pkg-config ] ++ lib.optional (!systemRdkafka) python3;
  buildInputs = [
    zlib
    openssl
  ]
  ++ lib.optionals systemRdkafka ([ rdkafka ] ++ rdkafka.buildInputs or [ ]);

  env = lib.optionalAttrs systemRdkafka { CARGO_FEATURE_DYNAMIC_LINKING = "1"; };

  preBuild = lib.optionalString (!systemRdkafka) ''
    patchShebangs "$cargoDepsCopy"/rdkafka-sys-*/librdkafka
  '';

  # Only the pure unit tests: nothing that needs a Kafka broker or InfluxDB.
  cargoTestFlags = [
    "--workspace"
    "--lib"
  ];

  passthru = {
    inherit librdkafkaVersion systemRdkafka;
  };

  meta = {
    description = "Pulsewire stage services: wearable heart-rate readings from CSV through Kafka to InfluxDB 2";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "pulsewire-aggregator";
  };
}
