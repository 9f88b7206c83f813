//! What the processor does with one reading, as a [`Transform`] of the
//! runner, and how its state is kept in the changelog.
//!
//! State and changelog stay in step because they change together:
//! - each counted reading updates the in-memory [`StateTable`] and marks its
//!   (sensor, kind) dirty ([`Dirty`]);
//! - at the end of the batch, the state of every dirty key is produced ONCE to
//!   the compacted state topic, in the same transaction as the stats records
//!   and the input offsets;
//! - if the transaction aborts, or the assignment changes, the table is
//!   dropped ([`Transform::reset`]) and the runner rebuilds it from the
//!   changelog for the partitions now owned ([`Transform::restore`]), which
//!   by construction equals the state after the last committed batch.
//!
//! Co-partitioning: a state record goes to the changelog partition with the
//! same number as the readings partition its reading came from. Readings are
//! keyed by sensor id, so all of a sensor's readings, and therefore its
//! state, live in one partition number, and restoring readings partition N is
//! exactly reading changelog partition N.

use std::collections::BTreeMap;

use anyhow::Context as _;
use pulsewire_model::dlq::DlqRecord;
use pulsewire_model::reading::{Reading, StatsRecord};
use pulsewire_model::state::{Applied, SensorState, StateTable};
use pulsewire_runtime::metrics as m;
use pulsewire_runtime::runner::{Output, Record, Transform};

pub const STAGE: &str = "processor";

/// Initial capacity of a stats record's JSON (typically ~330 bytes).
const STATS_RECORD_CAPACITY: usize = 512;

#[derive(Debug, Clone)]
pub struct Topics {
    pub stats: String,
    pub state: String,
    pub dlq: String,
}

/// The (sensor, kind)s changed in the current batch, each with the readings
/// partition it belongs to (= its changelog partition).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dirty(BTreeMap<(u64, String), i32>);

impl Dirty {
    pub fn mark(&mut self, reading: &Reading, partition: i32) {
        self.0
            .insert((reading.sensor_id, reading.kind.clone()), partition);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// One changelog record per dirty key: the key's current state, to the
    /// partition of its readings.
    pub fn changelog(&self, table: &StateTable, topic: &str) -> anyhow::Result<Vec<Output>> {
        self.0
            .iter()
            .map(|((sensor, kind), &partition)| {
                let state = table
                    .get(*sensor, kind)
                    .with_context(|| format!("dirty state {sensor}/{kind} missing"))?;
                changelog_output(topic, state, partition)
            })
            .collect()
    }
}

pub fn changelog_output(
    topic: &str,
    state: &SensorState,
    partition: i32,
) -> anyhow::Result<Output> {
    Ok(Output {
        topic: topic.to_string(),
        partition: Some(partition),
        key: Some(state.changelog_key().into_bytes()),
        payload: state.to_changelog(),
    })
}

/// Counts of one batch, published when it commits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub counted: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Same instant as a counted reading, another value.
    pub conflicts: u64,
    /// A new (sensor, kind) with the state table full.
    pub full: u64,
    pub unreadable: u64,
}

pub struct Process {
    table: StateTable,
    dirty: Dirty,
    pending: Pending,
    topics: Topics,
}

impl Process {
    /// A stage remembering `dedup_window` event times per (sensor, kind), for
    /// at most `max_states` of them (pipeline.toml's `[services.processor]`).
    pub fn new(topics: Topics, dedup_window: usize, max_states: usize) -> Self {
        m::zero_by(m::RECORDS_OUT, "topic", &[&topics.stats]);
        m::zero_by(
            m::REJECTED,
            "reason",
            &["late", "conflict", "state_full", "bad_reading"],
        );
        m::zero_by(m::ERRORS, "kind", &["restore"]);
        m::zero_histograms(&[m::RESTORE_SECONDS]);
        m::zero(&[m::DUPLICATES, m::DLQ]);
        metrics::gauge!(m::STATE_KEYS).set(0.0);
        Self {
            table: StateTable::new(dedup_window).with_max_states(max_states),
            dirty: Dirty::default(),
            pending: Pending::default(),
            topics,
        }
    }

    fn dlq(&self, record: &DlqRecord) -> anyhow::Result<Output> {
        Ok(Output {
            topic: self.topics.dlq.clone(),
            partition: None,
            key: None,
            payload: serde_json::to_vec(record)?,
        })
    }

    #[cfg(test)]
    fn table(&self) -> &StateTable {
        &self.table
    }
}

impl Transform for Process {
    type Output = Output;

    fn changelog(&self) -> Option<&str> {
        Some(&self.topics.state)
    }

    /// One readings record → the outputs to produce. Pure apart from the
    /// table, so the tests run it without Kafka.
    fn record(&mut self, record: &Record<'_>, out: &mut Vec<Output>) -> anyhow::Result<()> {
        let Record {
            topic,
            partition,
            offset,
            ..
        } = *record;
        let payload = record.payload.unwrap_or_default();
        let reading: Reading = match serde_json::from_slice(payload) {
            Ok(reading) => reading,
            Err(err) => {
                // Only a foreign producer could write this; keep it, don't stop.
                self.pending.unreadable += 1;
                tracing::warn!(topic, partition, offset, %err, "unreadable reading");
                let record = DlqRecord::new(
                    STAGE,
                    "unreadable_reading",
                    format!("unreadable reading: {err}"),
                    payload,
                    topic,
                    partition,
                    offset,
                );
                out.push(self.dlq(&record)?);
                return Ok(());
            }
        };
        match self.table.apply(&reading) {
            Applied::Counted(stats) => {
                self.pending.counted += 1;
                self.dirty.mark(&reading, partition);
                let key = reading.sensor_id.to_string().into_bytes();
                let record = StatsRecord { reading, stats };
                // Sized for a typical record (~330 bytes), so it never grows.
                let mut payload = Vec::with_capacity(STATS_RECORD_CAPACITY);
                serde_json::to_writer(&mut payload, &record)?;
                out.push(Output {
                    topic: self.topics.stats.clone(),
                    partition: None,
                    key: Some(key),
                    payload,
                });
            }
            Applied::Duplicate => {
                self.pending.duplicates += 1;
                tracing::debug!(
                    sensor = reading.sensor_id,
                    topic,
                    partition,
                    offset,
                    "duplicate reading"
                );
            }
            refused => {
                let (code, reason) = refused
                    .refusal(&reading, &self.table)
                    .expect("only Counted has no refusal");
                match refused {
                    Applied::Late => self.pending.late += 1,
                    Applied::Conflict { .. } => self.pending.conflicts += 1,
                    _ => self.pending.full += 1,
                }
                tracing::info!(
                    sensor = reading.sensor_id,
                    topic,
                    partition,
                    offset,
                    code,
                    "reading to DLQ"
                );
                let record = DlqRecord::new(STAGE, code, reason, payload, topic, partition, offset);
                out.push(self.dlq(&record)?);
            }
        }
        Ok(())
    }

    fn end_batch(&mut self, out: &mut Vec<Output>) -> anyhow::Result<()> {
        out.extend(self.dirty.changelog(&self.table, &self.topics.state)?);
        Ok(())
    }

    fn committed(&mut self) {
        self.dirty.clear();
        let pending = std::mem::take(&mut self.pending);
        metrics::counter!(m::RECORDS_OUT, "topic" => self.topics.stats.clone())
            .increment(pending.counted);
        metrics::counter!(m::DUPLICATES).increment(pending.duplicates);
        metrics::counter!(m::REJECTED, "reason" => "late").increment(pending.late);
        metrics::counter!(m::REJECTED, "reason" => "conflict").increment(pending.conflicts);
        metrics::counter!(m::REJECTED, "reason" => "state_full").increment(pending.full);
        metrics::counter!(m::REJECTED, "reason" => "bad_reading").increment(pending.unreadable);
        metrics::counter!(m::DLQ)
            .increment(pending.late + pending.conflicts + pending.full + pending.unreadable);
        metrics::gauge!(m::STATE_KEYS).set(self.table.len() as f64);
    }

    fn reset(&mut self) {
        self.dirty.clear();
        self.pending = Pending::default();
        self.table.clear();
    }

    fn restore(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        restore_record(&mut self.table, record.key, record.payload)
    }

    fn restored(&mut self, partitions: &[i32]) {
        metrics::gauge!(m::STATE_KEYS).set(self.table.len() as f64);
        tracing::info!(?partitions, keys = self.table.len(), "state keys restored");
    }
}

/// Applies one changelog record: later records of a key replace earlier ones
/// (what compaction would keep), a tombstone removes the key.
pub fn restore_record(
    table: &mut StateTable,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> anyhow::Result<()> {
    match payload {
        Some(payload) => {
            let state =
                SensorState::from_changelog(payload).context("unreadable changelog record")?;
            table.insert_restored(state);
        }
        None => {
            let key = key.map(String::from_utf8_lossy).unwrap_or_default();
            if let Some((sensor, kind)) = key.split_once('/') {
                if let Ok(sensor) = sensor.parse() {
                    table.remove(sensor, kind);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    impl Process {
        /// One readings record at `topic/partition/offset`.
        fn route(
            &mut self,
            payload: &[u8],
            topic: &str,
            partition: i32,
            offset: i64,
            out: &mut Vec<Output>,
        ) -> anyhow::Result<()> {
            let record = Record::new(topic, partition, offset, payload);
            self.record(&record, out)
        }
    }

    fn process() -> Process {
        let topics = Topics {
            stats: "stats".into(),
            state: "state".into(),
            dlq: "dlq".into(),
        };
        Process::new(topics, 4, 100)
    }

    fn reading(sensor: u64, second: u32, value: i64) -> Vec<u8> {
        let r = Reading {
            sensor_id: sensor,
            kind: "heart_rate".into(),
            time: Utc.with_ymd_and_hms(2024, 6, 19, 13, 58, second).unwrap(),
            value,
        };
        serde_json::to_vec(&r).unwrap()
    }

    #[test]
    fn changelog_written_once_per_dirty_key_to_the_readings_partition() {
        let mut p = process();
        let mut out = Vec::new();
        p.route(&reading(1, 0, 80), "readings", 2, 10, &mut out)
            .unwrap();
        p.route(&reading(1, 1, 70), "readings", 2, 11, &mut out)
            .unwrap();
        p.route(&reading(3, 0, 60), "readings", 0, 5, &mut out)
            .unwrap();
        p.route(&reading(1, 1, 70), "readings", 2, 12, &mut out)
            .unwrap(); // duplicate
        assert_eq!(out.len(), 3, "one stats record per counted reading");
        assert!(out
            .iter()
            .all(|o| o.topic == "stats" && o.partition.is_none()));
        assert_eq!(out[0].key.as_deref(), Some(&b"1"[..]));
        let last: StatsRecord = serde_json::from_slice(&out[1].payload).unwrap();
        assert_eq!(
            (last.stats.count, last.stats.min, last.stats.max),
            (2, 70, 80)
        );

        let mut changelog = Vec::new();
        p.end_batch(&mut changelog).unwrap();
        let keys: Vec<_> = changelog
            .iter()
            .map(|o| {
                (
                    String::from_utf8(o.key.clone().unwrap()).unwrap(),
                    o.partition,
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                ("1/heart_rate".into(), Some(2)),
                ("3/heart_rate".into(), Some(0))
            ]
        );
        assert!(changelog.iter().all(|o| o.topic == "state"));
        assert_eq!(
            p.pending,
            Pending {
                counted: 3,
                duplicates: 1,
                late: 0,
                conflicts: 0,
                full: 0,
                unreadable: 0
            }
        );

        // The changelog, replayed into a fresh table, gives the same state.
        let mut restored = StateTable::new(4);
        for o in &changelog {
            restore_record(&mut restored, o.key.as_deref(), Some(&o.payload)).unwrap();
        }
        assert_eq!(
            restored.get(1, "heart_rate"),
            p.table().get(1, "heart_rate")
        );
        assert_eq!(
            restored.get(3, "heart_rate"),
            p.table().get(3, "heart_rate")
        );
        p.committed();
        let mut again = Vec::new();
        p.end_batch(&mut again).unwrap();
        assert!(again.is_empty(), "a committed batch leaves nothing dirty");
    }

    #[test]
    fn late_and_unreadable_readings_go_to_the_dlq() {
        let mut p = process();
        let mut out = Vec::new();
        for s in 10..14 {
            p.route(&reading(1, s, 70), "readings", 0, s as i64, &mut out)
                .unwrap();
        }
        out.clear();
        p.route(&reading(1, 1, 70), "readings", 0, 99, &mut out)
            .unwrap();
        p.route(b"{not json", "readings", 0, 100, &mut out).unwrap();
        let records: Vec<DlqRecord> = out
            .iter()
            .map(|o| serde_json::from_slice(&o.payload).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert!(records[0].reason.starts_with("late:") && records[0].offset == 99);
        assert!(records[1].reason.starts_with("unreadable reading") && records[1].offset == 100);
        assert!(records
            .iter()
            .all(|r| r.stage == "processor" && r.topic == "readings"));
        assert!(out.iter().all(|o| o.topic == "dlq"));
        assert_eq!((p.pending.late, p.pending.unreadable), (1, 1));
    }

    #[test]
    fn tombstone_removes_restored_state() {
        let mut table = StateTable::new(4);
        let mut p = process();
        let mut out = Vec::new();
        p.route(&reading(5, 0, 80), "readings", 1, 0, &mut out)
            .unwrap();
        let mut changelog = Vec::new();
        p.end_batch(&mut changelog).unwrap();
        restore_record(
            &mut table,
            changelog[0].key.as_deref(),
            Some(&changelog[0].payload),
        )
        .unwrap();
        assert_eq!(table.len(), 1);
        restore_record(&mut table, Some(b"5/heart_rate"), None).unwrap();
        assert!(table.is_empty());
    }
}
