//! What the aggregator does with one raw record, as a [`Transform`] of the
//! runner: parse, then route to the readings topic or the DLQ.
//!
//! Metrics are held back until the batch's transaction commits, so an aborted
//! and replayed batch is not counted twice.

use std::collections::BTreeMap;

use pulsewire_model::dlq::DlqRecord;
use pulsewire_model::parse::{Parser, Rejection};
use pulsewire_model::reading::Reading;
use pulsewire_runtime::metrics as m;
use pulsewire_runtime::runner::{Output, Record, Transform};

pub const STAGE: &str = "aggregator";

/// Counts of one batch, published when it commits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub readings: u64,
    pub skipped: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

pub struct Aggregate {
    parser: Parser,
    readings_topic: String,
    dlq_topic: String,
    pending: Pending,
}

impl Aggregate {
    pub fn new(parser: Parser, readings_topic: String, dlq_topic: String) -> Self {
        m::zero_by(m::RECORDS_OUT, "topic", &[&readings_topic]);
        m::zero_by(m::REJECTED, "reason", Rejection::CODES);
        m::zero(&[m::SKIPPED, m::DLQ]);
        Self {
            parser,
            readings_topic,
            dlq_topic,
            pending: Pending::default(),
        }
    }
}

/// A reading on the readings topic: keyed by sensor id, so every reading of
/// a sensor lands on one partition and is processed in order by one owner.
pub fn reading_output(topic: &str, reading: &Reading) -> anyhow::Result<Output> {
    Ok(Output {
        topic: topic.to_string(),
        partition: None,
        key: Some(reading.sensor_id.to_string().into_bytes()),
        payload: serde_json::to_vec(reading)?,
    })
}

impl Transform for Aggregate {
    type Output = Output;

    /// The routing decision for one raw record.
    fn record(&mut self, record: &Record<'_>, out: &mut Vec<Output>) -> anyhow::Result<()> {
        // A null value (tombstone) is an empty line: skipped by the parser.
        let payload = record.payload.unwrap_or_default();
        match self.parser.parse(payload) {
            Ok(Some(reading)) => {
                self.pending.readings += 1;
                out.push(reading_output(&self.readings_topic, &reading)?);
            }
            Ok(None) => self.pending.skipped += 1,
            Err(rejection) => {
                let code = rejection.reason_code();
                *self.pending.rejected.entry(code).or_default() += 1;
                let Record {
                    topic,
                    partition,
                    offset,
                    ..
                } = *record;
                tracing::info!(topic, partition, offset, reason = %rejection, code, "line rejected");
                let record =
                    DlqRecord::rejected(STAGE, &rejection, payload, topic, partition, offset);
                out.push(Output {
                    topic: self.dlq_topic.clone(),
                    partition: None,
                    key: None,
                    payload: serde_json::to_vec(&record)?,
                });
            }
        }
        Ok(())
    }

    fn committed(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        metrics::counter!(m::RECORDS_OUT, "topic" => self.readings_topic.clone())
            .increment(pending.readings);
        metrics::counter!(m::SKIPPED).increment(pending.skipped);
        let mut dlq = 0;
        for (reason, n) in pending.rejected {
            metrics::counter!(m::REJECTED, "reason" => reason).increment(n);
            dlq += n;
        }
        metrics::counter!(m::DLQ).increment(dlq);
    }

    fn reset(&mut self) {
        // Stateless: only the uncommitted batch's counts are forgotten.
        self.pending = Pending::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsewire_model::parse::KindRule;

    fn stage() -> Aggregate {
        let parser = Parser::new(vec![KindRule::new("heart_rate", 30, 250)]);
        Aggregate::new(parser, "readings".into(), "dlq".into())
    }

    /// A rate() or an alert needs a series before the first bad line: every
    /// counter the stage moves, each DLQ reason included, is there at 0.
    #[test]
    fn every_counter_is_published_at_zero_from_the_start() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || drop(stage()));
        let page = handle.render();
        let zeros: Vec<&str> = page.lines().filter(|l| l.ends_with(" 0")).collect();
        for code in Rejection::CODES {
            let line = format!("pulsewire_rejected_total{{reason=\"{code}\"}} 0");
            assert!(zeros.contains(&line.as_str()), "{line} missing in:\n{page}");
        }
        for line in [
            "pulsewire_records_out_total{topic=\"readings\"} 0",
            "pulsewire_dlq_total 0",
            "pulsewire_skipped_total 0",
        ] {
            assert!(zeros.contains(&line), "{line} missing in:\n{page}");
        }
        assert_eq!(zeros.len(), Rejection::CODES.len() + 3, "{page}");
    }

    /// The output of one record read at `topic/partition/offset`, if any.
    fn route(
        s: &mut Aggregate,
        payload: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> anyhow::Result<Option<Output>> {
        let record = Record::new(topic, partition, offset, payload);
        let mut out = Vec::new();
        s.record(&record, &mut out)?;
        assert!(out.len() <= 1, "{out:?}");
        Ok(out.pop())
    }

    #[test]
    fn valid_line_becomes_a_reading_keyed_by_sensor() {
        let mut s = stage();
        let out = route(
            &mut s,
            b"7,heart_rate,2024-06-19 13:58:37.074766,80",
            "raw",
            2,
            41,
        )
        .unwrap()
        .unwrap();
        assert_eq!(out.topic, "readings");
        assert_eq!(out.key.as_deref(), Some(&b"7"[..]));
        let reading: Reading = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!((reading.sensor_id, reading.value), (7, 80));
        // A JSON-encoded string (Connect's JsonConverter) is the same reading.
        let json = route(
            &mut s,
            br#""7,heart_rate,2024-06-19 13:58:37.074766,80""#,
            "raw",
            2,
            42,
        )
        .unwrap()
        .unwrap();
        assert_eq!(json.payload, out.payload);
        assert_eq!(s.pending.readings, 2);
    }

    #[test]
    fn rejected_line_goes_to_dlq_with_its_position() {
        let mut s = stage();
        let out = route(&mut s, b"7,heart_rate,2024-06-19 13:58:37,999", "raw", 1, 9)
            .unwrap()
            .unwrap();
        assert_eq!((out.topic.as_str(), out.key.as_ref()), ("dlq", None));
        let record: DlqRecord = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(record.stage, "aggregator");
        assert!(!record.reason.is_empty());
        assert_eq!(
            (record.topic.as_str(), record.partition, record.offset),
            ("raw", 1, 9)
        );
        assert_eq!(record.raw, "7,heart_rate,2024-06-19 13:58:37,999");
        assert_eq!(s.pending.rejected.get("value_out_of_range"), Some(&1));
    }

    #[test]
    fn blank_and_header_lines_are_only_counted() {
        let mut s = stage();
        assert!(route(&mut s, b"", "raw", 0, 0).unwrap().is_none());
        assert!(
            route(&mut s, b"sensor_id,kind,timestamp,value", "raw", 0, 1)
                .unwrap()
                .is_none()
        );
        assert_eq!(s.pending.skipped, 2);
        s.reset();
        assert_eq!(s.pending, Pending::default());
    }
}
