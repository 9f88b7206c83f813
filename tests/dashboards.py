"""What the panels of provisioning/grafana/dashboards/ must show for a dataset, computed from
the readings alone (never with the project's code), and how Grafana turns a panel's query
into the Flux it sends to InfluxDB.

Used by the local end-to-end suite (tests/local/e2e, queries straight to InfluxDB) and by
the NixOS VM test (tests/vm/appliance.nix includes this file; queries through Grafana's
/api/ds/query). Readings are {sensor_id: {event_time_ns: value}}.
"""

from datetime import datetime, timezone


def csv_readings(lines):
    """{sensor_id: {event_time_ns: value}} of well-formed `sensor,kind,time,value` lines
    with naive UTC times (what the test datasets hold)."""
    out = {}
    for line in lines:
        if not line.strip():
            continue
        sensor, _kind, stamp, value = line.split(",")
        whole, _, frac = stamp.partition(".")
        seconds = int(datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
        out.setdefault(int(sensor), {})[seconds * 10**9 + int((frac + "000000000")[:9])] = int(value)
    return out


def stat_panels(readings):
    """The fleet's stat panels, by title."""
    values = [v for r in readings.values() for v in r.values()]
    times = [t for r in readings.values() for t in r]
    return {
        "Sensors": len(readings),
        "Max": max(values),
        "Min": min(values),
        "Mean": sum(values) / len(values),
        "Latest sample": max(times) // 10**6,  # milliseconds since the epoch
    }


def table_rows(readings):
    """The per-sensor table: (sensor_id, count, min, max, mean) of each sensor's final
    statistics, ordered by sensor id."""
    return sorted(
        (sensor, len(r), min(r.values()), max(r.values()), sum(r.values()) / len(r))
        for sensor, r in readings.items()
    )


def window_ends(times, every_ns):
    """aggregateWindow(every: ..., fn: last): {window end: latest time in the window},
    windows aligned to the epoch (every_ns divides the range's bounds here)."""
    out = {}
    for t in times:
        end = (t // every_ns + 1) * every_ns
        out[end] = max(out.get(end, t), t)
    return out


def rfc3339nano(ns):
    """Go's time.RFC3339Nano in UTC: fraction without trailing zeros, none when whole."""
    base = datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns % 10**9:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def go_duration(ms):
    """Go's time.Duration.String() of a whole number of milliseconds."""
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "")
    return (f"{h}h{m}m" if h else f"{m}m" if m else "") + f"{sec}s"


def grafana_flux(query, start_ns, stop_ns, interval_ms, bucket, org, variables):
    """A panel's query as Grafana sends it to InfluxDB. Its frontend substitutes the
    dashboard's template variables (`${name}`, one value each, as in a repeated panel);
    its backend the Flux macros (grafana/grafana, pkg/tsdb/influxdb/flux/macros.go):
    v.timeRangeStart/Stop become RFC 3339 times, v.windowPeriod a Go duration, and
    v.defaultBucket/v.organization the datasource's quoted bucket and org."""
    for name, value in variables.items():
        query = query.replace("${" + name + "}", value).replace("$" + name, value)
    macros = {
        "v.timeRangeStart": rfc3339nano(start_ns),
        "v.timeRangeStop": rfc3339nano(stop_ns),
        "v.windowPeriod": go_duration(interval_ms),
        "v.defaultBucket": f'"{bucket}"',
        "v.organization": f'"{org}"',
    }
    for macro, value in macros.items():
        query = query.replace(macro, value)
    return query
