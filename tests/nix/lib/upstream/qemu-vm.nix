# Stand-in for the options of
#   nixos/modules/virtualisation/qemu-vm.nix @ 00008e8eb762c5def2670c20231de50db9bb75b3
# (a 2025 copy: Limine support, imports ./disk-size-option.nix) that we set inside
# virtualisation.vmVariant, and of
#   nixos/modules/virtualisation/disk-size-option.nix @ 34b62f7c47d9e11cf95b01473e9a380e9d331a6d
# which declares virtualisation.diskSize since nixpkgs PR #339535 (merged for 24.11):
# `either (enum [ "auto" ]) ints.positive`, not nullOr (null was disallowed in
# PR #338967); qemu-vm.nix sets diskSizeAutoSupported = false, so the default
# there is 1024 and "auto" fails an assertion.
# Of qemu-vm.nix's config, mirrored: the forwardPorts assertions, and the
# VM-priority (mkVMOverride) takeover of boot.loader.grub.device and of
# fileSystems (only the "/" entry of upstream's virtualisation.fileSystems).
{
  config,
  lib,
  options,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.virtualisation;
  # nixos/modules/system/activation/top-level.nix: system.name
  systemName = if config.networking.hostName == "" then "unnamed" else config.networking.hostName;

  opt = type: default: description: mkOption { inherit type default description; };
  bool = opt types.bool;

  # One entry of forwardPorts; each end ("host", "guest") is an address and a port.
  forwardRule = types.submodule {
    options.from = opt (types.enum [
      "host"
      "guest"
    ]) "host" "Direction: \"host\" forwards host ports into the guest, \"guest\" the reverse.";
    options.proto = opt (types.enum [
      "tcp"
      "udp"
    ]) "tcp" "Protocol forwarded.";
    options.host.address = opt types.str "" "Host IPv4 address.";
    options.host.port = mkOption {
      type = types.port;
      description = "Host port.";
    };
    options.guest.address = opt types.str "" "Guest IPv4 address on the VLAN.";
    options.guest.port = mkOption {
      type = types.port;
      description = "Guest port.";
    };
  };
in
{
  options.virtualisation = {
    # upstream: `virtualisation.fileSystems = options.fileSystems;`
    fileSystems = options.fileSystems;

    memorySize = opt types.ints.positive 1024 "Memory of the VM in MiB.";

    diskImage = mkOption {
      type = types.nullOr types.str;
      default = "./${systemName}.qcow2";
      defaultText = lib.literalExpression ''"./''${config.system.name}.qcow2"'';
      description = "Disk image holding the root file system, created on start if missing; null: tmpfs root.";
    };

    bootLoaderDevice = opt types.path "/dev/disk/by-id/virtio-root" "Device (inside the VM) legacy boot uses.";
    rootDevice = opt (types.nullOr types.path) "/dev/disk/by-label/nixos" "Device (inside the VM) holding the root file system.";
    graphics = bool true "Whether QEMU opens a graphics window (false: -nographic).";
    cores = opt types.ints.positive 1 "Number of guest CPU cores.";

    forwardPorts = opt (types.listOf forwardRule) [ ] "SLiRP port forwards between host and guest (the guest firewall must open the guest ports).";

    useBootLoader = bool false "Boot through a boot loader instead of directly into the kernel.";
    useEFIBoot = bool false "Provide an EFI boot manager (with useBootLoader).";
    useDefaultFilesystems = bool true "Use the VM's default file systems.";

    # disk-size-option.nix
    diskSizeAutoSupported = bool true "Whether the image builder or VM runner accepts diskSize = \"auto\"." // {
      internal = true;
    };

    diskSize = mkOption {
      type = types.either (types.enum [ "auto" ]) types.ints.positive;
      default = if cfg.diskSizeAutoSupported then "auto" else 1024;
      defaultText = "\"auto\" if diskSizeAutoSupported, else 1024";
      description = "Disk size of the VM in MiB.";
    };
  };

  config = {
    virtualisation.diskSizeAutoSupported = false;

    assertions =
      lib.concatLists (
        lib.imap1 (i: rule: [
          {
            assertion = rule.from == "guest" -> rule.proto == "tcp";
            message = "Invalid virtualisation.forwardPorts.<entry ${toString i}>.proto: Guest forwarding supports only TCP connections.";
          }
          {
            assertion = rule.from == "guest" -> lib.hasPrefix "10.0.2." rule.guest.address;
            message = "Invalid virtualisation.forwardPorts.<entry ${toString i}>.guest.address: The address must be in the default VLAN (10.0.2.0/24).";
          }
        ]) cfg.forwardPorts
      )
      ++ [
        {
          assertion = cfg.diskSize != "auto" || cfg.diskSizeAutoSupported;
          message = "Setting virtualisation.diskSize to `auto` is not supported by the current image build or vm runner; use an explicit size.";
        }
      ];

    boot.loader.grub.device = lib.mkVMOverride (if cfg.useEFIBoot then "nodev" else cfg.bootLoaderDevice);

    # The host's file systems do not exist in the VM.
    fileSystems = lib.mkIf (cfg.fileSystems != { }) (lib.mkVMOverride cfg.fileSystems);

    virtualisation.fileSystems."/" = lib.mkIf cfg.useDefaultFilesystems (
      if cfg.diskImage == null then
        {
          device = "tmpfs";
          fsType = "tmpfs";
          options = [ "mode=755" ];
        }
      else
        {
          device = cfg.rootDevice;
          fsType = "ext4";
        }
    );
  };
}
