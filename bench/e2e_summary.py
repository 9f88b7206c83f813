"""Summarises one bench/e2e run as one JSON line (percentiles in ms, lag, delivery)."""

import json
import sys


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return round(xs[k], 1)


def main():
    proxy_f, lag_f, rate, t_start, warmup, offered, sink, rss, load = sys.argv[1:10]
    rate, t_start, warmup, offered = int(rate), float(t_start), float(warmup), int(offered)
    d = json.load(open(proxy_f))
    # Points whose event (= append) time falls in the warm-up are left out of the percentiles.
    lag = json.load(open(lag_f)) if open(lag_f).read().strip() else {}
    keep = [i for i, t in enumerate(d["event_s"]) if t >= t_start + warmup]
    keep.sort(key=lambda i: d["event_s"][i])
    recv_s = [d["recv_ms"][i] for i in keep]
    ack_s = [d["ack_ms"][i] for i in keep]
    third = max(1, len(recv_s) // 3)
    out = {
        "rate": rate, "sink": sink, "offered": offered, "delivered": d["points"],
        "measured_points": len(recv_s),
        "requests": d["requests"],
        "recv_p50": pct(recv_s, 50), "recv_p99": pct(recv_s, 99), "recv_p999": pct(recv_s, 99.9),
        "recv_max": round(max(recv_s), 1) if recv_s else None,
        "ack_p50": pct(ack_s, 50), "ack_p99": pct(ack_s, 99), "ack_p999": pct(ack_s, 99.9),
        "visible_n": len(d["visible_ms"]), "visible_p50": pct(d["visible_ms"], 50),
        "visible_p99": pct(d["visible_ms"], 99), "visible_max": round(max(d["visible_ms"]), 1) if d["visible_ms"] else None,
        # Bounded lag: the latency of the last third is not far above the first third's.
        "recv_p50_first_third": pct(recv_s[:third], 50), "recv_p50_last_third": pct(recv_s[-third:], 50),
        "lag": {k: {"max": v["max"], "last": v["last"]} for k, v in lag.items()},
        "service_peak_rss_mb": rss.strip(), "load_end": load,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
