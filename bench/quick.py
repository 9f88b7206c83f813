"""Summarises one `bench/run quick` (its own results directory): the phases with the machine's
load, each system's drain, the ratios, and the closing line

  quick: aggregator/ceiling R1, processor/ceiling R2, pulsewire/faust R3, e2e p50 A ms p99 B ms, peak RSS M MB

Ratios are of medians from this run only. pulsewire/faust compares the two stages together: the
readings/s of aggregator and processor in series (1 / (1/a + 1/p)) over Faust's two agents the
same way; Faust drains a smaller backlog (FAUST_N) of the same generator.
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import load, rate_active  # noqa: E402

RES = Path(sys.argv[1])


def median(rows, key):
    xs = [key(r) for r in rows]
    return statistics.median(xs) if xs else None


def series(a, b):
    return 1 / (1 / a + 1 / b) if a and b else None


def main():
    phases = load("phases.jsonl", RES)
    print("| phase | seconds | load (1, 5, 15 min) at start → end |")
    print("|---|---|---|")
    for p in phases:
        print(f"| {p['phase']} | {p['seconds']} | {p['load_start']} → {p['load_end']} |")
    print(f"| total | {sum(p['seconds'] for p in phases)} | |")

    drains = load("drain.jsonl", RES)
    by = {}
    for d in drains:
        by.setdefault(d["system"], []).append(d)
    rate, rss = {}, []
    print("\n| system | records | runs | readings/s (median, this machine) | CPU-s per million | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for system, rows in by.items():
        rate[system] = median(rows, rate_active)
        if system in ("aggregator", "processor"):
            rss += [r["peak_rss_mb"] for r in rows]
        print(f"| {system} | {rows[0]['messages']:,} | {len(rows)} | {rate[system]:,.0f} | "
              f"{median(rows, lambda r: r['cpu_s_per_million']):.2f} | "
              f"{max(r['peak_rss_mb'] for r in rows):.1f} |")

    e2e = load("e2e.jsonl", RES)
    e = e2e[-1] if e2e else {}
    rss += [float(x) for x in e.get("service_peak_rss_mb", "").split()]

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "n/a"

    r1 = ratio(rate.get("aggregator"), rate.get("ceiling-raw"))
    r2 = ratio(rate.get("processor"), rate.get("ceiling-readings"))
    r3 = ratio(series(rate.get("aggregator"), rate.get("processor")),
               series(rate.get("faust-agg"), rate.get("faust-proc")))
    r4 = ratio(series(rate.get("aggregator"), rate.get("processor")),
               series(rate.get("pyloop-agg"), rate.get("pyloop-proc")))
    print(f"\npulsewire/python loop {r4} (the loop is at-least-once: no transactions, offsets "
          f"auto-committed)")
    if e:
        print(f"\ne2e at {e['rate']}/s for the measured {e['measured_points']:,} points: reached the store "
              f"p50 {e['recv_p50']} ms, p99 {e['recv_p99']} ms (this machine); delivered "
              f"{e['delivered']:,}/{e['offered']:,}")
    print(f"\nquick: aggregator/ceiling {r1}, processor/ceiling {r2}, pulsewire/faust {r3}, "
          f"e2e p50 {e.get('recv_p50', 'n/a')} ms p99 {e.get('recv_p99', 'n/a')} ms, "
          f"peak RSS {f'{max(rss):.1f}' if rss else 'n/a'} MB")


if __name__ == "__main__":
    main()
