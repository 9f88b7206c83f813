"""The store: what InfluxDB refuses goes to the DLQ, and each token may do only its job."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import dashboards
import pytest

from expected import Expected, check
from harness import (ALL_TIME, DB, DLQ_TOPIC, MEASUREMENT, P, SEED_CSV, append_lines, dlq_records, points, verify,
                     wait_store)
from pulsewire_stack import services

pytestmark = pytest.mark.usefixtures("fresh_stack")


# The seed is from 2024: this case keeps the retention of pipeline.toml to test it.
@pytest.mark.retention(None)
def test_refused(dist) -> None:
    """The uploader's narrowing of a 4xx, against InfluxDB's real answers: in a bucket
    that keeps 30 days (pipeline.toml's retention, as on the appliance), readings from
    2024 are beyond the retention, and readings in a shard where `value` already is a
    string conflict with its type. Both go to the DLQ with the server's message; the
    readings in between, in the same batches, are written."""
    now = time.time_ns()
    day = 86400 * 10**9
    conflict_t = now - 3 * day
    # A string `value` in the shard of three days ago (its own sensor, no reading).
    code, body = DB().write([f'{MEASUREMENT},sensor_id=999 value="not a number" {conflict_t}'])
    check(code == 204, f"writing the conflicting string field answered {code}: {body[:200]!r}")

    def line(sensor: int, t_ns: int, value: int) -> str:
        stamp = datetime.fromtimestamp(t_ns // 10**9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return f"{sensor},heart_rate,{stamp}.{(t_ns % 10**9) // 1000:06d},{value}"

    good = [line(31, now - 3600 * 10**9 + i * 10**9, 60 + i) for i in range(12)]
    old = [line(32, 1718805517 * 10**9 + i * 10**9, 70 + i) for i in range(4)]  # 2024-06-19
    typed = [line(33, conflict_t + (i + 1) * 10**9, 80 + i) for i in range(4)]
    mixed = [x for trio in zip(good[:4], old, typed) for x in trio] + good[4:]
    append_lines(mixed)
    refused = dlq_records(dist, "uploader", len(old) + len(typed), timeout=240)
    wait_store(dist, len(good), timeout=120)  # (the conflicting point has no `count` field)
    # Exact, read over the last day only: across shards where `value` has two types, a
    # Flux read returns one type's rows (InfluxDB 2.7), so the whole range would hide them.
    window = (f"range(start: {dashboards.rfc3339nano(now - day)}, "
              f"stop: {dashboards.rfc3339nano(now + 10**9)})")
    verify(Expected(good), window=window)
    by_sensor: dict[int, list[str]] = {}
    for r in refused:
        by_sensor.setdefault(json.loads(r["raw"])["reading"]["sensor_id"], []).append(r["reason"])
    check(sorted(by_sensor) == [32, 33] and len(by_sensor[32]) == 4 and len(by_sensor[33]) == 4,
          f"uploader DLQ records by sensor: { {k: len(v) for k, v in by_sensor.items()} }, expected 4 of 32 and 33")
    kept = dashboards.go_duration(P["influxdb"]["retention_seconds"] * 1000)  # as Go prints it: 720h0m0s
    retention = f"partial write: dropped 1 points outside retention policy of duration {kept}"
    check(all(r.startswith("InfluxDB refused the point: HTTP 422: ") and retention in r for r in by_sensor[32]),
          f"a reading from 2024 was refused with {by_sensor[32][0]!r}, expected InfluxDB's 422 {retention!r}")
    conflict = ('partial write: field type conflict: input field "value" on measurement "heart_rate" '
                'is type integer, already exists as type string dropped=1')
    check(all(r.startswith("InfluxDB refused the point: HTTP 422: ") and conflict in r for r in by_sensor[33]),
          f"a reading in the conflicting shard was refused with {by_sensor[33][0]!r}, expected {conflict!r}")
    check(all(r["topic"] == P["topics"]["stats"]["name"] for r in refused), "a refused point's source is not the stats topic")
    said = {k: v[0].split("partial write: ", 1)[-1][:64] for k, v in by_sensor.items()}
    print((f"12 readings written exactly; 4 from 2024 ({said[32]}...) and 4 in a string-typed shard "
            f"({said[33]}...) each once in {DLQ_TOPIC} with InfluxDB's message"))


def test_tokens(dist) -> None:
    """Each token may do what its client needs and nothing more: the uploader's writes
    (as it did) and cannot read, Grafana's reads and cannot write."""
    lines = SEED_CSV.read_text().splitlines()
    append_lines(lines)
    wait_store(dist, Expected(lines).total, timeout=240)
    db = DB()
    uploader, grafana = services.token_file(), services.read_token_file()
    flux = f'from(bucket: "{db.bucket}") |> {ALL_TIME} |> count()'
    code, body = db.query_status(flux, uploader)
    check(code in (401, 403, 404), f"the uploader's token queried the bucket: {code} {body[:200]!r}")
    denied_read = f"{code} {json.loads(body).get('message', '')}"
    check(len(points(grafana)) == 5, "Grafana's token does not read the five seed sensors")
    code, body = db.write([f'{MEASUREMENT},sensor_id=998 value=1i 1718805517000000000'], grafana)
    check(code in (401, 403, 404), f"Grafana's token wrote to the bucket: {code} {body[:200]!r}")
    denied_write = f"{code} {json.loads(body).get('message', '')}"
    check(998 not in points(), "Grafana's write reached the store")
    print(f"uploader token: writes, query refused ({denied_read}); Grafana token: reads, write refused ({denied_write})")
