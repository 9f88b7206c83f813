//! The Prometheus `/metrics` endpoint and the names of what every stage counts.
//!
//! Each stage is its own process with its own port (`metrics_port` in
//! `provisioning/pipeline.toml`), so names carry no stage label; the scraper's
//! `job`/`instance` says which stage it is. Names are constants here so the
//! dashboard, the tests and the code agree on one spelling.
//!
//! Every counter a stage can move is published at 0 when the stage starts
//! ([`zero`], [`zero_by`], [`zero_histograms`]), each label value included, so `rate()` and the
//! alerts see a series from the first scrape, not from the first bad line.
//!
//! Counters are only ever incremented after the work they count is durable
//! (a committed transaction, an acknowledged InfluxDB write), so on a restart
//! the totals of all incarnations add up to the records that really went
//! through, not the ones that were retried.

use std::net::SocketAddr;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Records consumed and processed, by source topic.
pub const RECORDS_IN: &str = "pulsewire_records_in_total";
/// Records produced (or points written), by destination.
pub const RECORDS_OUT: &str = "pulsewire_records_out_total";
/// Lines rejected by validation, by `reason` ([`pulsewire_model::parse::Rejection::reason_code`]).
pub const REJECTED: &str = "pulsewire_rejected_total";
/// Blank lines and header rows: skipped on purpose, not errors.
pub const SKIPPED: &str = "pulsewire_skipped_total";
/// Readings with an identity already counted.
pub const DUPLICATES: &str = "pulsewire_duplicates_total";
/// Records written to the dead-letter topic.
pub const DLQ: &str = "pulsewire_dlq_total";
/// Failures that were handled by retrying or aborting, by kind.
pub const ERRORS: &str = "pulsewire_errors_total";
/// Unix time (seconds) of the latest handled failure, by kind: with
/// [`ERRORS`], what `pulsewire-ctl status` shows as a stage's last error.
pub const LAST_ERROR_SECONDS: &str = "pulsewire_last_error_timestamp_seconds";
/// Transactions by outcome (`committed`, `aborted`).
pub const TRANSACTIONS: &str = "pulsewire_transactions_total";
/// Seconds to make one batch durable (transaction commit, InfluxDB write).
pub const BATCH_WRITE_SECONDS: &str = "pulsewire_batch_write_seconds";
/// Records per batch.
pub const BATCH_RECORDS: &str = "pulsewire_batch_records";
/// Seconds from a record's Kafka timestamp until its batch was durable:
/// observed once per batch for its oldest record.
pub const PROCESSING_SECONDS: &str = "pulsewire_processing_seconds";
/// Seconds spent restoring processor state from the changelog.
pub const RESTORE_SECONDS: &str = "pulsewire_state_restore_seconds";
/// (sensor, kind) states held by the processor.
pub const STATE_KEYS: &str = "pulsewire_state_keys";
/// Records of a partition the group has not consumed yet, by `group`,
/// `topic` and `partition` (see [`crate::runner::lag`]).
pub const CONSUMER_LAG: &str = "pulsewire_consumer_lag";
/// Lines written by the simulator.
pub const LINES_WRITTEN: &str = "pulsewire_lines_written_total";
/// Seconds a stage has been retrying, by what it waits `for`: `influxdb`
/// (the uploader's current batch) or `kafka` (sessions failing one after
/// the other); 0 while batches go through.
pub const WAITING_SECONDS: &str = "pulsewire_waiting_seconds";

const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const RECORD_BUCKETS: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0];

/// Starts the HTTP listener serving `/metrics` and installs the global
/// recorder. Binding happens here, so a busy or invalid address stops the
/// service at start with a message naming `--metrics-addr`.
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(BATCH_RECORDS.into()),
                RECORD_BUCKETS,
            )
        })
        .context("configuring the metrics exporter")?
        .install()
        .with_context(|| format!("cannot serve metrics on --metrics-addr {addr}"))?;
    describe();
    Ok(())
}

/// Counts one handled failure of `kind` and stamps it as the latest.
pub fn error(kind: &'static str) {
    metrics::counter!(ERRORS, "kind" => kind).increment(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    metrics::gauge!(LAST_ERROR_SECONDS, "kind" => kind).set(now);
}

/// Sets how long the stage has been waiting `on` (`kafka`, `influxdb`): the
/// seconds it has retried without progress, 0 while batches go through.
pub fn waiting(on: &'static str, seconds: f64) {
    metrics::gauge!(WAITING_SECONDS, "for" => on).set(seconds);
}

/// Publishes the counters `names` (no labels) at 0.
pub fn zero(names: &[&'static str]) {
    for name in names {
        metrics::counter!(*name).increment(0);
    }
}

/// Publishes the counter `name` at 0 for every `label` value of `values`.
pub fn zero_by(name: &'static str, label: &'static str, values: &[&str]) {
    for value in values {
        metrics::counter!(name, label => value.to_string()).increment(0);
    }
}

/// Publishes the histograms `names` with no observation yet (every bucket at
/// 0), so their rates have a first sample before the first batch.
pub fn zero_histograms(names: &[&'static str]) {
    for name in names {
        // Registering is enough: the exporter renders every registered histogram.
        let _ = metrics::histogram!(*name);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        RECORDS_IN,
        "Records consumed and processed, by source topic."
    );
    describe_counter!(
        RECORDS_OUT,
        "Records produced or points written, by destination."
    );
    describe_counter!(REJECTED, "Lines rejected by validation, by reason.");
    describe_counter!(SKIPPED, "Blank lines and header rows skipped.");
    describe_counter!(DUPLICATES, "Readings whose identity was already counted.");
    describe_counter!(DLQ, "Records written to the dead-letter topic.");
    describe_counter!(ERRORS, "Handled failures (retried or aborted), by kind.");
    describe_gauge!(
        LAST_ERROR_SECONDS,
        Unit::Seconds,
        "Unix time of the latest handled failure, by kind."
    );
    describe_counter!(TRANSACTIONS, "Kafka transactions by outcome.");
    describe_histogram!(
        BATCH_WRITE_SECONDS,
        Unit::Seconds,
        "Time to make one batch durable."
    );
    describe_histogram!(BATCH_RECORDS, Unit::Count, "Records per batch.");
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "Age of a batch's oldest record when the batch became durable."
    );
    describe_histogram!(
        RESTORE_SECONDS,
        Unit::Seconds,
        "Time to restore state from the changelog."
    );
    describe_gauge!(STATE_KEYS, "(sensor, kind) states held by the processor.");
    describe_gauge!(
        CONSUMER_LAG,
        "Records of a partition not yet consumed by the group (last stable offset minus position)."
    );
    describe_counter!(LINES_WRITTEN, "Lines written by the simulator.");
    describe_gauge!(
        WAITING_SECONDS,
        Unit::Seconds,
        "How long the current batch has been retried, by what it waits for; 0 while flowing."
    );
}
