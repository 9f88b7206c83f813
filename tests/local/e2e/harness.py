"""What the end-to-end tests do to the stack and read back from it: feed the file Connect
tails, run the simulator, wait for the store (naming the stage that stalls), and check every
point in the store against the expected statistics (expected.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from expected import Expected, check
from pulsewire_stack import influx, kafka, processes, render, services, settings
from pulsewire_stack.store import store

P = settings.PIPELINE
DLQ_TOPIC = P["topics"]["dlq"]["name"]
SEED_CSV = settings.REPO / "provisioning" / "data" / "seed-readings.csv"
SEED_EXPECTED = settings.REPO / "provisioning" / "data" / "seed-expected.jsonl"
FIELDS = ("value", "count", "min", "max", "mean")
MEASUREMENT = "heart_rate"  # measurement = kind, tag sensor_id, one field per statistic
DB = store

# The larger runs: >= 20,000 readings from 10+ sensors, reproducible.
BIG = dict(seed=20261128, sensors=12, count=24000, start="2026-01-01 00:00:00")


# Everything the pipeline can have written (the CSV's times are far from these bounds).
ALL_TIME = "range(start: 1970-01-01T00:00:00Z, stop: 2200-01-01T00:00:00Z)"


def points(token_file: Path | None = None, window: str = ALL_TIME) -> dict[int, dict[int, dict[str, float]]]:
    """Every point of the measurement in `window` (a Flux range()): {sensor: {time_ns:
    {field: value}}}. InfluxDB keeps one point per measurement, tags and time: a rewritten
    point overwrites itself."""
    rows = DB().query(f'''
        from(bucket: "{DB().bucket}") |> {window}
          |> filter(fn: (r) => r._measurement == "{MEASUREMENT}")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")''', token_file)
    out: dict[int, dict[int, dict[str, float]]] = {}
    for r in rows:
        sensor = int(r["sensor_id"])
        check(r["_time"] not in out.get(sensor, {}), f"sensor {sensor}: two rows at {r['_time']} ns")
        out.setdefault(sensor, {})[r["_time"]] = {f: r[f] for f in FIELDS if f in r}
    return out


def store_progress() -> int:
    """Points of the measurement in the store (one per reading written)."""
    try:
        rows = DB().query(f'''
            from(bucket: "{DB().bucket}") |> {ALL_TIME}
              |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "count")
              |> group() |> count()''')
    except (OSError, influx.InfluxError, ValueError):
        return -1
    return rows[0]["_value"] if rows else 0


def verify(exp: Expected, reference: list[dict] | None = None, window: str = ALL_TIME) -> dict:
    """Every reading is in the store exactly once, with the statistics it must have.

    Readings of one sensor may reach the processor out of event-time order (the raw topic
    is not keyed, so Connect spreads lines over its partitions), so the checks do not rely
    on arrival order: each point carries the statistics after its reading was counted, so
    the counts of a sensor's points must be exactly 1..N (a reading counted twice or never
    shows here), and min/max/mean of each point must be the running values along that
    order, the mean exactly sum/count. The point with count N has the final statistics;
    the point with the greatest time has the latest value. Times are compared to the
    nanosecond. `window` limits what is read to a Flux range().
    """
    stored = points(window=window)
    check(set(stored) == set(exp.readings),
          f"sensors in the store {sorted(stored)} != expected {sorted(exp.readings)}")
    final = {}
    for sensor in sorted(exp.readings):
        csv = exp.readings[sensor]
        n = len(csv)
        pts = stored[sensor]
        missing = sorted(set(csv) - set(pts))
        extra = sorted(set(pts) - set(csv))
        check(not missing, f"sensor {sensor}: {len(missing)} of {n} readings missing in the store, first at {missing[:3]} ns")
        check(not extra, f"sensor {sensor}: {len(extra)} points in the store that are no reading: {extra[:3]}")
        for t, p in pts.items():
            absent = [f for f in FIELDS if f not in p]
            check(not absent, f"sensor {sensor} at {t} ns: fields {absent} missing")
            check(p["value"] == csv[t], f"sensor {sensor} at {t} ns: value {p['value']}, the CSV says {csv[t]}")
        counts = sorted(p["count"] for p in pts.values())
        if counts != list(range(1, n + 1)):
            dup = sorted({c for c in counts if counts.count(c) > 1})[:5]
            gone = sorted(set(range(1, n + 1)) - set(counts))[:5]
            raise AssertionError(f"sensor {sensor}: counts of its {n} points are not 1..{n}: max {counts[-1]}, "
                             f"repeated {dup}, absent {gone} (readings counted twice or not at all)")
        total, lo, hi = 0, None, None
        for t, p in sorted(pts.items(), key=lambda kv: kv[1]["count"]):
            k, v = p["count"], p["value"]
            total, lo, hi = total + v, v if lo is None else min(lo, v), v if hi is None else max(hi, v)
            check(p["min"] == lo and p["max"] == hi,
                  f"sensor {sensor} at {t} ns (count {k}): min/max {p['min']}/{p['max']}, running {lo}/{hi}")
            check(p["mean"] == total / k,
                  f"sensor {sensor} at {t} ns (count {k}): mean {p['mean']!r}, running {total}/{k} = {total / k!r}")
        want = exp.summary(sensor)
        last = next(p for p in pts.values() if p["count"] == n)
        latest_t = max(pts)
        got = {"count": last["count"], "min": last["min"], "max": last["max"], "mean": last["mean"],
               "last_value": pts[latest_t]["value"], "last_time": latest_t}
        check((got["count"], got["min"], got["max"], got["mean"]) ==
              (want["count"], want["min"], want["max"], want["sum"] / want["count"]),
              f"sensor {sensor}: final count/min/max/mean {got['count']}/{got['min']}/{got['max']}/{got['mean']!r}, "
              f"expected {want['count']}/{want['min']}/{want['max']}/{want['sum'] / want['count']!r}")
        check((got["last_value"], got["last_time"]) == (want["last_value"], want["last_time"]),
              f"sensor {sensor}: latest sample {got['last_value']} at {got['last_time']} ns, "
              f"expected {want['last_value']} at {want['last_time']} ns")
        final[sensor] = got
    for ref in reference or []:
        sensor = ref["sensor_id"]
        got = final.get(sensor)
        check(got is not None, f"sensor {sensor} of the reference is not in the store")
        check((got["count"], got["min"], got["max"], got["mean"], got["last_value"], got["last_time"]) ==
              (ref["count"], ref["min"], ref["max"], ref["mean"], ref["last_value"], influx.parse_time(ref["last_time"])),
              f"sensor {sensor}: store {got} != {SEED_EXPECTED.name} {ref}")
    return {"final": final, "points": stored}


def append_lines(lines: list[str]) -> None:
    with settings.readings_file().open("ab") as f:
        for line in lines:
            f.write(line.encode("utf-8", "surrogateescape") + b"\n")


def simulator(extra: list[str]) -> int:
    return processes.start("simulator", services.service_argv("simulator", extra), env=services.service_env("simulator"))


def big_run_args(realtime_rate: float | None = None) -> list[str]:
    args = ["--seed", str(BIG["seed"]), "--sensors", str(BIG["sensors"]), "--count", str(BIG["count"]),
            "--start-time", BIG["start"]]
    if realtime_rate is None:
        return args + ["--fast"]
    return args + ["--rate-per-sensor", str(realtime_rate)]


def wait_simulator(timeout: float = 300) -> None:
    pid = processes.running_pid("simulator")
    if pid:
        rc = processes.wait_exit("simulator", pid, timeout)
        check(rc == 0, f"simulator exited with {rc}; see {settings.LOGS / 'simulator.log'}")


def file_lines() -> list[str]:
    return settings.readings_file().read_bytes().decode("utf-8", "surrogateescape").split("\n")[:-1]


def diagnose(dist, want: int, got: int) -> str:
    """Which stage holds the data back: the first one that is down or has a backlog."""
    lines = len(file_lines())
    m = {st: services.scrape(services.metrics_port(st)) for st in services.SERVICES}
    lags = kafka.group_lags(dist)
    parts = [f"store has {got}/{want} readings", f"file has {lines} lines"]
    for st in services.SERVICES:
        ins = sum(v for k, v in m[st].items() if k.startswith("pulsewire_records_in_total"))
        outs = sum(v for k, v in m[st].items() if k.startswith("pulsewire_records_out_total"))
        group = P["services"][st]["group_id"]
        parts.append(f"{st}: {'up' if processes.running_pid(st) else 'DOWN'}, in {ins:.0f}, out {outs:.0f}, "
                     f"group lag {lags.get(group, 'n/a')}")
    verdict = None
    try:
        if not kafka.connector_running(render.render()["connectorName"]):
            verdict = "connect (connector or task not RUNNING)"
    except (OSError, settings.StackError) as e:
        verdict = f"connect ({e})"
    for st in services.SERVICES:
        if verdict:
            break
        lag = lags.get(P["services"][st]["group_id"])
        # Transaction markers leave a lag of 1 per partition even when all is consumed.
        if not processes.running_pid(st):
            verdict = f"{st} (not running)"
        elif st == "aggregator" and sum(v for k, v in m[st].items() if k.startswith("pulsewire_records_in_total")) < lines:
            if lag is not None and lag <= 3:
                verdict = "connect (the raw topic is behind the file)"
            else:
                verdict = f"aggregator (lag {lag})"
        elif lag is None or lag > 3:
            verdict = f"{st} (consumer group lag {lag})"
    return f"stalled stage: {verdict or 'store (everything was consumed, the store shows less)'}; " + "; ".join(parts)


def wait_store(dist, want: int, timeout: float = 420, stall: float = 150) -> float:
    """Waits until the store holds `want` distinct readings. Fails when nothing moves for
    `stall` seconds or the whole wait exceeds `timeout`, naming the stage that stalled."""
    t0 = time.monotonic()
    last, last_change = None, t0
    while True:
        got = store_progress()
        probe = (got, tuple(sum(services.scrape(services.metrics_port(st)).values()) for st in services.SERVICES))
        now = time.monotonic()
        if got == want:
            return now - t0
        check(got <= want, f"store has {got} distinct readings, more than the {want} fed")
        if probe != last:
            last, last_change = probe, now
        if now - last_change > stall or now - t0 > timeout:
            why = "no progress for %.0fs" % (now - last_change) if now - last_change > stall else "timeout"
            raise AssertionError(f"{why} after {now - t0:.0f}s: " + diagnose(dist, want, got))
        time.sleep(2)


def wait_progress(frac: float, want: int, timeout: float = 240) -> None:
    """Waits until the store holds `frac` of the readings (to put a fault mid-stream)."""
    processes.wait_for(f"{frac:.0%} of the readings in the store", lambda: store_progress() >= frac * want, timeout,
               interval=1)


def assert_midstream(what: str) -> None:
    check(processes.running_pid("simulator") is not None,
          f"{what} came after the simulator had finished: the run was too short to test a fault mid-stream")


def dlq_records(dist, stage: str, want: int, timeout: float = 90) -> list[dict]:
    """The DLQ records of one stage, once there are at least `want` of them."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in map(json.loads, kafka.read_topic(dist, DLQ_TOPIC, idle_ms=5000)) if r["stage"] == stage]
        if len(records) >= want or time.monotonic() > deadline:
            return records
