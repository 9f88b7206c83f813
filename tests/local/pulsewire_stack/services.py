"""The stage services: the workspace binaries, run with the command the renderer gives
their units (argv, environment, stop timeout), and their /metrics.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .influx import token_path
from .processes import http, start, wait_for
from .render import UPLOADER_TOKEN, render
from .settings import PROFILE, REPO, SECRETS, StackError, log

# The stage services the stack runs (the simulator is run on demand).
SERVICES = ("aggregator", "processor", "uploader")


def command(stage: str) -> dict:
    """The stage's rendered command: argv, environment, stopTimeout (seconds), metricsPort."""
    return render()["services"][stage]


def build_services() -> None:
    """`cargo build` of the workspace binaries (a no-op when they are fresh)."""
    if os.environ.get("PULSEWIRE_BIN_DIR"):
        return
    cmd = ["cargo", "build", "--workspace", "--bins", "--quiet"]
    if PROFILE == "release":
        cmd.append("--release")
    elif PROFILE != "debug":
        cmd += ["--profile", PROFILE]
    log(f"building the services: {' '.join(cmd)}")
    res = subprocess.run(cmd, cwd=REPO)
    if res.returncode != 0:
        raise StackError("cargo build of the services failed (see above)")



def token_file() -> Path:
    """The uploader's write-only token (the file its rendered command names)."""
    return UPLOADER_TOKEN


def read_token_file() -> Path:
    """A token that may read the bucket (Grafana's), for people and scripts."""
    return token_path(SECRETS, "pulsewire-grafana")


def metrics_port(stage: str) -> int:
    return command(stage)["metricsPort"]


def stop_timeout(stage: str) -> int:
    """The unit's TimeoutStopSec: SIGTERM must end the service within it."""
    return command(stage)["stopTimeout"]


def service_env(stage: str) -> dict:
    """The unit's `environment`. PULSEWIRE_* from the caller's environment are not passed
    on, so a stray variable cannot make the local services differ from the appliance's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEWIRE_")}
    env.pop("JOURNAL_STREAM", None)  # the unit logs to the journal; here, to the log file
    env.pop("NOTIFY_SOCKET", None)
    env.pop("RUST_LOG", None)
    env.update(command(stage)["environment"])
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def service_argv(stage: str, extra: list[str] = ()) -> list[str]:
    """The unit's ExecStart, then `extra` (the e2e cases' simulator runs)."""
    argv = command(stage)["argv"]
    if not Path(argv[0]).exists():
        raise StackError(f"{argv[0]} is missing: run `cargo build --workspace --bins` (or set PULSEWIRE_BIN_DIR)")
    return argv + list(extra)


def start_service(stage: str, wait: bool = True, extra_env: dict | None = None) -> int:
    env = service_env(stage)
    env.update(extra_env or {})
    pid = start(stage, service_argv(stage), env=env)
    if wait:
        wait_service(stage)
    return pid


def wait_service(stage: str) -> None:
    port = metrics_port(stage)
    wait_for(f"{stage} to serve /metrics on :{port}",
             lambda: http("GET", f"http://127.0.0.1:{port}/metrics")[0] == 200, 60, component=stage)


def scrape(port: int) -> dict[str, float]:
    """A Prometheus text page as {series: value}; {} when nothing answers."""
    try:
        code, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
    except OSError:
        return {}
    if code != 200:
        return {}
    out = {}
    for line in body.decode(errors="replace").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out

