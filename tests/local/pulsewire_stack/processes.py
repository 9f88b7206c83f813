"""Processes of the stack, tracked by PID and start time (a recycled PID is never mistaken
for ours), and the waits and lock that go with them.

Every process is started in its own session with its output in logs/<name>.log and a
pids/<name>.pid file; `stop` signals exactly that process group and nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .settings import CACHE, LOGS, PIDS, PORT_OFFSET, STATE, StackError, log

# One lock per port set: the shared stack and a second one with its own offset (bench/cluster)
# do not exclude each other, two commands on the same ports do.
LOCK = CACHE / ("stack.lock" if PORT_OFFSET == 0 else f"stack-{PORT_OFFSET}.lock")


@contextlib.contextmanager
def exclusive(what: str, wait: float = 600):
    """Serialises commands that change the stack (`up`, `down`, the e2e suite), so two
    people or scripts sharing one checkout cannot interleave their starts and stops."""
    if os.environ.get("PULSEWIRE_STACK_LOCKED") == str(LOCK):
        yield  # a command run by the holder of the lock (the e2e suite running `stack`)
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a+") as f:
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
        os.environ["PULSEWIRE_STACK_LOCKED"] = str(LOCK)
        try:
            yield
        finally:
            os.environ.pop("PULSEWIRE_STACK_LOCKED", None)
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)


def pidfile(name: str) -> Path:
    return PIDS / f"{name}.pid"


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [0] is the state, [19] the start
    time (clock ticks since boot), which together with the PID identifies one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_zombie(pid: int) -> bool:
    """Whether the process is gone or only waits to be reaped. A thread-group leader
    shows Z as soon as its own thread ends, while the others may still run (a JVM in
    its shutdown hooks, its ports still open): only a leader without threads is gone."""
    st = _stat(pid)
    if st is None:
        return True
    if st[0] not in ("Z", "X"):
        return False
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def tracked(name: str) -> dict | None:
    try:
        return json.loads(pidfile(name).read_text())
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


children: dict[int, subprocess.Popen] = {}


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
    children[proc.pid] = proc
    st = _stat(proc.pid)
    pidfile(name).write_text(json.dumps({"pid": proc.pid, "starttime": st[19] if st else "",
                                          "argv": argv, "started": time.time()}))
    return proc.pid


def exit_code(name: str) -> int | None:
    """Exit status of a process this Python process started and that has exited."""
    info = tracked(name)
    if info and info["pid"] in children:
        return children[info["pid"]].poll()
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
    proc = children.get(pid)
    while time.monotonic() < deadline:
        if proc is not None:
            rc = proc.poll()
            if rc is not None:
                return rc
        elif is_zombie(pid):
            return None
        time.sleep(0.1)
    raise TimeoutError(f"{name} (pid {pid}) did not exit within {timeout:.0f}s")


def stop(name: str, timeout: float = 30, sig: int = signal.SIGTERM) -> int | None:
    """Sends `sig` (SIGTERM) to a tracked process, escalates to SIGKILL after `timeout`."""
    pid = running_pid(name)
    if not pid:
        pidfile(name).unlink(missing_ok=True)
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
    pidfile(name).unlink(missing_ok=True)
    return rc


def kill(name: str) -> None:
    """SIGKILL, as a crash: no drain, no flush, no commit."""
    pid = signal_component(name, signal.SIGKILL)
    wait_exit(name, pid, 10)
    pidfile(name).unlink(missing_ok=True)


def components() -> list[str]:
    if not PIDS.exists():
        return []
    return sorted(p.stem for p in PIDS.glob("*.pid"))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 10, context=None) -> tuple[int, bytes]:
    """One request; `context` is the ssl context of an https URL (the CA it trusts)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
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

