//! One stage's `/metrics`, read into the few totals `status` shows. The text
//! format is parsed by the `prometheus-parse` crate; names are the stages'
//! own constants ([`pulsewire_runtime::metrics`]), so they cannot drift.

use std::collections::BTreeMap;

use anyhow::Context as _;
use prometheus_parse::{Scrape, Value};
use pulsewire_runtime::metrics as m;

/// A stage's totals at one moment (summed over label sets and instances).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub records_in: f64,
    pub records_out: f64,
    pub dlq: f64,
    /// Handled failures by kind.
    pub errors: BTreeMap<String, f64>,
    /// Unix time of the latest failure, by kind.
    pub last_error: BTreeMap<String, f64>,
}

impl Totals {
    /// The totals of one `/metrics` text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = Scrape::parse(lines).context("not the Prometheus text format")?;
        let mut totals = Self::default();
        for sample in &scrape.samples {
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => continue,
            };
            let kind = || sample.labels.get("kind").unwrap_or("").to_owned();
            match sample.metric.as_str() {
                m::RECORDS_IN => totals.records_in += value,
                m::RECORDS_OUT => totals.records_out += value,
                m::DLQ => totals.dlq += value,
                m::ERRORS => *totals.errors.entry(kind()).or_default() += value,
                m::LAST_ERROR_SECONDS => {
                    let latest = totals.last_error.entry(kind()).or_default();
                    *latest = latest.max(value);
                }
                _ => {}
            }
        }
        Ok(totals)
    }

    /// Adds another instance's totals.
    pub fn add(&mut self, other: &Self) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.dlq += other.dlq;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        for (kind, t) in &other.last_error {
            let latest = self.last_error.entry(kind.clone()).or_default();
            *latest = latest.max(*t);
        }
    }

    /// The latest failure: its kind, Unix time and how many of that kind.
    pub fn latest_error(&self) -> Option<(&str, f64, f64)> {
        self.last_error
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(kind, t)| {
                (
                    kind.as_str(),
                    *t,
                    self.errors.get(kind).copied().unwrap_or(0.0),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As metrics-exporter-prometheus renders them (one stage, two topics).
    const TEXT: &str = "\
# HELP pulsewire_records_in_total Records consumed and processed, by source topic.
# TYPE pulsewire_records_in_total counter
pulsewire_records_in_total{topic=\"heartrate.raw\"} 120
# TYPE pulsewire_records_out_total counter
pulsewire_records_out_total{topic=\"heartrate.readings\"} 100
pulsewire_records_out_total{topic=\"heartrate.dlq\"} 20
# TYPE pulsewire_dlq_total counter
pulsewire_dlq_total 20
# TYPE pulsewire_errors_total counter
pulsewire_errors_total{kind=\"transaction\"} 2
pulsewire_errors_total{kind=\"consume\"} 1
# TYPE pulsewire_last_error_timestamp_seconds gauge
pulsewire_last_error_timestamp_seconds{kind=\"transaction\"} 1765098000.5
pulsewire_last_error_timestamp_seconds{kind=\"consume\"} 1765097000
# TYPE pulsewire_batch_write_seconds histogram
pulsewire_batch_write_seconds_bucket{le=\"0.001\"} 0
pulsewire_batch_write_seconds_bucket{le=\"+Inf\"} 3
pulsewire_batch_write_seconds_sum 0.2
pulsewire_batch_write_seconds_count 3
";

    #[test]
    fn sums_label_sets_and_finds_the_latest_error() {
        let t = Totals::parse(TEXT).unwrap();
        assert_eq!((t.records_in, t.records_out, t.dlq), (120.0, 120.0, 20.0));
        assert_eq!(t.latest_error(), Some(("transaction", 1765098000.5, 2.0)));
        let mut two = t.clone();
        two.add(&t);
        assert_eq!((two.records_in, two.errors["consume"]), (240.0, 2.0));
        assert_eq!(two.latest_error(), Some(("transaction", 1765098000.5, 4.0)));
    }

    #[test]
    fn a_stage_without_failures_has_no_last_error() {
        let t = Totals::parse(
            "# TYPE pulsewire_records_in_total counter\npulsewire_records_in_total 5\n",
        )
        .unwrap();
        assert_eq!(t.records_in, 5.0);
        assert_eq!(t.latest_error(), None);
    }
}
