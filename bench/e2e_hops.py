"""Where the end-to-end latency goes: cumulative latency at each topic of one bench/e2e run.

Reads `kafka-console-consumer --property print.timestamp=true` dumps of the run's raw, readings
and stats topics (read_committed) and prints one JSON line: for each topic, percentiles (ms) of
the record's CreateTime minus the reading's event time (= its append time). A record's
CreateTime is when its producer (Connect, the aggregator, the processor) handed it to the client
library, so the difference between two topics is one stage: waiting for the upstream commit, the
fetch, and collecting the batch. Usage: e2e_hops.py WARMUP_START_S RAW.txt READINGS.txt STATS.txt
"""

import json
import sys
from datetime import datetime, timezone

from e2e_summary import pct


def event_ms(text):
    """Milliseconds since the epoch of a `YYYY-MM-DD HH:MM:SS.ffffff` or RFC 3339 UTC time."""
    text = text.replace("T", " ").rstrip("Z")
    whole, _, frac = text.partition(".")
    t = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    return t.timestamp() * 1000 + float("0." + (frac or "0")) * 1000


def event_of(value):
    if value.startswith("{"):
        record = json.loads(value)
        return event_ms(record.get("reading", record)["time"])
    return event_ms(value.split(",")[2])


def latencies(path, since_ms):
    out = []
    for line in open(path, encoding="utf-8"):
        stamp, _, value = line.rstrip("\n").partition("\t")
        if not stamp.startswith("CreateTime:"):
            continue
        event = event_of(value)
        if event >= since_ms:
            out.append(int(stamp[len("CreateTime:"):]) - event)
    return out


def main():
    since_ms = float(sys.argv[1]) * 1000
    hops = {}
    for name, path in zip(("raw", "readings", "stats"), sys.argv[2:5]):
        xs = latencies(path, since_ms)
        hops[name] = {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": pct(xs, 100)}
    print(json.dumps({"produced_to": hops}))


if __name__ == "__main__":
    main()
