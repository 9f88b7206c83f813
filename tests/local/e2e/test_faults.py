"""Faults mid-stream (a stage killed, a broker stopped, the store away): every reading still
in the store exactly once."""

from __future__ import annotations

import json
import signal
import time

import pytest

from expected import Expected, check
from harness import (BIG, P, SEED_CSV, append_lines, assert_midstream, big_run_args, file_lines, simulator,
                     store_progress, verify, wait_progress, wait_simulator, wait_store)
from pulsewire_stack import kafka, processes, render, services, settings, store

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
        # A stuck uploader is visible: the gauge the PulsewireStageWaiting alert watches.
        waiting = 'pulsewire_waiting_seconds{for="influxdb"}'
        port = services.metrics_port("uploader")
        waited = services.scrape(port).get(waiting)
        check(waited is not None and waited >= 10, f"{waiting} is {waited} after 30 s without the store")
        store.start_store()
        processes.wait_for(f"{waiting} back to 0", lambda: services.scrape(port).get(waiting) == 0, 60)
        return (f"store unreachable for {time.monotonic() - t0:.0f}s from {seen} readings on; the uploader "
                f"showed {waited:.0f} s waiting for InfluxDB")
    print(fault_run(dist, inject))


def test_processor_restarted_while_a_broker_stops_right_after_a_commit(dist) -> None:
    # A restore reads the changelog up to its last stable offset; the broker acknowledges a
    # commit before that commit's markers are written, and a broker going down delays them.
    # The restarted processor must restore a state that includes the last commit (its
    # changelog's input offsets match the group's), or every count after it is short.
    committed = 'pulsewire_transactions_total{outcome="committed"}'

    def inject(dist):
        name, port = "broker-2", services.metrics_port("processor")
        seen = store_progress()
        before = services.scrape(port).get(committed, 0)
        processes.wait_for("a processor commit", lambda: services.scrape(port).get(committed, 0) > before, 60,
                           interval=0.005)
        processes.kill(name)
        processes.kill("processor")
        since = processes.log_size("processor")
        services.start_service("processor")
        time.sleep(20)
        assert_midstream("the broker restart")
        check(processes.log_contains("processor", "state restored from changelog", since),
              "the restarted processor did not restore its state")
        waited = processes.log_contains("processor", "restored state is behind the committed offset", since)
        broker_log = processes.log_size(name)
        kafka.start_broker(dist, 2, wait=False)
        kafka.wait_broker(name, broker_log)
        return (f"SIGKILL {name} and the processor right after a commit at {seen} readings, processor restarted "
                f"at once ({'restore read again for the last commit' if waited else 'restore complete at once'})")
    print(fault_run(dist, inject))


def delete_records(dist, topic: str) -> None:
    """Deletes every record of every partition of `topic` (up to its high watermark), as
    retention or kafka-delete-records would."""
    partitions = P["topics"]["stats"].get("partitions", P["kafka"]["topic_defaults"]["partitions"])
    spec = settings.STATE / "delete-records.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "offset": -1} for p in range(partitions)]}))
    kafka.kafka_tool(dist, "org.apache.kafka.tools.DeleteRecordsCommand",
                     "--bootstrap-server", render.render()["bootstrapServers"], "--offset-json-file", str(spec))


def test_an_input_offset_deleted_from_the_log_stops_the_uploader(dist) -> None:
    # Records the uploader never wrote are deleted from its input (as retention does to a
    # stage stuck for longer than the topics keep data). It must stop and say so, not skip
    # to what is left (auto.offset.reset=earliest did that silently).
    topic, group = P["topics"]["stats"]["name"], P["services"]["uploader"]["group_id"]
    lines = SEED_CSV.read_text().splitlines()
    first, rest = lines[: len(lines) // 2], lines[len(lines) // 2:]
    append_lines(first)
    exp = Expected(first)
    wait_store(dist, exp.total)
    processes.stop("uploader")
    append_lines(rest)
    more = Expected(first + rest).total - exp.total
    processes.wait_for(f"{more} stats records the uploader has not read",
                       lambda: (kafka.group_lags(dist).get(group) or 0) >= more, 120)
    delete_records(dist, topic)
    since = processes.log_size("uploader")
    pid = services.start_service("uploader", wait=False)
    rc = processes.wait_exit("uploader", pid, 120)
    check(rc == 78, f"the uploader exited with {rc}, not 78 (refuses to run)")
    check(processes.log_contains("uploader", f"of group {group} on {topic}/", since)
          and processes.log_contains("uploader", "is no longer in the log, which holds offsets", since),
          f"the uploader's log does not name the lost offset; see {settings.LOGS / 'uploader.log'}")
    verify(exp)
    check(store_progress() == exp.total, f"the store has {store_progress()} points, expected {exp.total}")
    print(f"uploader stopped with 78 after {more} unwritten stats records were deleted; store unchanged "
          f"at {exp.total} points")
