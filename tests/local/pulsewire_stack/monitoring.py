"""The stack's health view, as the appliance's (nixos/prometheus.nix): the Prometheus JMX
exporter agent in every broker and in Connect, and Debian's `prometheus` scraping them and
the stages with the configuration and alert rules of `nixos/lib/prometheus.nix`.

The agent's jar comes from Maven Central into the cache, checked against the sha256 that
`provisioning/pipeline.toml` names (the NixOS module fetches it with the same hash).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from .processes import http, start, wait_for
from .render import render
from .settings import STATE, StackError, log

PROMETHEUS_DIR = STATE / "prometheus"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def agent_jar() -> Path:
    """The JMX exporter agent's jar, downloaded once and checked."""
    m = render()["monitoring"]
    jar, want = Path(m["jmxJar"]), m["jmxExporter"]["sha256"]
    if jar.exists() and _sha256(jar) == want:
        return jar
    log(f"JMX exporter agent {m['jmxExporter']['version']} from Maven Central into {jar.parent}")
    jar.parent.mkdir(parents=True, exist_ok=True)
    part = jar.with_suffix(".part")
    try:
        with urllib.request.urlopen(m["jmxExporter"]["url"], timeout=120) as res:
            part.write_bytes(res.read())
    except OSError as e:
        raise StackError(f"cannot fetch {m['jmxExporter']['url']}: {e}") from None
    got = _sha256(part)
    if got != want:
        part.unlink()
        raise StackError(f"{m['jmxExporter']['url']} has sha256 {got}, pipeline.toml names {want}")
    part.rename(jar)
    return jar


def broker_jvm_options(broker_id: int) -> tuple[str, ...]:
    agent_jar()
    return (next(b for b in render()["monitoring"]["brokers"] if b["id"] == broker_id)["jmxOption"],)


def connect_jvm_options() -> tuple[str, ...]:
    agent_jar()
    return (render()["monitoring"]["connectJmxOption"],)


def ports() -> list[int]:
    m = render()["monitoring"]
    return [m["port"], m["connectJmxPort"], *(b["jmxPort"] for b in m["brokers"])]


def url(path: str) -> str:
    return f"http://127.0.0.1:{render()['monitoring']['port']}{path}"


def start_prometheus(wait: bool = True) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        raise StackError("prometheus not found: install Debian's prometheus (apt-get install prometheus)")
    m = render()["monitoring"]
    PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: the renderer's attrsets as they are.
    config = PROMETHEUS_DIR / "prometheus.yml"
    config.write_text(json.dumps(m["config"], indent=1))
    (PROMETHEUS_DIR / "rules.yml").write_text(json.dumps(m["rules"], indent=1))
    start("prometheus", [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={PROMETHEUS_DIR / 'data'}",
        f"--web.listen-address=127.0.0.1:{m['port']}",
        "--storage.tsdb.retention.time=1d",
    ])
    if wait:
        wait_prometheus()


def wait_prometheus() -> None:
    wait_for("Prometheus to be ready", lambda: http("GET", url("/-/ready"))[0] == 200, 60,
             component="prometheus")


def api(path: str, **params) -> list | dict:
    """One Prometheus API call; its `data`. An error answer raises, naming the query."""
    status, body = http("GET", url(f"/api/v1/{path}?{urllib.parse.urlencode(params)}"))
    try:
        doc = json.loads(body)
    except ValueError:
        raise StackError(f"Prometheus /api/v1/{path} {params}: HTTP {status}: {body[:500]!r}") from None
    if status != 200 or doc.get("status") != "success":
        raise StackError(f"Prometheus /api/v1/{path} {params}: HTTP {status}: {doc.get('error', body[:500])}")
    return doc["data"]


def query(expr: str, at: float | None = None) -> list[dict]:
    """An instant query's vector: [{'metric': {...}, 'value': [t, '1']}, ...]."""
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    data = api("query", **params)
    if data["resultType"] != "vector":
        raise StackError(f"{expr}: a {data['resultType']}, not a vector")
    return data["result"]


def firing() -> list[dict]:
    """The alerts firing now."""
    return [a for a in api("alerts")["alerts"] if a["state"] == "firing"]
