"""The local Pulsewire stack: three KRaft brokers, Kafka Connect, InfluxDB 2 (the store) and
the four stage services, as plain processes on loopback.

This is the NixOS appliance without Nix (see docs "Why the local stack exists"). Broker,
Connect, topic and connector settings are rendered by `nixos/lib/pulsewire.nix` (the same
pure renderer the NixOS modules use, evaluated with `nix-instantiate`), names and ports come
from `provisioning/pipeline.toml`, and the services get the flags and environment of their
units in nixos/pipeline.nix (mirrored in `service_argv`/`service_env`: that module needs
nixpkgs to evaluate).

Layout (all under tests/local/, both git-ignored):
  .cache/kafka-<version>/   Kafka classpath resolved from Maven Central (unless KAFKA_HOME)
  .state/                   one stack: kafka-<id>/ log dirs, store/ (InfluxDB), secrets/
                            (its password and tokens), readings.csv, the rendered
                            *.properties, pids/<component>.pid, logs/<component>.log
  ~/.cache/pulsewire/       influxd and influx, built once per machine (build-influxdb)

Every process the stack starts is tracked by PID (with its start time, so a recycled PID is
never mistaken for ours); `down` stops exactly those. Used by `tests/local/stack` (the
operator's CLI) and `tests/local/e2e` (the end-to-end and fault tests).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import influx

LOCAL_DIR = Path(__file__).resolve().parent
REPO = LOCAL_DIR.parent.parent
PIPELINE_FILE = REPO / "provisioning" / "pipeline.toml"
RENDERER = REPO / "nixos" / "lib" / "pulsewire.nix"
CACHE = Path(os.environ.get("PULSEWIRE_LOCAL_CACHE", LOCAL_DIR / ".cache"))
STATE = Path(os.environ.get("PULSEWIRE_LOCAL_STATE", LOCAL_DIR / ".state"))
LOGS = STATE / "logs"
PIDS = STATE / "pids"

# Same version as nixpkgs' apacheKafka, which the appliance runs.
KAFKA_VERSION = "4.3.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.4"

# The stage services the stack runs (the simulator is run on demand) and the infrastructure.
SERVICES = ("aggregator", "processor", "uploader")
INFRA = ("broker-1", "broker-2", "broker-3", "store", "connect")

with PIPELINE_FILE.open("rb") as _f:
    PIPELINE = tomllib.load(_f)


class StackError(RuntimeError):
    """A failure an operator can act on; the message says what and where to look."""


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Rendering: the one pure Nix renderer, evaluated once per process.
# --------------------------------------------------------------------------------------

_RENDER_EXPR = r"""
{ renderer, pipelineFile, stateDir, pluginPath, file }:
let
  l = import (/. + renderer) { pipelineFile = /. + pipelineFile; };
in {
  inherit (l) bootstrapServers clusterId connectorName topics influxdb;
  brokers = map (b: b // {
    properties = l.toProperties (l.brokerSettings {
      id = b.id;
      logDir = "${stateDir}/kafka-${toString b.id}";
    });
  }) l.brokers;
  topicCreateArgs = map l.topicCreateArgs l.topics;
  connectProperties = l.toProperties (l.connectWorkerSettings { inherit pluginPath; });
  connectorConfig = l.connectorConfig { inherit file; };
  restPort = l.connect.rest_port;
}
"""


def readings_file() -> Path:
    """The file the simulator appends to and Connect tails (the appliance uses
    [connect].file; the local stack keeps its own copy under .state)."""
    return STATE / "readings.csv"


_rendered: dict | None = None


def render() -> dict:
    """Everything the stack needs from the renderer, in one `nix-instantiate` call."""
    global _rendered
    if _rendered is not None:
        return _rendered
    try:
        plugin_path = kafka_dist(resolve=False).plugin_path
    except StackError:
        plugin_path = ""  # Kafka not resolved yet: nothing will start Connect from this rendering
    if not RENDERER.exists():
        raise StackError(f"{RENDERER} is missing: the local stack renders its Kafka settings with it")
    if shutil.which("nix-instantiate") is None:
        raise StackError("nix-instantiate not found: install Debian's nix-bin (apt-get install nix-bin)")
    cmd = [
        "nix-instantiate", "--eval", "--strict", "--json", "-E", _RENDER_EXPR,
        "--argstr", "renderer", str(RENDERER),
        "--argstr", "pipelineFile", str(PIPELINE_FILE),
        "--argstr", "stateDir", str(STATE),
        "--argstr", "pluginPath", plugin_path,
        "--argstr", "file", str(readings_file()),
    ]
    # nix-instantiate wants a writable state dir even for pure evaluation.
    env = dict(os.environ, NIX_STATE_DIR=str(CACHE / "nix-state"), HOME=os.environ.get("HOME", "/root"))
    (CACHE / "nix-state").mkdir(parents=True, exist_ok=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise StackError(f"rendering with {RENDERER.relative_to(REPO)} failed:\n{res.stderr.strip()}")
    _rendered = json.loads(res.stdout)
    return _rendered


# --------------------------------------------------------------------------------------
# Kafka classpath: KAFKA_HOME, or Maven Central through the machine's mvn, cached.
# --------------------------------------------------------------------------------------

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- Generated by tests/local/pwstack.py: the Apache Kafka {v} classpath for the local stack. -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>pulsewire.local</groupId>
  <artifactId>kafka-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""

_ARTIFACTS = [
    ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
    ("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
    ("org.apache.kafka", "connect-runtime", KAFKA_VERSION),
    ("org.apache.kafka", "connect-json", KAFKA_VERSION),
    ("org.apache.kafka", "connect-file", KAFKA_VERSION),
    # The distribution's logging binding: slf4j 1.x -> log4j2.
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
]


class KafkaDist:
    """Where the Kafka jars are: `classpath` for the JVMs, `plugin_path` for Connect."""

    def __init__(self, classpath: str, plugin_path: str, origin: str):
        self.classpath = classpath
        self.plugin_path = plugin_path
        self.origin = origin


def kafka_dist(resolve: bool = True) -> KafkaDist:
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        plugins = sorted(libs.glob("connect-file-*.jar"))
        if not plugins:
            raise StackError(f"KAFKA_HOME={home}: no libs/connect-file-*.jar there")
        return KafkaDist(f"{libs}/*", str(plugins[0]), f"KAFKA_HOME={home}")
    root = CACHE / f"kafka-{KAFKA_VERSION}"
    lib, plugin_dir, done = root / "lib", root / "plugins" / "connect-file", root / ".complete"
    if not done.exists():
        if not resolve:
            raise StackError(f"Kafka {KAFKA_VERSION} is not resolved yet under {root}")
        if shutil.which("mvn") is None:
            raise StackError("neither KAFKA_HOME nor mvn: install Maven or point KAFKA_HOME at a Kafka distribution")
        log(f"resolving Apache Kafka {KAFKA_VERSION} from Maven Central into {root} (once)")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        deps = "\n".join(
            f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
            for g, a, v in _ARTIFACTS
        )
        (root / "pom.xml").write_text(_POM.format(v=KAFKA_VERSION, deps=deps))
        cmd = ["mvn", "-B", "-q", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
               f"-DoutputDirectory={lib}", "-DincludeScope=runtime"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError(f"mvn could not resolve Kafka {KAFKA_VERSION}:\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
        # connect-file is a Connect plugin: it goes on plugin.path, not on the worker classpath.
        plugin_dir.mkdir(parents=True)
        for jar in lib.glob("connect-file-*.jar"):
            jar.rename(plugin_dir / jar.name)
        done.write_text(KAFKA_VERSION + "\n")
    # As in nixos/connect.nix: plugin.path is a directory holding just the connect-file jar.
    return KafkaDist(f"{lib}/*", str(plugin_dir), f"Maven Central, cached in {root}")


LOG4J2 = """# Generated by tests/local/pwstack.py: every Kafka JVM logs to stdout, which the stack
# sends to .state/logs/<component>.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


LOG4J2_TOOLS = """# Generated by tests/local/pwstack.py: command-line tools print only warnings, to stderr.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
"""


def java_cmd(dist: KafkaDist, heap: str, main: str, *args: str, opts: tuple[str, ...] = (),
             tool: bool = False) -> list[str]:
    log4j = STATE / ("log4j2-tools.properties" if tool else "log4j2.properties")
    if not log4j.exists():
        log4j.parent.mkdir(parents=True, exist_ok=True)
        log4j.write_text(LOG4J2_TOOLS if tool else LOG4J2)
    return [
        os.environ.get("JAVA", "java"),
        f"-Xms{heap}", f"-Xmx{heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        *opts,
        "-cp", dist.classpath, main, *args,
    ]


def kafka_tool(dist: KafkaDist, main: str, *args: str, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess:
    """Runs one Kafka command-line tool (TopicCommand, GetOffsetShell, ...) to completion."""
    cmd = java_cmd(dist, "256m", main, *args, opts=("-XX:TieredStopAtLevel=1",), tool=True)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise StackError(f"{main.rsplit('.', 1)[-1]} {' '.join(args)} failed:\n{res.stderr.strip()[-3000:]}")
    return res


@contextlib.contextmanager
def exclusive(what: str, wait: float = 600):
    """Serialises commands that change the stack (`up`, `down`, the e2e suite), so two
    people or scripts sharing one checkout cannot interleave their starts and stops."""
    if os.environ.get("PULSEWIRE_STACK_LOCKED") == str(CACHE):
        yield  # a command run by the holder of the lock (the e2e suite running `stack`)
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "stack.lock"
    with path.open("a+") as f:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                if time.monotonic() > deadline:
                    raise StackError(f"the stack is busy ({holder}) for more than {wait:.0f}s; try again later")
                if not told:
                    log(f"waiting for another stack command to finish ({holder})")
                    told = True
                time.sleep(1)
        f.seek(0)
        f.truncate()
        f.write(f"{what}, pid {os.getpid()}\n")
        f.flush()
        os.environ["PULSEWIRE_STACK_LOCKED"] = str(CACHE)
        try:
            yield
        finally:
            os.environ.pop("PULSEWIRE_STACK_LOCKED", None)
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------
# Processes, tracked by PID.
# --------------------------------------------------------------------------------------

def _pidfile(name: str) -> Path:
    return PIDS / f"{name}.pid"


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [0] is the state, [19] the start
    time (clock ticks since boot), which together with the PID identifies one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _is_zombie(pid: int) -> bool:
    st = _stat(pid)
    return st is None or st[0] in ("Z", "X")


def tracked(name: str) -> dict | None:
    try:
        return json.loads(_pidfile(name).read_text())
    except (OSError, ValueError):
        return None


def running_pid(name: str) -> int | None:
    """The PID of our `name` process if it is alive and still the process we started
    (same start time: a recycled PID is never mistaken for ours)."""
    info = tracked(name)
    if not info:
        return None
    st = _stat(info["pid"])
    if st and st[0] not in ("Z", "X") and st[19] == info["starttime"]:
        return info["pid"]
    return None


# Children started by this Python process, so that we can reap them (and see exit codes).
_children: dict[int, subprocess.Popen] = {}


def start(name: str, argv: list[str], env: dict | None = None) -> int:
    if running_pid(name):
        raise StackError(f"{name} is already running (pid {running_pid(name)})")
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    logf = (LOGS / f"{name}.log").open("ab")
    logf.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start {name}: {' '.join(argv)}\n".encode())
    logf.flush()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            env=env, cwd=STATE, start_new_session=True)
    logf.close()
    _children[proc.pid] = proc
    st = _stat(proc.pid)
    _pidfile(name).write_text(json.dumps({"pid": proc.pid, "starttime": st[19] if st else "",
                                          "argv": argv, "started": time.time()}))
    return proc.pid


def exit_code(name: str) -> int | None:
    """Exit status of a process this Python process started and that has exited."""
    info = tracked(name)
    if info and info["pid"] in _children:
        return _children[info["pid"]].poll()
    return None


def signal_component(name: str, sig: int) -> int:
    pid = running_pid(name)
    if not pid:
        raise StackError(f"{name} is not running")
    os.kill(pid, sig)
    return pid


def wait_exit(name: str, pid: int, timeout: float) -> int | None:
    """Waits for `pid` to go away; returns its exit code when it was our child."""
    deadline = time.monotonic() + timeout
    proc = _children.get(pid)
    while time.monotonic() < deadline:
        if proc is not None:
            rc = proc.poll()
            if rc is not None:
                return rc
        elif _is_zombie(pid):
            return None
        time.sleep(0.1)
    raise TimeoutError(f"{name} (pid {pid}) did not exit within {timeout:.0f}s")


def stop(name: str, timeout: float = 30, sig: int = signal.SIGTERM) -> int | None:
    """Sends `sig` (SIGTERM) to a tracked process, escalates to SIGKILL after `timeout`."""
    pid = running_pid(name)
    if not pid:
        _pidfile(name).unlink(missing_ok=True)
        return None
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    try:
        rc = wait_exit(name, pid, timeout)
    except TimeoutError:
        log(f"{name} (pid {pid}) ignored {signal.Signals(sig).name} for {timeout:.0f}s: SIGKILL")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = wait_exit(name, pid, 10)
    _pidfile(name).unlink(missing_ok=True)
    return rc


def kill(name: str) -> None:
    """SIGKILL, as a crash: no drain, no flush, no commit."""
    pid = signal_component(name, signal.SIGKILL)
    wait_exit(name, pid, 10)
    _pidfile(name).unlink(missing_ok=True)


def components() -> list[str]:
    if not PIDS.exists():
        return []
    return sorted(p.stem for p in PIDS.glob("*.pid"))


# --------------------------------------------------------------------------------------
# Waiting.
# --------------------------------------------------------------------------------------

def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what: str, cond, timeout: float, component: str | None = None, interval: float = 0.5):
    """Polls `cond()` until it returns a truthy value; on timeout the error names what was
    awaited and, when given, the component whose log to read (and whether it died)."""
    deadline = time.monotonic() + timeout
    while True:
        if component and not running_pid(component):
            info = tracked(component) or {}
            rc = exit_code(component)
            how = f" with status {rc}" if rc is not None else ""
            raise StackError(f"{component} (pid {info.get('pid', '?')}) exited{how} while waiting for {what}; "
                             f"see {LOGS / (component + '.log')}")
        try:
            val = cond()
        except (OSError, urllib.error.URLError, ValueError):
            val = None
        if val:
            return val
        if time.monotonic() > deadline:
            where = f"; see {LOGS / (component + '.log')}" if component else ""
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{where}")
        time.sleep(interval)


def log_contains(component: str, needle: str, since: int = 0) -> bool:
    try:
        with (LOGS / f"{component}.log").open("rb") as f:
            f.seek(since)
            return needle.encode() in f.read()
    except OSError:
        return False


def log_size(component: str) -> int:
    try:
        return (LOGS / f"{component}.log").stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------------------
# The components.
# --------------------------------------------------------------------------------------

def broker_names() -> list[str]:
    return [f"broker-{b['id']}" for b in render()["brokers"]]


def start_broker(dist: KafkaDist, broker_id: int, wait: bool = True) -> None:
    r = render()
    b = next(b for b in r["brokers"] if b["id"] == broker_id)
    name = f"broker-{broker_id}"
    STATE.mkdir(parents=True, exist_ok=True)
    props = STATE / f"{name}.properties"
    props.write_text(b["properties"])
    logdir = STATE / f"kafka-{broker_id}"
    if not (logdir / "meta.properties").exists():
        # kafka-storage format, once: the shared cluster id, the static quorum from the props.
        kafka_tool(dist, "kafka.tools.StorageTool", "format", "--cluster-id", r["clusterId"],
                   "--config", str(props), "--ignore-formatted")
    since = log_size(name)
    start(name, java_cmd(dist, PIPELINE["kafka"]["heap"], "kafka.Kafka", str(props)))
    if wait:
        wait_broker(name, since)


def wait_broker(name: str, since: int = 0, timeout: float = 120) -> None:
    # Logged once the broker has joined the quorum and been unfenced by the controller.
    wait_for(f"{name} to start", lambda: log_contains(name, "Kafka Server started", since),
             timeout, component=name)


def store() -> influx.Store:
    """The InfluxDB 2 of the stack, with the setup facts of the renderer."""
    facts = render()["influxdb"]
    return influx.Store(http, f"http://127.0.0.1:{facts['port']}", facts, STATE / "secrets")


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
        "--reporting-disabled",
        "--log-level", "warn",
    ])
    if wait:
        start_store_wait()


def start_store_wait(retention_seconds: int | None = None) -> None:
    """Waits for InfluxDB, then sets it up on its first start (`retention_seconds`
    overrides pipeline.toml's retention of the bucket)."""
    db = store()
    wait_for("InfluxDB to answer /health", db.healthy, 60, component="store")
    try:
        db.set_up(retention_seconds)
        db.sync_tasks()
    except influx.InfluxError as e:
        raise StackError(str(e)) from None


def connect_url(path: str = "") -> str:
    return f"http://127.0.0.1:{render()['restPort']}{path}"


def start_connect(dist: KafkaDist, wait: bool = True) -> None:
    r = render()
    props = STATE / "connect.properties"
    props.write_text(r["connectProperties"])
    readings_file().touch()
    start("connect", java_cmd(dist, PIPELINE["connect"]["heap"],
                              "org.apache.kafka.connect.cli.ConnectDistributed", str(props)))
    if wait:
        wait_connect()


def wait_connect() -> None:
    wait_for("Kafka Connect's REST API", lambda: http("GET", connect_url("/connectors"))[0] == 200,
             180, component="connect", interval=1)
    register_connector()


def register_connector(config: dict | None = None, name: str | None = None, timeout: float = 120) -> None:
    """PUT /connectors/<name>/config: creates or updates, so it is safe to repeat."""
    r = render()
    name = name or r["connectorName"]
    body = json.dumps(config or r["connectorConfig"]).encode()

    def put():
        code, out = http("PUT", connect_url(f"/connectors/{name}/config"), body,
                         {"Content-Type": "application/json"}, timeout=30)
        if code in (200, 201):
            return True
        if code in (409, 500, 503):  # rebalance in progress / worker still starting
            return False
        raise StackError(f"PUT /connectors/{name}/config answered {code}: {out.decode(errors='replace')}")

    wait_for(f"Connect to accept connector {name}", put, timeout, component="connect", interval=2)
    wait_for(f"connector {name} and its task to run", lambda: connector_running(name), timeout,
             component="connect", interval=1)


def connector_running(name: str) -> bool:
    code, out = http("GET", connect_url(f"/connectors/{name}/status"))
    if code != 200:
        return False
    st = json.loads(out)
    if st["connector"]["state"] == "FAILED" or any(t["state"] == "FAILED" for t in st["tasks"]):
        raise StackError(f"connector {name} failed: {json.dumps(st)[:3000]}")
    return st["connector"]["state"] == "RUNNING" and bool(st["tasks"]) and all(
        t["state"] == "RUNNING" for t in st["tasks"])


def create_topics(dist: KafkaDist) -> None:
    """`kafka-topics --create --if-not-exists` with the renderer's arguments, one JVM per
    topic, all at once."""
    r = render()
    procs = []
    for args in r["topicCreateArgs"]:
        cmd = java_cmd(dist, "256m", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                       r["bootstrapServers"], *args, opts=("-XX:TieredStopAtLevel=1",), tool=True)
        procs.append((args, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    errors = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            errors.append(f"TopicCommand {' '.join(args)}:\n{err.strip()[-2000:]}")
    if errors:
        raise StackError("creating topics failed:\n" + "\n".join(errors))


# --------------------------------------------------------------------------------------
# The stage services, as the NixOS units run them.
# --------------------------------------------------------------------------------------

def bin_dir() -> Path:
    if os.environ.get("PULSEWIRE_BIN_DIR"):
        return Path(os.environ["PULSEWIRE_BIN_DIR"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / os.environ.get("PULSEWIRE_PROFILE", "debug")


def build_services() -> None:
    """`cargo build` of the workspace binaries (a no-op when they are fresh)."""
    if os.environ.get("PULSEWIRE_BIN_DIR"):
        return
    profile = os.environ.get("PULSEWIRE_PROFILE", "debug")
    cmd = ["cargo", "build", "--workspace", "--bins", "--quiet"]
    if profile == "release":
        cmd.append("--release")
    elif profile != "debug":
        cmd += ["--profile", profile]
    log(f"building the services: {' '.join(cmd)}")
    res = subprocess.run(cmd, cwd=REPO)
    if res.returncode != 0:
        raise StackError("cargo build of the services failed (see above)")


def binary(stage: str) -> Path:
    path = bin_dir() / f"pulsewire-{stage}"
    if not path.exists():
        raise StackError(f"{path} is missing: run `cargo build --workspace --bins` (or set PULSEWIRE_BIN_DIR)")
    return path


def token_file() -> Path:
    """The uploader's write-only token, as the appliance hands it over with LoadCredential."""
    return store().token_file("pulsewire-uploader")


def read_token_file() -> Path:
    """A token that may read the bucket (Grafana's), for people and scripts."""
    return store().token_file("pulsewire-grafana")


def metrics_port(stage: str) -> int:
    return PIPELINE["services"][stage]["metrics_port"]


def service_env(stage: str) -> dict:
    """The unit's `environment` (nixos/pipeline.nix): bootstrap servers from the renderer,
    the default log level. PULSEWIRE_* from the caller's environment are not passed on, so
    a stray variable cannot make the local services differ from the appliance's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEWIRE_")}
    env.pop("JOURNAL_STREAM", None)  # the unit logs to the journal; here, to the log file
    env.pop("NOTIFY_SOCKET", None)
    env.pop("RUST_LOG", None)
    env["PULSEWIRE_BOOTSTRAP_SERVERS"] = render()["bootstrapServers"]
    env["PULSEWIRE_LOG_LEVEL"] = "info"
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def metrics_addr(stage: str) -> str:
    return f"127.0.0.1:{metrics_port(stage)}"


def service_argv(stage: str, extra: list[str] = ()) -> list[str]:
    """The unit's ExecStart (nixos/pipeline.nix), with local paths for the readings file and
    the token (the unit's `%d/influx-token` credential)."""
    argv = [str(binary(stage)), "--metrics-addr", metrics_addr(stage)]
    if stage == "uploader":
        argv += ["--influx-url", store().url,
                 "--influx-token-file", str(token_file())]
    if stage == "simulator":
        argv += ["--output", str(readings_file())]
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


# --------------------------------------------------------------------------------------
# The whole stack.
# --------------------------------------------------------------------------------------

def running_components() -> list[str]:
    return [c for c in components() if running_pid(c)]


def up(services: bool = True, build: bool = True, retention_seconds: int | None = None) -> None:
    """Starts everything; `retention_seconds` overrides the bucket's retention when the
    store is set up (its first start)."""
    if running_components():
        raise StackError(f"the stack is already running ({', '.join(running_components())}); "
                         "`tests/local/stack status` shows it, `tests/local/stack down` stops it")
    t0 = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    busy = [p for p in render_ports() if port_open(p)]
    if busy:
        raise StackError(f"ports already in use by something else: {busy}")
    if services and build:
        build_services()
    dist = kafka_dist()
    global _rendered
    _rendered = None  # render again now that plugin.path is known
    render()
    try:
        log(f"Kafka {KAFKA_VERSION} from {dist.origin}")
        since = {n: log_size(n) for n in broker_names()}
        for b in render()["brokers"]:
            start_broker(dist, b["id"], wait=False)
        start_store(wait=False)
        for n in broker_names():
            wait_broker(n, since[n])
        # Connect takes longest to start: it only needs the brokers, so start it now and
        # register the connector once the topics and services are there.
        start_connect(dist, wait=False)
        log(f"{len(since)} brokers up; creating topics")
        create_topics(dist)
        start_store_wait(retention_seconds)
        if services:
            for stage in SERVICES:
                start_service(stage, wait=False)
            for stage in SERVICES:
                wait_service(stage)
            log("services up: " + ", ".join(SERVICES))
        wait_connect()
    except BaseException:
        log("start-up failed; stopping what was started")
        down()
        raise
    log(f"stack up in {time.monotonic() - t0:.0f}s")


def render_ports() -> list[int]:
    r = render()
    ports = [p for b in r["brokers"] for p in (b["port"], b["controllerPort"])]
    ports += [r["restPort"], PIPELINE["influxdb"]["port"]]
    ports += [metrics_port(s) for s in SERVICES]
    return ports


BROKER_STOP_TIMEOUT = 15
STOP_ORDER = ("simulator", "connect", "uploader", "processor", "aggregator", "store")


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
    names = components()
    order = [n for n in STOP_ORDER if n in names] + [n for n in names if n not in STOP_ORDER and not n.startswith("broker-")]
    for n in order:
        if running_pid(n):
            stop(n, timeout=30)
            stopped.append(n)
        else:
            _pidfile(n).unlink(missing_ok=True)
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
        _pidfile(n).unlink(missing_ok=True)
    if purge:
        shutil.rmtree(STATE, ignore_errors=True)
    return stopped


def status() -> list[tuple[str, str]]:
    rows = []
    r = render()
    known = [f"broker-{b['id']}" for b in r["brokers"]] + ["store", "connect", *SERVICES]
    ports = {f"broker-{b['id']}": f"{b['port']}/{b['controllerPort']}" for b in r["brokers"]}
    ports.update({"store": str(PIPELINE["influxdb"]["port"]), "connect": str(r["restPort"])})
    ports.update({s: str(metrics_port(s)) for s in SERVICES})
    for n in known + [c for c in components() if c not in known]:
        pid = running_pid(n)
        rows.append((n, f"{'running' if pid else 'stopped':8} pid {pid or '-':<8} port {ports.get(n, '-'):<10} "
                        f"log {LOGS / (n + '.log')}"))
    return rows


def read_topic(dist: KafkaDist, topic: str, idle_ms: int = 8000) -> list[str]:
    """Every committed record value of `topic`, from the beginning (read_committed: what a
    transactional consumer would see). Returns once no record arrived for `idle_ms`."""
    res = kafka_tool(dist, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                     "--bootstrap-server", render()["bootstrapServers"], "--topic", topic,
                     "--from-beginning", "--isolation-level", "read_committed",
                     "--timeout-ms", str(idle_ms), check=False, timeout=idle_ms / 1000 + 120)
    return [line for line in res.stdout.split("\n") if line]


def group_lags(dist: KafkaDist) -> dict[str, int | None]:
    """Total lag per consumer group; a partition without a committed offset counts with
    its whole log. (With transactions, each partition that had data keeps a lag of 1:
    the commit marker after the last record is never consumed as a record.)"""
    res = kafka_tool(dist, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                     "--bootstrap-server", render()["bootstrapServers"], "--describe", "--all-groups",
                     check=False)
    lags: dict[str, int | None] = {}
    for line in res.stdout.splitlines():
        f = line.split()
        if len(f) < 6 or f[0] == "GROUP" or not f[2].isdigit():
            continue
        group, current, end, lag = f[0], f[3], f[4], f[5]
        if lag.isdigit():
            n = int(lag)
        elif current == "-" and end.isdigit():
            n = int(end)
        else:
            lags.setdefault(group, None)
            continue
        lags[group] = (lags.get(group) or 0) + n
    return lags


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
