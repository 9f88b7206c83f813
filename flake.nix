{
  description = "Pulsewire: wearable heart-rate streams from CSV through Kafka into InfluxDB 2 and Grafana, as a NixOS appliance";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # tests/nix/*.nix: checks of the renderers and of the modules, evaluated
      # with this flake's nixpkgs lib. Each evaluates to true or throws naming
      # the failed check. tests/nix/refused/*.nix must each fail to evaluate
      # (tests/nix/check also matches the error text).
      nixFiles =
        dir:
        lib.mapAttrsToList (name: _: dir + "/${name}") (
          lib.filterAttrs (name: type: type == "regular" && lib.hasSuffix ".nix" name) (builtins.readDir dir)
        );
      nixTests = nixFiles ./tests/nix;
      refusedTests = nixFiles ./tests/nix/refused;

      # `nixos-rebuild switch --flake .` picks the configuration named after the
      # host: one name for both.
      hostName = "pulsewire";

      # A deployable host around the appliance. The disk layout is a
      # placeholder for `nixos-rebuild`; replace it with your
      # hardware-configuration.nix. `nix run .#vm` and the VM test ignore it.
      applianceHost =
        { lib, ... }:
        {
          nixpkgs.hostPlatform = "x86_64-linux";
          networking.hostName = hostName;
          fileSystems."/" = lib.mkDefault {
            device = "/dev/disk/by-label/nixos";
            fsType = "ext4";
          };
          boot.loader.grub.device = lib.mkDefault "/dev/vda";
        };
    in
    {
      packages = forAllSystems (
        pkgs:
        {
          default = self.packages.${pkgs.stdenv.hostPlatform.system}.pulsewire;
          pulsewire = pkgs.callPackage ./nixos/package.nix { };
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          vm = self.nixosConfigurations.${hostName}.config.system.build.vm;
        }
      );

      # services.pulsewire.*, with the package from this flake.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nixos ];
          services.pulsewire.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.pulsewire;
        };
      # The one-host composition (everything on, ports 3000 and 8086 open).
      nixosModules.appliance = ./nixos/appliance.nix;

      nixosConfigurations.${hostName} = lib.nixosSystem {
        modules = [
          self.nixosModules.default
          self.nixosModules.appliance
          applianceHost
        ];
      };

      apps.x86_64-linux.vm = {
        type = "app";
        program = lib.getExe self.nixosConfigurations.${hostName}.config.system.build.vm;
        meta.description = "Boot the Pulsewire appliance in QEMU (Grafana on localhost:3000, InfluxDB on localhost:8086)";
      };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.pulsewire;
        nix-render = pkgs.runCommand "pulsewire-nix-render-tests" { } (
          assert lib.all (t: import t { inherit lib; } == true) nixTests;
          assert lib.all (
            t: !(builtins.tryEval (builtins.deepSeq (import t { inherit lib; }) true)).success
          ) refusedTests;
          "touch $out"
        );
        vm = pkgs.testers.runNixOSTest (import ./tests/vm/appliance.nix { inherit self; });
        # Brokers on one host, a stage on another, a third that is no peer.
        kafka-security = pkgs.testers.runNixOSTest (import ./tests/vm/kafka-security.nix { inherit self; });
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            cargo
            rustc
            clippy
            rustfmt
            pkg-config
            cmake
            python3
            zlib
            jdk17
            apacheKafka
            influxdb2-cli
            curl
            jq
            nixfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree or pkgs.nixfmt);
    };
}
