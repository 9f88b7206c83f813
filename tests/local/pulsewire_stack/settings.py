"""Where one local stack lives and what it is built from.

PULSEWIRE_LOCAL_STATE moves its state (default tests/local/.state), PULSEWIRE_LOCAL_CACHE the
Kafka jars and the lock (default tests/local/.cache), PULSEWIRE_PORT_OFFSET shifts every
port (bench/cluster runs a second stack with 10000), PULSEWIRE_BIN_DIR or PULSEWIRE_PROFILE
picks the service binaries.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

LOCAL_DIR = Path(__file__).resolve().parent.parent
REPO = LOCAL_DIR.parent.parent
PIPELINE_FILE = REPO / "provisioning" / "pipeline.toml"
RENDERER = REPO / "nixos" / "lib" / "pulsewire.nix"
PROM_RENDERER = REPO / "nixos" / "lib" / "prometheus.nix"
SECURITY_RENDERER = REPO / "nixos" / "lib" / "kafka-security.nix"
CACHE = Path(os.environ.get("PULSEWIRE_LOCAL_CACHE", LOCAL_DIR / ".cache"))
STATE = Path(os.environ.get("PULSEWIRE_LOCAL_STATE", LOCAL_DIR / ".state"))
LOGS = STATE / "logs"
PIDS = STATE / "pids"
SECRETS = STATE / "secrets"  # 0600 files: the store's password and tokens
PORT_OFFSET = int(os.environ.get("PULSEWIRE_PORT_OFFSET", "0"))
PROFILE = os.environ.get("PULSEWIRE_PROFILE", "debug")

# Names, kinds and sizes (ports come from the renderer, which applies the offset).
with PIPELINE_FILE.open("rb") as _f:
    PIPELINE = tomllib.load(_f)


class StackError(RuntimeError):
    """A failure an operator can act on; the message says what and where to look."""


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def readings_file() -> Path:
    """The file the simulator appends to and Connect tails (the appliance uses
    [connect].file; the local stack keeps its own under its state)."""
    return STATE / "readings.csv"


def bin_dir() -> Path:
    """Where the pulsewire-<stage> binaries are: PULSEWIRE_BIN_DIR or cargo's target dir."""
    if os.environ.get("PULSEWIRE_BIN_DIR"):
        return Path(os.environ["PULSEWIRE_BIN_DIR"])
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / PROFILE
