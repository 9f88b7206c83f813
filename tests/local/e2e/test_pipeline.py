"""Readings through the whole pipeline, exact in the store: the seed dataset, bad lines to
the DLQ, a large simulator run."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from expected import KINDS, Expected, check
from harness import (BIG, DLQ_TOPIC, P, SEED_CSV, SEED_EXPECTED, append_lines, big_run_args, file_lines, simulator,
                     verify, wait_simulator, wait_store)
from pulsewire_stack import kafka

RAW_TOPIC = P["topics"]["raw"]["name"]

pytestmark = pytest.mark.usefixtures("fresh_stack")


def test_seed(dist) -> None:
    lines = SEED_CSV.read_text().splitlines()
    exp = Expected(lines)
    reference = [json.loads(x) for x in SEED_EXPECTED.read_text().splitlines() if x.strip()]
    append_lines(lines)
    wait_store(dist, exp.total, timeout=240)
    verify(exp, reference)
    check(len(exp.readings) == 5, "the seed has five sensors")
    print(f"{exp.total} readings, 5 sensors: count 5, min 60, max 80, mean 70, latest at {lines[-1].split(',')[2]}")


LONG_LINE = "1,heart_rate,2024-06-19 13:58:42.074766," + "9" * 5000


BAD_LINES = [
    # (line, the reason the aggregator must give: exact text, or a prefix ending in '…')
    ("1,heart_rate,2024-06-19 13:58:42.074766", "wrong column count: expected 4, got 3"),
    ("1,heart_rate,2024-06-19 13:58:42.074766,70,extra", "wrong column count: expected 4, got 5"),
    ("x7,heart_rate,2024-06-19 13:58:42.074766,70", 'bad sensor id "x7"…'),
    ("0,heart_rate,2024-06-19 13:58:42.074766,70", 'bad sensor id "0"…'),
    ("1,blood_pressure,2024-06-19 13:58:42.074766,70", 'unknown kind "blood_pressure"'),
    ("1,heart_rate,yesterday,70", 'unparsable time "yesterday"'),
    ("2,heart_rate,2024-02-30 10:00:00,70", 'impossible time "2024-02-30 10:00:00"…'),
    ("3,heart_rate,2024-06-19 13:58:42.074766,seventy", 'bad value "seventy"…'),
    ("4,heart_rate,2024-06-19 13:58:42.074766,71.5", 'bad value "71.5"…'),
    ("5,heart_rate,2024-06-19 13:58:42.074766,300", "value 300 out of range {lo}..={hi} for heart_rate"),
    ("5,heart_rate,2024-06-19 13:58:42.074766,29", "value 29 out of range {lo}..={hi} for heart_rate"),
    (LONG_LINE, f"line too long: {len(LONG_LINE)} bytes…"),
    ("sensor_id,this,is,garbage,with,six", "wrong column count: expected 4, got 6"),  # not a header
]


SKIPPED_LINES = ["sensor_id,data_type,timestamp,value", ""]


def dlq_key(line: str) -> str:
    """How a DLQ record names the line: the line, or the SHA-256 of one over 4,096 bytes."""
    raw = line.encode()
    return hashlib.sha256(raw).hexdigest() if len(raw) > 4096 else line  # a header row and a blank line: skipped


def test_dlq(dist) -> None:
    seed = SEED_CSV.read_text().splitlines()
    lo, hi = KINDS["heart_rate"]
    bad = [(line, reason.format(lo=lo, hi=hi)) for line, reason in BAD_LINES]
    mixed = list(SKIPPED_LINES)
    pending = iter(b for b, _ in bad)
    for i, line in enumerate(seed):  # a bad line after every second good one
        mixed.append(line)
        if i % 2 == 1:
            mixed.extend(x for x in [next(pending, None)] if x is not None)
    mixed.extend(pending)
    exp = Expected(mixed)
    check(sorted(exp.invalid) == sorted(b for b, _ in bad), "the test's own validator disagrees about the bad lines")
    append_lines(mixed)
    wait_store(dist, exp.total, timeout=240)
    verify(exp, [json.loads(x) for x in SEED_EXPECTED.read_text().splitlines() if x.strip()])
    # Every bad line in the DLQ, exactly once, with its reason and source position.
    deadline = time.monotonic() + 60
    while True:
        records = [json.loads(v) for v in kafka.read_topic(dist, DLQ_TOPIC, idle_ms=5000)]
        if len(records) >= len(bad) or time.monotonic() > deadline:
            break
    # A record keeps a line whole up to 4,096 bytes, else its start, length and SHA-256.
    by_raw: dict[str, list[dict]] = {}
    for r in records:
        by_raw.setdefault(r.get("raw_sha256") or r["raw"], []).append(r)
    for line, reason in bad:
        got = by_raw.get(dlq_key(line), [])
        check(len(got) == 1, f"bad line {line[:60]!r} is {len(got)} times in {DLQ_TOPIC}, expected once")
        r = got[0]
        ok = r["reason"].startswith(reason[:-1]) if reason.endswith("…") else r["reason"] == reason
        check(ok, f"bad line {line[:60]!r}: DLQ reason {r['reason']!r}, expected {reason!r}")
        check(r["topic"] == RAW_TOPIC and r["partition"] >= 0 and r["offset"] >= 0,
              f"bad line {line[:60]!r}: source position {r['topic']}/{r['partition']}/{r['offset']}")
    keys = {dlq_key(line) for line, _ in bad}
    unexpected = [r for r in records if (r.get("raw_sha256") or r["raw"]) not in keys]
    check(not unexpected, f"{DLQ_TOPIC} holds records for lines that are not bad: {unexpected[:3]}")
    print(f"{len(bad)} bad lines each once in {DLQ_TOPIC} with its reason; header/blank skipped; seed stats unchanged")


def test_big(dist) -> None:
    simulator(big_run_args())
    wait_simulator()
    lines = file_lines()
    exp = Expected(lines)
    check(len(lines) == BIG["count"], f"simulator wrote {len(lines)} lines, asked for {BIG['count']}")
    check(len(exp.readings) >= 10, f"only {len(exp.readings)} sensors")
    took = wait_store(dist, exp.total)
    verify(exp)
    print((f"{exp.total} readings from {len(exp.readings)} sensors ({len(exp.invalid)} invalid) exact; "
            f"through the pipeline in {took:.0f}s"))
