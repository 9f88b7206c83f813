# A stand-in for the few nixpkgs packages and builders the modules use, for
# evaluating them without a Nix store (./eval-nixos.nix). Each "derivation" is
# an attrset that nixpkgs' `types.package` accepts (type = "derivation") and
# that interpolates to a store path; `text` keeps a written file's content so
# the checks can look at it.
{ lib }:
let
  storePath = name: seed: "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" seed)}-${name}";
  file = name: text: {
    type = "derivation";
    inherit name text;
    outPath = storePath name text;
  };
  package = name: version: {
    type = "derivation";
    inherit name version;
    pname = name;
    outPath = storePath name "${name}-${version}";
    meta.mainProgram = name;
    passthru.jre = package "jdk17" "17";
  };

  # The packages, written name-version and split as Nix splits a derivation name.
  packages = map builtins.parseDrvName [
    "apacheKafka-2.13-4.1.1"
    "curl-8.16.0"
    "jq-1.8.1"
    "coreutils-9.8"
    "bash-5.3"
    "influxdb2-2.7.12"
    "influxdb2-cli-2.7.5"
    "influxdb2-provision-1.0.0"
    "influxdb2-token-manipulator-1.0.0"
    "grafana-12.2.0"
    "tzdata-2025b"
    "openssl-3.6.0"
  ];
in
{
  writeText = file;
  writeShellScript = file;
  writeShellScriptBin = file;
  runCommand = name: _env: script: file name script;
  # A fixed-output download: the url and hash are kept for the checks.
  fetchurl =
    { url, sha256 }:
    {
      type = "derivation";
      name = baseNameOf url;
      inherit url sha256;
      outPath = storePath (baseNameOf url) sha256;
    };
  stdenv.hostPlatform.system = "x86_64-linux";
}
// lib.listToAttrs (map (p: lib.nameValuePair p.name (package p.name p.version)) packages)
