"""A plain confluent-kafka Python loop doing Pulsewire's stage job (benchmark baseline only).

  python loop.py aggregate GROUP  : raw CSV lines -> JSON readings keyed by sensor id
  python loop.py process   GROUP  : JSON readings -> per-(sensor, kind) stats -> stats records

acks=all, idempotent producer, offsets auto-committed (at-least-once, like Faust's default).
"""

import json
import os
import sys
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer

BROKERS = os.environ.get("BENCH_KAFKA", "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096")
RAW = os.environ.get("BENCH_RAW_TOPIC", "bench.raw")
READINGS_IN = os.environ.get("BENCH_READINGS_IN", "bench.readings")
OUT_PREFIX = os.environ.get("BENCH_OUT_PREFIX", "bench.out.pyloop")
KINDS = {"heart_rate": (30, 250)}


def main() -> None:
    stage, group = sys.argv[1], sys.argv[2]
    consumer = Consumer({
        "bootstrap.servers": BROKERS, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": True, "auto.commit.interval.ms": 200,
    })
    producer = Producer({
        "bootstrap.servers": BROKERS, "acks": "all", "enable.idempotence": True,
        "linger.ms": 5, "queue.buffering.max.messages": 1000000,
    })
    consumer.subscribe([RAW if stage == "aggregate" else READINGS_IN])
    out = f"{OUT_PREFIX}.{'readings' if stage == 'aggregate' else 'stats'}"
    dlq = f"{OUT_PREFIX}.dlq"
    stats: dict = {}
    while True:
        msgs = consumer.consume(1000, 0.1)
        for m in msgs:
            if m.error():
                continue
            if stage == "aggregate":
                raw = m.value()
                try:
                    sensor, kind, ts, value = raw.decode().rstrip("\r\n").split(",")
                    sid, v = int(sensor), int(value)
                    lo, hi = KINDS[kind]
                    if not lo <= v <= hi or sid <= 0:
                        raise ValueError("range")
                    t = datetime.fromisoformat(ts).replace(tzinfo=timezone.utc)
                    payload = json.dumps({"sensor_id": sid, "kind": kind,
                                          "time": t.isoformat().replace("+00:00", "Z"),
                                          "value": v})
                    key = sensor
                except Exception:  # noqa: BLE001
                    producer.produce(dlq, raw)
                    continue
                while True:
                    try:
                        producer.produce(out, payload, key)
                        break
                    except BufferError:
                        producer.poll(0.01)
            else:
                r = json.loads(m.value())
                k = (r["sensor_id"], r["kind"])
                s = stats.get(k)
                if s is None:
                    s = stats[k] = {"count": 0, "sum": 0, "min": r["value"], "max": r["value"],
                                    "last_value": r["value"], "last_time": r["time"]}
                v = r["value"]
                s["count"] += 1
                s["sum"] += v
                if v < s["min"]:
                    s["min"] = v
                if v > s["max"]:
                    s["max"] = v
                if r["time"] >= s["last_time"]:
                    s["last_value"], s["last_time"] = v, r["time"]
                payload = json.dumps({"reading": r, "stats": s, "mean": s["sum"] / s["count"]})
                while True:
                    try:
                        producer.produce(out, payload, m.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
        producer.poll(0)


if __name__ == "__main__":
    main()
