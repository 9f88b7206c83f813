"""Input that used to stop or blind the pipeline (issue 11): lines far over any reading's
size, and a sensor whose clock runs a year ahead. Each is exact in the store, and what is
refused is in the DLQ once, with its reason."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from expected import AGGREGATOR, Expected, check
from harness import DLQ_TOPIC, P, SEED_CSV, SEED_EXPECTED, append_lines, dlq_records, verify, wait_store
from pulsewire_stack import kafka, processes, settings
from pulsewire_stack.render import render

RAW_TOPIC = P["topics"]["raw"]["name"]
# What a DLQ record keeps of a longer line (services/model/src/dlq.rs).
KEPT = 4096

# Fences a transactional id, as a worker fences a zombie task.
FENCE = Path(__file__).resolve().parent / "Fence.java"

pytestmark = pytest.mark.usefixtures("fresh_stack")


def test_huge_lines_go_to_the_dlq_bounded_and_the_stream_keeps_flowing(dist) -> None:
    # What a file often ends with after an unclean shutdown: 1.2 MB of NUL bytes, over
    # Kafka's default 1 MB message limit (and as an escaped JSON string, 7.2 MB); and a
    # 200 kB line. Both used to stall the pipeline: Connect's task failed on the first,
    # the aggregator's DLQ record of either was over the producer's limit.
    nul = "\0" * 1_200_000
    wide = "7,heart_rate,2024-06-19 13:58:42.074766," + "8" * 200_000
    seed = SEED_CSV.read_text().splitlines()
    lines = seed[:12] + [nul] + seed[12:20] + [wide] + seed[20:]
    exp = Expected(lines)
    check(sorted(exp.invalid) == sorted([nul, wide]), "the test's own validator disagrees about the huge lines")
    append_lines(lines)
    wait_store(dist, exp.total, timeout=240)
    verify(exp, [json.loads(x) for x in SEED_EXPECTED.read_text().splitlines() if x.strip()])

    records = dlq_records(dist, "aggregator", want=2)
    check(len(records) == 2, f"{len(records)} aggregator records in {DLQ_TOPIC}, expected the 2 huge lines")
    by_length = {r.get("raw_length"): r for r in records}
    for line in (nul, wide):
        raw = line.encode()
        r = by_length.get(len(raw))
        check(r is not None, f"no DLQ record with raw_length {len(raw)}: {[x.get('raw_length') for x in records]}")
        check(r["reason"] == f"line too long: {len(raw)} bytes, limit {AGGREGATOR['max_line_bytes']}",
              f"reason {r['reason']!r}")
        check(r["raw"] == line[:KEPT], f"the record keeps {len(r['raw'])} characters, not the line's first {KEPT}")
        check(r["raw_sha256"] == hashlib.sha256(raw).hexdigest(), "raw_sha256 is not the line's SHA-256")
        check(r["topic"] == RAW_TOPIC and r["offset"] >= 0, f"source position {r['topic']}/{r['offset']}")
        size = len(json.dumps(r))
        check(size < 30_000, f"the DLQ record of a {len(raw)}-byte line is {size} bytes")
    print(f"1.2 MB NUL line and 200 kB line: each once in {DLQ_TOPIC} (bounded, with length and SHA-256); "
          f"{exp.total} readings exact")


def test_a_clock_a_year_ahead_is_refused_and_later_readings_count(dist) -> None:
    # Sensor 9's clock runs a year ahead for 1,100 readings (more than the duplicate
    # window of 1,024), then is corrected. Before the clock limit, the future times
    # filled the window, every corrected reading was `late`, and last_value stayed pinned.
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ahead = now + timedelta(days=365)
    stamp = lambda t: t.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    future = [f"9,heart_rate,{stamp(ahead + timedelta(seconds=i))},{60 + i % 30}" for i in range(1_100)]
    corrected = [f"9,heart_rate,{stamp(now - timedelta(seconds=600 - i))},{70 + i % 20}" for i in range(300)]
    seed = SEED_CSV.read_text().splitlines()
    lines = seed + future + corrected
    exp = Expected(lines)
    check(sorted(exp.invalid) == sorted(future), "the test's own validator disagrees about the future lines")
    check(len(exp.readings[9]) == len(corrected), "every corrected reading of sensor 9 is expected to count")
    append_lines(lines)
    wait_store(dist, exp.total, timeout=300)
    verify(exp, [json.loads(x) for x in SEED_EXPECTED.read_text().splitlines() if x.strip()])

    records = dlq_records(dist, "aggregator", want=len(future), timeout=120)
    check(len(records) == len(future), f"{len(records)} aggregator records in {DLQ_TOPIC}, expected {len(future)}")
    check({r["raw"] for r in records} == set(future), "the DLQ records are not the year-ahead lines")
    limit = AGGREGATOR["max_clock_ahead_secs"]
    for r in records:
        time_text = r["raw"].split(",")[2]
        prefix = f'time "{time_text}" is '
        suffix = f" s ahead of the clock (at most {limit} s allowed)"
        check(r["reason"].startswith(prefix) and r["reason"].endswith(suffix), f"reason {r['reason']!r}")
        secs = int(r["reason"][len(prefix):-len(suffix)])
        check(abs(secs - 365 * 86400) < 3600 + 1_100, f"{secs} s ahead is not about a year: {r['reason']!r}")
    late = [r for r in kafka.read_topic(dist, DLQ_TOPIC, idle_ms=3000) if '"stage":"processor"' in r]
    check(not late, f"the processor refused readings: {late[:2]}")
    print(f"{len(future)} readings a year ahead refused as such; the {len(corrected)} corrected ones of "
          f"sensor 9 all counted; {time.strftime('%H:%M:%S')}")


# Kafka Connect's source task under exactly-once support (the worker's
# exactly.once.source.support=enabled): a record the producer refuses fails the task's
# transaction and so the task; errors.tolerance (KIP-779) is not consulted on that path.
CONNECTOR = P["connect"]["connector_name"]
TASK = f"{CONNECTOR}-0"
WATCH_LOG = settings.LOGS / "connect-watch.log"
MAX_REQUEST = int(P["topics"]["raw"]["configs"]["max.message.bytes"])


def watch_lines() -> list[str]:
    """What provisioning/connect/watch reported (the appliance: journalctl -u pulsewire-connect-watch)."""
    if not WATCH_LOG.exists():
        return []
    return [x for x in WATCH_LOG.read_text(errors="replace").splitlines() if x.startswith("connect-watch: ")]


def wait_watch(what: str, pred, timeout: float = 120) -> list[str]:
    processes.wait_for(what, lambda: pred(watch_lines()), timeout, interval=1)
    return watch_lines()


def task_state() -> str:
    code, out = kafka.connect_http("GET", f"/connectors/{CONNECTOR}/status")
    check(code == 200, f"connector status: HTTP {code}")
    return json.loads(out)["tasks"][0]["state"]


def test_a_line_over_connects_limit_fails_the_task_and_the_watch_reports_it(dist) -> None:
    # A line one byte over the producer's max.request.size (8 MiB), mid-stream.
    seed = SEED_CSV.read_text().splitlines()
    first = Expected(seed[:12])
    append_lines(seed[:12])
    wait_store(dist, first.total, timeout=180)
    check(watch_lines() == [], f"the watch reported a healthy connector: {watch_lines()}")
    huge = "x" * (MAX_REQUEST + 1)
    append_lines([huge] + seed[12:])

    # The record is the line plus 88 bytes of record and batch overhead (a null key, no headers).
    # Under exactly-once support the producer refuses it in send() itself, and the task fails.
    cause = (f"org.apache.kafka.common.errors.RecordTooLargeException: The message is {MAX_REQUEST + 1 + 88} "
             f"bytes when serialized which is larger than {MAX_REQUEST}, which is the value of the "
             "max.request.size configuration.")
    failed = (f"connect-watch: task {TASK} FAILED on worker 127.0.0.1:{render()['restPort']}: "
              f"org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception trying to send; "
              f"root cause: {cause}")
    restarts = [f"connect-watch: restarting the failed tasks of {CONNECTOR} (restart {n} of 3 within 3600s)"
                for n in (1, 2, 3)]
    give_up = (f"connect-watch: not restarting {CONNECTOR}: 3 restarts within 3600s did not help; fix the "
               f"cause, then POST {kafka.connect_url()}/connectors/{CONNECTOR}/restart?includeTasks=true&onlyFailed=true")
    # Restarts after 0, 5 and 10 s of backoff (the stack's WATCH_BACKOFF), then none.
    lines = wait_watch("the watch to give up on the task", lambda ls: give_up in ls, timeout=240)
    print("\n".join(dict.fromkeys(lines)))
    distinct = [x for x in lines if not x.startswith("connect-watch: restart ") or " due in " not in x]
    check([x for x in distinct if x in restarts] == restarts, f"restart reports: {distinct}")
    check(set(distinct) == {failed, give_up, *restarts}, f"unexpected reports: {sorted(set(distinct) - {failed, give_up, *restarts})}")
    check(task_state() == "FAILED", "the task is not FAILED")

    # errors.tolerance=all (KIP-779) does not skip it under exactly-once support: the
    # reconfigured task (RUNNING again at first) fails on the same line.
    config = dict(render()["connectorConfig"], **{"errors.tolerance": "all", "errors.log.enable": "true"})
    code, out = kafka.connect_http("PUT", f"/connectors/{CONNECTOR}/config",
                               json.dumps(config).encode(), {"Content-Type": "application/json"})
    check(code == 200, f"PUT config with errors.tolerance=all: HTTP {code} {out[:300]!r}")
    processes.wait_for("the reconfigured task to run", lambda: task_state() == "RUNNING", 60, interval=0.5)
    processes.wait_for("the reconfigured task to fail", lambda: task_state() == "FAILED", 120, interval=1)
    code, out = kafka.connect_http("GET", f"/connectors/{CONNECTOR}/status")
    trace = json.loads(out)["tasks"][0]["trace"]
    check(f"Caused by: {cause}" in trace.splitlines(), f"errors.tolerance=all: trace {trace[:2000]}")
    # Nothing after the line arrives; nothing before it is lost or doubled.
    time.sleep(10)
    verify(first)
    print(f"a {MAX_REQUEST + 1}-byte line fails Connect's task on each of 3 restarts, and with errors.tolerance=all; "
          f"the watch reports it and gives up; the {first.total} readings before it are exact")


def test_a_fenced_connect_task_is_restarted_by_the_watch(dist) -> None:
    seed = SEED_CSV.read_text().splitlines()
    first = Expected(seed[:12])
    append_lines(seed[:12])
    wait_store(dist, first.total, timeout=180)
    # What a zombie worker's successor does: fence the task's transactional id. The task
    # fails at its next transaction, and a restart (a new producer epoch) fixes it.
    txid = f"{P['connect']['group_id']}-{TASK}"
    res = subprocess.run(kafka.java_cmd(dist, "256m", str(FENCE), render()["bootstrapServers"], txid, tool=True),
                         capture_output=True, text=True, timeout=120)
    check(res.returncode == 0 and res.stdout.strip() == f"fenced {txid}", f"Fence.java: {res.stdout}{res.stderr}")
    append_lines(seed[12:])
    lines = wait_watch("the watch to restart the fenced task",
                       lambda ls: any(x.startswith("connect-watch: restarting ") for x in ls))
    print("\n".join(dict.fromkeys(lines)))
    check(lines[-1] == f"connect-watch: restarting the failed tasks of {CONNECTOR} (restart 1 of 3 within 3600s)",
          f"reports: {lines}")
    # Connect takes the fenced producer's error for an expired transaction; the root cause says what it is.
    check(len(lines) == 2 and lines[0].startswith(f"connect-watch: task {TASK} FAILED on worker 127.0.0.1:")
          and lines[0].endswith("; root cause: org.apache.kafka.common.errors.InvalidProducerEpochException: "
                                "Producer attempted to produce with an old epoch."), f"reports: {lines}")
    exp = Expected(seed)
    wait_store(dist, exp.total, timeout=180)
    verify(exp, [json.loads(x) for x in SEED_EXPECTED.read_text().splitlines() if x.strip()])
    check(task_state() == "RUNNING", "the task is not RUNNING after the restart")
    print(f"fenced task: {lines[0]}; restarted once; all {exp.total} readings exact")


def test_topics_step_applies_declared_configs_to_existing_topics(dist) -> None:
    # An appliance upgraded from before retention.ms and max.message.bytes were declared: its
    # raw topic has neither (and an older retention). The topics step must set them.
    r = render()
    raw = next(t for t in r["topics"] if t["key"] == "raw")
    kafka.kafka_tool(dist, "kafka.admin.ConfigCommand", "--bootstrap-server", r["bootstrapServers"],
                     "--entity-type", "topics", "--entity-name", raw["name"], "--alter",
                     "--delete-config", "max.message.bytes", "--add-config", "retention.ms=604800000")
    old = kafka.topic_configs(dist, raw["name"])
    check(old.get("retention.ms") == "604800000" and "max.message.bytes" not in old, f"old configs {old}")
    kafka.create_topics(dist)
    for t in r["topics"]:
        got = kafka.topic_configs(dist, t["name"])
        check(got == t["configs"], f"{t['name']}: configs {got}, declared {t['configs']}")
    kafka.create_topics(dist)  # idempotent
    check(kafka.topic_configs(dist, raw["name"]) == raw["configs"], "a second run changed the raw topic's configs")
    print(f"{raw['name']}: {old} -> {raw['configs']}")
