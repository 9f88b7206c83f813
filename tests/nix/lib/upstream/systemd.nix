# Stand-in for the systemd options our modules set, with nixpkgs' types:
#   systemd.services.<name>.*   nixos/lib/systemd-unit-options.nix @ 515c8fb59bc189b54fc47113d6248cd45f607f65
#                               (unitOption, unitNameType in nixos/lib/systemd-lib.nix; the
#                               service submodule as nixos/modules/system/boot/systemd.nix builds it)
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
  units = mkOption {
    default = [ ];
    type = types.listOf unitNameType;
  };

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
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        description = mkOption {
          type = types.singleLineStr;
          default = "";
        };
        documentation = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
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
        unitConfig = mkOption {
          type = types.attrsOf unitOption;
          default = { };
        };
        startLimitBurst = mkOption { type = types.int; };
        startLimitIntervalSec = mkOption { type = types.int; };
        restartTriggers = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        reloadTriggers = mkOption {
          type = types.listOf unitOption;
          default = [ ];
        };
        environment = mkOption {
          type =
            with types;
            attrsOf (
              nullOr (oneOf [
                str
                path
                package
              ])
            );
          default = { };
        };
        path = mkOption {
          type =
            with types;
            listOf (oneOf [
              package
              str
            ]);
          default = [ ];
        };
        serviceConfig = mkOption {
          type = types.addCheck (types.attrsOf unitOption) checkService;
          default = { };
        };
        script = mkOption {
          type = types.lines;
          default = "";
        };
        scriptArgs = mkOption {
          type = types.str;
          default = "";
        };
        preStart = mkOption {
          type = types.lines;
          default = "";
        };
        postStart = mkOption {
          type = types.lines;
          default = "";
        };
        reload = mkOption {
          type = types.lines;
          default = "";
        };
        preStop = mkOption {
          type = types.lines;
          default = "";
        };
        postStop = mkOption {
          type = types.lines;
          default = "";
        };
        restartIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
        reloadIfChanged = mkOption {
          type = types.bool;
          default = false;
        };
        stopIfChanged = mkOption {
          type = types.bool;
          default = true;
        };
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
in
{
  options.systemd = {
    services = mkOption {
      type = types.attrsOf (types.submodule service);
      default = { };
    };
    tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
  };
}
