"""The expected results of the end-to-end tests, from the CSV text alone: never with the
project's code (a bug shared by the test and the services would hide itself)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from pulsewire_stack.settings import PIPELINE

KINDS = {k: (v["min"], v["max"]) for k, v in PIPELINE["kinds"].items()}
AGGREGATOR = PIPELINE["services"]["aggregator"]

# Header rows, skipped (services/model/src/parse.rs has the same two).
HEADERS = [["sensor_id", "data_type", "timestamp", "value"], ["sensor_id", "kind", "timestamp", "value"]]


def check(cond: bool, msg: str) -> None:
    """An assertion with its message, for the helpers shared by the tests."""
    if not cond:
        raise AssertionError(msg)


def parse_time(text: str) -> int | None:
    """Event time in nanoseconds since the epoch (UTC), or None."""
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            dt = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            break
        except ValueError:
            continue
    else:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
    frac = text.rsplit(".", 1)[1] if "." in text.rsplit(":", 1)[-1] else ""
    frac = "".join(ch for ch in frac if ch.isdigit())
    seconds = int(dt.replace(microsecond=0).timestamp())
    return seconds * 10**9 + int((frac + "000000000")[:9])


class Expected:
    """Per-sensor readings in event-time order, and the statistics they must give."""

    def __init__(self, lines: list[str]):
        self.readings: dict[int, dict[int, int]] = {}  # sensor -> {time_ns: value}
        self.invalid: list[str] = []
        # Readings may be stamped up to this far ahead of the clock (a second of slack
        # for the time between writing the line and the aggregator reading it is not
        # needed: the tests stay far from the limit).
        latest = time.time_ns() + AGGREGATOR["max_clock_ahead_secs"] * 10**9
        for line in lines:
            if len(line.encode("utf-8", "surrogateescape")) > AGGREGATOR["max_line_bytes"]:
                self.invalid.append(line)
                continue
            f = line.rstrip("\r").split(",")
            if line.strip() == "" or [x.strip() for x in f] in HEADERS:
                continue
            ok = len(f) == 4 and f[0].isdigit() and int(f[0]) > 0 and f[1] in KINDS
            t = parse_time(f[2]) if ok else None
            ok = ok and t is not None and f[3].lstrip("-").isdigit() and len(f[3]) < 19
            ok = ok and KINDS[f[1]][0] <= int(f[3]) <= KINDS[f[1]][1] and t <= latest
            if not ok:
                self.invalid.append(line)
                continue
            sensor = int(f[0])
            self.readings.setdefault(sensor, {})
            if t in self.readings[sensor]:
                raise AssertionError(f"test data has two readings of sensor {sensor} at {f[2]}")
            self.readings[sensor][t] = int(f[3])
        self.total = sum(len(r) for r in self.readings.values())

    def summary(self, sensor: int) -> dict:
        """The statistics the sensor's readings must give, whatever their arrival order."""
        r = self.readings[sensor]
        last_t = max(r)
        return {"count": len(r), "min": min(r.values()), "max": max(r.values()), "sum": sum(r.values()),
                "last_value": r[last_t], "last_time": last_t}
