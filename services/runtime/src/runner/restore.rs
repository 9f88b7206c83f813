//! Reading a stage's changelog back: every record of the owned partitions,
//! from the beginning to the end (the last stable offset: only committed
//! transactions).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{topic_partitions, ClientConfigs, StageContext};
use super::{AsRecord, Record};
use crate::metrics as m;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// Reads changelog partitions to their end.
pub trait Restore {
    /// Calls `on_record` for every record of `partitions` of `topic`, oldest
    /// first; returns how many there were.
    fn read_to_end(
        &self,
        topic: &str,
        partitions: &[i32],
        on_record: &mut dyn FnMut(&Record<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64>;
}

/// For stages without a changelog.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChangelog;

impl Restore for NoChangelog {
    fn read_to_end(
        &self,
        topic: &str,
        _partitions: &[i32],
        _on_record: &mut dyn FnMut(&Record<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        anyhow::bail!("changelog {topic} declared, but the stage runs without a restore consumer")
    }
}

/// Restores from Kafka with a consumer of its own, assigned by hand.
pub struct KafkaRestore<'a> {
    pub clients: &'a ClientConfigs,
    pub shutdown: &'a Shutdown,
    pub notifier: &'a Notifier,
}

impl Restore for KafkaRestore<'_> {
    fn read_to_end(
        &self,
        topic: &str,
        partitions: &[i32],
        on_record: &mut dyn FnMut(&Record<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        if partitions.is_empty() {
            return Ok(0);
        }
        let consumer: BaseConsumer<StageContext> = self
            .clients
            .restore_consumer()
            .create_with_context(StageContext::default())
            .context("creating the restore consumer")?;
        let available = topic_partitions(&consumer, topic)?;
        for &p in partitions {
            anyhow::ensure!(
                (p as usize) < available,
                "topic {topic} has {available} partitions, but partition {p} must be restored: \
                 the changelog needs at least as many partitions as its input topic"
            );
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for &p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer
            .assign(&tpl)
            .context("assigning changelog partitions")?;
        let mut pending: BTreeSet<i32> = partitions.iter().copied().collect();
        let mut records = 0;
        while !pending.is_empty() {
            self.notifier.watchdog();
            anyhow::ensure!(
                !self.shutdown.is_shutdown(),
                "shutdown requested during restore"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(msg)) => {
                    on_record(&msg.record())?;
                    records += 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(err)) => {
                    m::error("restore");
                    tracing::warn!(%err, topic, "error while restoring");
                }
            }
        }
        Ok(records)
    }
}
