# Stand-in for nixpkgs' services.influxdb2 module:
#   nixos/modules/services/databases/influxdb2.nix @ d18ae5032b8a6b9c7083a339ad41f7668e9bc41d
# (the revision shared/docs/nixos-reference.md reads, with influxdb2 2.7.12 as in nixpkgs 25.11).
# Every option we set is declared with its nixpkgs type and default. Of its `config`, the
# parts that decide who opens which secret are kept, in the same shape:
#   - LoadCredential admin-password/admin-token (read by systemd, as root);
#   - ExecStartPost: wait, then the provisioning script, both as User=influxdb2 (no "+"),
#     which opens every provision.users.<u>.passwordFile itself (influxdb2-provision);
#   - preStart (as influxdb2): the token manipulator opens every auths.<a>.tokenFile;
#   - the restarter, the only "+" (root) command, when some auth has a tokenFile;
#   - provision.users.<initialSetup.username>.passwordFile = initialSetup.passwordFile.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.influxdb2;

  # pkgs.formats.json { }'s type (pkgs/pkgs-lib/formats.nix).
  jsonValue =
    with types;
    let
      valueType =
        nullOr (oneOf [
          bool
          int
          float
          str
          path
          (attrsOf valueType)
          (listOf valueType)
        ])
        // {
          description = "JSON value";
        };
    in
    valueType;

  permissions = [
    "authorizations"
    "buckets"
    "dashboards"
    "orgs"
    "tasks"
    "telegrafs"
    "users"
    "variables"
    "secrets"
    "labels"
    "views"
    "documents"
    "notificationRules"
    "notificationEndpoints"
    "checks"
    "dbrp"
    "annotations"
    "sources"
    "scrapers"
    "notebooks"
    "remotes"
    "replications"
  ];

  # Upstream gives these options no description; type and default are what is mirrored.
  opt = type: default: mkOption { inherit type default; };
  required = type: mkOption { inherit type; };
  present = opt types.bool true;
  description = opt (types.nullOr types.str) null;
  # auths' tokenFile and users' passwordFile
  secretFile = opt (types.nullOr types.path) null;
  permissionList = opt (types.listOf (types.enum permissions)) [ ];
  bucketList = opt (types.listOf types.str) [ ];

  auth =
    org:
    { name, ... }:
    {
      options = {
        id = mkOption {
          type = types.str;
          readOnly = true;
          default = builtins.substring 0 32 (builtins.hashString "sha256" "${org}:${name}");
        };
        inherit present description;
        tokenFile = secretFile;
        operator = opt types.bool false;
        allAccess = opt types.bool false;
        readPermissions = permissionList;
        writePermissions = permissionList;
        readBuckets = bucketList;
        writeBuckets = bucketList;
      };
    };

  organization =
    { name, ... }:
    {
      options = {
        inherit present description;
        buckets = opt (types.attrsOf (
          types.submodule {
            options = {
              inherit present description;
              retention = opt types.ints.unsigned 0;
            };
          }
        )) { };
        auths = opt (types.attrsOf (types.submodule (auth name))) { };
      };
    };

  authsWithTokenFiles = lib.concatMap (
    org: lib.filter (a: a.present && a.tokenFile != null) (lib.attrValues org.auths)
  ) (lib.filter (o: o.present) (lib.attrValues cfg.provision.organizations));

  tokenMappings = pkgs.writeText "token_mappings.json" (
    builtins.toJSON (lib.listToAttrs (map (a: lib.nameValuePair a.id a.tokenFile) authsWithTokenFiles))
  );
  provisionState = pkgs.writeText "provision_state.json" (
    builtins.toJSON { inherit (cfg.provision) organizations users; }
  );
in
{
  options.services.influxdb2 = {
    enable = lib.mkEnableOption "the influxdb2 server";
    package = lib.mkPackageOption pkgs "influxdb2" { };
    settings = opt jsonValue { };
    provision = {
      enable = lib.mkEnableOption "initial database setup and provisioning";
      initialSetup = {
        organization = required types.str;
        bucket = required types.str;
        username = opt types.str "admin";
        retention = opt types.ints.unsigned 0;
        passwordFile = required types.path;
        tokenFile = required types.path;
      };
      organizations = opt (types.attrsOf (types.submodule organization)) { };
      users = opt (types.attrsOf (
        types.submodule {
          options = {
            inherit present;
            passwordFile = secretFile;
          };
        }
      )) { };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !(cfg.settings ? "bolt-path") && !(cfg.settings ? "engine-path");
        message = "services.influxdb2.config: bolt-path and engine-path should not be set as they are managed by systemd";
      }
    ]
    ++ lib.concatLists (
      lib.mapAttrsToList (
        orgName: org:
        lib.concatLists (
          lib.mapAttrsToList (authName: a: [
            {
              assertion =
                1 == lib.count (x: x) [
                  a.operator
                  a.allAccess
                  (a.readPermissions != [ ] || a.writePermissions != [ ] || a.readBuckets != [ ] || a.writeBuckets != [ ])
                ];
              message = "influxdb2: provision.organizations.${orgName}.auths.${authName}: The `operator` and `allAccess` options are mutually exclusive with each other and the granular permission settings.";
            }
            {
              assertion = lib.subtractLists (lib.attrNames org.buckets) (a.readBuckets ++ a.writeBuckets) == [ ];
              message = "influxdb2: provision.organizations.${orgName}.auths.${authName}: Refers to invalid buckets";
            }
          ]) org.auths
        )
      ) cfg.provision.organizations
    );

    services.influxdb2.provision = lib.mkIf cfg.provision.enable {
      organizations.${cfg.provision.initialSetup.organization}.buckets.${cfg.provision.initialSetup.bucket} = {
        inherit (cfg.provision.initialSetup) retention;
      };
      users.${cfg.provision.initialSetup.username} = {
        inherit (cfg.provision.initialSetup) passwordFile;
      };
    };

    systemd.services.influxdb2 = {
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      environment = {
        INFLUXD_CONFIG_PATH = pkgs.writeText "config.json" (builtins.toJSON cfg.settings);
        ZONEINFO = "${pkgs.tzdata}/share/zoneinfo";
      };
      path = [
        pkgs.influxdb2-cli
        pkgs.jq
      ];
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/influxd --bolt-path \${STATE_DIRECTORY}/influxd.bolt --engine-path \${STATE_DIRECTORY}/engine";
        StateDirectory = "influxdb2";
        User = "influxdb2";
        Group = "influxdb2";
        CapabilityBoundingSet = "";
        SystemCallFilter = "@system-service";
        LimitNOFILE = 65536;
        KillMode = "control-group";
        Restart = "on-failure";
        LoadCredential = lib.mkIf cfg.provision.enable [
          "admin-password:${cfg.provision.initialSetup.passwordFile}"
          "admin-token:${cfg.provision.initialSetup.tokenFile}"
        ];
        ExecStartPost = [
          (pkgs.writeShellScript "wait-until-service-is-ready" "influx ping")
        ]
        ++ lib.optionals cfg.provision.enable (
          [
            (pkgs.writeShellScript "post-start-provision" ''
              influx setup --configs-path /dev/null --password "$(< "$CREDENTIALS_DIRECTORY/admin-password")" --token "$(< "$CREDENTIALS_DIRECTORY/admin-token")"
              ${lib.getExe pkgs.influxdb2-provision} ${provisionState} "$INFLUX_HOST" "$(< "$CREDENTIALS_DIRECTORY/admin-token")"
            '')
          ]
          ++ lib.optional (authsWithTokenFiles != [ ]) "+${pkgs.writeShellScript "post-start-restarter" "systemctl restart influxdb2"}"
        );
      };
      preStart = lib.mkIf cfg.provision.enable ''
        if ! test -e "$STATE_DIRECTORY/influxd.bolt"; then
          touch "$STATE_DIRECTORY/.first_startup"
        else
          ${lib.getExe pkgs.influxdb2-token-manipulator} "$STATE_DIRECTORY/influxd.bolt" ${tokenMappings}
        fi
      '';
    };

    users.users.influxdb2 = {
      isSystemUser = true;
      group = "influxdb2";
    };
    users.groups.influxdb2 = { };
  };
}
