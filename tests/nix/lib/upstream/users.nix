# Stand-in for users.users / users.groups, mirroring
#   nixos/modules/config/users-groups.nix @ 005ab72f9cf5a75cdcd9ff672fb4a3b03391619f
# (a 25.11-era copy: its linger assertion already speaks of stateVersion "25.11").
# Declared: the user/group options our modules and the upstream stand-ins set, with
# the same types, defaults and `apply` checks; the isNormalUser defaults; the
# computed group members; the built-in root/nobody accounts and a few groups
# (ids from nixos/modules/misc/ids.nix @ 001d025fd4d70322f01b25021f074db9c359ae0a);
# and the assertions about primary groups, system/normal users and unique ids.
# Left out: shells, passwords, subuids, packages, linger, the initrd users.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkDefault types;
  cfg = config.users;

  shortName =
    what: x:
    assert builtins.stringLength x < 32 || abort "${what} '${x}' is longer than 31 characters which is not allowed!";
    x;

  opt = type: default: description: mkOption { inherit type default description; };
  bool = default: description: opt types.bool default description;

  userOpts =
    { name, config, ... }:
    {
      options = {
        enable = bool true "Whether the account is created at all.";
        name = mkOption {
          type = types.passwdEntry types.str;
          apply = shortName "Username";
          description = "Account name; the attribute name unless set.";
        };
        description = opt (types.passwdEntry types.str) "" "GECOS field, usually the full name.";
        uid = opt (types.nullOr types.int) null "Account UID; null lets activation pick a free one.";
        isSystemUser = bool false "System account (UID below 1000 when allocated). Exactly one of isSystemUser/isNormalUser.";
        isNormalUser = bool false "Account for a person: group users, a home under users.defaultUserHome, created.";
        group = mkOption {
          type = types.str;
          apply = shortName "Group name";
          default = "";
          description = "Primary group (must be declared in users.groups).";
        };
        extraGroups = opt (types.listOf types.str) [ ] "Supplementary groups.";
        home = opt (types.passwdEntry types.path) "/var/empty" "Home directory.";
        homeMode = opt (types.strMatching "[0-7]{1,5}") "700" "Mode of the home directory when createHome is set.";
        createHome = bool false "Whether to create the home directory, owned by the user.";
        useDefaultShell = bool false "Whether the shell is users.defaultUserShell.";
      };

      config = lib.mkMerge [
        { name = mkDefault name; }
        (lib.mkIf config.isNormalUser {
          group = mkDefault "users";
          createHome = mkDefault true;
          home = mkDefault "${cfg.defaultUserHome}/${config.name}";
          homeMode = mkDefault "700";
          useDefaultShell = mkDefault true;
          isSystemUser = mkDefault false;
        })
      ];
    };

  groupOpts =
    { name, config, ... }:
    {
      options = {
        name = mkOption {
          type = types.passwdEntry types.str;
          description = "Group name; the attribute name unless set.";
        };
        gid = opt (types.nullOr types.int) null "Group GID; null lets activation pick a free one.";
        members = opt (types.listOf (types.passwdEntry types.str)) [ ] "Member user names written to /etc/group.";
      };
      config = {
        name = mkDefault name;
        # Upstream adds every enabled user that lists this group in extraGroups.
        members = lib.mapAttrsToList (_: u: u.name) (
          lib.filterAttrs (_: u: u.enable && lib.elem config.name u.extraGroups) cfg.users
        );
      };
    };

  # true when no two entries share a non-null id
  idsUnique =
    attr: set:
    let
      ids = map (x: toString x.${attr}) (lib.filter (x: x.${attr} != null) (lib.attrValues set));
    in
    lib.length ids == lib.length (lib.unique ids);

  groupNames = lib.mapAttrsToList (_: g: g.name) cfg.groups;
  usersWithoutExistingGroup = lib.filterAttrs (
    _: u: u.group != "" && !lib.elem u.group groupNames
  ) cfg.users;
in
{
  imports = [
    # upstream: users.extraUsers / users.extraGroups are aliases
    (lib.mkAliasOptionModule [ "users" "extraUsers" ] [ "users" "users" ])
    (lib.mkAliasOptionModule [ "users" "extraGroups" ] [ "users" "groups" ])
  ];

  options.users = {
    enforceIdUniqueness = bool true "Whether no two users (groups) may share a uid (gid).";
    defaultUserHome = opt types.str "/home" "Parent directory of normal users' homes.";
    users = opt (types.attrsOf (types.submodule userOpts)) { } "User accounts.";
    groups = opt (types.attrsOf (types.submodule groupOpts)) { } "Groups.";
  };

  config = {
    # upstream's built-in accounts and (a subset of) its built-in groups
    users.users = {
      root = {
        uid = 0;
        description = "System administrator";
        home = "/root";
        group = "root";
      };
      nobody = {
        uid = 65534;
        isSystemUser = true;
        description = "Unprivileged account (don't use!)";
        group = "nogroup";
      };
    };
    users.groups = {
      root.gid = 0;
      wheel.gid = 1;
      users.gid = 100;
      nogroup.gid = 65534;
    };

    assertions = [
      {
        assertion = !cfg.enforceIdUniqueness || (idsUnique "uid" cfg.users && idsUnique "gid" cfg.groups);
        message = "UIDs and GIDs must be unique!";
      }
      {
        assertion = usersWithoutExistingGroup == { };
        message = "The following users have a primary group that is undefined: ${lib.concatStringsSep " " (lib.attrNames usersWithoutExistingGroup)}";
      }
    ]
    ++ lib.concatLists (
      lib.mapAttrsToList (_: user: [
        {
          assertion = user.isNormalUser && user.uid != null -> user.uid >= 1000;
          message = "A user cannot have a users.users.${user.name}.uid set below 1000 and set users.users.${user.name}.isNormalUser.";
        }
        {
          # as upstream: root (uid 0, neither flag) counts as a system user
          assertion = lib.xor (
            user.isSystemUser || (user.uid != null && user.uid < 1000 && !user.isNormalUser)
          ) user.isNormalUser;
          message = "Exactly one of users.users.${user.name}.isSystemUser and users.users.${user.name}.isNormalUser must be set.";
        }
        {
          assertion = user.group != "";
          message = "users.users.${user.name}.group is unset.";
        }
      ]) cfg.users
    );
  };
}
