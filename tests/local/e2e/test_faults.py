"""Faults mid-stream (a stage killed, a broker stopped, the store away): every reading still
in the store exactly once."""

from __future__ import annotations

import signal
import time

import pytest

from expected import Expected, check
from harness import (BIG, P, assert_midstream, big_run_args, file_lines, simulator, store_progress, verify,
                     wait_progress, wait_simulator, wait_store)
from pulsewire_stack import kafka, processes, services, store

pytestmark = pytest.mark.usefixtures("fresh_stack")


# Faults: a real-time simulator run like the big one (about 60 s of writing), the fault
# once a quarter of the readings reached the store, and the exact same assertions.
FAULT_RATE = 33.0  # readings per second per sensor: 12 sensors -> ~400 lines/s


def fault_run(dist, inject) -> str:
    simulator(big_run_args(realtime_rate=FAULT_RATE))
    want = BIG["count"]
    wait_progress(0.25, want)
    assert_midstream("the fault")
    what = inject(dist)
    wait_simulator(timeout=600)
    exp = Expected(file_lines())
    check(exp.total == want, f"simulator wrote {exp.total} valid readings, expected {want}")
    took = wait_store(dist, exp.total)
    verify(exp)
    return f"{what}; drained {took:.0f}s after the simulator; {exp.total} readings exact, none missing or doubled"


def kill_and_restart(stage: str, pause: float = 2.0):
    def inject(dist):
        processes.kill(stage)
        time.sleep(pause)
        services.start_service(stage)
        return f"SIGKILL {stage} at {store_progress()} readings, restarted"
    return inject


def test_kill_processor(dist) -> None:
    print(fault_run(dist, kill_and_restart("processor")))


def test_kill_aggregator(dist) -> None:
    print(fault_run(dist, kill_and_restart("aggregator")))


def test_kill_uploader(dist) -> None:
    resumed = {}

    def inject(dist):
        # Freeze the store so that the uploader's next write is sent but never answered,
        # kill the uploader while that batch is in flight, then let the store read it:
        # the restarted uploader must write that batch again (from its last committed
        # offset), and InfluxDB must keep one point per reading.
        seen = store_progress()
        processes.signal_component("store", signal.SIGSTOP)
        try:
            time.sleep(3)
            processes.kill("uploader")
        finally:
            processes.signal_component("store", signal.SIGCONT)
        time.sleep(3)
        resumed["points"] = store_progress()
        services.start_service("uploader")
        return f"SIGKILL uploader at {seen} readings during a write to the frozen store, restarted"

    detail = fault_run(dist, inject)
    # One stats record per reading: the restarted uploader consumed everything after the
    # last committed offset. Whatever of that was already in the store was written twice.
    consumed = sum(v for k, v in services.scrape(services.metrics_port("uploader")).items()
                   if k.startswith("pulsewire_records_in_total"))
    rewritten = resumed["points"] + int(consumed) - BIG["count"]
    check(rewritten > 0,
          f"no point was written twice ({resumed['points']} in the store at the restart, {consumed:.0f} consumed "
          "after it): the kill did not hit an unacknowledged batch, so this run proves nothing")
    print(f"{detail}; {rewritten} points written again and stored once")


def test_broker_down(dist) -> None:
    def inject(dist):
        name = "broker-2"
        seen = store_progress()
        processes.stop(name, timeout=60)
        time.sleep(20)
        assert_midstream("the broker restart")
        check(store_progress() > seen, "no progress while one broker was down")
        mid = store_progress()
        since = processes.log_size(name)
        kafka.start_broker(dist, 2, wait=False)
        kafka.wait_broker(name, since)
        return f"stopped {name} at {seen} readings, {mid - seen} more flowed on two brokers, restarted it"
    print(fault_run(dist, inject))


def test_store_down(dist) -> None:
    def inject(dist):
        seen = store_progress()
        processes.stop("store", timeout=30)
        t0 = time.monotonic()
        check(not processes.port_open(store.store().facts["port"]), "the store still answers after it was stopped")
        time.sleep(30)
        assert_midstream("the store's return")
        store.start_store()
        return f"store unreachable for {time.monotonic() - t0:.0f}s from {seen} readings on"
    print(fault_run(dist, inject))
