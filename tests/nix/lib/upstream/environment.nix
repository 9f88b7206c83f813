# Stand-in for environment.etc and environment.systemPackages.
#   environment.etc: nixos/modules/system/etc/etc.nix. The NixOS/nixpkgs copies
#     the index holds are unusable (be5d3a59dd3684ffabf456728938ed0f6f3df59c is a
#     pre-2015 version with types.loaOf; 05924f714f31ff83bd10ed1710638688999c3725
#     carries an unresolved merge conflict in exactly the `source` line), so this
#     mirrors the nixpkgs fork faukah/nixpkgs @ 3b20077cd82fd1f099e92e2792d73e3176d4869d
#     (2025: userborn notes, etc overlay), whose declaration matches the HEAD side
#     of that conflict. Only the entry submodule is mirrored, including its config:
#     target defaults to the attribute name, and a `text` becomes the `source`
#     through pkgs.writeText "etc-<name with / replaced by ->" at the priority of
#     the `text` definition (lib.mkDerivedConfig).
#   environment.systemPackages: nixos/modules/config/system-path.nix
#     @ 0354e8b747c8d69802d160ff408d1aece50472c9. Upstream adds the core and
#     default packages to it in its config; not mirrored, so it holds exactly
#     what modules put there.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;

  opt = type: default: description: mkOption { inherit type default description; };

  etcEntry =
    {
      name,
      config,
      options,
      ...
    }:
    {
      options = {
        enable = opt types.bool true "Whether this /etc file is generated.";
        target = mkOption {
          type = types.str;
          description = "Path relative to /etc; the attribute name unless set.";
        };
        text = opt (types.nullOr types.lines) null "Content of the file (sets `source`).";
        source = mkOption {
          type = types.path;
          description = "Path of the source file.";
        };
        mode = opt types.str "symlink" "\"symlink\", or the mode of a copied file." // {
          example = "0600";
        };
        uid = opt types.int 0 "Owner uid of a copied file.";
        gid = opt types.int 0 "Group gid of a copied file.";
        user = opt types.str "+${toString config.uid}" "Owner name of a copied file (wins over uid).";
        group = opt types.str "+${toString config.gid}" "Group name of a copied file (wins over gid).";
      };

      config = {
        target = lib.mkDefault name;
        source = lib.mkIf (config.text != null) (
          lib.mkDerivedConfig options.text (pkgs.writeText ("etc-" + lib.replaceStrings [ "/" ] [ "-" ] name))
        );
      };
    };
in
{
  options.environment = {
    etc = opt (types.attrsOf (types.submodule etcEntry)) { } "Files linked (or copied) into /etc.";
    systemPackages = opt (types.listOf types.package) [ ] "Packages in /run/current-system/sw.";
  };
}
