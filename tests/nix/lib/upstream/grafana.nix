# Stand-in for nixpkgs' services.grafana module:
#   nixos/modules/services/monitoring/grafana.nix
# NixOS/nixpkgs's stored copy (88c82ee3ecd674f2a7a7f599170d505260849c49) is from
# 2023 (lib.mdDoc, notifiers); this mirrors the nixpkgs fork of its maintainer,
#   Ma27/nixpkgs @ 8b086f9c9bc81551aa443c3f8db06a0c72036db7
# which is 25.11-era (Grafana 12: the editors_can_admin assertion; notifiers removed;
# postgresql.target; openFirewall; datasource url default ""; reporting_enabled
# default false). Declarations and defaults below agree with both copies except
# where noted.
#
# security.secret_key: a plain str DEFAULTING to the well-known
# "SW2YcwTIb9zpOOhoPsMm", with no assertion, in both copies and hence in 25.11.
# Upstream dropped the default only in January 2026 (nixpkgs PR #484374, refined by
# PR #492770): from NixOS 26.05 it has no default and evaluation fails if unset.
# Our module sets it (a $__file{} provider) either way.
#
# Types: `settings` is freeform with pkgs.formats.ini { listToValue = ...; } 's type
# and the provisioning entries are freeform with pkgs.formats.yaml { } 's type, both
# written out here with lib.types after pkgs/pkgs-lib/formats.nix
# @ 001740f03dbdff478182996703602232e7ca5fc0.
#
# Config mirrored: the file-provider warnings, the assertions (minus the alerting
# ones: alerting is not mirrored), environment.systemPackages, the firewall port
# (openFirewall), the grafana.service essentials: `script` running grafana with the
# INI rendered as upstream renders it (lib.generators.toINI + pkgs.writeText), User
# and the hardening, and the static `grafana` user and group. Upstream sets
# serviceConfig.User = "grafana" and NO Group: the process runs with the user's
# primary group, users.users.grafana.group = "grafana".
# Not mirrored: settings.paths (the provisioning directory is built with
# runCommand/lndir from YAML made by remarshal), declarative plugins' link farm,
# database-specific ordering, provision.alerting.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.grafana;

  # The scalar values both formats below accept (besides null).
  scalars = [
    types.bool
    types.int
    types.float
    types.str
  ];

  # pkgs.formats.ini's atom, as grafana calls it (listToValue set, so a non-empty
  # list is accepted as well and joined with spaces when rendered).
  singleIniAtom =
    types.nullOr (types.oneOf scalars)
    // {
      description = "INI atom (null, bool, int, float or string)";
    };
  iniAtom = types.either singleIniAtom (types.nonEmptyListOf singleIniAtom) // {
    description = singleIniAtom.description + " or a non-empty list of them";
  };
  iniType = types.attrsOf (
    types.attrsOf iniAtom
    // {
      description = "section of an INI file (attrs of ${iniAtom.description})";
    }
  );

  # pkgs.formats.yaml { } (yaml_1_1) type
  yamlValue =
    types.nullOr (
      types.oneOf (
        scalars
        ++ [
          types.path
          (types.attrsOf yamlValue)
          (types.listOf yamlValue)
        ]
      )
    )
    // {
      description = "YAML 1.1 value";
    };

  # How the module renders settings: formats.ini's generate with grafana's
  # listToValue and a key=value writer that prints null as an empty value.
  mkValueString = lib.generators.mkValueStringDefault { };
  listToValue = lib.concatMapStringsSep " " mkValueString;
  configFile = pkgs.writeText "config.ini" (
    lib.generators.toINI {
      mkKeyValue = lib.generators.mkKeyValueDefault {
        mkValueString = v: if v == null then "" else mkValueString v;
      } "=";
    } (lib.mapAttrs (_: lib.mapAttrs (_: v: if lib.isList v then listToValue v else v)) cfg.settings)
  );

  opt = type: default: description: mkOption { inherit type default description; };
  bool = opt types.bool;
  str = opt types.str;
  # A required option (no default).
  required = type: description: mkOption { inherit type description; };
  nullOrAttrs = opt (types.nullOr types.attrs) null;

  # provision.datasources / provision.dashboards: a provisioning file given as Nix
  # (`settings`: its apiVersion and the kind's own options) or as YAML (`path`).
  provisioning =
    kind: description: options:
    opt (types.submodule {
      options.settings = opt (types.nullOr (
        types.submodule {
          options = {
            apiVersion = opt types.int 1 "Config file version.";
          }
          // options;
        }
      )) null "${kind} provisioning file as Nix; exclusive with `path`.";
      options.path = opt (types.nullOr types.path) null "YAML file or directory instead of `settings`.";
    }) { } description;

  datasourceConfig = types.submodule {
    freeformType = yamlValue;
    options = {
      name = required types.str "Datasource name (required).";
      type = required types.str "Datasource type (required).";
      access = opt (types.enum [
        "proxy"
        "direct"
      ]) "proxy" "proxy (server) or direct (browser) access.";
      uid = opt (types.nullOr types.str) null "Stable uid other configuration can refer to; generated if null.";
      # 2023 copy: default "localhost"
      url = str "" "URL of the datasource.";
      editable = bool false "Whether users may edit the datasource in the UI.";
      jsonData = nullOrAttrs "Plugin-specific settings.";
      secureJsonData = nullOrAttrs "Plugin-specific secrets; world-readable in the store unless file/env providers are used.";
    };
  };

  dashboardConfig = types.submodule {
    freeformType = yamlValue;
    options = {
      name = str "default" "Unique provider name.";
      type = str "file" "Provider type.";
      options.path = required types.path "Directory Grafana watches for dashboards (file providers).";
    };
  };

  # The file/env provider forms Grafana expands ($__file{...}, $__env{...}, $VAR).
  doesntUseFileProvider =
    value: defaultValue:
    let
      regex = "${
        lib.optionalString (defaultValue != null) "^${defaultValue}$|"
      }^\\$__(file|env)\\{.*}$|^\\$[^_\\$][^ ]+$";
    in
    builtins.match regex value == null;
in
{
  options.services.grafana = {
    enable = lib.mkEnableOption "grafana";

    package = lib.mkPackageOption pkgs "grafana" { };

    declarativePlugins = mkOption {
      type = types.nullOr (types.listOf types.path);
      default = null;
      apply = x: if lib.isList x then lib.unique x else x;
      description = "Plugin packages to install; when set, plugins cannot be installed by hand.";
    };

    dataDir = opt types.path "/var/lib/grafana" "Data directory.";

    # Ma27 copy only (not in the 2023 one)
    openFirewall = bool false "Open the HTTP port in the firewall.";

    settings = mkOption {
      default = { };
      description = "grafana.ini settings (freeform INI).";
      type = types.submodule {
        freeformType = iniType;
        options = {
          server = {
            protocol = opt (types.enum [
              "http"
              "https"
              "h2"
              "socket"
            ]) "http" "Protocol to listen with.";
            # deliberately unlike upstream Grafana's default
            http_addr = str "127.0.0.1" "Listening address.";
            http_port = opt types.port 3000 "Listening port.";
            domain = str "localhost" "Public domain name (used by the default root_url).";
            root_url = str "%(protocol)s://%(domain)s:%(http_port)s/" "Full public URL.";
            enforce_domain = bool false "Redirect requests whose Host differs from domain.";
          };

          database.password = str "" "Database password (store-visible unless a provider is used).";

          security = {
            disable_initial_admin_creation = bool false "Do not create the admin user on first start.";
            admin_user = str "admin" "Initial admin user name.";
            admin_password = str "admin" "Initial admin password (store-visible unless a provider is used).";
            admin_email = str "admin@localhost" "Initial admin e-mail.";
            # See the header: default kept through 25.11, dropped for 26.05.
            secret_key = str "SW2YcwTIb9zpOOhoPsMm" "Signing/encryption key (store-visible unless a provider is used).";
            disable_gravatar = bool false "Disable Gravatar profile images.";
          };

          users.allow_sign_up = bool false "Let users sign up themselves.";

          analytics = {
            # 2023 copy: default true
            reporting_enabled = bool false "Send anonymous usage statistics.";
            check_for_updates = bool false "Check GitHub for new Grafana versions.";
            check_for_plugin_updates = mkOption {
              type = types.bool;
              default = cfg.declarativePlugins == null;
              defaultText = lib.literalExpression "cfg.declarativePlugins == null";
              description = "Check grafana.com for plugin updates.";
            };
          };
        };
      };
    };

    provision = {
      enable = lib.mkEnableOption "provision";

      datasources = provisioning "Datasource" "Declaratively provisioned datasources." {
        # Ma27 copy only
        prune = bool false "Delete provisioned datasources once removed here.";
        datasources = opt (types.listOf datasourceConfig) [ ] "Datasources to insert/update.";
        deleteDatasources = opt (types.listOf (
          types.submodule {
            options.name = required types.str "Name of the datasource.";
            options.orgId = required types.int "Its organization id.";
          }
        )) [ ] "Datasources to delete from the database.";
      };

      dashboards = provisioning "Dashboard" "Declaratively provisioned dashboard providers." {
        providers = opt (types.listOf dashboardConfig) [ ] "Dashboard providers to insert/update.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    warnings =
      lib.optional (
        doesntUseFileProvider cfg.settings.database.password ""
        || doesntUseFileProvider cfg.settings.security.admin_password "admin"
      ) "Grafana passwords will be stored as plaintext in the Nix store! Use file provider or an env-var instead."
      ++ lib.optional (lib.any (
        { secureJsonData, ... }:
        secureJsonData != null
        && lib.any (v: doesntUseFileProvider v null) (lib.attrValues secureJsonData)
      ) (lib.optionals (cfg.provision.datasources.settings != null) cfg.provision.datasources.settings.datasources)
      ) "Declarations in the `secureJsonData`-block of a datasource will be leaked to the Nix store unless a file-provider or an env-var is used!";

    environment.systemPackages = [ cfg.package ];

    assertions = [
      {
        assertion = !(cfg.settings.users ? editors_can_admin);
        message = "Option `services.grafana.settings.users.editors_can_admin` has been removed in Grafana 12.";
      }
      {
        assertion = cfg.provision.datasources.settings == null || cfg.provision.datasources.path == null;
        message = "Cannot set both datasources settings and datasources path";
      }
      {
        assertion =
          cfg.provision.datasources.settings == null
          || lib.all (
            { type, access, ... }: type == "prometheus" -> access != "direct"
          ) cfg.provision.datasources.settings.datasources;
        message = "For datasources of type `prometheus`, the `direct` access mode is not supported anymore (since Grafana 9.2.0)";
      }
      {
        assertion = cfg.provision.dashboards.settings == null || cfg.provision.dashboards.path == null;
        message = "Cannot set both dashboards settings and dashboards path";
      }
    ];

    systemd.services.grafana = {
      description = "Grafana Service Daemon";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      script = ''
        set -o errexit -o pipefail -o nounset -o errtrace
        shopt -s inherit_errexit

        exec ${lib.getExe cfg.package} server -homepath ${cfg.dataDir} -config ${configFile}
      '';
      serviceConfig = {
        WorkingDirectory = cfg.dataDir;
        User = "grafana";
        Restart = "on-failure";
        RuntimeDirectory = "grafana";
        RuntimeDirectoryMode = "0755";
        # Upstream also sets its sandboxing here; no check reads it, so it is not mirrored.
      };
      preStart = ''
        ln -fs ${cfg.package}/share/grafana/conf ${cfg.dataDir}
        ln -fs ${cfg.package}/share/grafana/tools ${cfg.dataDir}
      '';
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.settings.server.http_port ];

    users.users.grafana = {
      uid = 196; # config.ids.uids.grafana (nixos/modules/misc/ids.nix @ 001d025f)
      description = "Grafana user";
      home = cfg.dataDir;
      createHome = true;
      group = "grafana";
    };
    users.groups.grafana = { };
  };
}
