//! `status`: one row per hop of the pipeline, in the order a reading takes
//! them. Connect (readings file -> raw topic) is up when its connector and
//! task run; its lag is the bytes of the file it has not read yet. Each
//! stage is up when every instance's `/metrics` answers; its rates come from
//! two samples of its counters `--interval-ms` apart, its lag is its group's
//! exact lag on its input topic ([`crate::lag`]), its last error the latest
//! `pulsewire_last_error_timestamp_seconds` with its kind and count.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::connect::Connect;
use crate::http::Http;
use crate::lag;
use crate::scrape::Totals;
use crate::table::Table;
use crate::targets::{Targets, STAGES};
use crate::Exit;

/// One hop's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hop {
    pub hop: String,
    pub up: bool,
    /// Why it is down or degraded, when it is.
    pub problem: Option<String>,
    /// What it reads (a file or a topic).
    pub input: String,
    /// Per second over the sample interval; Connect's is bytes of the file.
    pub rate_in: Option<f64>,
    pub rate_out: Option<f64>,
    /// Totals since the stage started (summed over its instances).
    pub records_in: Option<f64>,
    pub records_out: Option<f64>,
    pub dlq: Option<f64>,
    pub lag: Option<u64>,
    /// `records`, or `bytes` for Connect.
    pub lag_unit: &'static str,
    /// False when the lag is only the offset bound (see [`crate::lag`]).
    pub lag_exact: bool,
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    pub kind: String,
    /// RFC 3339.
    pub time: String,
    /// Failures of this kind since the stage started.
    pub count: f64,
}

/// `status`.
pub fn run(targets: &Targets, args: &StatusArgs) -> anyhow::Result<Exit> {
    let hops = gather(targets, Duration::from_millis(args.interval_ms))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"hops": hops}))?
        );
    } else {
        print!("{}", render(&hops));
    }
    Ok(if hops.iter().all(|h| h.up) {
        Exit::Ok
    } else {
        Exit::Down
    })
}

/// One sample of every stage's counters: per stage, the totals, or the
/// first instance that did not answer.
fn sample(http: &Http, targets: &Targets) -> Vec<Result<Totals, String>> {
    STAGES
        .iter()
        .map(|stage| {
            let mut sum = Totals::default();
            for addr in &targets.metrics[*stage] {
                let url = format!("http://{addr}/metrics");
                let totals = http
                    .get(&url, None)
                    .and_then(|text| Totals::parse(&text))
                    // The root cause (`Connection refused`), not reqwest's chain.
                    .map_err(|err| format!("{addr}: {}", err.root_cause()))?;
                sum.add(&totals);
            }
            Ok(sum)
        })
        .collect()
}

fn gather(targets: &Targets, interval: Duration) -> anyhow::Result<Vec<Hop>> {
    let http = Http::new()?;
    let connect = targets
        .connect
        .as_ref()
        .map(|t| Connect::new(&http, t, targets.connector()));
    let position = || match &connect {
        Some(Ok(c)) => c.position().ok().flatten(),
        _ => None,
    };
    let (p1, first, t1) = (position(), sample(&http, targets), Instant::now());
    std::thread::sleep(interval);
    let (p2, second, t2) = (position(), sample(&http, targets), Instant::now());
    let secs = (t2 - t1).as_secs_f64();

    let mut hops = vec![connect_hop(targets, &connect, p1, p2, secs)];
    for (i, stage) in STAGES.iter().enumerate() {
        let (group, topic) = targets.stage_input(stage);
        let mut hop = Hop {
            hop: stage.to_string(),
            input: topic.to_owned(),
            lag_unit: "records",
            ..Hop::default()
        };
        match (&first[i], &second[i]) {
            (Ok(a), Ok(b)) => {
                hop.up = true;
                hop.rate_in = Some(rate(a.records_in, b.records_in, secs));
                hop.rate_out = Some(rate(a.records_out, b.records_out, secs));
                hop.records_in = Some(b.records_in);
                hop.records_out = Some(b.records_out);
                hop.dlq = Some(b.dlq);
                hop.last_error = b.latest_error().map(|(kind, t, count)| LastError {
                    kind: kind.to_owned(),
                    time: DateTime::from_timestamp_millis((t * 1000.0) as i64)
                        .map_or(t.to_string(), |t| {
                            t.to_rfc3339_opts(SecondsFormat::Secs, true)
                        }),
                    count,
                });
            }
            (Err(err), _) | (_, Err(err)) => hop.problem = Some(format!("/metrics: {err}")),
        }
        match lag::group_lag(&targets.bootstrap_servers, group, topic) {
            Ok(lag) => {
                hop.lag = Some(lag.records);
                hop.lag_exact = lag.exact;
            }
            Err(err) => {
                let problem = format!("lag of group {group}: {err:#}");
                hop.problem = Some(match hop.problem.take() {
                    Some(p) => format!("{p}; {problem}"),
                    None => problem,
                });
            }
        }
        hops.push(hop);
    }
    Ok(hops)
}

fn rate(before: f64, after: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        ((after - before) / secs).max(0.0)
    } else {
        0.0
    }
}

fn connect_hop(
    targets: &Targets,
    connect: &Option<anyhow::Result<Connect>>,
    p1: Option<u64>,
    p2: Option<u64>,
    secs: f64,
) -> Hop {
    let mut hop = Hop {
        hop: "connect".into(),
        input: targets.readings_file.display().to_string(),
        lag_unit: "bytes",
        lag_exact: true,
        ..Hop::default()
    };
    let client = match connect {
        None => {
            hop.problem = Some("no Connect REST target in the targets file".into());
            return hop;
        }
        Some(Err(err)) => {
            hop.problem = Some(format!("{err:#}"));
            return hop;
        }
        Some(Ok(client)) => client,
    };
    match client.status() {
        Ok(status) => {
            hop.up = status.running();
            hop.problem = status.problem();
        }
        Err(err) => hop.problem = Some(format!("{err:#}")),
    }
    if let (Some(a), Some(b)) = (p1, p2) {
        hop.rate_in = Some(rate(a as f64, b as f64, secs));
    }
    // The file may be unreadable to this user; then the lag is unknown.
    if let Ok(meta) = std::fs::metadata(&targets.readings_file) {
        hop.lag = Some(meta.len().saturating_sub(p2.unwrap_or(0)));
    }
    hop
}

/// The table `status` prints.
pub fn render(hops: &[Hop]) -> String {
    let mut table = Table::new(["HOP", "UP", "IN/S", "OUT/S", "LAG", "LAST ERROR"]);
    let num = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    for h in hops {
        let lag = match h.lag {
            None => "-".into(),
            Some(n) => format!(
                "{}{n}{}",
                if h.lag_exact { "" } else { "<=" },
                if h.lag_unit == "bytes" { " B" } else { "" }
            ),
        };
        let error = match (&h.last_error, &h.problem) {
            (_, Some(problem)) => problem.clone(),
            (Some(e), None) => format!("{} at {} ({} in all)", e.kind, e.time, e.count),
            (None, None) => "-".into(),
        };
        table.row([
            h.hop.clone(),
            if h.up { "up" } else { "DOWN" }.into(),
            num(h.rate_in),
            num(h.rate_out),
            lag,
            error,
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_down_hops_and_their_problem() {
        let hops = vec![
            Hop {
                hop: "connect".into(),
                up: true,
                rate_in: Some(450.0),
                lag: Some(0),
                lag_unit: "bytes",
                lag_exact: true,
                ..Hop::default()
            },
            Hop {
                hop: "processor".into(),
                up: false,
                problem: Some("/metrics: 127.0.0.1:9302: connection refused".into()),
                lag: Some(12),
                lag_unit: "records",
                lag_exact: true,
                ..Hop::default()
            },
            Hop {
                hop: "uploader".into(),
                up: true,
                rate_in: Some(0.0),
                rate_out: Some(0.0),
                lag: Some(2_000_000),
                lag_unit: "records",
                lag_exact: false,
                last_error: Some(LastError {
                    kind: "influx_write".into(),
                    time: "2026-12-07T09:00:00Z".into(),
                    count: 3.0,
                }),
                ..Hop::default()
            },
        ];
        assert_eq!(
            render(&hops),
            "\
HOP        UP    IN/S   OUT/S  LAG        LAST ERROR
connect    up    450.0  -      0 B        -
processor  DOWN  -      -      12         /metrics: 127.0.0.1:9302: connection refused
uploader   up    0.0    0.0    <=2000000  influx_write at 2026-12-07T09:00:00Z (3 in all)
"
        );
    }

    #[test]
    fn rates_never_go_negative_across_a_restart() {
        assert_eq!(rate(100.0, 150.0, 0.5), 100.0);
        assert_eq!(rate(100.0, 20.0, 1.0), 0.0);
    }
}
