"""Summarises one `bench/run scale` (its own results directory): per sensor count, each stage's
drain rate, CPU per record and peak RSS (medians of the runs, with the range), then end-to-end
latency per offered rate. Absolute figures are this machine's."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import fmt, load, mmm, rate_active  # noqa: E402

RES = Path(sys.argv[1])


def main():
    for p in load("phases.jsonl", RES):
        print(f"- {p['phase']}: {p['seconds']} s, load {p['load_start']} → {p['load_end']}")
    rows = {}
    for d in load("drain.jsonl", RES):
        rows.setdefault((d["sensors"], d["system"]), []).append(d)
    print("\n| sensors | stage | records | runs | readings/s | CPU-s per million | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for (sensors, system), rs in sorted(rows.items()):
        print(f"| {sensors:,} | {system} | {rs[0]['messages']:,} | {len(rs)} | "
              f"{fmt(mmm([rate_active(r) for r in rs]))} | "
              f"{fmt(mmm([r['cpu_s_per_million'] for r in rs]), 2)} | "
              f"{fmt(mmm([r['peak_rss_mb'] for r in rs]), 1)} |")
    hops = load("e2e-hops.jsonl", RES)
    print("\n| offered/s | delivered | to the store p50 / p99 ms | produced to raw / readings / stats p50 ms "
          "| max lag agg / proc / upl | peak RSS MB agg / proc / upl |")
    print("|---|---|---|---|---|---|")
    for i, e in enumerate(load("e2e.jsonl", RES)):
        h = hops[i]["produced_to"] if i < len(hops) else {}
        hop = " / ".join(f"{h[t]['p50']:.0f}" if t in h else "n/a" for t in ("raw", "readings", "stats"))
        lag = " / ".join(str(v["max"]) for v in e["lag"].values())
        print(f"| {e['rate']:,} | {e['delivered']:,}/{e['offered']:,} | {e['recv_p50']} / {e['recv_p99']} "
              f"| {hop} | {lag} | {e['service_peak_rss_mb'].strip().replace(' ', ' / ')} |")


if __name__ == "__main__":
    main()
