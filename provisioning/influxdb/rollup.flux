// Pulsewire rollup task (batch layer): per sensor and kind, per window of
// @EVERY@, the count, sum, min, max, mean and the 5th, 50th and 95th
// percentiles of the readings' values, written to the rollup bucket.
//
// Every run recomputes the complete windows of the trailing @LATENESS@ (the
// lateness the batch layer accepts), so a reading that arrives late corrects
// its window: the rollup point has the same series and time and overwrites
// the one written before. A window is written once it has ended.
//
// Percentiles: quantile(method: "exact_selector"), the nearest-rank
// definition: the smallest value v of the window such that at least q of its
// values are <= v.
//
// A template: nixos/lib/pulsewire.nix fills in the at-sign placeholders from
// provisioning/pipeline.toml ([influxdb] and [influxdb.rollups]).
import "date"

option task = {name: "@NAME@", every: @EVERY@}

start = date.truncate(t: date.sub(d: @LATENESS@, from: now()), unit: @EVERY@)
stop = date.truncate(t: now(), unit: @EVERY@)

values =
    from(bucket: "@RAW_BUCKET@")
        |> range(start: start, stop: stop)
        |> filter(fn: (r) => r._field == "value")

stat = (name, fn) =>
    values
        |> aggregateWindow(every: @EVERY@, fn: fn, timeSrc: "_start", createEmpty: false)
        |> set(key: "_field", value: name)

percentile = (q) =>
    (column, tables=<-) => tables |> quantile(q: q, method: "exact_selector", column: column)

union(
    tables: [
        stat(name: "count", fn: count),
        stat(name: "sum", fn: sum),
        stat(name: "min", fn: min),
        stat(name: "max", fn: max),
        stat(name: "mean", fn: mean),
        stat(name: "p05", fn: percentile(q: 0.05)),
        stat(name: "p50", fn: percentile(q: 0.5)),
        stat(name: "p95", fn: percentile(q: 0.95)),
    ],
)
    |> set(key: "window", value: "@EVERY@")
    |> to(bucket: "@ROLLUP_BUCKET@", org: "@ORG@")
