//! Reading a stage's changelog back: every record of the owned partitions,
//! from the beginning to the end (the last stable offset: only committed
//! transactions). Whether that end holds every committed batch is checked
//! by [`super::integrity`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{topic_partitions, ClientConfigs, StageContext};
use super::{AsRecord, Record};
use crate::metrics as m;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// How often a restore lets the group consumer be polled: far below any
/// `max.poll.interval.ms` (300 s by default).
pub const KEEPALIVE_EVERY: Duration = Duration::from_millis(100);

/// Reads changelog partitions to their end.
pub trait Restore {
    /// Calls `on_record` for every record of `partitions` of `topic`, oldest
    /// first; returns how many there were. Calls `keepalive` at least every
    /// [`KEEPALIVE_EVERY`] (it keeps the group consumer polled), and stops
    /// with its error.
    fn read_to_end(
        &self,
        topic: &str,
        partitions: &[i32],
        on_record: &mut dyn FnMut(&Record<'_>) -> anyhow::Result<()>,
        keepalive: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<u64>;

    /// How long the markers of an acknowledged commit may take to become
    /// visible ([`super::integrity`]).
    fn catch_up(&self) -> Duration {
        super::integrity::CATCH_UP
    }
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
        _keepalive: &mut dyn FnMut() -> anyhow::Result<()>,
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
        keepalive: &mut dyn FnMut() -> anyhow::Result<()>,
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
        let mut kept_alive = Instant::now();
        while !pending.is_empty() {
            if kept_alive.elapsed() >= KEEPALIVE_EVERY {
                keepalive()?;
                kept_alive = Instant::now();
            }
            self.notifier.watchdog();
            anyhow::ensure!(
                !self.shutdown.is_shutdown(),
                "shutdown requested during restore"
            );
            match consumer.poll(KEEPALIVE_EVERY) {
                None => {}
                Some(Ok(msg)) => {
                    on_record(&msg.record())?;
                    records += 1;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(err)) => {
                    metrics::counter!(m::ERRORS, "kind" => "restore").increment(1);
                    tracing::warn!(%err, topic, "error while restoring");
                }
            }
        }
        Ok(records)
    }
}
