"""The whole stack: brought up in dependency order, stopped by PID, its state wiped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from . import kafka, monitoring, processes, tls
from . import store_tls as store_tls_mod
from .processes import pidfile, port_open, running_pid, stop, wait_exit
from .render import render
from .services import SERVICES, build_services, metrics_port, start_service, stop_timeout, wait_service
from .settings import LOGS, STATE, StackError, log
from .store import start_store, start_store_wait

# The infrastructure the stack runs besides the services.
INFRA = ("broker-1", "broker-2", "broker-3", "store", "connect", "connect-watch", "prometheus")


def running_components() -> list[str]:
    return [c for c in processes.components() if running_pid(c)]


def up(services: bool = True, build: bool = True, retention_seconds: int | None = None,
       with_store: bool = True, secure_kafka: bool = False, store_tls: bool = False) -> None:
    """Starts everything (without the store and the services when told so);
    `retention_seconds` overrides the bucket's retention when the store is set up (its
    first start). `secure_kafka` (or a state brought up with it before) runs Kafka with the
    multi-host security: mTLS on every listener, ACLs, each client its own principal.
    `store_tls` (or a state brought up with it before) serves the store over https only."""
    services = services and with_store  # the uploader writes to the store
    if running_components():
        raise StackError(f"the stack is already running ({', '.join(running_components())}); "
                         "`tests/local/stack status` shows it, `tests/local/stack down` stops it")
    t0 = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    if secure_kafka:
        tls.enable()
    if store_tls:
        store_tls_mod.enable()
    busy = [p for p in render_ports(with_store) if port_open(p)]
    if busy:
        raise StackError(f"ports already in use by something else: {busy}")
    if services and build:
        build_services()
    dist = kafka.kafka_dist()
    r = render(fresh=True)  # again, now that plugin.path is known
    try:
        log(f"Kafka {kafka.KAFKA_VERSION} from {dist.origin}")
        if r["secure"]:
            log(f"Kafka secured: mTLS and ACLs, TLS files in {tls.TLS}")
            tls.generate(r["tlsGenerateEnvironment"])
        if with_store and store_tls_mod.enabled():
            store_tls_mod.generate()
        since = {n: kafka.log_size(n) for n in kafka.broker_names()}
        for b in render()["brokers"]:
            kafka.start_broker(dist, b["id"], wait=False)
        if with_store:
            start_store(wait=False)
        for n in kafka.broker_names():
            kafka.wait_broker(n, since[n])
        if r["secure"]:
            # Before any client: Connect's worker stops when it may not create its topics.
            kafka.apply_acls(dist)
        # Connect takes longest to start: it only needs the brokers, so start it now and
        # register the connector once the topics and services are there.
        kafka.start_connect(dist, wait=False)
        log(f"{len(since)} brokers up; creating topics")
        kafka.create_topics(dist)
        if with_store:
            start_store_wait(retention_seconds)
        if services:
            for stage in SERVICES:
                start_service(stage, wait=False)
            for stage in SERVICES:
                wait_service(stage)
            log("services up: " + ", ".join(SERVICES))
        kafka.wait_connect()
        write_ctl_targets()
        monitoring.start_prometheus()
    except BaseException:
        log("start-up failed; stopping what was started")
        down()
        raise
    log(f"stack up in {time.monotonic() - t0:.0f}s")


def ctl_targets() -> Path:
    """The stack's targets file for pulsewire-ctl (PULSEWIRE_CTL_TARGETS)."""
    return STATE / "ctl-targets.json"


def write_ctl_targets() -> Path:
    """Writes the targets file the renderer gives (as nixos/ctl.nix installs the appliance's)."""
    path = ctl_targets()
    path.write_text(json.dumps(render()["ctlTargets"], indent=2) + "\n")
    return path


def render_ports(with_store: bool = True) -> list[int]:
    r = render()
    ports = [p for b in r["brokers"] for p in (b["port"], b["controllerPort"])]
    ports += [r["restPort"]] + ([r["influxdb"]["port"]] if with_store else [])
    ports += [c["metricsPort"] for s in SERVICES for c in r["instances"].get(s, [render()["services"][s]])]
    return ports + monitoring.ports()


BROKER_STOP_TIMEOUT = 15


STOP_ORDER = ("prometheus", "simulator", "connect-watch", "connect", "uploader", "processor", "aggregator", "store")


def wipe(keep: tuple[str, ...] = ()) -> None:
    """Deletes the stack's state (Kafka log dirs, store, readings file, logs), except the
    top-level entries named in `keep`. Only with the stack down."""
    if running_components():
        raise StackError("refusing to wipe the state of a running stack")
    if STATE.exists():
        for entry in STATE.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def down(purge: bool = False, broker_timeout: float | None = None) -> list[str]:
    stopped = []
    names = processes.components()
    order = [n for n in STOP_ORDER if n in names] + [n for n in names if n not in STOP_ORDER and not n.startswith("broker-")]
    for n in order:
        if running_pid(n):
            # A stage gets its unit's TimeoutStopSec before SIGKILL, as under systemd.
            stage = n.split("-")[0]  # instance N of a stage is `<stage>-N`
            stop(n, timeout=stop_timeout(stage) if stage in (*SERVICES, "simulator") else 30)
            stopped.append(n)
        else:
            pidfile(n).unlink(missing_ok=True)
    # Brokers last and together: each one's controlled shutdown needs the quorum.
    brokers = [n for n in names if n.startswith("broker-")]
    pids = {}
    for n in brokers:
        pid = running_pid(n)
        if pid:
            os.killpg(pid, signal.SIGTERM)
            pids[n] = pid
    for n, pid in pids.items():
        try:
            wait_exit(n, pid, broker_timeout or BROKER_STOP_TIMEOUT)
        except TimeoutError:
            # The last broker standing cannot finish a controlled shutdown without a quorum.
            if broker_timeout is None:
                log(f"{n} (pid {pid}) did not stop within {BROKER_STOP_TIMEOUT}s: SIGKILL")
            os.killpg(pid, signal.SIGKILL)
            wait_exit(n, pid, 10)
        stopped.append(n)
    for n in brokers:
        pidfile(n).unlink(missing_ok=True)
    # Down means the ports are free again, so `up` can follow at once.
    deadline = time.monotonic() + 30
    while any(port_open(p) for p in render_ports()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if purge:
        shutil.rmtree(STATE, ignore_errors=True)
    return stopped


def status() -> list[tuple[str, str]]:
    rows = []
    r = render()
    known = [f"broker-{b['id']}" for b in r["brokers"]] + ["store", "connect", "connect-watch", *SERVICES]
    ports = {f"broker-{b['id']}": f"{b['port']}/{b['controllerPort']}" for b in r["brokers"]}
    ports.update({"store": str(r["influxdb"]["port"]), "connect": str(r["restPort"])})
    ports.update({s: str(metrics_port(s)) for s in SERVICES})
    for n in known + [c for c in processes.components() if c not in known]:
        pid = running_pid(n)
        rows.append((n, f"{'running' if pid else 'stopped':8} pid {pid or '-':<8} port {ports.get(n, '-'):<10} "
                        f"log {LOGS / (n + '.log')}"))
    return rows

