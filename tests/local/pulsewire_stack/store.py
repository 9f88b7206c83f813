"""The stack's store: InfluxDB 2 (`influxd`, built once per machine), started on the
stack's data and set up on its first start as the appliance provisions it (see influx.py).
"""

from __future__ import annotations

from . import influx, store_tls
from .processes import http, start, wait_for
from .render import render
from .settings import SECRETS, STATE, StackError


# As the appliance's settings (nixos/influxdb.nix): no phoning home, no /debug/pprof,
# no /metrics.
INFLUXD_FLAGS = ("--reporting-disabled", "--pprof-disabled", "--metrics-disabled")


def store() -> influx.Store:
    """The InfluxDB 2 of the stack, with the setup facts of the renderer."""
    r = render()
    return influx.Store(_http, r["storeUrl"], r["influxdb"], SECRETS, ca_file=store_tls.ca_file())


def _http(*args, **kwargs):
    """processes.http, trusting the store's certificate when it serves TLS (made at `up`)."""
    return http(*args, context=store_tls.ssl_context(), **kwargs)


def start_store(wait: bool = True) -> None:
    try:
        bin_dir = influx.build()
    except influx.InfluxError as e:
        raise StackError(str(e)) from None
    data = STATE / "store"
    data.mkdir(parents=True, exist_ok=True)
    start("store", [
        str(bin_dir / "influxd"),
        "--bolt-path", str(data / "influxd.bolt"),
        "--engine-path", str(data / "engine"),
        "--http-bind-address", f"127.0.0.1:{store().facts['port']}",
        *INFLUXD_FLAGS,
        *store_tls.influxd_flags(),
        "--log-level", "warn",
    ])
    if wait:
        start_store_wait()


def start_store_wait(retention_seconds: int | None = None) -> None:
    """Waits for InfluxDB, then sets it up (`retention_seconds`: see Store.set_up)."""
    db = store()
    wait_for("InfluxDB to answer /health", db.healthy, 60, component="store")
    try:
        db.set_up(retention_seconds)
        db.sync_tasks()
    except influx.InfluxError as e:
        raise StackError(str(e)) from None

