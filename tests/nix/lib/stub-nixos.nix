# A miniature stand-in for the NixOS module system, nixpkgs' lib and pkgs,
# builtins only, so nixos/*.nix can be *evaluated* on a machine without a
# nixpkgs checkout (tests/nix/modules.nix). It is no substitute for the real
# thing (`nix flake check`): it does not type-check option values and knows
# nothing about nixpkgs' own options. What it does catch is everything inside
# our modules: a misspelt attribute or lib function, a wrong argument, a bad
# string interpolation, a failing assertion, a unit wired to the wrong name.
#
# Only lib functions that exist in nixpkgs' lib are provided, with the same
# names and argument order.
rec {
  lib = rec {
    # --- options -----------------------------------------------------------
    mkOption = o: { _type = "option"; } // o;
    mkEnableOption = name: mkOption {
      default = false;
      description = "Whether to enable ${name}.";
    };
    mkPackageOption =
      pkgs: name: _:
      mkOption { default = pkgs.${name}; };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    literalMD = text: {
      _type = "literalMD";
      inherit text;
    };
    types =
      let
        t = name: {
          _type = "type";
          inherit name;
        };
      in
      {
        bool = t "bool";
        str = t "str";
        path = t "path";
        port = t "port";
        package = t "package";
        ints = {
          positive = t "positive int";
          unsigned = t "unsigned int";
        };
        strMatching = re: t "string matching ${re}";
        listOf = e: t "list" // { elem = e; };
        attrsOf = e: t "attrs" // { elem = e; };
        nullOr = e: t "null or" // { elem = e; };
        submodule = m: t "submodule" // { module = m; };
      };

    # --- definitions -------------------------------------------------------
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    # --- attrsets, lists, strings ------------------------------------------
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalAttrs = c: a: if c then a else { };
    optionalString = c: s: if c then s else "";
    concatStringsSep = builtins.concatStringsSep;
    concatStrings = builtins.concatStringsSep "";
    concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
    concatMapStringsSep = sep: f: l: builtins.concatStringsSep sep (map f l);
    concatMap = f: l: builtins.concatLists (map f l);
    mapAttrsToList = f: a: map (n: f n a.${n}) (builtins.attrNames a);
    mapAttrs = builtins.mapAttrs;
    filterAttrs = pred: a: builtins.listToAttrs (builtins.filter (x: pred x.name x.value) (mapAttrsToList (name: value: { inherit name value; }) a));
    listToAttrs = builtins.listToAttrs;
    filter = builtins.filter;
    any = builtins.any;
    all = builtins.all;
    elem = builtins.elem;
    length = builtins.length;
    last = l: builtins.elemAt l (builtins.length l - 1);
    imap0 = f: l: builtins.genList (i: f i (builtins.elemAt l i)) (builtins.length l);
    range = a: b: if a > b then [ ] else builtins.genList (i: a + i) (b - a + 1);
    unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
    findFirst = pred: default: l: let m = builtins.filter pred l; in if m == [ ] then default else builtins.head m;
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    hasSuffix = p: s: let ls = builtins.stringLength s; lp = builtins.stringLength p; in lp <= ls && builtins.substring (ls - lp) lp s == p;
    splitString = sep: s: builtins.filter builtins.isString (builtins.split (escapeRegex sep) s);
    escapeRegex = builtins.replaceStrings [ "\\" "[" "]" "{" "}" "(" ")" "^" "$" "." "|" "*" "+" "?" ] [ "\\\\" "\\[" "\\]" "\\{" "\\}" "\\(" "\\)" "\\^" "\\$" "\\." "\\|" "\\*" "\\+" "\\?" ];
    versionAtLeast = a: b: builtins.compareVersions a b >= 0;
    importJSON = p: builtins.fromJSON (builtins.readFile p);
    recursiveUpdate =
      a: b:
      a
      // builtins.mapAttrs (
        n: v: if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then recursiveUpdate a.${n} v else v
      ) b;
    escapeShellArg = s: if builtins.match "[A-Za-z0-9_./:=@%+,-]+" (toString s) != null then toString s else "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString s)}'";
    escapeShellArgs = l: builtins.concatStringsSep " " (map escapeShellArg l);
    getExe = drv: "${drv}/bin/${drv.meta.mainProgram or drv.pname or drv.name}";
  };

  # --- pkgs: derivations are store-path strings named after their content ---
  pkgs =
    let
      # Like a derivation: interpolates to its store path; `text` keeps the
      # content for the tests to look at.
      store = name: text: {
        inherit name text;
        outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" text)}-${name}";
      };
      drv = name: {
        inherit name;
        outPath = (store name name).outPath;
        version = "2.13-4.1.1";
        passthru.jre = drv "jdk17";
      };
    in
    {
      writeText = name: text: store name text;
      writeShellScript = name: text: store name text;
      runCommand = name: _env: script: store name script;
      stdenv.hostPlatform.system = "x86_64-linux";
    }
    // builtins.listToAttrs (map (n: {
      name = n;
      value = drv n;
    }) [ "apacheKafka" "curl" "jq" "coreutils" "influxdb2-cli" ]);

  # --- evaluation --------------------------------------------------------
  isType = t: x: builtins.isAttrs x && (x._type or null) == t;

  # The values of an option tree: definitions (plain attrsets as written in a
  # module, already resolved) win over defaults.
  optionValues =
    options: defs:
    builtins.mapAttrs (
      name: opt:
      if isType "option" opt then
        if defs ? ${name} then
          defs.${name}
        else if opt ? default then
          opt.default
        else
          throw "stub-nixos: option ${name} has no value"
      else
        optionValues opt (defs.${name} or { })
    ) options
    // builtins.removeAttrs defs (builtins.attrNames options);

  # Definitions are merged the way the module system does it: properties
  # (mkIf, mkMerge, mkOverride) are pushed down to the leaves, so the names
  # defined under an mkIf are known without evaluating its condition (which
  # usually reads config and would otherwise recurse forever).
  absent = {
    _type = "absent";
  };
  isDrv = x: builtins.isAttrs x && x ? outPath;
  isNode = x: builtins.isAttrs x && !(isDrv x) && !(x ? _type);

  # The definitions of attribute `name` inside one definition, wrappers kept.
  select =
    name: x:
    if isType "if" x then
      map (lib.mkIf x.condition) (select name x.content)
    else if isType "merge" x then
      builtins.concatLists (map (select name) x.contents)
    else if isType "override" x then
      map (lib.mkOverride x.priority) (select name x.content)
    else if isNode x && x ? ${name} then
      [ x.${name} ]
    else
      [ ];

  # Attribute names a definition defines (conditions not evaluated).
  names =
    x:
    if isType "if" x || isType "override" x then
      names x.content
    else if isType "merge" x then
      builtins.concatLists (map names x.contents)
    else if isNode x then
      builtins.attrNames x
    else
      [ ];

  # Whether the definition is an attribute set once the wrappers are removed.
  nodeLike =
    x:
    if isType "if" x || isType "override" x then
      nodeLike x.content
    else if isType "merge" x then
      builtins.all nodeLike x.contents
    else
      isNode x;

  # A leaf definition with its conditions evaluated: absent, a value, or a
  # value with a priority.
  resolve =
    x:
    if isType "if" x then
      (if x.condition then resolve x.content else absent)
    else if isType "merge" x then
      builtins.foldl' merge absent (map resolve x.contents)
    else if isType "override" x then
      (
        let
          v = resolve x.content;
        in
        if isType "absent" v then
          v
        else
          {
            _type = "prio";
            priority = x.priority;
            value = v;
          }
      )
    else
      x;

  prio = x: if isType "prio" x then x.priority else 100;
  unwrap = x: if isType "prio" x then x.value else x;

  merge =
    a: b:
    if isType "absent" a then
      b
    else if isType "absent" b then
      a
    else if prio a != prio b then
      (if prio a < prio b then a else b)
    else
      let
        va = unwrap a;
        vb = unwrap b;
      in
      if builtins.isList va && builtins.isList vb then
        va ++ vb
      else if va == vb then
        va
      else
        throw "stub-nixos: conflicting definitions: ${builtins.toJSON va} and ${builtins.toJSON vb}";

  # The merged value of a list of definitions of one attribute.
  build =
    defs:
    if defs != [ ] && builtins.all nodeLike defs then
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = build (builtins.concatLists (map (select n) defs));
        }) (lib.unique (builtins.concatLists (map names defs)))
      )
    else
      builtins.foldl' merge absent (map resolve defs);

  # Remove what disabled conditions left behind and the priority wrappers.
  clean =
    x:
    if isType "prio" x then
      clean x.value
    else if isNode x then
      builtins.mapAttrs (_: clean) (lib.filterAttrs (_: v: !(isType "absent" (unwrapAll v)) && v != { }) x)
    else if builtins.isList x then
      map clean x
    else
      x;
  unwrapAll = x: let v = if isType "prio" x then unwrapAll x.value else x; in if isNode v && v != { } && builtins.all (n: isType "absent" (unwrapAll v.${n})) (builtins.attrNames v) then absent else v;

  # Evaluates `modules` (paths or attrsets/functions) to their merged config.
  # The services.pulsewire options come from the `options` of the modules.
  eval =
    modules:
    let
      call = m: let f = if builtins.isPath m then import m else m; in if builtins.isFunction f then f args else f;
      # A module and, depth first, the modules it imports.
      expand = m: let v = call m; in [ v ] ++ builtins.concatLists (map expand (v.imports or [ ]));
      evaluated = builtins.concatLists (map expand modules);
      # Each module's options, merged (only ours declare any).
      options = builtins.foldl' (acc: m: lib.recursiveUpdate acc (m.options or { })) { } evaluated;
      definitions = map (m: m.config or (builtins.removeAttrs m [ "options" "imports" ])) evaluated;
      tree = build definitions;
      pulsewireDefinitions = builtins.concatLists (
        map (select "pulsewire") (builtins.concatLists (map (select "services") definitions))
      );
      pulsewire = optionValues options.services.pulsewire (clean (build pulsewireDefinitions));
      config = tree // {
        services = (tree.services or { }) // {
          inherit pulsewire;
        };
      };
      args = {
        inherit lib pkgs config;
        modulesPath = "/modulesPath";
      };
    in
    clean config;
}
