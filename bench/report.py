"""Prints the benchmark summary (markdown) from bench/results/*.jsonl.

Every figure is the median of the runs with its min-max; ratios are of medians, with the
range from the least and most favourable pairing of runs.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

RES = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results")


def load(name, res=None):
    f = (res or RES) / name
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def rate_active(r):
    """Readings/s of one drain run, from its first commit until the group's lag is 0."""
    return r["messages"] / max(1e-9, r["wall_s"] - (r.get("first_commit_s") or 0.0))


def mmm(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def fmt(t, digits=0, unit=""):
    if t is None:
        return "—"
    med, lo, hi = t
    f = f"{{:,.{digits}f}}"
    return f"{f.format(med)}{unit} ({f.format(lo)}–{f.format(hi)})"


def main():
    drain = load("drain.jsonl")
    by = defaultdict(list)
    for d in drain:
        by[d["system"]].append(d)
    order = ["pt-plain-raw", "pt-txn-raw", "ceiling-raw", "aggregator", "aggregator-b20k", "pyloop-agg", "faust-agg",
             "pt-plain-readings", "pt-txn-readings", "ceiling-readings", "processor", "processor-b20k", "pyloop-proc", "faust-proc"]
    names = {
        "pt-plain-raw": "ceiling: rdkafka passthrough, idempotent (raw lines)",
        "pt-txn-raw": "ceiling: rdkafka passthrough, transactional 2000/100 ms (raw lines)",
        "ceiling-raw": "fair ceiling: the stages' runtime copying records, aggregator's batches (raw lines)",
        "ceiling-readings": "fair ceiling: the stages' runtime copying records, processor's batches (readings)",
        "aggregator": "pulsewire-aggregator (batch defaults of provisioning/pipeline.toml at svc_commit)",
        "aggregator-b20k": "pulsewire-aggregator --batch-size 20000 --batch-interval-ms 200",
        "processor-b20k": "pulsewire-processor --batch-size 20000 --batch-interval-ms 200",
        "pyloop-agg": "Python confluent-kafka loop, aggregate",
        "faust-agg": "Faust agent, aggregate",
        "pt-plain-readings": "ceiling: rdkafka passthrough, idempotent (readings)",
        "pt-txn-readings": "ceiling: rdkafka passthrough, transactional 2000/100 ms (readings)",
        "processor": "pulsewire-processor (batch defaults of provisioning/pipeline.toml at svc_commit)",
        "pyloop-proc": "Python confluent-kafka loop, stats",
        "faust-proc": "Faust agent + Table, stats",
    }
    print("### Drain throughput (backlog of N records, fresh consumer group)\n")
    print("| system | N | runs | **readings/s** (first commit → lag 0) | readings/s, whole drain incl. start-up "
          "| readings/s, 10→90 % | CPU-s per million | peak RSS MB | load avg (1 min) during runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in drain:
        r["rate_active"] = rate_active(r)
    med = {}
    for s in order + sorted(set(by) - set(order)):
        rows = by.get(s)
        if not rows:
            continue
        # Runs that overlapped another engineer's drains on the same brokers are marked
        # "contended"; use only clean runs when there are at least 3 of them.
        clean = [r for r in rows if not r.get("contended")]
        nrun = f"{len(rows)}" if len(clean) == len(rows) else f"{len(clean)} clean of {len(rows)}"
        if len(clean) >= 3:
            rows = clean
            nrun = f"{len(clean)}" + (f" (+{len(by[s]) - len(clean)} contended, left out)" if len(by[s]) > len(clean) else "")
        st = mmm([r["rate_active"] for r in rows])
        med[s] = st
        loads = [float(r["load_start"].split()[0]) for r in rows] + [float(r["load_end"].split()[0]) for r in rows]
        print(f"| {names.get(s, s)} | {rows[0]['messages']:,} | {nrun} | {fmt(st)} | "
              f"{fmt(mmm([r['rate_total'] for r in rows]))} | {fmt(mmm([r['rate_steady'] for r in rows]))} | "
              f"{fmt(mmm([r['cpu_s_per_million'] for r in rows]), 2)} | "
              f"{fmt(mmm([r['peak_rss_mb'] for r in rows]), 1)} | "
              f"{min(loads):.1f}–{max(loads):.1f} |")

    def ratio(a, b):
        if a not in med or b not in med:
            return "—"
        (ma, la, ha), (mb, lb, hb) = med[a], med[b]
        return f"{ma / mb:.2f}× ({la / hb:.2f}–{ha / lb:.2f})"

    print("\n### Ratios (of the median readings/s, first commit → lag 0; range = worst/best pairing of runs)\n")
    print("| ratio | value | target |")
    print("|---|---|---|")
    for a, b, target in [
        ("aggregator", "pt-plain-raw", "≥ 0.8×"), ("aggregator-b20k", "pt-plain-raw", "≥ 0.8×"),
        ("aggregator", "pt-txn-raw", "(same guarantees)"), ("aggregator", "ceiling-raw", "≥ 0.9×"),
        ("processor", "pt-plain-readings", "≥ 0.8×"), ("processor-b20k", "pt-plain-readings", "≥ 0.8×"),
        ("processor", "pt-txn-readings", "(same guarantees)"), ("processor", "ceiling-readings", "≥ 0.9×"),
        ("aggregator", "faust-agg", "≥ 20×"), ("aggregator-b20k", "faust-agg", "≥ 20×"),
        ("processor", "faust-proc", "≥ 20×"), ("processor-b20k", "faust-proc", "≥ 20×"),
        ("aggregator", "pyloop-agg", "—"), ("processor", "pyloop-proc", "—"),
    ]:
        print(f"| {a} / {names.get(b, b)} | {ratio(a, b)} | {target} |")

    upl = load("uploader.jsonl")
    if upl:
        print("\n### Uploader into the store (victoria-metrics, InfluxDB v2 write API)\n")
        print("| batch size | runs | points/s, steady | points/s, whole drain | CPU-s per million | peak RSS MB |")
        print("|---|---|---|---|---|---|")
        byb = defaultdict(list)
        for u in upl:
            byb[u["batch"]].append(u)
        for b in sorted(byb):
            rows = byb[b]
            clean = [r for r in rows if not r.get("contended")]
            nrun = f"{len(rows)}" + (f" ({len(rows) - len(clean)} contended)" if len(clean) < len(rows) else "")
            if len(clean) >= 3:
                rows, nrun = clean, f"{len(clean)}"
            print(f"| {b:,} | {nrun} | {fmt(mmm([r['rate_steady'] for r in rows]))} | "
                  f"{fmt(mmm([r['rate_total'] for r in rows]))} | "
                  f"{fmt(mmm([r['cpu_s_per_million'] for r in rows]), 2)} | "
                  f"{fmt(mmm([r['peak_rss_mb'] for r in rows]), 1)} |")

    e2e = load("e2e.jsonl")
    if e2e:
        print("\n### End to end (append to file → point at the store), latency in ms\n")
        print("| rate/s | sink | points measured | delivered/offered | at store p50 / p99 / p99.9 / max "
              "| acked p50 / p99 / p99.9 | readable p50 / p99 (n samples) | p50 first→last third "
              "| max lag agg/proc/upl | service RSS MB (agg proc upl) | load |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for e in e2e:
            lags = "/".join(str(v["max"]) for v in e["lag"].values())
            print(f"| {e['rate']:,} | {e['sink']} | {e.get('measured_points', 0):,} | "
                  f"{e['delivered']:,}/{e['offered']:,} | "
                  f"{e['recv_p50']} / {e['recv_p99']} / {e['recv_p999']} / {e['recv_max']} | "
                  f"{e['ack_p50']} / {e['ack_p99']} / {e['ack_p999']} | "
                  f"{e['visible_p50']} / {e['visible_p99']} ({e['visible_n']}) | "
                  f"{e['recv_p50_first_third']} → {e['recv_p50_last_third']} | {lags} | "
                  f"{e['service_peak_rss_mb']} | {e['load_end']} |")


if __name__ == "__main__":
    main()
