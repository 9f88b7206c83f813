# Checks nixos/package.nix's choice of librdkafka with stand-ins for the
# builders: linked dynamically when nixpkgs' rdkafka is new enough for the
# rdkafka-sys of Cargo.lock, with every library rdkafka.pc's Requires.private
# names on the pkg-config path (rdkafka's own buildInputs); the vendored copy
# otherwise.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/package.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  lock = builtins.fromTOML (builtins.readFile ../../Cargo.lock);
  rdkafkaSys = lib.findFirst (p: p.name == "rdkafka-sys") null lock.package;
  wanted = lib.last (lib.splitString "+" rdkafkaSys.version);

  drv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  # nixpkgs' rdkafka (pkgs/by-name/rd/rdkafka/package.nix) links these.
  rdkafkaInputs = map drv [
    "zlib"
    "zstd"
    "openssl"
    "curl"
  ];
  build =
    version:
    import ../../nixos/package.nix {
      inherit lib;
      rustPlatform.buildRustPackage = args: args;
      pkg-config = drv "pkg-config";
      python3 = drv "python3";
      zlib = drv "zlib";
      openssl = drv "openssl";
      rdkafka = drv "rdkafka" // {
        inherit version;
        buildInputs = rdkafkaInputs;
      };
    };
  names = map (d: d.name);
  dynamic = build wanted;
  vendored = build "2.6.0";
in
h.run [
  (check "rdkafka as new as rdkafka-sys wants: linked dynamically" (
    dynamic.passthru.systemRdkafka && dynamic.env.CARGO_FEATURE_DYNAMIC_LINKING == "1"
  ))
  (check "dynamic: rdkafka and every library of its Requires.private are build inputs" (
    lib.all (n: lib.elem n (names dynamic.buildInputs)) ([ "rdkafka" ] ++ names rdkafkaInputs)
    && lib.elem "pkg-config" (names dynamic.nativeBuildInputs)
  ))
  (check "OpenSSL for rdkafka's ssl feature, linked or vendored, with pkg-config" (
    lib.all (p: lib.elem "openssl" (names p.buildInputs) && lib.elem "pkg-config" (names p.nativeBuildInputs)) [
      dynamic
      vendored
    ]
  ))
  (check "older rdkafka: the vendored copy, shebangs patched" (
    !vendored.passthru.systemRdkafka
    && !(vendored.env ? CARGO_FEATURE_DYNAMIC_LINKING)
    && !(lib.elem "rdkafka" (names vendored.buildInputs))
    && lib.hasInfix "patchShebangs" vendored.preBuild
  ))
]
