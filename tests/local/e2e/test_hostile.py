"""Input that used to stop or blind the pipeline (issue 11): lines far over any reading's
size, and a sensor whose clock runs a year ahead. Each is exact in the store, and what is
refused is in the DLQ once, with its reason."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from expected import AGGREGATOR, Expected, check
from harness import DLQ_TOPIC, P, SEED_CSV, SEED_EXPECTED, append_lines, dlq_records, verify, wait_store
from pulsewire_stack import kafka
from pulsewire_stack.render import render

RAW_TOPIC = P["topics"]["raw"]["name"]
# What a DLQ record keeps of a longer line (services/model/src/dlq.rs).
KEPT = 4096

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
