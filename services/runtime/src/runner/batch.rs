//! Collecting a batch: limits, the offsets it commits, and the poll loop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{integrity, AsRecord, Record, Source};
use crate::metrics as m;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// When a batch is complete: whichever of the three limits is reached first.
///
/// Under a backlog the consumer's read-ahead queue is never empty, so batches
/// fill up to `max_records` and one transaction carries many records. Under a
/// steady trickle, records arrive in bursts (one upstream transaction becomes
/// visible at once); `max_idle` ends the batch as soon as a burst has been
/// taken, instead of sitting out the rest of `max_wait` (which then only
/// bounds a batch that keeps trickling in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    /// Longest time from the start of collecting to the end of the batch.
    pub max_wait: Duration,
    /// Once the batch has a record: how long without a new one ends it.
    pub max_idle: Duration,
}

/// The next offset to consume per (topic, partition): one past the highest
/// offset seen. These are the offsets a batch commits.
///
/// Keyed by topic, then partition, so recording a record's offset (once per
/// consumed record) looks the topic up by `&str` and allocates nothing after
/// the first record of each partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets(BTreeMap<String, BTreeMap<i32, i64>>);

impl Offsets {
    pub fn record(&mut self, topic: &str, partition: i32, offset: i64) {
        let next = offset + 1;
        let partitions = match self.0.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.0.entry(topic.to_string()).or_default(),
        };
        partitions
            .entry(partition)
            .and_modify(|current| *current = (*current).max(next))
            .or_insert(next);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0
            .iter()
            .flat_map(|(t, partitions)| partitions.iter().map(move |(p, o)| (t.as_str(), *p, *o)))
    }
}

/// What [`collect`] gathered.
#[derive(Debug, Default)]
pub struct Batch {
    pub offsets: Offsets,
    pub records: usize,
    /// Kafka timestamp (ms) of the oldest record, for the latency metric.
    pub oldest_ms: Option<i64>,
}

impl Batch {
    fn add(&mut self, record: &Record<'_>) {
        self.offsets
            .record(record.topic, record.partition, record.offset);
        self.records += 1;
        if let Some(ts) = record.timestamp_ms {
            self.oldest_ms = Some(self.oldest_ms.map_or(ts, |o| o.min(ts)));
        }
    }

    /// Observes the latency metric once the batch is durable.
    pub fn observe_latency(&self) {
        if let Some(oldest) = self.oldest_ms {
            let age_ms = chrono::Utc::now().timestamp_millis() - oldest;
            metrics::histogram!(m::PROCESSING_SECONDS).record(age_ms.max(0) as f64 / 1000.0);
        }
        metrics::histogram!(m::BATCH_RECORDS).record(self.records as f64);
    }
}

/// Result of collecting a batch.
#[derive(Debug)]
pub enum Collected {
    /// Up to the limits, possibly empty, possibly cut short by shutdown.
    Batch(Batch),
    /// The assignment changed while collecting: drop everything collected.
    Rebalanced,
}

/// Polls records into a batch until a limit is reached, shutdown is
/// requested or the assignment changes. `on_record` sees each record once,
/// in partition order; an error from it fails the batch.
pub fn collect<S: Source>(
    source: &S,
    limits: BatchLimits,
    shutdown: &Shutdown,
    notifier: &Notifier,
    mut on_record: impl FnMut(&Record<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Collected> {
    let generation = source.generation();
    let deadline = Instant::now() + limits.max_wait;
    let mut batch = Batch::default();
    while batch.records < limits.max_records && !shutdown.is_shutdown() {
        notifier.watchdog();
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = if batch.records == 0 {
            (deadline - now).min(Duration::from_millis(100))
        } else {
            (deadline - now).min(limits.max_idle)
        };
        let polled = source.poll(wait);
        if source.generation() != generation {
            // The poll that ran the rebalance may also have returned the
            // first record of the new assignment. It is not handled (the
            // stage must reset first), so put the position back on it, or
            // the next batch would commit past a record nobody processed.
            if let Some(Err(err)) = polled {
                if integrity::ends_batch(&err) {
                    return Err(err);
                }
            } else if let Some(Ok(msg)) = &polled {
                let r = msg.record();
                source
                    .seek(r.topic, r.partition, r.offset)
                    .with_context(|| {
                        format!("seeking {}/{} back to {}", r.topic, r.partition, r.offset)
                    })?;
            }
            return Ok(Collected::Rebalanced);
        }
        match polled {
            // Idle for `max_idle`, or the deadline: either way the batch is done.
            None if batch.records > 0 => break,
            None => {}
            Some(Ok(msg)) => {
                let record = msg.record();
                on_record(&record).with_context(|| {
                    format!(
                        "{}/{} offset {}",
                        record.topic, record.partition, record.offset
                    )
                })?;
                batch.add(&record);
            }
            // A committed offset is gone from the log: stop, do not skip.
            // Or a partition's position must be placed again: rewind.
            Some(Err(err)) if integrity::ends_batch(&err) => return Err(err),
            Some(Err(err)) => {
                // librdkafka reports transient broker trouble here and
                // recovers by itself; it is not a reason to drop the batch.
                m::error("consume");
                tracing::warn!(error = format!("{err:#}"), "consumer error");
            }
        }
    }
    Ok(Collected::Batch(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_to_commit_are_one_past_the_highest_seen() {
        let mut offsets = Offsets::default();
        assert!(offsets.is_empty());
        offsets.record("raw", 0, 5);
        offsets.record("raw", 0, 7);
        offsets.record("raw", 0, 6);
        offsets.record("raw", 2, 0);
        let got: Vec<_> = offsets
            .iter()
            .map(|(t, p, o)| (t.to_string(), p, o))
            .collect();
        assert_eq!(got, vec![("raw".into(), 0, 8), ("raw".into(), 2, 1)]);
    }
}
