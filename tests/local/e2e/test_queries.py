"""The dashboards' numbers: every panel query as Grafana sends it, and the batch layer's
rollups and the history dashboard that reads them, against the CSV's numbers."""

from __future__ import annotations

import json
import math
import random

import dashboards
import pytest

from expected import Expected, check
from harness import (ALL_TIME, DB, MEASUREMENT, P, append_lines, file_lines, simulator, store_progress, verify,
                     wait_simulator, wait_store)
from pulsewire_stack import services, settings

pytestmark = pytest.mark.usefixtures("fresh_stack")


DASHBOARDS = settings.REPO / "provisioning" / "grafana" / "dashboards"


def test_dashboard(dist) -> None:
    """Every query of provisioning/grafana/dashboards/*.json but the history one (see
    case_rollups), run with Grafana's read
    token over a range holding a simulator dataset, gives the numbers computed from the
    CSV: sensors, max, min, mean, latest sample, the per-sensor table, one series per
    repeated sensor panel."""
    simulator(["--seed", "20261129", "--sensors", "6", "--count", "1800", "--start-time", "2026-03-01 08:00:00",
               "--fast"])
    wait_simulator()
    exp = Expected(file_lines())
    wait_store(dist, exp.total, timeout=300)
    stored = verify(exp)["points"]  # every point exact: the panels must show these
    token = services.read_token_file()
    times = [t for r in exp.readings.values() for t in r]
    minute = 60 * 10**9
    start = min(times) // minute * minute
    stop = (max(times) // minute + 60) * minute
    interval_ms = 10_000
    want = dashboards.stat_panels(exp.readings)
    # The history dashboard reads the rollups: the batch-layer case runs its queries.
    # The pipeline dashboard reads Prometheus: test_monitoring runs its queries.
    files = [f for f in sorted(DASHBOARDS.glob("*.json"))
             if f.name not in ("pulsewire-history.json", "pulsewire-pipeline.json")]
    check(files, f"no dashboards in {DASHBOARDS}")
    ran = 0
    for path in files:
        board = json.loads(path.read_text())
        variables = {v["name"]: v for v in board["templating"]["list"]}
        kind = "heart_rate"

        def run(query: str, sensor: str | None = None) -> list[dict]:
            nonlocal ran
            vals = {"kind": kind} | ({"sensor": sensor} if sensor is not None else {})
            flux = dashboards.grafana_flux(query, start, stop, interval_ms, DB().bucket, DB().org, vals)
            rows = DB().query(flux, token)
            check(rows, f"{path.name}: a query returned nothing:\n{flux}")
            ran += 1
            return rows

        kinds = {r["_value"] for r in run(variables["kind"]["query"])}
        check(kinds == {kind}, f"{path.name}: variable kind lists {kinds}")
        sensors = sorted(int(r["_value"]) for r in run(variables["sensor"]["query"]))
        check(sensors == sorted(exp.readings), f"{path.name}: variable sensor lists {sensors}")
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            query = panel["targets"][0]["query"]
            title = panel["title"]
            if panel["type"] == "stat":
                rows = run(query)
                check(len(rows) == 1 and rows[0]["_value"] == want[title],
                      f"{path.name}: stat {title!r} shows {[r.get('_value') for r in rows]}, the CSV gives {want[title]!r}")
            elif panel["type"] == "table":
                got = [(int(r["sensor_id"]), r["count"], r["min"], r["max"], r["mean"]) for r in run(query)]
                table = dashboards.table_rows(exp.readings)
                # The final statistics of each sensor: its point with the highest count.
                check(sorted(got) == table, f"{path.name}: table {title!r} rows {got}, the CSV gives {table}")
            elif panel.get("repeat") == "sensor":
                for sensor in sorted(exp.readings):
                    rows = run(query, str(sensor))
                    # Per window the point with the latest time, stamped with the window's end.
                    windows = dashboards.window_ends(stored[sensor], interval_ms * 10**6)
                    series = [(end, stored[sensor][t]) for end, t in sorted(windows.items())]
                    wanted = [(end, p["value"], p["mean"], p["min"], p["max"]) for end, p in series]
                    got = sorted((r["_time"], r["value"], r["mean"], r["min"], r["max"]) for r in rows)
                    check(got == wanted, f"{path.name}: panel {title!r} for sensor {sensor}: {got[:2]}..., "
                                         f"expected {wanted[:2]}... ({len(got)} vs {len(wanted)} windows)")
            else:
                raise AssertionError(f"{path.name}: panel {title!r} of type {panel['type']} has no check here")
    print((f"{ran} queries of {len(files)} dashboard(s) over {exp.total} readings of {len(exp.readings)} sensors: "
            f"max {want['Max']}, min {want['Min']}, mean {want['Mean']!r}, table and per-sensor series exact"))


ROLLUPS = P["influxdb"]["rollups"]


WINDOW_NS = {"1m": 60 * 10**9, "1h": 3600 * 10**9, "1d": 86400 * 10**9}


ROLLUP_FIELDS = ("count", "sum", "min", "max", "mean", "p05", "p50", "p95")


def nearest_rank(values: list[int], q: float) -> int:
    """The percentile the tasks compute (quantile, method "exact_selector"): the smallest
    value v such that at least q of the values are <= v."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def rollups_from_csv(readings: dict[int, dict[int, int]], window: str) -> dict[tuple[int, int], dict]:
    """{(sensor, window start ns): {field: value}} computed from the readings alone."""
    width = WINDOW_NS[window]
    groups: dict[tuple[int, int], list[int]] = {}
    for sensor, r in readings.items():
        for t, v in r.items():
            groups.setdefault((sensor, t // width * width), []).append(v)
    return {
        key: {"count": len(vs), "sum": sum(vs), "min": min(vs), "max": max(vs), "mean": sum(vs) / len(vs),
              "p05": nearest_rank(vs, 0.05), "p50": nearest_rank(vs, 0.5), "p95": nearest_rank(vs, 0.95)}
        for key, vs in groups.items()
    }


def stored_rollups(window: str) -> dict[tuple[int, int], dict]:
    rows = DB().query(f'''
        from(bucket: "{ROLLUPS['bucket']}") |> {ALL_TIME}
          |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r.window == "{window}")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")''')
    return {(int(r["sensor_id"]), r["_time"]): {f: r.get(f) for f in ROLLUP_FIELDS} for r in rows}


def run_rollups(first_ns: int, last_ns: int) -> int:
    """Runs every rollup task as the scheduler would have over the data's time span: at
    intervals no longer than the lateness (each run covers the trailing lateness), up
    to the end of the last window. Returns how many runs."""
    lateness = {"h": 3600, "m": 60, "s": 1}[ROLLUPS["lateness"][-1]] * int(ROLLUPS["lateness"][:-1]) * 10**9
    runs = 0
    for window in ROLLUPS["windows"]:
        width = WINDOW_NS[window]
        step = max(width, lateness // width * width)
        t = first_ns // width * width + step
        while True:
            DB().run_task(f"pulsewire-rollup-{window}", dashboards.rfc3339nano(t))
            runs += 1
            if t > last_ns:
                break
            t += step
    return runs


def test_rollups(dist) -> None:
    """3.5 hours of readings from 4 sensors; the rollup tasks run on demand (through the
    API, as if scheduled over that span); then late readings arrive for windows already
    rolled up, the tasks run again, and every rollup point (per minute, hour and day:
    count, sum, min, max, mean exactly; percentiles by nearest rank) equals the CSV's.
    Then the raw points older than an hour are deleted and the history dashboard's
    queries still give the right numbers, from the rollups."""
    rng = random.Random(20261129)
    t0 = 1772352000 * 10**9  # 2026-03-01T08:00:00Z
    span = 210 * 60 * 10**9
    readings = {s: {t0 + i * 30 * 10**9 + s * 10**6: rng.randint(45, 180) for i in range(span // (30 * 10**9))}
                for s in (1, 2, 3, 4)}
    lines = {(s, t): f"{s},heart_rate,{dashboards.rfc3339nano(t).replace('T', ' ').rstrip('Z')},{v}"
             for s, r in readings.items() for t, v in r.items()}
    late = {k for i, k in enumerate(sorted(lines)) if i % 23 == 5}  # spread over every hour and sensor
    first, last = t0, max(t for r in readings.values() for t in r)

    on_time = [lines[k] for k in sorted(lines, key=lambda k: (k[1], k[0])) if k not in late]
    append_lines(on_time)
    wait_store(dist, len(on_time), timeout=300)
    runs = run_rollups(first, last)
    partial = {s: {t: v for t, v in r.items() if (s, t) not in late} for s, r in readings.items()}
    for window in ROLLUPS["windows"]:
        check(stored_rollups(window) == rollups_from_csv(partial, window),
              f"{window} rollups before the late readings differ from the CSV's")
    stale = sum(stored_rollups(w) != rollups_from_csv(readings, w) for w in ROLLUPS["windows"])
    check(stale == len(ROLLUPS["windows"]), "the late readings would change no rollup: the case proves nothing")

    append_lines([lines[k] for k in sorted(late)])
    wait_store(dist, len(lines), timeout=300)
    runs += run_rollups(first, last)
    points_checked = 0
    for window in ROLLUPS["windows"]:
        got, want = stored_rollups(window), rollups_from_csv(readings, window)
        for key in sorted(set(got) | set(want)):
            check(got.get(key) == want.get(key),
                  f"{window} rollup of sensor {key[0]} at {dashboards.rfc3339nano(key[1])}: "
                  f"store {got.get(key)}, the CSV gives {want.get(key)}")
        points_checked += len(want)

    # The history dashboard over the whole span (1m rollups) and over its last half hour
    # (raw points), with Grafana's read token, as Grafana sends the queries.
    board = json.loads((DASHBOARDS / "pulsewire-history.json").read_text())
    token = services.read_token_file()

    def panels(start: int, stop: int) -> dict[str, list[dict]]:
        out = {}
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            for sensor in ([None] if "repeat" not in panel else sorted(readings)):
                vals = {"kind": MEASUREMENT} | ({"sensor": str(sensor)} if sensor else {})
                flux = dashboards.grafana_flux(panel["targets"][0]["query"], start, stop, 60_000,
                                               DB().bucket, DB().org, vals)
                rows = DB().query(flux, token)
                check(rows, f"history panel {panel['title']!r} ({sensor}) returned nothing:\n{flux}")
                out[f"{panel['id']}/{sensor}"] = rows
        return out

    def check_history(start: int, stop: int, raw: bool) -> None:
        inside = {s: {t: v for t, v in r.items() if start <= t < stop} for s, r in readings.items()}
        got = panels(start, stop)
        fleet = sorted((int(r["sensor_id"]), r["readings"], r["min"], r["max"], r["mean"]) for r in got["2/None"])
        check(fleet == dashboards.table_rows(inside), f"history fleet overview {fleet}, the CSV gives {dashboards.table_rows(inside)}")
        minute = rollups_from_csv(inside, "1m")
        for sensor in sorted(readings):
            trend = sorted((r["_time"],) + ((r["value"],) if raw else (r["mean"], r["min"], r["max"]))
                           for r in got[f"4/{sensor}"])
            want = (sorted(inside[sensor].items()) if raw else
                    sorted((t, m["mean"], m["min"], m["max"]) for (s_, t), m in minute.items() if s_ == sensor))
            check(trend == [tuple(w) for w in want], f"history trend of sensor {sensor}: {trend[:2]}..., expected {want[:2]}...")
            pct = sorted((r["_time"], r["p05"], r["p50"], r["p95"]) for r in got[f"5/{sensor}"])
            want_pct = sorted((t, m["p05"], m["p50"], m["p95"]) for (s_, t), m in minute.items() if s_ == sensor)
            check(pct == want_pct, f"history percentiles of sensor {sensor}: {pct[:2]}..., expected {want_pct[:2]}...")

    stop = t0 + span
    check_history(t0, stop, raw=False)
    check_history(stop - 30 * 60 * 10**9, stop, raw=True)
    # The raw layer forgets: delete every raw point older than an hour before the end.
    cutoff = stop - 3600 * 10**9
    code, body = DB().request("POST", f"/api/v2/delete?org={DB().org}&bucket={DB().bucket}", DB().admin_token_file,
                              body={"start": "1970-01-01T00:00:00Z", "stop": dashboards.rfc3339nano(cutoff),
                                    "predicate": f'_measurement="{MEASUREMENT}"'})
    check(code == 204, f"deleting raw points answered {code}: {body[:200]!r}")
    check(store_progress() == sum(1 for r in readings.values() for t in r if t >= cutoff),
          f"raw points after the delete: {store_progress()}")
    check_history(t0, stop, raw=False)
    print((f"{len(lines)} readings ({len(late)} late) over 3.5 h; {runs} task runs; {points_checked} rollup points "
            f"(1m/1h/1d) exact, stale before the late data's rerun; history dashboard exact from rollups and raw, "
            f"and from rollups after the raw points older than 1 h were deleted"))
