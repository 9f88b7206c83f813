"""The seed's engine doing Pulsewire's job: a faust-streaming baseline (benchmark only).

Written the way Faust's documentation recommends: typed ``faust.Record`` models, one agent per
stage, the stream keyed by sensor id, and the per-sensor running statistics kept in a
``Table`` (backed by a changelog topic, so it is the engine's own fault-tolerant state).

Stages (BENCH_STAGE):
  aggregate  raw CSV line -> Reading, keyed by sensor id     (Pulsewire's aggregator)
  process    Reading -> Table[sensor] stats -> stats record  (Pulsewire's processor)
  both       the two agents chained in one worker

Run:  BENCH_STAGE=aggregate BENCH_APP_ID=bench-faust-agg-1 \
      bench/.venv/bin/python bench/faust/app.py worker -l warning
"""

import os
from datetime import datetime, timezone

import faust

STAGE = os.environ.get("BENCH_STAGE", "both")
APP_ID = os.environ.get("BENCH_APP_ID", "bench-faust")
BROKERS = os.environ.get(
    "BENCH_BROKERS", "kafka://127.0.0.1:9092;kafka://127.0.0.1:9094;kafka://127.0.0.1:9096"
)
RAW = os.environ.get("BENCH_RAW_TOPIC", "bench.raw")
READINGS_IN = os.environ.get("BENCH_READINGS_IN", "bench.readings")
READINGS_OUT = os.environ.get("BENCH_READINGS_OUT", "bench.out.faust.readings")
STATS_OUT = os.environ.get("BENCH_STATS_OUT", "bench.out.faust.stats")

app = faust.App(
    APP_ID,
    broker=BROKERS,
    store="memory://",
    topic_partitions=3,
    topic_replication_factor=3,
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    # Faust keeps its table/recovery bookkeeping here; keep it out of the work tree.
    datadir=os.environ.get("BENCH_FAUST_DATADIR", f"/tmp/bench-faust/{APP_ID}-data"),
)

KINDS = {"heart_rate": (30, 250)}


class Reading(faust.Record, serializer="json"):
    sensor_id: int
    kind: str
    time: str  # RFC 3339, UTC
    value: int


class StatsRecord(faust.Record, serializer="json"):
    reading: Reading
    count: int
    sum: int
    min: int
    max: int
    mean: float
    last_value: int
    last_time: str


def parse_line(raw: bytes) -> Reading:
    line = raw.decode("utf-8").rstrip("\r\n")
    if line.startswith('"'):  # JSON-encoded string from Connect's JsonConverter
        import json

        line = json.loads(line)
    sensor, kind, ts, value = line.split(",")
    sensor_id = int(sensor)
    lo, hi = KINDS[kind]
    v = int(value)
    if not lo <= v <= hi or sensor_id <= 0:
        raise ValueError("out of range")
    t = datetime.fromisoformat(ts).replace(tzinfo=timezone.utc)
    return Reading(sensor_id=sensor_id, kind=kind, time=t.isoformat().replace("+00:00", "Z"), value=v)


raw_topic = app.topic(RAW, value_type=bytes, value_serializer="raw")
dlq_topic = app.topic(f"{APP_ID}.dlq", value_type=bytes, value_serializer="raw")
readings_out = app.topic(READINGS_OUT, key_type=str, value_type=Reading)
readings_in = app.topic(
    READINGS_IN if STAGE == "process" else READINGS_OUT, key_type=str, value_type=Reading
)
stats_out = app.topic(STATS_OUT, key_type=str, value_type=StatsRecord)

# Per-sensor running statistics: a Faust Table, partitioned like the keyed readings topic.
stats_table = app.Table("sensor-stats", default=dict, partitions=3)


if STAGE in ("aggregate", "both"):

    @app.agent(raw_topic)
    async def aggregate(lines):
        async for raw in lines:
            try:
                reading = parse_line(raw)
            except Exception:  # noqa: BLE001 - a bad line goes to the DLQ, never crashes
                await dlq_topic.send(value=raw)
                continue
            await readings_out.send(key=str(reading.sensor_id), value=reading)


if STAGE in ("process", "both"):

    @app.agent(readings_in)
    async def process(readings):
        async for key, r in readings.items():
            k = f"{r.sensor_id}/{r.kind}"
            s = stats_table[k]
            if not s:
                s = {"count": 0, "sum": 0, "min": r.value, "max": r.value,
                     "last_value": r.value, "last_time": r.time}
            s["count"] += 1
            s["sum"] += r.value
            s["min"] = min(s["min"], r.value)
            s["max"] = max(s["max"], r.value)
            if r.time >= s["last_time"]:
                s["last_value"], s["last_time"] = r.value, r.time
            stats_table[k] = s
            await stats_out.send(
                key=key,
                value=StatsRecord(reading=r, mean=s["sum"] / s["count"], **s),
            )


if __name__ == "__main__":
    app.main()
