"""Operating the services and the stack: /metrics, SIGTERM within the units' stop timeout,
and the operator's `stack` commands."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from expected import Expected, check
from harness import file_lines, simulator, store_progress, verify, wait_store
from pulsewire_stack import processes, services, settings, stack

pytestmark = pytest.mark.usefixtures("fresh_stack")


def test_metrics_sigterm(dist) -> None:
    stages = ("simulator", *services.SERVICES)
    # An endless real-time run, as the appliance's simulator unit does.
    simulator(["--seed", "7", "--sensors", "10", "--rate-per-sensor", "5", "--start-time", "2026-02-01 00:00:00"])
    processes.wait_for("200 readings in the store", lambda: store_progress() >= 200, 180, interval=1)
    zero = []
    for st in stages:
        m = services.scrape(services.metrics_port(st))
        check(m, f"{st}: no /metrics on :{services.metrics_port(st)}")
        counted = {k: v for k, v in m.items() if k.startswith(("pulsewire_records_", "pulsewire_lines_")) and v > 0}
        if not counted:
            zero.append(st)
    check(not zero, f"no non-zero records/lines counter on /metrics of: {', '.join(zero)}")
    report = []
    for st in stages:
        pid = processes.signal_component(st, signal.SIGTERM)
        t0 = time.monotonic()
        # The unit's TimeoutStopSec, as the renderer gives it.
        stop_timeout = services.stop_timeout(st)
        try:
            rc = processes.wait_exit(st, pid, stop_timeout)
        except TimeoutError:
            raise AssertionError(f"{st} did not exit within {stop_timeout}s of SIGTERM (TimeoutStopSec)") from None
        check(rc == 0, f"{st} exited with status {rc} on SIGTERM, expected 0; see {settings.LOGS / (st + '.log')}")
        report.append(f"{st} {time.monotonic() - t0:.1f}s")
        if st == "simulator":
            # Everything the simulator wrote before it stopped must still arrive.
            exp = Expected(file_lines())
            wait_store(dist, exp.total, timeout=180)
            verify(exp)
    print("non-zero counters on every /metrics; SIGTERM -> exit 0: " + ", ".join(report))


def test_stack_cli(dist) -> None:
    """The operator's commands on a running stack: `up` refuses to start a second one,
    `status` lists it, `down` stops every process by PID and leaves none behind."""
    cli = str(settings.LOCAL_DIR / "stack")
    running = {c: processes.running_pid(c) for c in stack.running_components()}
    check(len(running) == len(stack.INFRA) + len(services.SERVICES), f"not everything runs: {sorted(running)}")
    res = subprocess.run([cli, "up", "--no-build"], capture_output=True, text=True, timeout=60)
    check(res.returncode == 0 and "already running" in res.stdout,
          f"`stack up` on a running stack: exit {res.returncode}, {res.stdout.strip()[:200]} {res.stderr.strip()[:300]}")
    check({c: processes.running_pid(c) for c in stack.running_components()} == running,
          "`stack up` on a running stack changed the processes")
    res = subprocess.run([cli, "status"], capture_output=True, text=True, timeout=60)
    check(res.returncode == 0 and all(f"{c} " in res.stdout for c in running),
          f"`stack status` exit {res.returncode}: {res.stdout[:300]}")
    res = subprocess.run([cli, "down"], capture_output=True, text=True, timeout=180)
    check(res.returncode == 0, f"`stack down` exit {res.returncode}: {res.stderr[-300:]}")
    alive = [f"{c} (pid {pid})" for c, pid in running.items() if not processes.is_zombie(pid)]
    check(not alive, f"`stack down` left processes behind: {alive}")
    busy = [p for p in stack.render_ports() if processes.port_open(p)]
    check(not busy, f"ports still open after `stack down`: {busy}")
    res = subprocess.run([cli, "status"], capture_output=True, text=True, timeout=60)
    check(res.returncode == 3, f"`stack status` on a stopped stack: exit {res.returncode}, expected 3")
    leftovers = [pid for pid, proc in processes.children.items() if proc.poll() is None]
    check(not leftovers, f"processes started during the suite still run: {leftovers}")
    print(f"`up` refused a second stack; `down` stopped {len(running)} processes, no process or port left")
