"""Tests of tests/dashboards.py: Grafana's formatting of times and durations, and the
expected panel values on the seed dataset."""

import json
from pathlib import Path

import pytest

from dashboards import go_duration, grafana_flux, rfc3339nano, stat_panels, table_rows, window_ends

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ms,text", [
    (100, "100ms"), (1000, "1s"), (1500, "1.5s"), (10_000, "10s"), (60_000, "1m0s"),
    (61_250, "1m1.25s"), (3_600_000, "1h0m0s"), (90_061_001, "25h1m1.001s"),
])
def test_go_duration(ms, text):
    assert go_duration(ms) == text


def test_rfc3339nano_drops_trailing_zeros():
    assert rfc3339nano(1718805517074766000) == "2024-06-19T13:58:37.074766Z"
    assert rfc3339nano(1718805517000000000) == "2024-06-19T13:58:37Z"
    assert rfc3339nano(1718805517000000001) == "2024-06-19T13:58:37.000000001Z"


def test_grafana_flux_substitutes_variables_and_macros():
    board = json.loads((REPO / "provisioning/grafana/dashboards/pulsewire-heartrate.json").read_text())
    query = next(p for p in board["panels"] if p.get("repeat") == "sensor")["targets"][0]["query"]
    flux = grafana_flux(query, 1718805480 * 10**9, 1718809080 * 10**9, 1000, "heartrate", "pulsewire",
                        {"kind": "heart_rate", "sensor": "3"})
    assert "range(start: 2024-06-19T13:58:00Z, stop: 2024-06-19T14:58:00Z)" in flux
    assert 'from(bucket: "heartrate")' in flux
    assert 'r._measurement == "heart_rate" and r.sensor_id == "3"' in flux
    assert "aggregateWindow(every: 1s," in flux
    assert "$" not in flux and "v." not in flux


def test_expected_panels_of_two_sensors():
    readings = {1: {10**9: 80, 2 * 10**9: 61}, 2: {3 * 10**9 + 5: 70}}
    assert stat_panels(readings) == {"Sensors": 2, "Max": 80, "Min": 61, "Mean": 211 / 3, "Latest sample": 3000}
    assert table_rows(readings) == [(1, 2, 61, 80, 70.5), (2, 1, 70, 70, 70.0)]
    assert window_ends(readings[1], 10**9) == {2 * 10**9: 10**9, 3 * 10**9: 2 * 10**9}
