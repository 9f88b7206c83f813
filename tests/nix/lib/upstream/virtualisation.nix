# Stand-in for the vmVariant mechanism of
#   nixos/modules/virtualisation/build-vm.nix @ 14fd976016aee7e8a52f362b145a16947e111515
# (an older, docbook-era copy; the mechanism is unchanged: shared/docs/nixos-reference.md
# reads the same from 2f0d2186). `virtualisation.vmVariant` is typed as the whole
# configuration extended with qemu-vm.nix, so a definition there is checked against
# every option of the host plus the VM ones, and the VM settings are not top-level
# options. Not mirrored: vmVariantWithBootLoader and system.build.vm (no
# system.build here).
#
# The value is a full configuration that contains its own vmVariant again, so
# never force the whole of `config` with --strict; select the attributes you need.
{ extendModules, lib, ... }:
let
  vmVariant = extendModules { modules = [ ./qemu-vm.nix ]; };
in
{
  options.virtualisation.vmVariant = lib.mkOption {
    inherit (vmVariant) type;
    default = { };
    visible = "shallow";
    description = "Configuration added for the VM that `nixos-rebuild build-vm` (system.build.vm) runs.";
  };
}
