# A tiny test harness for the pure Nix renderers, builtins only.
#
# A test file is `harness.run [ (check "name" bool) ... ]`.
#   nix-instantiate --eval --strict tests/nix/render.nix
#     => true, or throws "pulsewire tests: FAILED: <names>"
#   PULSEWIRE_NIX_TEST_REPORT=1 nix-instantiate --eval --strict --json tests/nix/render.nix
#     => [ { name = "..."; ok = true|false; } ... ]   (what tests/nix/check prints)
rec {
  check = name: ok: { inherit name ok; };

  # The pulsewire package as the module tests see it: a derivation-shaped stand-in
  # (nothing is built), so its paths in units and scripts are checkable strings.
  package = {
    type = "derivation";
    name = "pulsewire";
    outPath = "/nix/store/00000000000000000000000000000000-pulsewire";
  };

  # Evaluate one check; a throw or failed assert inside it counts as a failure.
  result =
    c:
    let
      r = builtins.tryEval (builtins.deepSeq c.ok c.ok);
    in
    {
      inherit (c) name;
      ok = r.success && r.value == true;
    };

  report = builtins.getEnv "PULSEWIRE_NIX_TEST_REPORT" == "1";

  run =
    checks:
    let
      results = map result checks;
      failed = builtins.filter (r: !r.ok) results;
    in
    if report then
      results
    else if failed == [ ] then
      true
    else
      throw "pulsewire tests: FAILED: ${builtins.concatStringsSep "; " (map (r: r.name) failed)}";

  unique = xs: builtins.length xs == builtins.length (builtins.attrNames (builtins.listToAttrs (map (x: {
    name = toString x;
    value = true;
  }) xs)));

  # The distinct values of a list, in first-seen order.
  unique' = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];

  all = builtins.all (x: x);

  # Parse `key=value` lines of a .properties text back into an attrset.
  parseProperties =
    text:
    let
      lines = builtins.filter (l: builtins.isString l && l != "") (builtins.split "\n" text);
      kv =
        l:
        let
          m = builtins.match "([^=]+)=(.*)" l;
        in
        {
          name = builtins.elemAt m 0;
          value = builtins.elemAt m 1;
        };
    in
    builtins.listToAttrs (map kv lines);
}
