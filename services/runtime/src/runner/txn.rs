//! The transactional commit strategy: a batch's outputs and its input
//! offsets in one Kafka transaction, all visible or none (see
//! `docs/delivery.md`).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::batch::Batch;
use super::integrity;
use super::run::{Commit, Committed};
use super::{Offsets, Output, Source};
use crate::metrics as m;
use crate::notify::Notifier;

/// How long one transactional call (send offsets, commit, abort) may block.
/// Kept well under half of a sensible `WatchdogSec` (30 s or more).
pub const TXN_TIMEOUT: Duration = Duration::from_secs(10);

/// A transactional producer, as the strategy uses it.
pub trait TxnProducer {
    /// The consumer group's metadata, as the consumer hands it over.
    type Group;
    fn begin(&self) -> anyhow::Result<()>;
    fn send(&self, output: &Output) -> anyhow::Result<()>;
    fn send_offsets(&self, offsets: &Offsets, group: &Self::Group) -> anyhow::Result<()>;
    fn commit(&self) -> anyhow::Result<()>;
    fn abort(&self) -> anyhow::Result<()>;
}

/// Produces a batch's outputs and commits its offsets in one transaction.
/// `connect` builds (and fences with) a fresh producer for every session.
pub struct Transactional<'n, P, F> {
    connect: F,
    producer: Option<P>,
    notifier: &'n Notifier,
    /// The stage's changelog, which gets the batch's input offsets
    /// ([`integrity::markers`]).
    changelog: Option<String>,
}

impl<'n, P: TxnProducer, F: FnMut() -> anyhow::Result<P>> Transactional<'n, P, F> {
    pub fn new(connect: F, notifier: &'n Notifier) -> Self {
        use crate::metrics as m;
        m::zero_by(m::TRANSACTIONS, "outcome", &["committed", "aborted"]);
        m::zero_by(m::ERRORS, "kind", &["transaction"]);
        Self {
            connect,
            producer: None,
            notifier,
            changelog: None,
        }
    }

    /// Every transaction also writes its input offsets to `changelog`.
    pub fn with_markers(mut self, changelog: Option<&str>) -> Self {
        self.changelog = changelog.map(str::to_string);
        self
    }

    fn producer(&self) -> anyhow::Result<&P> {
        self.producer
            .as_ref()
            .context("no producer: session not open")
    }
}

impl<S, P, F> Commit<S> for Transactional<'_, P, F>
where
    S: Source<Group = P::Group>,
    P: TxnProducer,
    F: FnMut() -> anyhow::Result<P>,
{
    type Output = Output;

    fn open(&mut self) -> anyhow::Result<()> {
        // Drop the old producer first: it may hold the transactional id.
        self.producer = None;
        self.producer = Some((self.connect)()?);
        Ok(())
    }

    fn commit(
        &mut self,
        source: &S,
        outputs: &[Output],
        batch: &Batch,
    ) -> anyhow::Result<Committed> {
        let producer = self.producer()?;
        let start = Instant::now();
        producer.begin().context("begin_transaction")?;
        let markers = match &self.changelog {
            Some(changelog) => integrity::markers(changelog, &batch.offsets),
            None => Vec::new(),
        };
        for output in outputs.iter().chain(&markers) {
            producer
                .send(output)
                .with_context(|| format!("producing to {}", output.topic))?;
        }
        self.notifier.watchdog();
        let group = source.group()?;
        let produced = start.elapsed();
        producer
            .send_offsets(&batch.offsets, &group)
            .context("send_offsets_to_transaction")?;
        let offsets_sent = start.elapsed();
        self.notifier.watchdog();
        producer.commit().context("commit_transaction")?;
        metrics::counter!(m::TRANSACTIONS, "outcome" => "committed").increment(1);
        tracing::debug!(
            records = outputs.len(),
            produce_ms = produced.as_secs_f64() * 1e3,
            offsets_ms = (offsets_sent - produced).as_secs_f64() * 1e3,
            commit_ms = (start.elapsed() - offsets_sent).as_secs_f64() * 1e3,
            "transaction committed"
        );
        Ok(Committed::Yes)
    }

    fn abort(&mut self) -> anyhow::Result<()> {
        metrics::counter!(m::TRANSACTIONS, "outcome" => "aborted").increment(1);
        m::error("transaction");
        self.producer()?.abort().context("abort_transaction")
    }
}
