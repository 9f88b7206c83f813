"""The operator CLI, pulsewire-ctl, on the running stack with the targets file the stack
renders (as nixos/ctl.nix installs the appliance's): `status` reports the real lag and
counters per hop, `dlq list` the bad lines by reason, and `dlq replay` brings a fixed set
back into the store exactly once, a second replay changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from expected import Expected, check
from harness import (DB, DLQ_TOPIC, MEASUREMENT, P, ALL_TIME, append_lines, file_lines, verify, wait_store)
from pulsewire_stack import kafka, processes, services, settings, stack

pytestmark = pytest.mark.usefixtures("fresh_stack")

RAW_TOPIC = P["topics"]["raw"]["name"]
REPLAYED_TOPIC = P["topics"]["dlq_replayed"]["name"]
HOPS = ["connect", "aggregator", "processor", "uploader"]

# Good readings: three sensors, 20 each, a second apart.
GOOD = [f"{s},heart_rate,2026-03-01 00:{i // 60:02d}:{i % 60:02d},{60 + (s * 7 + i * 3) % 40}"
        for i in range(20) for s in (1, 2, 3)]
# Lines the aggregator rejects, by the reason code each must be listed with.
BAD = {
    "value_out_of_range": ["1,heart_rate,2026-03-01 01:00:00,300", "2,heart_rate,2026-03-01 01:00:00,12",
                           "3,heart_rate,2026-03-01 01:00:00,251"],
    "bad_time": ["1,heart_rate,yesterday,70"],
    "impossible_time": ["2,heart_rate,2026-13-01 00:00:00,70"],
    "column_count": ["1,heart_rate,2026-03-01 01:00:01", "2,heart_rate", "3", "1,heart_rate,2026-03-01 01:00:02,70,x"],
}
# A kind the pipeline does not know yet: the fixable set. Two sensors, six readings each.
SPO2 = [f"{s},spo2,2026-03-01 00:00:{i:02d},{94 + (s + i) % 5}" for s in (41, 42) for i in range(6)]
# Over max_line_bytes: the DLQ keeps only its start, so it cannot be replayed.
LONG = "1,heart_rate,2026-03-01 02:00:00," + "9" * 5000
# Behind a stopped processor.
LATE = [f"7,heart_rate,2026-03-02 00:00:{i:02d},{70 + i}" for i in range(15)]


def ctl(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PULSEWIRE_CTL_TARGETS=str(stack.ctl_targets()))
    env.pop("PULSEWIRE_PIPELINE", None)
    return subprocess.run([str(settings.bin_dir() / "pulsewire-ctl"), *args], capture_output=True, text=True,
                          env=env, timeout=180)


def status() -> tuple[int, dict]:
    res = ctl("status", "--json")
    check(res.stdout.strip() != "", f"`status --json` printed nothing (exit {res.returncode}): {res.stderr[-500:]}")
    hops = {h["hop"]: h for h in json.loads(res.stdout)["hops"]}
    check(list(hops) == HOPS, f"hops {list(hops)}, expected {HOPS}")
    return res.returncode, hops


def dlq_list(*filters: str) -> list[dict]:
    res = ctl("dlq", "list", "--json", *filters)
    check(res.returncode == 0, f"`dlq list` exit {res.returncode}: {res.stderr[-500:]}")
    return [json.loads(line) for line in res.stdout.splitlines()]


def counter(stage: str, name: str) -> float:
    m = services.scrape(services.metrics_port(stage))
    return sum(v for k, v in m.items() if k.startswith(name))


def drained() -> tuple[int, dict]:
    """The status once every group has committed everything (the uploader commits just
    after the store acknowledged, so its lag reaches 0 right after the store is full)."""
    got: list = []

    def done() -> bool:
        got[:] = [status()]
        return all(h["lag"] == 0 for h in got[0][1].values())
    processes.wait_for("every hop's lag 0", done, 60, interval=1)
    return got[0]


def spo2_points() -> dict[int, dict[int, dict]]:
    rows = DB().query(f'''
        from(bucket: "{DB().bucket}") |> {ALL_TIME}
          |> filter(fn: (r) => r._measurement == "spo2")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")''')
    out: dict[int, dict[int, dict]] = {}
    for r in rows:
        out.setdefault(int(r["sensor_id"]), {})[r["_time"]] = {"value": r["value"], "count": r["count"]}
    return out


def test_ctl(dist, tmp_path) -> None:
    bad = [line for lines in BAD.values() for line in lines]
    fed = GOOD + bad + SPO2 + [LONG]
    append_lines(fed)
    exp = Expected(GOOD)
    wait_store(dist, exp.total, timeout=240)
    verify(exp)

    # --- the DLQ by reason: every bad line, exactly, with its code.
    want_codes = Counter({code: len(lines) for code, lines in BAD.items()}) + Counter(
        {"unknown_kind": len(SPO2), "too_long": 1})
    processes.wait_for(f"{sum(want_codes.values())} DLQ records", lambda: len(dlq_list()) >= sum(want_codes.values()),
                       60, interval=1)
    listed = dlq_list()
    check(Counter(r["code"] for r in listed) == want_codes,
          f"DLQ codes {Counter(r['code'] for r in listed)}, expected {want_codes}")
    for code, lines in BAD.items():
        got = sorted(r["raw"] for r in dlq_list("--reason", code))
        check(got == sorted(lines), f"--reason {code}: {got}, expected {sorted(lines)}")
    spo2 = dlq_list("--reason", "unknown_kind")
    check(sorted(r["raw"] for r in spo2) == sorted(SPO2), f"--reason unknown_kind: {[r['raw'] for r in spo2]}")
    check(all(r["stage"] == "aggregator" and r["source"].startswith(RAW_TOPIC + ":") and not r["truncated"]
              for r in spo2), f"unknown_kind records: {spo2[:2]}")
    check(len(dlq_list("--reason", "unknown_kind", "--limit", "5")) == 5, "--limit 5 did not give 5 records")
    check(dlq_list("--since", "2100-01-01T00:00:00Z") == [], "--since in the future listed records")
    check(len(dlq_list("--until", "2100-01-01T00:00:00Z")) == len(listed), "--until in the future left records out")
    one = ctl("dlq", "show", "--at", spo2[0]["at"])
    shown = [json.loads(line) for line in one.stdout.splitlines()]
    check(one.returncode == 0 and len(shown) == 1 and shown[0]["at"] == spo2[0]["at"]
          and shown[0]["record"]["code"] == "unknown_kind" and shown[0]["record"]["raw"] == spo2[0]["raw"],
          f"`dlq show --at {spo2[0]['at']}` exit {one.returncode}: {one.stdout[:400]} {one.stderr[-300:]}")
    table = ctl("dlq", "list").stdout.splitlines()
    check(table[-1] == f"{len(listed)} record(s): " + ", ".join(f"{c} {n}" for c, n in sorted(want_codes.items())),
          f"`dlq list` summary: {table[-1:]}")

    # --- status after the drain: all up, lag 0 everywhere, exact totals, idle rates 0.
    rc, hops = drained()
    check(rc == 0 and all(h["up"] for h in hops.values()), f"status exit {rc}: {hops}")
    check(hops["connect"]["lag"] == 0 and hops["connect"]["lag_unit"] == "bytes", f"connect: {hops['connect']}")
    agg, proc, upl = hops["aggregator"], hops["processor"], hops["uploader"]
    check(agg["records_in"] == len(fed) and agg["records_out"] == len(GOOD) and agg["dlq"] == len(fed) - len(GOOD),
          f"aggregator in/out/dlq {agg['records_in']}/{agg['records_out']}/{agg['dlq']}, "
          f"expected {len(fed)}/{len(GOOD)}/{len(fed) - len(GOOD)}")
    check(proc["records_in"] == len(GOOD) and proc["records_out"] == len(GOOD), f"processor: {proc}")
    check(upl["records_in"] == len(GOOD) and upl["records_out"] == len(GOOD), f"uploader: {upl}")
    rates = {h: (v["rate_in"], v["rate_out"]) for h, v in hops.items()}
    check(all(r in (0.0, None) for pair in rates.values() for r in pair) and rates["connect"][0] == 0.0,
          f"rates of an idle pipeline: {rates}")
    check(all(h["lag_exact"] for h in hops.values()), f"lag not exact: {hops}")
    naive = kafka.group_lags(dist)
    print(f"drained: lag 0 on every hop (offset lag with the commit markers: {naive})")

    # --- a stopped processor: down, exit 3, its lag exactly the records behind it.
    processes.stop("processor", timeout=60)
    out_before = counter("aggregator", "pulsewire_records_out_total")
    append_lines(LATE)
    processes.wait_for(f"{len(LATE)} more readings out of the aggregator",
                       lambda: counter("aggregator", "pulsewire_records_out_total") == out_before + len(LATE), 120,
                       interval=1)
    rc, hops = status()
    check(rc == 3, f"status with the processor stopped: exit {rc}, expected 3")
    check(not hops["processor"]["up"] and "/metrics" in (hops["processor"]["problem"] or ""),
          f"processor: {hops['processor']}")
    check(hops["processor"]["lag"] == len(LATE), f"processor lag {hops['processor']['lag']}, expected {len(LATE)}")
    check(hops["aggregator"]["lag"] == 0 and hops["uploader"]["lag"] == 0 and hops["connect"]["lag"] == 0,
          f"lags {[(h, v['lag']) for h, v in hops.items()]}")
    table = ctl("status")
    check(table.returncode == 3 and any(l.startswith("processor") and " DOWN " in l and f" {len(LATE)} " in l
                                        for l in table.stdout.splitlines()), f"status table:\n{table.stdout}")
    print("`pulsewire-ctl status` with the processor stopped:\n" + table.stdout)
    services.start_service("processor")
    exp = Expected(GOOD + LATE)
    wait_store(dist, exp.total, timeout=180)
    verify(exp)

    # --- a truncated line cannot be replayed: exit 2, nothing written.
    res = ctl("dlq", "replay", "--reason", "too_long")
    check(res.returncode == 2, f"replay of a truncated line: exit {res.returncode}, expected 2: {res.stderr}")
    check(f"keeps only the first 4096 of the {len(LONG)} bytes" in res.stderr and "nothing was written" in res.stderr,
          f"replay refusal message: {res.stderr}")
    check(kafka.read_topic(dist, REPLAYED_TOPIC) == [], "a refused replay wrote markers")

    # --- the operator adds the kind and restarts the aggregator, then replays the set.
    fixed = tmp_path / "pipeline.toml"
    fixed.write_text(settings.PIPELINE_FILE.read_text() + '\n[kinds.spo2]\nmin = 50\nmax = 100\nunit = "%"\n')
    processes.stop("aggregator", timeout=60)
    services.start_service("aggregator", extra_env={"PULSEWIRE_PIPELINE": str(fixed)})
    raw_before = len(kafka.read_topic(dist, RAW_TOPIC))
    res = ctl("dlq", "replay", "--reason", "unknown_kind")
    check(res.returncode == 0 and res.stdout.splitlines()[-1] == f"replayed {len(SPO2)} record(s); skipped 0 replayed before",
          f"replay: exit {res.returncode}: {res.stdout[-400:]} {res.stderr[-400:]}")
    want = {}
    for line in SPO2:
        s, _, t, v = line.split(",")
        want.setdefault(int(s), []).append(int(v))
    processes.wait_for(f"{len(SPO2)} spo2 points in the store",
                       lambda: sum(len(p) for p in spo2_points().values()) >= len(SPO2), 120, interval=1)

    def check_spo2() -> None:
        pts = spo2_points()
        check(sorted(pts) == sorted(want), f"spo2 sensors {sorted(pts)}, expected {sorted(want)}")
        for sensor, values in want.items():
            counts = sorted(p["count"] for p in pts[sensor].values())
            check(counts == list(range(1, len(values) + 1)), f"spo2 sensor {sensor}: counts {counts}, expected 1..6")
            check(sorted(p["value"] for p in pts[sensor].values()) == sorted(values),
                  f"spo2 sensor {sensor}: values {sorted(p['value'] for p in pts[sensor].values())}, CSV {sorted(values)}")
    check_spo2()
    raw_after = len(kafka.read_topic(dist, RAW_TOPIC))
    check(raw_after == raw_before + len(SPO2), f"raw topic {raw_before} -> {raw_after} records, expected +{len(SPO2)}")
    markers = [json.loads(v) for v in kafka.read_topic(dist, REPLAYED_TOPIC)]
    check(sorted(m["dlq"] for m in markers) == sorted(r["at"] for r in spo2) and
          all(m["to"] == RAW_TOPIC for m in markers), f"markers {markers}")

    # --- a second replay of the same records changes nothing.
    res = ctl("dlq", "replay", "--reason", "unknown_kind")
    check(res.returncode == 0 and res.stdout.splitlines()[-1] == f"replayed 0 record(s); skipped {len(SPO2)} replayed before",
          f"second replay: exit {res.returncode}: {res.stdout[-400:]} {res.stderr[-400:]}")
    raw_again, markers_again = len(kafka.read_topic(dist, RAW_TOPIC)), len(kafka.read_topic(dist, REPLAYED_TOPIC))
    check(raw_again == raw_after, f"the raw topic went from {raw_after} to {raw_again} records on the second replay")
    check(markers_again == len(SPO2), f"{markers_again} markers after the second replay, expected {len(SPO2)}")
    rc, hops = drained()
    check(hops["aggregator"]["records_in"] == len(SPO2), f"restarted aggregator read {hops['aggregator']['records_in']}")
    check_spo2()
    verify(exp)
    print(f"DLQ by reason {dict(want_codes)}; lag {len(LATE)} behind a stopped processor; "
          f"{len(SPO2)} spo2 lines replayed once (counts 1..6 per sensor), a second replay skipped all")
