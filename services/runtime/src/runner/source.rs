//! The group consumer a session reads its input from ([`KafkaSource`]), and
//! the consumer context that tracks its rebalances and publishes its lag.
//!
//! A new group's partitions start at the beginning (`auto.offset.reset=
//! earliest`). Any other reset of a position is librdkafka moving a
//! partition away from where the group is, so the stage never commits past
//! it: a committed offset that is no longer in the log (retention, deleted
//! records) stops the stage with a message instead of skipping to what is
//! left, and a position lost while a leader moved (log truncation, a failed
//! offset query) is rewound to the committed offset. librdkafka reports
//! such a reset only in its log (facility `OFFSET`, level warning), which
//! [`StageContext`] watches.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::client::offset_list;
use super::integrity::{PositionLost, Refused};
use super::txn::TXN_TIMEOUT;
use super::{Offsets, Source};

/// Consumer context that records every rebalance, so the runner can tell
/// that the assignment changed under a batch it was collecting, and, for a
/// group consumer, publishes its lag from librdkafka's statistics.
#[derive(Debug, Default)]
pub struct StageContext {
    generation: AtomicU64,
    assignment: Mutex<Vec<(String, i32)>>,
    /// `(group, topic)` whose lag the statistics publish.
    lag: Option<(String, String)>,
    /// librdkafka reset a position for an error since the last poll.
    offset_reset: AtomicBool,
}

impl StageContext {
    /// The context of `group`'s consumer of `topic`.
    pub fn with_lag(group: &str, topic: &str) -> Self {
        Self {
            lag: Some((group.to_string(), topic.to_string())),
            ..Self::default()
        }
    }

    fn assigned(&self, topic: &str) -> Vec<i32> {
        let assignment = self.assignment.lock().unwrap_or_else(|e| e.into_inner());
        let mut partitions: Vec<i32> = assignment
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|&(_, p)| p)
            .collect();
        partitions.sort_unstable();
        partitions
    }
}

impl ClientContext for StageContext {
    /// Called from librdkafka's threads. A position reset for an error is
    /// logged (facility `OFFSET`, level warning) before the partition is
    /// fetched from its new position, so the flag is up before any record
    /// from there reaches `poll`.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let serious = !matches!(
            level,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        );
        if fac == "OFFSET" && serious {
            self.offset_reset.store(true, Ordering::SeqCst);
        }
        rdkafka::client::DefaultClientContext.log(level, fac, log_message);
    }

    /// Once a second (`statistics.interval.ms`): the lag of every partition.
    fn stats_raw(&self, statistics: &[u8]) {
        let Some((group, topic)) = &self.lag else {
            return;
        };
        // The whole document, for whoever needs more than the lag.
        tracing::trace!(target: "pulsewire_runtime::lag", statistics = %String::from_utf8_lossy(statistics));
        let stats: Statistics = match serde_json::from_slice(statistics) {
            Ok(stats) => stats,
            Err(err) => {
                tracing::warn!(%err, "librdkafka statistics not readable");
                return;
            }
        };
        for (partition, lag) in super::lag::partition_lags(&stats, topic) {
            metrics::gauge!(
                crate::metrics::CONSUMER_LAG,
                "group" => group.clone(),
                "topic" => topic.clone(),
                "partition" => partition.to_string()
            )
            .set(lag as f64);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            // The restore consumer asks for end-of-partition events; they
            // are how it knows it is done, not errors.
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {}
            // Broker outages are reported here and recovered from by
            // librdkafka itself; the stage keeps going.
            _ => tracing::warn!(%error, reason, "librdkafka"),
        }
    }
}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut assignment = self.assignment.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                *assignment = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?*assignment, "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                // Eager protocol: a revocation takes everything away.
                assignment.clear();
                tracing::info!(count = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(err) => {
                tracing::warn!(%err, "rebalance error");
                return;
            }
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// Where a rewind moves one partition, from the broker's answer for its
/// committed offset. A partition the broker answered with an error has an
/// unknown committed offset, not a missing one: rewinding it to the
/// beginning would read (and count) that partition again, so it fails the
/// rewind instead, and the session is rebuilt.
fn rewind_offset(
    topic: &str,
    partition: i32,
    committed: Offset,
    error: KafkaResult<()>,
) -> anyhow::Result<Offset> {
    if let Err(err) = error {
        anyhow::bail!("committed offset of {topic}/{partition}: {err}");
    }
    match committed {
        Offset::Offset(o) => Ok(Offset::Offset(o)),
        // No committed offset yet: the group starts at the beginning
        // (auto.offset.reset=earliest), so that is where we rewind to.
        Offset::Invalid => Ok(Offset::Beginning),
        other => anyhow::bail!("committed offset of {topic}/{partition}: unexpected {other:?}"),
    }
}

/// The group consumer of one input topic.
pub struct KafkaSource {
    pub(super) consumer: BaseConsumer<StageContext>,
    pub(super) topic: String,
    pub(super) group_id: String,
}

impl KafkaSource {
    /// librdkafka reset a position for an error (see the module docs). Its
    /// log says which partition, so every assigned one is checked instead:
    /// a committed offset that is no longer in the log is [`Refused`];
    /// otherwise the position was lost while a leader moved, and the
    /// runner rewinds to the committed offsets ([`PositionLost`]).
    fn offset_reset(&self) -> anyhow::Error {
        let what = "librdkafka reset a fetch position (its log above says why)";
        match self.gone_offset() {
            Ok(Some(refused)) => refused.into(),
            Ok(None) => PositionLost(what.into()).into(),
            Err(lookup) => PositionLost(format!("{what}; not checked: {lookup:#}")).into(),
        }
    }

    /// The first assigned partition whose committed offset is outside the
    /// log, as the refusal that names it.
    fn gone_offset(&self) -> anyhow::Result<Option<Refused>> {
        let assigned = self.assigned();
        let committed = self.committed(&assigned)?;
        for (p, c) in committed {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, TXN_TIMEOUT)
                .with_context(|| format!("fetching the offsets of {}/{p}", self.topic))?;
            if c < low || c > high {
                return Ok(Some(Refused(format!(
                    "the committed offset {c} of group {} on {}/{p} is no longer in the log, \
                     which holds offsets {low} to {high} (retention or deleted records). \
                     Records from {c} on that were never processed are gone; the stage stops \
                     rather than skip them. To go on without them on purpose, stop the stage \
                     and set the offset (kafka-consumer-groups.sh --group {} --topic {}:{p} \
                     --reset-offsets --to-offset {low} --execute).",
                    self.group_id, self.topic, self.group_id, self.topic
                ))));
            }
        }
        Ok(None)
    }

    fn assigned_list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in self.assigned() {
            tpl.add_partition(&self.topic, p);
        }
        tpl
    }
}

impl Source for KafkaSource {
    type Message<'a> = BorrowedMessage<'a>;
    type Group = ConsumerGroupMetadata;

    fn poll(&self, timeout: Duration) -> Option<anyhow::Result<BorrowedMessage<'_>>> {
        let polled = self.consumer.poll(timeout);
        // Checked after the poll: a record from a reset position arrives
        // only after the flag is up, so it is never returned.
        if self
            .consumer
            .context()
            .offset_reset
            .swap(false, Ordering::SeqCst)
        {
            return Some(Err(self.offset_reset()));
        }
        polled.map(|polled| polled.map_err(anyhow::Error::from))
    }

    fn generation(&self) -> u64 {
        self.consumer.context().generation.load(Ordering::SeqCst)
    }

    fn assigned(&self) -> Vec<i32> {
        self.consumer.context().assigned(&self.topic)
    }

    fn seek(&self, topic: &str, partition: i32, offset: i64) -> anyhow::Result<()> {
        Ok(self
            .consumer
            .seek(topic, partition, Offset::Offset(offset), TXN_TIMEOUT)?)
    }

    fn rewind(&self) -> anyhow::Result<()> {
        let committed = self
            .consumer
            .committed(TXN_TIMEOUT)
            .context("fetching committed offsets")?;
        let mut seek = TopicPartitionList::with_capacity(committed.count());
        for elem in committed.elements() {
            let offset =
                rewind_offset(elem.topic(), elem.partition(), elem.offset(), elem.error())?;
            seek.add_partition_offset(elem.topic(), elem.partition(), offset)?;
        }
        let result = self
            .consumer
            .seek_partitions(seek, TXN_TIMEOUT)
            .context("seeking back")?;
        for elem in result.elements() {
            if let Err(err) = elem.error() {
                anyhow::bail!("seeking {}/{} back: {err}", elem.topic(), elem.partition());
            }
        }
        Ok(())
    }

    fn committed(&self, partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for &p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        // With isolation.level=read_committed librdkafka asks for stable
        // offsets (KIP-447): none of a transaction still open.
        let committed = self
            .consumer
            .committed_offsets(tpl, TXN_TIMEOUT)
            .with_context(|| {
                format!("fetching the committed offsets of group {}", self.group_id)
            })?;
        let mut offsets = BTreeMap::new();
        for e in committed.elements() {
            // An error is an unknown offset, not a missing one (`rewind_offset`).
            if let Offset::Offset(o) =
                rewind_offset(e.topic(), e.partition(), e.offset(), e.error())?
            {
                offsets.insert(e.partition(), o);
            }
        }
        Ok(offsets)
    }

    fn pause(&self) -> anyhow::Result<()> {
        Ok(self.consumer.pause(&self.assigned_list())?)
    }

    fn resume(&self) -> anyhow::Result<()> {
        Ok(self.consumer.resume(&self.assigned_list())?)
    }

    fn commit(&self, offsets: &Offsets) -> anyhow::Result<()> {
        Ok(self
            .consumer
            .commit(&offset_list(offsets), CommitMode::Sync)?)
    }

    fn group(&self) -> anyhow::Result<ConsumerGroupMetadata> {
        self.consumer
            .group_metadata()
            .context("consumer has no group metadata")
    }

    fn leave(&self) {
        self.consumer.unsubscribe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_position_reset_for_an_error_raises_the_flag() {
        let context = StageContext::default();
        // What rd_kafka_offset_reset logs when a fetch is out of range;
        // a new group's start at the beginning is only debug-logged.
        context.log(
            RDKafkaLogLevel::Debug,
            "OFFSET",
            "heartrate.raw [0]: offset reset (at offset INVALID, broker -1) to BEGINNING: \
             no previously committed offset available: Local: No offset stored",
        );
        context.log(
            RDKafkaLogLevel::Warning,
            "COMMITFAIL",
            "Offset commit failed",
        );
        assert!(!context.offset_reset.load(Ordering::SeqCst));
        context.log(
            RDKafkaLogLevel::Warning,
            "OFFSET",
            "heartrate.raw [0]: offset reset (at offset 12 (leader epoch 0), broker 1) to \
             offset BEGINNING (leader epoch -1): fetch failed due to requested offset not \
             available on the broker: Broker: Offset out of range",
        );
        assert!(context.offset_reset.load(Ordering::SeqCst));
    }

    #[test]
    fn a_partition_error_is_not_a_missing_offset() {
        let error = Err(KafkaError::OffsetFetch(
            RDKafkaErrorCode::UnstableOffsetCommit,
        ));
        let err = rewind_offset("raw", 1, Offset::Invalid, error).unwrap_err();
        assert_eq!(
            err.to_string(),
            "committed offset of raw/1: Offset fetch error: UnstableOffsetCommit (Broker: There \
             are unstable offsets that need to be cleared)"
        );
        assert_eq!(
            rewind_offset("raw", 1, Offset::Invalid, Ok(())).unwrap(),
            Offset::Beginning,
            "no committed offset: the group's start"
        );
        assert_eq!(
            rewind_offset("raw", 1, Offset::Offset(42), Ok(())).unwrap(),
            Offset::Offset(42)
        );
        assert!(rewind_offset("raw", 1, Offset::End, Ok(())).is_err());
    }
}
