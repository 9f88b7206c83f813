"""The local stack's store: a real InfluxDB 2 (`influxd`, built once per machine by
tests/local/build-influxdb), set up the way the appliance sets it up.

The facts come from the renderer the NixOS module uses (`nixos/lib/pulsewire.nix`,
`influxdb`): org, bucket, retention, the operator's user name, the rollup bucket and its
tasks (the batch layer), and one token per client with only the access it needs (the
uploader may only write the bucket, Grafana may only read the buckets). The same scripts
as the appliance's set it up: provisioning/influxdb/setup (its pulsewire-influxdb-setup unit)
and provisioning/influxdb/sync-tasks (its pulsewire-influxdb-tasks unit), through InfluxDB's
own API. Every secret is a 0600 file under `.state/secrets/`, sent in request bodies and
headers, never on a command line.

Queries use Flux over `POST /api/v2/query` and come back as typed rows: `_time` as
nanoseconds since the epoch, floats with every digit InfluxDB stores.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from .settings import LOCAL_DIR, REPO

BUILD = LOCAL_DIR / "build-influxdb"
SETUP = REPO / "provisioning" / "influxdb" / "setup"
SYNC_TASKS = REPO / "provisioning" / "influxdb" / "sync-tasks"


class InfluxError(RuntimeError):
    pass


def build() -> Path:
    """The folder holding `influxd` and `influx`: built on first use, then cached outside
    the checkout (see build-influxdb). Its progress goes to stderr; stdout names the folder."""
    res = subprocess.run([str(BUILD)], stdout=subprocess.PIPE, text=True)
    if res.returncode != 0 or not res.stdout.strip():
        raise InfluxError(f"{BUILD.name} failed (exit {res.returncode}); see its output above")
    return Path(res.stdout.strip().splitlines()[-1])


def secret_file(path: Path, value: str | None = None) -> Path:
    """Writes `value` (or a new random secret when the file does not exist yet) to a 0600
    file; returns its path."""
    if value is None and path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text((value if value is not None else secrets.token_urlsafe(30)) + "\n")
    tmp.replace(path)
    return path


def read_secret(path: Path) -> str:
    return path.read_text().strip()


def token_path(secrets_dir: Path, auth: str) -> Path:
    """The file holding the token of one auth (`pulsewire-uploader`, `pulsewire-grafana`)."""
    return secrets_dir / f"influx-{auth}-token"


class Store:
    """One InfluxDB 2 server: its URL, the setup facts, and where its secrets live."""

    def __init__(self, http, url: str, facts: dict, secrets_dir: Path, ca_file: Path | None = None):
        self._http = http  # (method, url, body, headers, timeout) -> (status, body)
        self.url = url
        # The CA of an https store: the setup scripts' curl trusts it through CURL_CA_BUNDLE.
        self.ca_file = ca_file
        self.facts = facts
        self.secrets = secrets_dir
        self.org = facts["org"]
        self.bucket = facts["bucket"]

    # Where each secret is: the operator's password and token, one token per auth.
    @property
    def admin_password_file(self) -> Path:
        return self.secrets / "influx-admin-password"

    @property
    def admin_token_file(self) -> Path:
        return self.secrets / "influx-admin-token"

    def token_file(self, auth: str) -> Path:
        return token_path(self.secrets, auth)

    def request(self, method: str, path: str, token_file: Path | None = None, body=None,
                headers: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
        h = dict(headers or {})
        if token_file is not None:
            h["Authorization"] = f"Token {read_secret(token_file)}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        return self._http(method, self.url + path, body, h, timeout)

    def _script_env(self) -> dict:
        env = dict(os.environ)
        if self.ca_file is not None:
            env["CURL_CA_BUNDLE"] = str(self.ca_file)
        return env

    def healthy(self) -> bool:
        code, body = self.request("GET", "/health", timeout=5)
        return code == 200 and json.loads(body).get("status") == "pass"

    def set_up(self, retention_seconds: int | None = None) -> None:
        """The setup the appliance does (provisioning/influxdb/setup, the same script):
        org, buckets with their retention, the operator with password and token from
        files, and the clients' tokens written to their files. Idempotent; like the
        appliance's, it sets the bucket's retention every time it runs: to
        `retention_seconds`, or when that is None to what the last setup of this store
        used (a restarted store keeps the stack's retention), or else pipeline.toml's."""
        password, token = secret_file(self.admin_password_file), secret_file(self.admin_token_file)
        facts_file = self.secrets.parent / "influx-facts.json"
        facts = dict(self.facts)
        if retention_seconds is None and facts_file.exists():
            retention_seconds = json.loads(facts_file.read_text())["retention_seconds"]
        if retention_seconds is not None:
            facts["retention_seconds"] = retention_seconds
        facts_file.write_text(json.dumps(facts))
        res = subprocess.run(
            [str(SETUP), self.url, str(facts_file), str(password), str(token),
             str(token_path(self.secrets, "%s"))],
            capture_output=True, text=True, env=self._script_env())
        if res.returncode != 0:
            raise InfluxError(f"{SETUP.name} failed: {res.stderr.strip()[-1000:]}")

    def sync_tasks(self) -> None:
        """Creates or updates the rollup tasks, as the appliance's pulsewire-influxdb-tasks
        unit does (the same script, the same rendered tasks)."""
        tasks = self.secrets.parent / "influx-tasks.json"
        tasks.write_text(json.dumps(self.facts["rollups"]["tasks"]))
        res = subprocess.run([str(SYNC_TASKS), self.url, self.org, str(self.admin_token_file), str(tasks)],
                             capture_output=True, text=True, env=self._script_env())
        if res.returncode != 0:
            raise InfluxError(f"{SYNC_TASKS.name} failed: {res.stderr.strip()[-1000:]}")

    def task_id(self, name: str) -> str:
        code, body = self.request("GET", f"/api/v2/tasks?org={self.org}&name={name}", self.admin_token_file)
        tasks = [t for t in json.loads(body).get("tasks", []) if t["name"] == name] if code == 200 else []
        if len(tasks) != 1:
            raise InfluxError(f"task {name}: {code} {body[:200]!r}")
        return tasks[0]["id"]

    def run_task(self, name: str, scheduled_for: str, timeout: float = 120) -> dict:
        """Runs a task now as if scheduled for `scheduled_for` (its now()), waits for the
        run to end and returns it; fails unless it succeeded."""
        task = self.task_id(name)
        code, body = self.request("POST", f"/api/v2/tasks/{task}/runs", self.admin_token_file,
                                  body={"scheduledFor": scheduled_for})
        if code != 201:
            raise InfluxError(f"running task {name}: {code} {body[:300]!r}")
        run_id = json.loads(body)["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, body = self.request("GET", f"/api/v2/tasks/{task}/runs?limit=100", self.admin_token_file)
            run = next((r for r in json.loads(body).get("runs", []) if r["id"] == run_id), None)
            if run and run.get("status") in ("success", "failed", "canceled"):
                if run["status"] != "success":
                    _, logs = self.request("GET", f"/api/v2/tasks/{task}/runs/{run_id}/logs", self.admin_token_file)
                    raise InfluxError(f"task {name} run for {scheduled_for}: {run['status']}: {logs[-800:]!r}")
                return run
            time.sleep(0.3)
        raise InfluxError(f"task {name} run for {scheduled_for} did not finish in {timeout:.0f}s")

    # ----------------------------------------------------------------------------------
    # Reading and writing.
    # ----------------------------------------------------------------------------------

    def query_status(self, flux: str, token_file: Path | None = None) -> tuple[int, bytes]:
        return self.request(
            "POST", f"/api/v2/query?org={self.org}", token_file or self.admin_token_file,
            body={"query": flux, "type": "flux",
                  "dialect": {"header": True, "annotations": ["datatype"], "delimiter": ","}},
            headers={"Accept": "application/csv"},
        )

    def query(self, flux: str, token_file: Path | None = None) -> list[dict]:
        """The rows of every table a Flux query yields, typed by their annotations."""
        code, body = self.query_status(flux, token_file)
        if code != 200:
            raise InfluxError(f"Flux query answered {code}: {body[:500]!r}\n{flux}")
        return parse_csv(body.decode())

    def write(self, lines: list[str], token_file: Path | None = None, precision: str = "ns",
              bucket: str | None = None) -> tuple[int, bytes]:
        return self.request(
            "POST", f"/api/v2/write?org={self.org}&bucket={bucket or self.bucket}&precision={precision}",
            token_file or self.admin_token_file, body="\n".join(lines) + "\n",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )


def parse_time(text: str) -> int:
    """RFC 3339 with up to nine fractional digits -> nanoseconds since the epoch."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp())
    return seconds * 10**9 + int((frac + "000000000")[:9])


_TYPES = {
    "long": int,
    "unsignedLong": int,
    "double": float,
    "boolean": lambda v: v == "true",
    "dateTime:RFC3339": parse_time,
    "dateTime:RFC3339Nano": parse_time,
}


def parse_csv(text: str) -> list[dict]:
    """Flux's annotated CSV (datatype annotation and a header per table) as typed rows."""
    rows: list[dict] = []
    types: list[str] = []
    header: list[str] | None = None
    for row in csv.reader(io.StringIO(text)):
        if not row or all(c == "" for c in row):
            header = None  # a blank line ends a table
            continue
        if row[0] == "#datatype":
            types, header = row, None
            continue
        if row[0].startswith("#"):
            continue
        if header is None:
            header = row
            continue
        out = {}
        for name, kind, value in zip(header[1:], types[1:], row[1:]):
            if name in ("result", "table") or value == "":
                continue
            out[name] = _TYPES.get(kind, str)(value)
        rows.append(out)
    return rows
