# The nixpkgs `lib` that the module checks evaluate with: the folder named by the
# environment variable PULSEWIRE_NIXPKGS_LIB (any nixpkgs lib/, absolute path), or
# by default the unmodified copy of nixpkgs' lib/ at the 25.11 branch-off that
# lies beside the checkout (../shared/vendor/nixpkgs-lib/lib, see its SOURCE.md).
# Under `nix flake check` the tests get the flake's own nixpkgs lib instead.
let
  fromEnv = builtins.getEnv "PULSEWIRE_NIXPKGS_LIB";
in
import (if fromEnv != "" then /. + fromEnv else ../../../../shared/vendor/nixpkgs-lib/lib)
