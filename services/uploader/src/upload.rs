//! The uploader's loop: stats records from Kafka → InfluxDB, offsets after.
//!
//! At-least-once into an idempotent sink: a batch's consumer offsets are
//! committed (synchronously) only after InfluxDB acknowledged every point of
//! it and refused points are safely in the DLQ. A crash anywhere before that
//! replays the batch, and replayed points overwrite themselves (see
//! [`crate::point`]), so every reading ends up in InfluxDB exactly once. The
//! consumer reads `read_committed`, so it never sees stats of an aborted
//! processor transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pulsewire_model::dlq::DlqRecord;
use pulsewire_model::reading::StatsRecord;
use pulsewire_runtime::config::KafkaArgs;
use pulsewire_runtime::kafka::{self, BatchLimits, Collected};
use pulsewire_runtime::metrics as m;
use pulsewire_runtime::notify::Notifier;
use pulsewire_runtime::shutdown::Shutdown;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::influx::{self, Influx, Retry};
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

/// One consumed record, owned, so it outlives the poll.
struct Item {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

/// Runs until shutdown; rebuilds the Kafka clients after errors.
pub async fn run(
    settings: &Settings,
    influx: &Influx,
    mut shutdown: Shutdown,
    notifier: Arc<Notifier>,
) -> anyhow::Result<()> {
    let mut pause = kafka::session_pauses();
    let mut ready = false;
    loop {
        let started = Instant::now();
        let result = session(settings, influx, &shutdown, &notifier, &mut ready).await;
        if started.elapsed() > Duration::from_secs(60) {
            pause = kafka::session_pauses();
        }
        match result {
            Ok(()) => break,
            Err(err) if shutdown.is_shutdown() => {
                tracing::info!(error = format!("{err:#}"), "stopped during shutdown");
                break;
            }
            Err(err) => {
                metrics::counter!(m::ERRORS, "kind" => "session").increment(1);
                let wait = pause.next().unwrap_or(kafka::SESSION_PAUSE_MAX);
                tracing::error!(
                    error = format!("{err:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "Kafka session failed; rebuilding clients"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.recv() => break,
                }
            }
        }
    }
    notifier.stopping();
    Ok(())
}

async fn session(
    settings: &Settings,
    influx: &Influx,
    shutdown: &Shutdown,
    notifier: &Notifier,
    ready: &mut bool,
) -> anyhow::Result<()> {
    let consumer = kafka::read_committed_consumer(
        &settings.kafka,
        "pulsewire-uploader",
        &settings.group_id,
        &settings.stats_topic,
    )?;
    let dlq: FutureProducer = kafka::idempotent_producer(&settings.kafka, "pulsewire-uploader")?;
    tokio::task::block_in_place(|| kafka::topic_partitions(&consumer, &settings.stats_topic))?;
    tracing::info!(
        topic = settings.stats_topic,
        group = settings.group_id,
        "connected; waiting for partitions"
    );
    let mut shutdown_rx = shutdown.clone();
    while !shutdown.is_shutdown() {
        notifier.watchdog();
        if !*ready && consumer.context().generation() > 0 {
            notifier.ready(&format!("consuming {}", settings.stats_topic));
            *ready = true;
        }
        let mut items = Vec::new();
        let collected = tokio::task::block_in_place(|| {
            kafka::collect_batch(&consumer, settings.limits, shutdown, notifier, |msg| {
                items.push(Item {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    payload: msg.payload().unwrap_or_default().to_vec(),
                });
                Ok(())
            })
        })?;
        let batch = match collected {
            // Dropped uncommitted: the partitions restart at their committed offsets.
            Collected::Rebalanced => continue,
            Collected::Batch(batch) if batch.records == 0 => continue,
            Collected::Batch(batch) => batch,
        };

        let mut points = Vec::with_capacity(items.len());
        let mut point_items = Vec::with_capacity(items.len());
        let mut dead = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match serde_json::from_slice::<StatsRecord>(&item.payload)
                .context("unreadable stats record")
                .and_then(|r| point::point(&r))
            {
                Ok(p) => {
                    points.push(p);
                    point_items.push(i);
                }
                Err(err) => dead.push((i, format!("{err:#}"))),
            }
        }

        let started = Instant::now();
        let write = influx::write_all(influx, &points, &settings.retry);
        tokio::pin!(write);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let refused = loop {
            tokio::select! {
                refused = &mut write => break refused,
                // Writes are bounded by a per-attempt timeout, so this loop
                // is making progress while it waits; keep systemd informed.
                _ = tick.tick() => { notifier.watchdog(); }
                _ = shutdown_rx.recv() => {
                    tracing::info!(records = batch.records, "shutdown while InfluxDB is failing; batch left uncommitted for the next start");
                    return Ok(());
                }
            }
        };
        metrics::histogram!(m::BATCH_WRITE_SECONDS).record(started.elapsed().as_secs_f64());
        let written = points.len() - refused.len();
        dead.extend(refused.into_iter().map(|(pi, msg)| {
            (
                point_items[pi],
                format!("InfluxDB refused the point: {msg}"),
            )
        }));

        // Refused points must be safe in the DLQ before their offsets move.
        let deliveries = dead.iter().map(|(i, reason)| {
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
                reason.clone(),
                &item.payload,
                &item.topic,
                item.partition,
                item.offset,
            );
            let payload = serde_json::to_vec(&record).expect("a DLQ record serialises");
            let dlq = &dlq;
            async move {
                dlq.send(
                    FutureRecord::<(), _>::to(&settings.dlq_topic).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(err, _)| err)
            }
        });
        for result in futures::future::join_all(deliveries).await {
            result.context("producing to the DLQ")?;
        }

        let commit = tokio::task::block_in_place(|| {
            consumer.commit(&batch.offsets.to_list(), CommitMode::Sync)
        });
        metrics::counter!(m::RECORDS_IN, "topic" => settings.stats_topic.clone())
            .increment(batch.records as u64);
        metrics::counter!(m::RECORDS_OUT, "topic" => "influxdb").increment(written as u64);
        if !dead.is_empty() {
            metrics::counter!(m::DLQ).increment(dead.len() as u64);
            metrics::counter!(m::REJECTED, "reason" => "influx_refused")
                .increment(dead.len() as u64);
        }
        match commit {
            Ok(()) => batch.observe_latency(),
            Err(err) => {
                // Typically a rebalance took the partitions away: the new
                // owner rewrites the batch, which is harmless (idempotent).
                metrics::counter!(m::ERRORS, "kind" => "commit").increment(1);
                tracing::warn!(%err, "offset commit failed; the batch will be written again");
            }
        }
        tracing::debug!(
            records = batch.records,
            written,
            dlq = dead.len(),
            "batch uploaded"
        );
    }
    tracing::info!("last batch committed; leaving the group");
    consumer.unsubscribe();
    Ok(())
}
