//! The uploader on the Kafka runner: stats records → InfluxDB, offsets after.
//!
//! Write-then-commit into an idempotent sink (see `docs/delivery.md`): a
//! batch's consumer offsets are committed (synchronously) only after
//! InfluxDB acknowledged every point of it and refused points are safely in
//! the DLQ. A crash anywhere before that replays the batch, and replayed
//! points overwrite themselves (see [`crate::point`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use influxdb2::models::DataPoint;
use pulsewire_model::dlq::DlqRecord;
use pulsewire_model::reading::StatsRecord;
use pulsewire_runtime::config::KafkaArgs;
use pulsewire_runtime::metrics as m;
use pulsewire_runtime::notify::Notifier;

/// The DLQ codes of the uploader's refusals: InfluxDB refused the point, or
/// the stats record could not be turned into one.
const REFUSED: &str = "influx_refused";
const UNREADABLE: &str = "unreadable_stats";
use pulsewire_runtime::runner::batch::Batch;
use pulsewire_runtime::runner::client::ClientConfigs;
use pulsewire_runtime::runner::restore::NoChangelog;
use pulsewire_runtime::runner::{
    self, BatchLimits, Commit, Committed, Env, Record, Source, StageSpec, Transform,
};
use pulsewire_runtime::shutdown::Shutdown;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::influx::{self, Influx, PointWriter, Retry};
use crate::point;

pub const STAGE: &str = "uploader";

pub struct Settings {
    pub kafka: KafkaArgs,
    pub stats_topic: String,
    pub dlq_topic: String,
    pub group_id: String,
    pub limits: BatchLimits,
    pub retry: Retry,
}

/// One consumed record, owned, with its point or why it has none.
#[derive(Debug)]
pub struct Item {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
    point: Result<DataPoint, String>,
}

/// The uploader's stage: each stats record becomes a point.
#[derive(Debug, Default)]
pub struct ToPoints;

impl Transform for ToPoints {
    type Output = Item;

    fn record(&mut self, record: &Record<'_>, out: &mut Vec<Item>) -> anyhow::Result<()> {
        let payload = record.payload.unwrap_or_default();
        let point = serde_json::from_slice::<StatsRecord>(payload)
            .context("unreadable stats record")
            .and_then(|r| point::point(&r))
            .map_err(|err| format!("{err:#}"));
        out.push(Item {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            payload: payload.to_vec(),
            point,
        });
        Ok(())
    }

    fn committed(&mut self) {}

    fn reset(&mut self) {}
}

/// Where records that cannot be written go.
pub trait DeadLetters {
    fn send(&self, payload: Vec<u8>) -> impl Future<Output = anyhow::Result<()>>;
}

/// The DLQ topic, through an idempotent producer.
pub struct DlqTopic {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters for DlqTopic {
    async fn send(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        self.producer
            .send(
                FutureRecord::<(), _>::to(&self.topic).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(err, _)| err)
            .context("producing to the DLQ")
    }
}

/// Write-then-commit: points to the store, the rest to the DLQ, then the
/// offsets. `connect_dlq` builds the DLQ producer of each session.
pub struct WriteThenCommit<'a, W, D, F> {
    pub writer: &'a W,
    pub retry: &'a Retry,
    pub connect_dlq: F,
    pub dlq: Option<D>,
    pub runtime: tokio::runtime::Handle,
    pub shutdown: Shutdown,
    pub notifier: &'a Notifier,
}

impl<W: PointWriter, D: DeadLetters, F: FnMut() -> anyhow::Result<D>> WriteThenCommit<'_, W, D, F> {
    /// Writes the points of `items`; returns each item that could not be
    /// written with the reason, or `None` on shutdown while the store fails.
    async fn write(&self, items: &[Item]) -> Option<Vec<(usize, &'static str, String)>> {
        let mut points = Vec::with_capacity(items.len());
        let mut point_items = Vec::with_capacity(items.len());
        let mut dead = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match &item.point {
                Ok(p) => {
                    points.push(p.clone());
                    point_items.push(i);
                }
                Err(reason) => dead.push((i, UNREADABLE, reason.clone())),
            }
        }
        let waiting = influx::Waiting::new(points.len());
        let write = influx::write_all(self.writer, &points, self.retry, &waiting);
        tokio::pin!(write);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut shutdown = self.shutdown.clone();
        let refused = loop {
            tokio::select! {
                refused = &mut write => break refused,
                // Writes are bounded by a per-attempt timeout, so this loop
                // is making progress while it waits; keep systemd informed.
                _ = tick.tick() => {
                    self.notifier.watchdog();
                    waiting.tick();
                }
                _ = shutdown.recv() => return None,
            }
        };
        dead.extend(refused.into_iter().map(|(pi, msg)| {
            (
                point_items[pi],
                REFUSED,
                format!("InfluxDB refused the point: {msg}"),
            )
        }));
        Some(dead)
    }
}

impl<S, W, D, F> Commit<S> for WriteThenCommit<'_, W, D, F>
where
    S: Source,
    W: PointWriter,
    D: DeadLetters,
    F: FnMut() -> anyhow::Result<D>,
{
    type Output = Item;

    fn open(&mut self) -> anyhow::Result<()> {
        self.dlq = Some((self.connect_dlq)()?);
        Ok(())
    }

    fn commit(&mut self, source: &S, items: &[Item], batch: &Batch) -> anyhow::Result<Committed> {
        let dlq = self
            .dlq
            .as_ref()
            .context("no DLQ producer: session not open")?;
        let Some(dead) = self.runtime.block_on(self.write(items)) else {
            tracing::info!("shutdown while InfluxDB is failing");
            return Ok(Committed::Stopped);
        };
        // Refused points must be safe in the DLQ before their offsets move.
        let deliveries = dead.iter().map(|(i, code, reason)| {
            let item = &items[*i];
            tracing::warn!(
                topic = item.topic,
                partition = item.partition,
                offset = item.offset,
                reason,
                "to DLQ"
            );
            let record = DlqRecord::new(
                STAGE,
                code,
                reason.clone(),
                &item.payload,
                &item.topic,
                item.partition,
                item.offset,
            );
            let payload = serde_json::to_vec(&record).expect("a DLQ record serialises");
            dlq.send(payload)
        });
        for result in self.runtime.block_on(futures::future::join_all(deliveries)) {
            result?;
        }
        let written = items.len() - dead.len();
        metrics::counter!(m::RECORDS_OUT, "topic" => "influxdb").increment(written as u64);
        if !dead.is_empty() {
            metrics::counter!(m::DLQ).increment(dead.len() as u64);
            for (_, code, _) in &dead {
                metrics::counter!(m::REJECTED, "reason" => *code).increment(1);
            }
        }
        tracing::debug!(
            records = batch.records,
            written,
            dlq = dead.len(),
            "batch uploaded"
        );
        match source.commit(&batch.offsets) {
            Ok(()) => Ok(Committed::Yes),
            Err(err) => {
                // Typically a rebalance took the partitions away: the new
                // owner rewrites the batch, which is harmless (idempotent).
                m::error("commit");
                tracing::warn!(
                    error = format!("{err:#}"),
                    "offset commit failed; the batch will be written again"
                );
                Ok(Committed::OutputsOnly)
            }
        }
    }

    fn abort(&mut self) -> anyhow::Result<()> {
        // Nothing to take back: points overwrite themselves when rewritten.
        Ok(())
    }
}

/// Runs until shutdown; rebuilds the Kafka clients after errors.
pub async fn run(
    settings: &Settings,
    influx: &Influx,
    shutdown: Shutdown,
    notifier: Arc<Notifier>,
) -> anyhow::Result<()> {
    let spec = StageSpec {
        name: "pulsewire-uploader".into(),
        input_topic: settings.stats_topic.clone(),
        group_id: settings.group_id.clone(),
        transactional_id: None,
        limits: settings.limits,
    };
    let clients = ClientConfigs::new(&settings.kafka, &spec.name);
    let mut commit = WriteThenCommit {
        writer: influx,
        retry: &settings.retry,
        connect_dlq: || {
            Ok(DlqTopic {
                producer: clients.idempotent_producer()?,
                topic: settings.dlq_topic.clone(),
            })
        },
        dlq: None,
        runtime: tokio::runtime::Handle::current(),
        shutdown: shutdown.clone(),
        notifier: &notifier,
    };
    m::zero_by(m::RECORDS_OUT, "topic", &["influxdb"]);
    m::zero_by(m::REJECTED, "reason", &[REFUSED, UNREADABLE]);
    m::zero_by(m::ERRORS, "kind", &["commit", "influx_write"]);
    m::zero(&[m::DLQ]);
    m::waiting("influxdb", 0.0);
    // The runner is synchronous (librdkafka's calls block); the writes to
    // InfluxDB run on the runtime, from this thread.
    tokio::task::block_in_place(|| {
        runner::run(
            &spec,
            &Env {
                shutdown: &shutdown,
                notifier: &notifier,
            },
            || clients.group_consumer(&spec.group_id, &spec.input_topic),
            &mut commit,
            &NoChangelog,
            &mut ToPoints,
        )
    })
}

#[cfg(test)]
mod tests;
