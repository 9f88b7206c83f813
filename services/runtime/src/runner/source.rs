//! The group consumer a session reads its input from ([`KafkaSource`]), and
//! the consumer context that runs its rebalances.
//!
//! The consumer runs with `auto.offset.reset=error`: a committed offset that
//! is no longer in the log (retention, deleted records) stops the stage with
//! a message instead of skipping to the log's start or end. Partitions the
//! group has never committed (a new group) are started at the beginning
//! explicitly, when they are assigned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata,
};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::client::offset_list;
use super::integrity::Refused;
use super::txn::TXN_TIMEOUT;
use super::{Offsets, Source};

/// Consumer context that records every rebalance, so the runner can tell
/// that the assignment changed under a batch it was collecting.
#[derive(Debug, Default)]
pub struct StageContext {
    generation: AtomicU64,
    assignment: Mutex<Vec<(String, i32)>>,
}

impl StageContext {
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

/// Sets every partition of `tpl` that the group has no committed offset for
/// to the beginning; the others keep "the committed offset". If the
/// committed offsets cannot be fetched, `tpl` stays as it is and
/// [`KafkaSource::offset_reset`] starts such partitions later.
fn start_new_partitions_at_beginning(
    consumer: &BaseConsumer<StageContext>,
    tpl: &mut TopicPartitionList,
) {
    match consumer.committed_offsets(tpl.clone(), TXN_TIMEOUT) {
        Ok(committed) => {
            for elem in committed.elements() {
                if !matches!(elem.offset(), Offset::Offset(_)) {
                    // The partition is in `tpl`, so this cannot fail.
                    let _ =
                        tpl.set_partition_offset(elem.topic(), elem.partition(), Offset::Beginning);
                    tracing::info!(
                        topic = elem.topic(),
                        partition = elem.partition(),
                        "no committed offset: starting at the beginning"
                    );
                }
            }
        }
        Err(err) => tracing::warn!(%err, "fetching committed offsets of the new assignment"),
    }
}

impl ConsumerContext for StageContext {
    /// The eager protocol's rebalance (what rdkafka's default does, through
    /// its safe calls), with new partitions started at the beginning.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut assignment = self.assignment.lock().unwrap_or_else(|e| e.into_inner());
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                start_new_partitions_at_beginning(consumer, tpl);
                *assignment = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?*assignment, "partitions assigned");
                consumer.assign(tpl)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Eager protocol: a revocation takes everything away.
                assignment.clear();
                tracing::info!(count = tpl.count(), "partitions revoked");
                consumer.unassign()
            }
            other => {
                tracing::warn!(err = ?RDKafkaErrorCode::from(other), "rebalance error");
                assignment.clear();
                consumer.unassign()
            }
        };
        if let Err(err) = result {
            tracing::warn!(%err, "applying the rebalance");
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// The group consumer of one input topic.
pub struct KafkaSource {
    pub(super) consumer: BaseConsumer<StageContext>,
    pub(super) topic: String,
    pub(super) group_id: String,
}

impl KafkaSource {
    /// librdkafka found a position out of the log's range and, with
    /// `auto.offset.reset=error`, stopped. Names the partition whose
    /// committed offset is gone ([`Refused`]); a partition without a
    /// committed offset is started at the beginning instead.
    fn offset_reset(&self, err: KafkaError) -> anyhow::Error {
        match self.diagnose_offset_reset() {
            Ok(Some(refused)) => refused.into(),
            Ok(None) => anyhow::Error::from(err).context("offset out of range"),
            Err(lookup) => lookup.context(format!("offset out of range ({err})")),
        }
    }

    fn diagnose_offset_reset(&self) -> anyhow::Result<Option<Refused>> {
        let assigned = self.assigned();
        let committed = self.committed(&assigned)?;
        for p in assigned {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, TXN_TIMEOUT)
                .with_context(|| format!("fetching the offsets of {}/{p}", self.topic))?;
            let Some(&c) = committed.get(&p) else {
                self.consumer
                    .seek(&self.topic, p, Offset::Beginning, TXN_TIMEOUT)
                    .with_context(|| format!("starting {}/{p} at the beginning", self.topic))?;
                continue;
            };
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
        self.consumer.poll(timeout).map(|polled| {
            polled.map_err(|err| {
                if err.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
                    self.offset_reset(err)
                } else {
                    err.into()
                }
            })
        })
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
            // No committed offset yet: the group starts at the beginning,
            // so that is where we rewind to.
            let offset = match elem.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
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
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
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
