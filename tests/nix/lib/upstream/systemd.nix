# Stand-in for the systemd options our modules set, with nixpkgs' types:
#   systemd.services.<name>.*   nixos/lib/systemd-unit-options.nix @ 515c8fb59bc189b54fc47113d6248cd45f607f65
#                               (unitOption, unitNameType in nixos/lib/systemd-lib.nix; the
#                               service submodule as nixos/modules/system/boot/systemd.nix builds it)
#   systemd.timers.<name>.*     the same file's timerOptions (common unit options + timerConfig)
#   systemd.tmpfiles.rules      nixos/modules/system/boot/systemd/tmpfiles.nix
# Like nixpkgs, preStart/script/postStart become ExecStartPre/ExecStart/ExecStartPost scripts.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;

  # A [Service]/[Unit] value: lists are repeated keys and concatenate across
  # definitions; anything else must be defined once (or equally).
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.isList (lib.head defs').value then
        lib.concatMap (
          def:
          if lib.isList def.value then
            def.value
          else
            throw "The definitions for systemd unit options should be either all lists, representing repeatable options, or all non-lists, but for the option ${lib.showOption loc}, the definitions are a mix of list and non-list ${lib.options.showDefs defs'}"
        ) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # The unit options carry no description here: type and default are what is mirrored.
  opt = type: default: mkOption { inherit type default; };
  units = opt (types.listOf unitNameType) [ ];
  lines = opt types.lines "";

  # systemd-lib.nix's checkUnitConfig "Service": Type and Restart take these values only.
  valueIn =
    name: allowed: attrs:
    !(attrs ? ${name}) || lib.elem attrs.${name} allowed
    || throw "The systemd service option ${name} has value `${toString attrs.${name}}', which is not one of ${lib.concatStringsSep ", " allowed}.";
  checkService =
    attrs:
    valueIn "Type" [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ] attrs
    && valueIn "Restart" [
      "no"
      "on-success"
      "on-failure"
      "on-abnormal"
      "on-abort"
      "on-watchdog"
      "always"
    ] attrs;

  script = name: text: pkgs.writeShellScript name text;

  service =
    { name, config, ... }:
    {
      options = {
        enable = opt types.bool true;
        description = opt types.singleLineStr "";
        documentation = opt (types.listOf types.str) [ ];
        wantedBy = units;
        requiredBy = units;
        upheldBy = units;
        aliases = units;
        requires = units;
        wants = units;
        upholds = units;
        after = units;
        before = units;
        bindsTo = units;
        partOf = units;
        conflicts = units;
        requisite = units;
        onFailure = units;
        onSuccess = units;
        unitConfig = opt (types.attrsOf unitOption) { };
        startLimitBurst = mkOption { type = types.int; };
        startLimitIntervalSec = mkOption { type = types.int; };
        restartTriggers = opt (types.listOf types.unspecified) [ ];
        reloadTriggers = opt (types.listOf unitOption) [ ];
        environment = opt (
          with types;
          attrsOf (
            nullOr (oneOf [
              str
              path
              package
            ])
          )
        ) { };
        path = opt (
          with types;
          listOf (oneOf [
            package
            str
          ])
        ) [ ];
        serviceConfig = opt (types.addCheck (types.attrsOf unitOption) checkService) { };
        script = lines;
        scriptArgs = opt types.str "";
        preStart = lines;
        postStart = lines;
        reload = lines;
        preStop = lines;
        postStop = lines;
        restartIfChanged = opt types.bool true;
        reloadIfChanged = opt types.bool false;
        stopIfChanged = opt types.bool true;
        startAt = mkOption {
          type = with types; either str (listOf str);
          default = [ ];
          apply = v: if lib.isList v then v else [ v ];
        };
      };

      config = lib.mkMerge [
        (lib.mkIf (config.preStart != "") {
          serviceConfig.ExecStartPre = [ (script "${name}-pre-start" config.preStart) ];
        })
        (lib.mkIf (config.script != "") {
          serviceConfig.ExecStart = "${script "${name}-start" config.script} ${config.scriptArgs}";
        })
        (lib.mkIf (config.postStart != "") {
          serviceConfig.ExecStartPost = [ (script "${name}-post-start" config.postStart) ];
        })
      ];
    };

  timer = {
    options = {
      enable = opt types.bool true;
      description = opt types.singleLineStr "";
      wantedBy = units;
      requiredBy = units;
      after = units;
      before = units;
      unitConfig = opt (types.attrsOf unitOption) { };
      timerConfig = mkOption { type = types.attrsOf unitOption; };
    };
  };
in
{
  options.systemd = {
    services = opt (types.attrsOf (types.submodule service)) { };
    timers = opt (types.attrsOf (types.submodule timer)) { };
    tmpfiles.rules = opt (types.listOf types.str) [ ];
  };
}
