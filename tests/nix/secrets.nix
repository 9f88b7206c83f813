# Every secret file the modules hand to a service can be read by the user that
# really opens it, with the owner and mode the modules give it.
#
# Who opens what (the openers below), as the units do it:
#   - LoadCredential=<name>:<file>: systemd itself, as root; the unit's user then
#     reads /run/credentials/<unit>/<name>.
#   - A unit's script that reads "$CREDENTIALS_DIRECTORY/<name>" (the InfluxDB
#     setup as influxdb2, the ready check): that credential, as the unit's user.
#   - Grafana opens every $__file{<file>} of its settings and datasources as its User.
#   - The uploader opens its --influx-token-file as its (dynamic) user.
# What a file allows: services.pulsewire.secrets.files (owner, group, mode of the
# secrets directory and of each secret, generated or the operator's, which is
# taken to be as strict: root-only 0400). Root reads anything.
# Run: nix-instantiate --eval --strict --expr 'import ./tests/nix/secrets.nix { }'   (=> true)
{
  lib ? import ./lib/nixpkgs-lib.nix,
}:
let
  h = import ./lib/harness.nix;
  inherit (h) check;
  nixos = import ./lib/eval-nixos.nix { inherit lib; };

  base = [
    ../../nixos
    {
      services.pulsewire.package = nixos.pkgs.writeText "pulsewire" "";
    }
  ];
  appliance = nixos.eval (base ++ [ ../../nixos/appliance.nix ]);
  # The operator supplies every secret, root-only under /run/secrets.
  operator = nixos.eval (
    base
    ++ [
      ../../nixos/appliance.nix
      {
        # (Not the clients' InfluxDB tokens: InfluxDB makes those on its host.)
        services.pulsewire.secrets = lib.genAttrs [
          "influxAdminPasswordFile"
          "influxAdminTokenFile"
          "grafanaAdminPasswordFile"
          "grafanaSecretKeyFile"
          "connectRestPasswordFile"
        ] (option: "/run/secrets/${option}");
      }
    ]
  );

  unitUser =
    cfg: unit:
    let
      sc = cfg.systemd.services.${unit}.serviceConfig;
    in
    if sc.User or null != null then sc.User else if sc.DynamicUser or false then unit else "root";

  # Every file some unit's process opens: { unit; user; path; why; }.
  openers =
    cfg:
    let
      units = cfg.systemd.services;
      credentials = lib.concatLists (
        lib.mapAttrsToList (
          unit: u:
          map (entry: {
            inherit unit;
            user = "root";
            path = lib.concatStringsSep ":" (lib.tail (lib.splitString ":" entry));
            why = "LoadCredential of ${unit}";
          }) (lib.toList (u.serviceConfig.LoadCredential or [ ]))
        ) units
      );
      # A unit's script that opens "$CREDENTIALS_DIRECTORY/<name>" itself, as
      # the unit's user (the InfluxDB setup, the ready check, the Connect
      # worker's users file before it starts).
      scriptFiles = lib.concatLists (
        lib.mapAttrsToList (
          unit: u:
          let
            script = lib.concatMapStrings (x: x.text or "") (
              lib.toList (u.serviceConfig.ExecStartPre or [ ]) ++ [ (u.serviceConfig.ExecStart or "") ]
            );
          in
          map (m: {
            inherit unit;
            user = unitUser cfg unit;
            path = "/run/credentials/${unit}.service/${lib.head m}";
            why = "${unit}'s script";
          }) (lib.filter lib.isList (builtins.split "\\$CREDENTIALS_DIRECTORY/([a-z-]+)" script))
        ) units
      );
      # The files of every $__file{<file>} in a text.
      fileProviders = x: map lib.head (lib.filter lib.isList (builtins.split "\\$__file\\{([^}]*)}" x));
      grafana = cfg.services.grafana;
      grafanaFiles = lib.optionals grafana.enable (
        map (path: {
          unit = "grafana";
          user = unitUser cfg "grafana";
          inherit path;
          why = "Grafana $__file{}";
        }) (fileProviders (builtins.toJSON [ grafana.settings grafana.provision.datasources.settings ]))
      );
      uploaderFiles = lib.optionals (units ? pulsewire-uploader) (
        map (m: {
          unit = "pulsewire-uploader";
          user = unitUser cfg "pulsewire-uploader";
          path = lib.replaceStrings [ "%d" ] [ "/run/credentials/pulsewire-uploader.service" ] (lib.head m);
          why = "uploader --influx-token-file";
        }) (lib.filter (m: m != null) [ (builtins.match ".*--influx-token-file ([^ ]+).*" units.pulsewire-uploader.serviceConfig.ExecStart) ])
      );
      # The Connect REST clients' CONNECT_PASSWORD_FILE (provisioning/connect/register, watch).
      connectClientFiles = lib.concatLists (
        lib.mapAttrsToList (
          unit: u:
          map (f: {
            inherit unit;
            user = unitUser cfg unit;
            path = lib.replaceStrings [ "%d" ] [ "/run/credentials/${unit}.service" ] f;
            why = "${unit}'s CONNECT_PASSWORD_FILE";
          }) (lib.optional (u.environment ? CONNECT_PASSWORD_FILE) u.environment.CONNECT_PASSWORD_FILE)
        ) units
      );
    in
    credentials ++ scriptFiles ++ grafanaFiles ++ uploaderFiles ++ connectClientFiles;

  groupOf = cfg: user: cfg.users.users.${user}.group or user;
  allows =
    cfg: user: f: digit:
    let
      bits = builtins.substring (if f.owner == user then 1 else if f.group == groupOf cfg user then 2 else 3) 1 f.mode;
    in
    lib.elem bits (map toString digit);

  # Whether `o.user` can open `o.path`: root always; a unit's own credential;
  # else the file and its directory must allow it.
  readable =
    cfg: o:
    let
      files = cfg.services.pulsewire.secrets.files;
      find = path: lib.findFirst (f: f.path == path) null files;
      credential = builtins.match "/run/credentials/([^/]+)\\.service/([^/]+)" o.path;
      unitHasCredential =
        unit: name:
        lib.any (e: lib.head (lib.splitString ":" e) == name) (
          lib.toList (cfg.systemd.services.${unit}.serviceConfig.LoadCredential or [ ])
        );
      file = find o.path;
      dir = find (builtins.dirOf o.path);
    in
    if o.user == "root" then
      true
    else if credential != null then
      lib.head credential == o.unit && unitHasCredential o.unit (lib.elemAt credential 1)
    else
      file != null
      && allows cfg o.user file [ 4 5 6 7 ]
      && (dir == null || allows cfg o.user dir [ 1 3 5 7 ]);

  unreadable = cfg: map (o: "${o.user} cannot read ${o.path} (${o.why})") (lib.filter (o: !(readable cfg o)) (openers cfg));
  # Shown in the failure (tryEval hides messages, so the check throws its list).
  none = cfg: let u = unreadable cfg; in u == [ ] || throw (lib.concatStringsSep "; " u);
in
h.run [
  (check "appliance: every opener can read every secret it opens" (none appliance))
  (check "operator's root-only secrets: every opener can read every secret it opens" (none operator))
  (check "the InfluxDB setup is checked: as influxdb2 it opens the admin password and token" (
    map (o: o.path) (lib.filter (o: o.unit == "pulsewire-influxdb-setup" && o.user == "influxdb2") (openers appliance)) == [
      "/run/credentials/pulsewire-influxdb-setup.service/admin-password"
      "/run/credentials/pulsewire-influxdb-setup.service/admin-token"
    ]
  ))
  (check "Grafana's three secrets and the uploader's token are checked" (
    lib.length (lib.filter (o: o.unit == "grafana" && o.user == "grafana") (openers appliance)) == 3
    && lib.length (lib.filter (o: o.unit == "pulsewire-uploader" && o.user != "root") (openers appliance)) == 1
  ))
  (check "every secret is root-only: 0400 root:root files in a 0700 directory" (
    lib.all (f: f.owner == "root" && f.group == "root" && lib.elem f.mode [ "0400" "0700" ]) appliance.services.pulsewire.secrets.files
    && lib.length appliance.services.pulsewire.secrets.files == 8
  ))
  (check "Connect's REST password is checked: the worker's ExecStartPre and both clients open their credential" (
    map (o: "${o.unit} ${o.user} ${o.path}") (
      lib.filter (o: lib.hasPrefix "pulsewire-connect" o.unit && o.user != "root") (openers appliance)
    ) == [
      "pulsewire-connect pulsewire-connect /run/credentials/pulsewire-connect.service/connect-rest-password"
      "pulsewire-connect-register pulsewire-connect-register /run/credentials/pulsewire-connect-register.service/connect-rest-password"
      "pulsewire-connect-watch pulsewire-connect-watch /run/credentials/pulsewire-connect-watch.service/connect-rest-password"
    ]
  ))
  (check "the model bites: a root-only file opened by influxdb2 itself is unreadable" (
    !(readable appliance {
      unit = "influxdb2";
      user = "influxdb2";
      path = "/var/lib/pulsewire-secrets/influx-admin-password";
      why = "";
    })
    && !(readable appliance {
      unit = "grafana";
      user = "grafana";
      path = "/run/credentials/influxdb2.service/pulsewire-grafana";
      why = "another unit's credential";
    })
  ))
]
