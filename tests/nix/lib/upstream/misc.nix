# Stand-in declarations for the handful of core NixOS options our modules and
# the flake's host module set, mirroring the upstream nixpkgs declarations
# (names, types, defaults) so nixpkgs' real `lib.evalModules` type-checks our
# definitions the way a real NixOS evaluation would. Written from the sources
# named per option (repository NixOS/nixpkgs unless said otherwise, at the
# commit the search index stored); only the declarations, plus the odd
# assertion, are mirrored.
{
  lib,
  config,
  options,
  ...
}:
let
  inherit (lib) mkOption types;

  # nixos/modules/tasks/filesystems.nix @ 0148e16d1446003704803ecabb5a00cfea7d8568
  # uses its own "non-empty string" check (whitespace-only is empty too), not
  # lib.types.nonEmptyStr.
  nonEmptyStr = types.addCheck types.str (s: builtins.match "[ \t\n]*" s == null) // {
    description = "string (with check: non-empty)";
  };
  nonEmptyWithoutTrailingSlash =
    types.addCheck types.str (s: builtins.match "[ \t\n]*" s == null && builtins.match ".+/" s == null)
    // {
      description = "string (with check: non-empty without trailing slash)";
    };
in
{
  options = {
    # nixos/modules/misc/assertions.nix @ 08062fccc11d1bf6e5e6a7bdc1e86eba3fb0c0bf
    # (unchanged for years; the check itself lives in system/activation/top-level.nix)
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
      description = "Conditions ({ assertion; message; }) that must hold for the configuration to evaluate.";
    };

    # same file and commit
    warnings = mkOption {
      type = types.listOf types.str;
      internal = true;
      default = [ ];
      description = "Messages shown to the user while the configuration is evaluated.";
    };

    # nixos/modules/misc/version.nix @ 03a362fe87d4d19a45525bc0adab2f17a562f99a (2023) and
    # faukah/nixpkgs (a nixpkgs fork, 2025) @ 3b20077cd82fd1f099e92e2792d73e3176d4869d:
    # both a plain str defaulting to the release (system.nixos.release, i.e.
    # lib.trivial.release) with a warning when left at that default; the newer
    # one also asserts the "YY.MM" form (mirrored in config below).
    system.stateVersion = mkOption {
      type = types.str;
      default = lib.trivial.release;
      defaultText = lib.literalExpression "config.system.nixos.release";
      apply =
        v:
        lib.warnIf (
          options.system.stateVersion.highestPrio == (lib.mkOptionDefault { }).priority
        ) "system.stateVersion is not set, defaulting to ${v}." v;
      description = "The NixOS release whose stateful-data defaults this machine keeps.";
    };

    # nixos/modules/misc/nixpkgs.nix @ 026ffb9e7abfb4626926cc252fa69bcba85960ef
    # Upstream also has `apply = lib.systems.elaborate;` (the value read back is
    # an elaborated platform). Not mirrored: only the type matters here, and
    # strict evaluation of a whole elaborated platform is needlessly heavy.
    # No default upstream either.
    nixpkgs.hostPlatform = mkOption {
      type = types.either types.str types.attrs;
      example = {
        system = "aarch64-linux";
      };
      description = "The platform the NixOS configuration runs on.";
    };

    # nixos/modules/tasks/network-interfaces.nix @ 003a3fd2f05c2fe13e1bb6db3158d33004723870
    # Upstream default is config.system.nixos.distroId, which defaults to "nixos".
    networking.hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
      defaultText = lib.literalExpression "config.system.nixos.distroId";
      description = "The machine's host name: a single DNS label, no domain part (empty: from DHCP).";
    };

    # nixos/modules/tasks/filesystems.nix @ 0148e16d1446003704803ecabb5a00cfea7d8568
    # Upstream: attrsOf (submodule [ coreFileSystemOpts fileSystemOpts ]) with
    # `apply = lib.filterAttrs (_: fs: fs.enable)`. Mirrored: the keys we use
    # (device, fsType, options) plus enable and mountPoint, same types and
    # defaults, and the config rule that special fs types name their device.
    fileSystems = mkOption {
      default = { };
      apply = lib.filterAttrs (_: fs: fs.enable);
      description = "The file systems to be mounted.";
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = {
              enable = lib.mkEnableOption "the filesystem mount" // {
                default = true;
              };
              mountPoint = mkOption {
                type = nonEmptyWithoutTrailingSlash;
                default = name;
                description = "Where the file system is mounted.";
              };
              device = mkOption {
                type = types.nullOr nonEmptyStr;
                default = null;
                example = "/dev/sda";
                description = "The device as passed to mount.";
              };
              fsType = mkOption {
                type = nonEmptyStr;
                default = "auto";
                example = "ext3";
                description = "Type of the file system.";
              };
              options = mkOption {
                type = types.nonEmptyListOf nonEmptyStr;
                default = [ "defaults" ];
                example = [ "data=journal" ];
                description = "Mount options.";
              };
            };
            config.device = lib.mkIf (lib.elem config.fsType [
              "proc"
              "sysfs"
              "tmpfs"
              "ramfs"
              "devtmpfs"
              "devpts"
            ]) (lib.mkDefault config.fsType);
          }
        )
      );
    };

    # nixos/modules/system/boot/loader/grub/grub.nix @ 00f7b4bdb0befccf40d8d93ebd6745d81553ef0f
    # (a 2020-era copy; this declaration has not changed since)
    boot.loader.grub.device = mkOption {
      type = types.str;
      default = "";
      example = "/dev/disk/by-id/wwn-0x500001234567890a";
      description = "Device GRUB is installed on (\"nodev\": menu only).";
    };

    # nixos/modules/services/ttys/getty.nix @ 087472b1e5230ffc8ba642b1e4f9218adf4634a2
    # (a 2023-era copy; the declaration is unchanged in later versions)
    services.getty.autologinUser = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Account logged in automatically at the console (null: show a login prompt).";
    };
  };

  config.assertions = [
    # from the 2025 version.nix above
    {
      assertion = builtins.match "[0-9]{2}\\.[0-9]{2}" config.system.stateVersion != null;
      message = "${config.system.stateVersion} is an invalid value for 'system.stateVersion'; it must be in the format \"YY.MM\".";
    }
  ];
}
