//! The Kafka runner: consume a batch, transform it, commit it, repeat.
//!
//! One runner serves every Kafka-consuming stage. It owns the clients and
//! their supervision, batching, rebalances and changelog restore; a stage is
//! a pure [`Transform`] over [`Record`]s, and a [`Commit`] strategy decides
//! how a batch becomes durable: [`txn::Transactional`] (aggregator,
//! processor) or the uploader's write-then-commit. How that adds up to
//! exactly-once delivery is told once, in `docs/delivery.md`.
//!
//! By concern:
//! - [`client`]: client configuration (the operator's properties applied
//!   once) and the rdkafka implementations of the two traits below;
//! - [`batch`]: batch limits, offsets, collecting a batch;
//! - [`txn`]: the transactional commit, abort and rewind;
//! - [`lag`]: the consumer's lag per partition, from librdkafka's statistics;
//! - [`restore`]: reading a changelog back into a stage;
//! - [`integrity`]: the input offsets recorded in the changelog, checked
//!   after every restore; refusing to run when they do not match;
//! - [`run`]: the session state machine and its supervisor;
//! - [`serve`]: a transactional stage's binary, started and run.
//!
//! The state machine only sees [`Source`] (the group consumer) and, through
//! the strategy, [`txn::TxnProducer`]; the tests drive it with fakes.

use std::collections::BTreeMap;
use std::time::Duration;

pub mod batch;
pub mod client;
pub mod integrity;
pub mod lag;
pub mod restore;
pub mod run;
pub mod serve;
mod source;
pub mod txn;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
#[cfg(test)]
mod tests;

pub use batch::{BatchLimits, Offsets};
pub use integrity::{exit_if_refused, Refused};
pub use run::{run, Commit, Committed, Env};
pub use serve::TransactionalStage;
pub use source::KafkaSource;

use crate::config::KafkaArgs;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// One consumed record, borrowed from the client that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// Kafka timestamp in ms, when the record has one.
    pub timestamp_ms: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record without key or timestamp (tests, tools).
    pub fn new(topic: &'a str, partition: i32, offset: i64, payload: &'a [u8]) -> Self {
        Self {
            topic,
            partition,
            offset,
            key: None,
            payload: Some(payload),
            timestamp_ms: None,
        }
    }
}

/// A message that can be read as a [`Record`] (rdkafka's, or a fake's).
pub trait AsRecord {
    fn record(&self) -> Record<'_>;
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub topic: String,
    /// An explicit partition (the changelog), or `None` for the partitioner.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// The group consumer a session reads its input from.
pub trait Source {
    type Message<'a>: AsRecord
    where
        Self: 'a;
    /// What a transactional producer needs to commit the group's offsets.
    type Group;
    /// Waits up to `timeout` for the next record. Runs rebalances.
    fn poll(&self, timeout: Duration) -> Option<anyhow::Result<Self::Message<'_>>>;
    /// Bumped on every assignment and revocation.
    fn generation(&self) -> u64;
    /// Partitions of the input topic currently assigned, sorted.
    fn assigned(&self) -> Vec<i32>;
    /// Moves the position of one partition back to `offset`.
    fn seek(&self, topic: &str, partition: i32, offset: i64) -> anyhow::Result<()>;
    /// Moves every assigned partition back to its committed offset.
    fn rewind(&self) -> anyhow::Result<()>;
    /// The group's committed offsets of `partitions` of the input topic
    /// (stable ones: none of an open transaction); a partition without one
    /// is absent.
    fn committed(&self, partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, i64>>;
    /// Stops fetching the assigned partitions; [`Source::poll`] still runs
    /// rebalances and keeps the consumer in its group.
    fn pause(&self) -> anyhow::Result<()>;
    /// Fetches the assigned partitions again.
    fn resume(&self) -> anyhow::Result<()>;
    /// Commits `offsets` for the group (write-then-commit only).
    fn commit(&self, offsets: &Offsets) -> anyhow::Result<()>;
    fn group(&self) -> anyhow::Result<Self::Group>;
    /// Leaves the group at the end of the last session.
    fn leave(&self);
}

/// A stage: what to do with each input record. Must not have effects outside
/// the stage's own memory: a batch may be dropped and read again.
pub trait Transform {
    type Output;

    /// The compacted topic whose partitions (same numbers as the input's)
    /// the runner restores into [`Transform::restore`] after every reset.
    fn changelog(&self) -> Option<&str> {
        None
    }

    /// Handles one input record, pushing the outputs to commit with it.
    fn record(&mut self, record: &Record<'_>, out: &mut Vec<Self::Output>) -> anyhow::Result<()>;

    /// End of a non-empty batch, just before its commit: last outputs (the
    /// processor's changelog, once per key changed in the batch).
    fn end_batch(&mut self, _out: &mut Vec<Self::Output>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The batch committed: publish its metrics.
    fn committed(&mut self);

    /// Forget all uncommitted work and state. Called at start, after every
    /// rebalance and after a failed batch, before the changelog is restored.
    fn reset(&mut self);

    /// One changelog record, oldest first.
    fn restore(&mut self, _record: &Record<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The changelog of `partitions` has been restored.
    fn restored(&mut self, _partitions: &[i32]) {}
}

/// Names and sizes of one stage's runner.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Client id, and the `stage` in logs.
    pub name: String,
    pub input_topic: String,
    pub group_id: String,
    /// The producer's `transactional.id`: for [`run_transactional`] only.
    pub transactional_id: Option<String>,
    pub limits: BatchLimits,
}

/// Runs a transactional stage (aggregator, processor) on Kafka until
/// shutdown: its outputs and input offsets commit in one transaction per
/// batch, and its changelog, if it declares one, is restored after every
/// reset.
pub fn run_transactional<T: Transform<Output = Output>>(
    kafka: &KafkaArgs,
    spec: &StageSpec,
    transform: &mut T,
    shutdown: &Shutdown,
    notifier: &Notifier,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let transactional_id = spec
        .transactional_id
        .as_deref()
        .context("a transactional stage needs a transactional id")?;
    let clients = client::ClientConfigs::new(kafka, &spec.name);
    tracing::info!(transactional_id, "transactional stage");
    let mut commit = txn::Transactional::new(
        || clients.transactional_producer(transactional_id),
        notifier,
    )
    .with_markers(transform.changelog());
    let restore = restore::KafkaRestore {
        clients: &clients,
        shutdown,
        notifier,
    };
    run(
        spec,
        &Env { shutdown, notifier },
        || clients.group_consumer(&spec.group_id, &spec.input_topic),
        &mut commit,
        &restore,
        transform,
    )
}
