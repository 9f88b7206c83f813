"""Every Pulsewire unit of the appliance rates "OK" or better in `systemd-analyze security`.

The units come from the NixOS modules themselves: tests/nix's evaluator (nixpkgs' real
lib.evalModules, ../shared/vendor/nixpkgs-lib or PULSEWIRE_NIXPKGS_LIB) gives each
pulsewire-* unit's serviceConfig, written here as a unit file the way nixpkgs renders one
(a list is a repeated key, a boolean `true`/`false`), and rated offline. The rating is
compared as a level (tests/vm/security.py), as the VM test does on the running units.
Needs nix-instantiate and systemd-analyze (systemd >= 250 for --offline).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from security import rated_at_least, security_rating

ROOT = Path(__file__).resolve().parent.parent

# The appliance as deployed (tests/nix/limits.nix evaluates the same), each
# pulsewire-* unit's serviceConfig.
UNITS_EXPR = """
let
  lib = import ./tests/nix/lib/nixpkgs-lib.nix;
  nixos = import ./tests/nix/lib/eval-nixos.nix { inherit lib; };
  config = nixos.eval [
    ./nixos
    ./nixos/appliance.nix
    {
      services.pulsewire.package = nixos.pkgs.writeText "pulsewire" "";
      services.pulsewire.simulator.replayFile = ./provisioning/data/seed-readings.csv;
    }
  ];
in
lib.mapAttrs (_: unit: unit.serviceConfig)
  (lib.filterAttrs (name: _: lib.hasPrefix "pulsewire-" name) config.systemd.services)
"""


def nixpkgs_lib():
    given = os.environ.get("PULSEWIRE_NIXPKGS_LIB")
    return Path(given) if given else ROOT.parent / "shared" / "vendor" / "nixpkgs-lib" / "lib"


def evaluated_units():
    """{unit name: serviceConfig} of the appliance's pulsewire-* services."""
    env = dict(os.environ, PULSEWIRE_NIXPKGS_LIB=str(nixpkgs_lib().resolve()))
    # Only stdout is read: Nix warns on stderr about the machine (nixbld group).
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", UNITS_EXPR],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if out.returncode != 0:
        raise AssertionError(f"evaluating the units failed:\n{out.stderr}")
    return json.loads(out.stdout)


def unit_file(name, service_config):
    """The unit file nixpkgs would write for this [Service] section."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    lines = ["[Unit]", f"Description={name}", "", "[Service]"]
    for key, v in sorted(service_config.items()):
        for item in v if isinstance(v, list) else [v]:
            lines.append(f"{key}={value(item)}")
    return "\n".join(lines) + "\n"


UNITS = evaluated_units()


def test_the_appliance_has_the_units_this_test_rates():
    assert sorted(UNITS) == [
        "pulsewire-aggregator",
        "pulsewire-connect",
        "pulsewire-connect-register",
        "pulsewire-connect-watch",
        "pulsewire-influxdb-ready",
        "pulsewire-influxdb-setup",
        "pulsewire-influxdb-tasks",
        "pulsewire-kafka-1",
        "pulsewire-kafka-2",
        "pulsewire-kafka-3",
        "pulsewire-kafka-topics",
        "pulsewire-processor",
        "pulsewire-secrets",
        "pulsewire-simulator",
        "pulsewire-uploader",
    ]


def test_a_list_is_a_repeated_key_and_a_boolean_a_word():
    text = unit_file("pulsewire-x", {"SystemCallFilter": ["@system-service", "~@privileged"],
                                     "NoNewPrivileges": True, "TasksMax": 32})
    assert text.splitlines()[4:] == [
        "NoNewPrivileges=true",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
        "TasksMax=32",
    ]


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_rates_ok_or_better(name, tmp_path):
    path = tmp_path / f"{name}.service"
    path.write_text(unit_file(name, UNITS[name]))
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ).stdout
    unit, exposure, level = security_rating(out)
    assert unit == f"{name}.service"
    assert rated_at_least(out, "OK"), f"{unit}: {exposure} {level}, want OK or better"
