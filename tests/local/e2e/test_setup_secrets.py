"""Setting InfluxDB up keeps every secret off command lines: any local user can read
/proc/<pid>/cmdline. The appliance and the stack run the same provisioning/influxdb/setup;
this runs it on a store of its own (a second influxd, its own port and data), from the very
first start, while every process's command line is read as often as the machine allows."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from expected import check
from pulsewire_stack import influx, processes
from pulsewire_stack.render import render
from pulsewire_stack.store import INFLUXD_FLAGS


def command_lines(stop: threading.Event, seen: set[bytes]) -> None:
    """Adds the command line of every process to `seen` until `stop` is set."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    seen.add(Path(f"/proc/{pid}/cmdline").read_bytes())
                except OSError:
                    pass  # gone since listed


def test_setup_puts_no_secret_on_a_command_line(tmp_path) -> None:
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    influxd = subprocess.Popen(
        [str(influx.build() / "influxd"), "--bolt-path", str(tmp_path / "influxd.bolt"),
         "--engine-path", str(tmp_path / "engine"), "--http-bind-address", f"127.0.0.1:{port}",
         *INFLUXD_FLAGS, "--log-level", "error"])
    try:
        db = influx.Store(processes.http, url, render()["influxdb"], tmp_path / "secrets")
        processes.wait_for("the second InfluxDB to answer /health", db.healthy, 60)
        seen: set[bytes] = set()
        stop = threading.Event()
        scanner = threading.Thread(target=command_lines, args=(stop, seen))
        scanner.start()
        try:
            db.set_up()  # the first start: org, operator, buckets, both tokens made
            for auth in db.facts["auths"]:
                db.token_file(auth).unlink()
            db.set_up()  # again: the tokens read back from InfluxDB into their files
        finally:
            stop.set()
            scanner.join()

        secrets = {db.admin_password_file.name: influx.read_secret(db.admin_password_file),
                   db.admin_token_file.name: influx.read_secret(db.admin_token_file)}
        secrets |= {auth: influx.read_secret(db.token_file(auth)) for auth in db.facts["auths"]}
        # The scan saw the script at work (its bash, and the curl calls it makes).
        argvs = [c.split(b"\0") for c in seen]
        check(any(influx.SETUP.name.encode() in b" ".join(a) for a in argvs),
              "the scan never saw the setup script running")
        curls = sum(1 for a in argvs if a[0].endswith(b"curl"))
        leaked = sorted(name for name, value in secrets.items()
                        if any(value.encode() in c for c in seen))
        check(not leaked, f"on a command line during the setup: {', '.join(leaked)}")

        # What the setup made works, and nothing more: the uploader's token writes and
        # cannot query; no /debug/pprof or /metrics for anyone.
        uploader = db.token_file("pulsewire-uploader")
        code, _ = db.write([f"heart_rate,sensor_id=1 value=60i {time.time_ns()}"], uploader)
        check(code == 204, f"the uploader's new token could not write: {code}")
        code, _ = db.query_status(f'from(bucket: "{db.bucket}") |> range(start: 0)', uploader)
        check(code in (401, 403, 404), f"the uploader's token queried: {code}")
        closed = {path: db.request("GET", path)[0] for path in ("/debug/pprof/", "/metrics")}
        check(all(code in (403, 404) for code in closed.values()), f"open: {closed}")
        print(f"{len(seen)} distinct command lines read during two setups ({curls} of curl): "
              f"none holds one of the {len(secrets)} secrets; /debug/pprof and /metrics: {closed}")
    finally:
        influxd.terminate()
        influxd.wait(timeout=30)
