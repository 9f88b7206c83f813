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


def command(stage: str, instance: int = 1) -> dict:
    """The stage's rendered command: argv, environment, stopTimeout (seconds), metricsPort;
    of instance N (1-based) of a stage that can run several, with its own instance name and
    metrics port."""
    base = render()["services"][stage]
    if instance == 1:
        return base
    rendered = render()["instances"].get(stage)
    if rendered is None:
        raise StackError(f"{stage} runs once: it has no instance {instance}")
    if not 1 <= instance <= len(rendered):
        raise StackError(f"{stage} instance {instance}: the stack renders instances 1..{len(rendered)} of it")
    return rendered[instance - 1]


def component(stage: str, instance: int = 1) -> str:
    """The process name of instance N, as its unit is named: `aggregator`, `aggregator-2`."""
    return stage if instance == 1 else f"{stage}-{instance}"


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


def metrics_port(stage: str, instance: int = 1) -> int:
    return command(stage, instance)["metricsPort"]


def stop_timeout(stage: str) -> int:
    """The unit's TimeoutStopSec: SIGTERM must end the service within it."""
    return command(stage)["stopTimeout"]


def service_env(stage: str, instance: int = 1) -> dict:
    """The unit's `environment`. PULSEWIRE_* from the caller's environment are not passed
    on, so a stray variable cannot make the local services differ from the appliance's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEWIRE_")}
    env.pop("JOURNAL_STREAM", None)  # the unit logs to the journal; here, to the log file
    env.pop("NOTIFY_SOCKET", None)
    env.pop("RUST_LOG", None)
    env.update(command(stage, instance)["environment"])
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def service_argv(stage: str, extra: list[str] = (), instance: int = 1) -> list[str]:
    """The unit's ExecStart, then `extra` (the e2e cases' simulator runs)."""
    argv = command(stage, instance)["argv"]
    if not Path(argv[0]).exists():
        raise StackError(f"{argv[0]} is missing: run `cargo build --workspace --bins` (or set PULSEWIRE_BIN_DIR)")
    return argv + list(extra)


def start_service(stage: str, wait: bool = True, extra_env: dict | None = None, instance: int = 1) -> int:
    """Starts instance N of `stage` as the process `component(stage, N)`."""
    env = service_env(stage, instance)
    env.update(extra_env or {})
    pid = start(component(stage, instance), service_argv(stage, instance=instance), env=env)
    if wait:
        wait_service(stage, instance)
    return pid


def wait_service(stage: str, instance: int = 1) -> None:
    port = metrics_port(stage, instance)
    name = component(stage, instance)
    wait_for(f"{name} to serve /metrics on :{port}",
             lambda: http("GET", f"http://127.0.0.1:{port}/metrics")[0] == 200, 60, component=name)


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

