"""The dashboard's numbers through Grafana itself, for the VM test (tests/vm/appliance.nix):
every panel query goes through Grafana's /api/ds/query with the provisioned datasource and
must give what the readings give (tests/dashboards.py).

`ask(query, interval_ms)` sends one query (template variables already substituted, the
Flux macros left to Grafana) for the dashboard's time range and returns the data frames
of refId A, as Grafana's JSON has them.
"""

from dashboards import stat_panels, table_rows, window_ends


def frame_columns(frames):
    """Each frame as {field name: list of values}."""
    out = []
    for frame in frames:
        names = [f["name"] for f in frame["schema"]["fields"]]
        out.append(dict(zip(names, frame["data"]["values"])))
    return out


def single_number(frames):
    """The one number a stat panel shows: the only numeric field of the only row."""
    numbers = [
        values
        for frame in frames
        for field, values in zip(frame["schema"]["fields"], frame["data"]["values"])
        if field["type"] == "number"
    ]
    assert len(numbers) == 1 and len(numbers[0]) == 1, f"a stat query gave {numbers}"
    return numbers[0][0]


def check_dashboard(ask, board, readings, kind, interval_ms):
    """Raises AssertionError naming the first panel whose numbers differ; returns how many
    queries ran."""
    stats = stat_panels(readings)
    ran = 0
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        query = panel["targets"][0]["query"].replace("${kind}", kind)
        title = panel["title"]
        if panel["type"] == "stat":
            got = single_number(ask(query, interval_ms))
            assert got == stats[title], f"stat {title!r} shows {got!r}, the readings give {stats[title]!r}"
            ran += 1
        elif panel["type"] == "table":
            cols = frame_columns(ask(query, interval_ms))
            assert len(cols) == 1, f"table {title!r}: {len(cols)} frames"
            c = cols[0]
            rows = sorted(zip(map(int, c["sensor_id"]), c["count"], c["min"], c["max"], c["mean"]))
            want = table_rows(readings)
            assert rows == want, f"table {title!r} rows {rows}, the readings give {want}"
            ran += 1
        elif panel.get("repeat") == "sensor":
            for sensor, r in sorted(readings.items()):
                cols = frame_columns(ask(query.replace("${sensor}", str(sensor)), interval_ms))
                assert len(cols) == 1, f"panel {title!r} for sensor {sensor}: {len(cols)} series, want one"
                c = cols[0]
                got = sorted(zip(c["_time"], c["value"]))
                every = interval_ms * 10**6
                want = sorted((end // 10**6, r[t]) for end, t in window_ends(r, every).items())
                assert got == want, f"panel {title!r} for sensor {sensor}: {got}, the readings give {want}"
                ran += 1
        else:
            raise AssertionError(f"panel {title!r} of type {panel['type']} has no check")
    return ran
