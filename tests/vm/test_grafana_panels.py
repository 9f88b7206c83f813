"""Tests of tests/vm/grafana_panels.py against data frames shaped as Grafana's
/api/ds/query returns them, for a dashboard like the provisioned one."""

import json
from pathlib import Path

import pytest

from dashboards import csv_readings, window_ends
from grafana_panels import check_dashboard

REPO = Path(__file__).resolve().parents[2]
BOARD = json.loads((REPO / "provisioning/grafana/dashboards/pulsewire-heartrate.json").read_text())
SEED = csv_readings((REPO / "provisioning/data/seed-readings.csv").read_text().splitlines())


def frame(**columns):
    types = {name: "time" if name == "_time" else "string" if name == "sensor_id" else "number"
             for name in columns}
    return {"schema": {"fields": [{"name": n, "type": types[n]} for n in columns]},
            "data": {"values": list(columns.values())}}


def fake_grafana(readings, stat_override=None):
    """Answers each panel query with the frames Grafana would give for `readings`."""
    def ask(query, interval_ms):
        values = [v for r in readings.values() for v in r.values()]
        times = [t for r in readings.values() for t in r]
        if "top(n: 1" in query:
            rows = sorted((s, len(r), min(r.values()), max(r.values()), sum(r.values()) / len(r))
                          for s, r in readings.items())
            cols = list(zip(*rows))
            return [frame(sensor_id=[str(s) for s in cols[0]], count=list(cols[1]), min=list(cols[2]),
                          max=list(cols[3]), mean=list(cols[4]))]
        if "aggregateWindow" in query:
            sensor = int(query.split('r.sensor_id == "')[1].split('"')[0])
            r = readings[sensor]
            ends = sorted(window_ends(r, interval_ms * 10**6).items())
            return [frame(_time=[e // 10**6 for e, _ in ends], value=[r[t] for _, t in ends],
                          mean=[0.0] * len(ends), min=[0] * len(ends), max=[0] * len(ends))]
        for marker, value in (("count()", len(readings)), ("max(column", max(times) // 10**6),
                              ("max()", max(values)), ("min()", min(values)),
                              ("mean()", sum(values) / len(values))):
            if marker in query:
                return [frame(_value=[stat_override.get(marker, value) if stat_override else value])]
        raise AssertionError(f"unexpected query {query}")
    return ask


def test_every_panel_is_checked_on_the_seed():
    # 5 stats, the table, and one series for each of the 5 sensors
    assert check_dashboard(fake_grafana(SEED), BOARD, SEED, "heart_rate", 1000) == 5 + 1 + 5


def test_a_wrong_number_is_named():
    with pytest.raises(AssertionError, match="stat 'Mean' shows 71"):
        check_dashboard(fake_grafana(SEED, {"mean()": 71.0}), BOARD, SEED, "heart_rate", 1000)
