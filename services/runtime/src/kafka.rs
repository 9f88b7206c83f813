//! Kafka clients and the exactly-once consume-transform-produce loop.
//!
//! Delivery in one paragraph: the aggregator and the processor each own a
//! transactional producer (`transactional.id` from the pipeline) and a
//! `read_committed` consumer with auto-commit off. They collect a batch of
//! input records, then in ONE Kafka transaction produce every output (and the
//! processor's changelog updates) and the consumer offsets just past the
//! batch (`send_offsets_to_transaction` with the consumer's group metadata),
//! and commit. Either all of it becomes visible or none of it: a crash before
//! the commit leaves an open transaction that the successor's
//! `init_transactions` aborts (fencing the zombie), and the successor resumes
//! from the offsets of the last committed batch. Downstream consumers read
//! `read_committed`, so they never see the outputs of an aborted batch. On
//! any error we abort, seek back to the committed offsets and let the stage
//! forget its uncommitted work ([`Transform::reset`]); if even that fails,
//! every client is rebuilt, which amounts to the same thing.
//!
//! Rebalances: the consumer uses the eager protocol, and rebalance callbacks
//! only run inside `poll`, which we never call while a transaction is open.
//! If the assignment changes while a batch is being collected, the batch is
//! dropped (nothing of it was produced yet) and the stage is reset for the
//! new assignment; the new owner of a revoked partition starts at its
//! committed offset.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaArgs;
use crate::metrics as m;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// How long one transactional call (send offsets, commit, abort) may block.
/// Kept well under half of a sensible `WatchdogSec` (30 s or more).
pub const TXN_TIMEOUT: Duration = Duration::from_secs(10);
/// `init_transactions` may have to wait for a predecessor's transaction to
/// be aborted. A timeout is retried by rebuilding the session, which keeps
/// pinging the watchdog in between, so this stays as short as the others.
const INIT_TIMEOUT: Duration = TXN_TIMEOUT;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory bounds for librdkafka's own buffers. Its defaults are sized for
/// big brokers, not a 50 MB service: a consumer pre-fetches up to 64 MB
/// (`queued.max.messages.kbytes`) in fetches of up to 50 MB
/// (`fetch.max.bytes`), and a producer may queue 1 GB
/// (`queue.buffering.max.kbytes`). A stage hands over at most one batch at a
/// time (20,000 records of ~100-300 bytes, a few MB), so a few MB of
/// read-ahead keeps the consumer busy and the producer never needs more than
/// one transaction's worth. Operator properties (`--kafka-property`) still
/// win: they are applied after these.
///
/// With a small read-ahead the queue is often full, and librdkafka then waits
/// `fetch.queue.backoff.ms` (default 1000) before fetching that partition
/// again: with the bounds alone a drain ran at half speed. A short backoff
/// refills the queue as soon as the stage has taken a batch from it.
const CONSUMER_QUEUE_KBYTES: &str = "8192";
const CONSUMER_FETCH_MAX_BYTES: &str = "8388608";
const CONSUMER_QUEUED_MIN_MESSAGES: &str = "20000";
const CONSUMER_FETCH_QUEUE_BACKOFF_MS: &str = "20";
const PRODUCER_QUEUE_KBYTES: &str = "32768";

/// Applies the consumer memory bounds (see [`CONSUMER_QUEUE_KBYTES`]).
fn bound_consumer_memory(config: &mut ClientConfig) {
    config
        .set("queued.max.messages.kbytes", CONSUMER_QUEUE_KBYTES)
        .set("queued.min.messages", CONSUMER_QUEUED_MIN_MESSAGES)
        .set("fetch.max.bytes", CONSUMER_FETCH_MAX_BYTES)
        .set("fetch.queue.backoff.ms", CONSUMER_FETCH_QUEUE_BACKOFF_MS);
}

/// Sets the operator's `--kafka-property` values, which win over Pulsewire's
/// own settings: called last by every function that builds a client config.
fn apply_operator_properties(config: &mut ClientConfig, kafka: &KafkaArgs) {
    for (key, value) in kafka.properties() {
        config.set(key, value);
    }
}

/// Settings every client shares: brokers, a client id that names the stage
/// in broker logs, and the operator's extra properties (applied last).
///
/// librdkafka's own log level follows the log filter for the `librdkafka`
/// target (read when the config is created), so
/// `--log-level info,librdkafka=debug --kafka-property debug=eos` shows its
/// transaction protocol.
pub fn base_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", client_id);
    apply_operator_properties(&mut config, kafka);
    config
}

fn producer_config(kafka: &KafkaArgs, client_id: &str) -> ClientConfig {
    let mut config = base_config(kafka, client_id);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The Java client's partitioner, so a sensor maps to the same
        // partition whichever client produced its records.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        // See CONSUMER_QUEUE_KBYTES: the default allows 1 GB.
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES);
    apply_operator_properties(&mut config, kafka);
    config
}

/// A transactional producer, with `init_transactions` done: from here on a
/// predecessor with the same `transactional.id` is fenced and its open
/// transaction aborted.
pub fn transactional_producer(
    kafka: &KafkaArgs,
    client_id: &str,
    transactional_id: &str,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let mut config = producer_config(kafka, client_id);
    config
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        // A transaction begun right after the previous commit may be refused
        // with CONCURRENT_TRANSACTIONS until the coordinator has written that
        // commit's markers (about a millisecond here); librdkafka retries after
        // retry.backoff.ms, 100 ms by default. 20 ms is what the Java client
        // waits in that case; later retries still back off exponentially.
        .set("retry.backoff.ms", "20");
    apply_operator_properties(&mut config, kafka);
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .create()
        .context("creating the transactional producer")?;
    producer
        .init_transactions(INIT_TIMEOUT)
        .with_context(|| format!("init_transactions for transactional.id {transactional_id}"))?;
    Ok(producer)
}

/// An idempotent, non-transactional producer (uploader DLQ, simulator).
pub fn idempotent_producer(
    kafka: &KafkaArgs,
    client_id: &str,
) -> anyhow::Result<rdkafka::producer::FutureProducer> {
    producer_config(kafka, client_id)
        .create()
        .context("creating the producer")
}

/// Consumer context that records every rebalance, so the main loop can tell
/// that the assignment changed under a batch it was collecting.
#[derive(Debug, Default)]
pub struct StageContext {
    generation: AtomicU64,
    assignment: Mutex<Vec<(String, i32)>>,
}

impl StageContext {
    /// Bumped on every assignment and revocation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Partitions of `topic` currently assigned, sorted.
    pub fn assigned(&self, topic: &str) -> Vec<i32> {
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

pub type StageConsumer = BaseConsumer<StageContext>;

/// A group consumer that only sees committed transactions and never commits
/// on its own: offsets move only with a committed batch.
pub fn read_committed_consumer(
    kafka: &KafkaArgs,
    client_id: &str,
    group_id: &str,
    topic: &str,
) -> anyhow::Result<StageConsumer> {
    let mut config = base_config(kafka, client_id);
    config
        .set("group.id", group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A SIGKILLed predecessor holds its partitions until its session
        // expires; keep that wait short so a restart resumes quickly.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        // Eager: a revocation takes the whole assignment (see module docs).
        .set("partition.assignment.strategy", "range");
    bound_consumer_memory(&mut config);
    apply_operator_properties(&mut config, kafka);
    let consumer: StageConsumer = config
        .create_with_context(StageContext::default())
        .context("creating the consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    Ok(consumer)
}

/// Waits until the brokers answer a metadata request for `topic` and it has
/// partitions; returns the partition count. The error names the topic.
pub fn topic_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> anyhow::Result<usize> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("fetching metadata of topic {topic}"))?;
    let topic_md = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("topic {topic} not in metadata"))?;
    if let Some(err) = topic_md.error() {
        anyhow::bail!("topic {topic}: {:?}", RDKafkaErrorCode::from(err));
    }
    anyhow::ensure!(
        !topic_md.partitions().is_empty(),
        "topic {topic} has no partitions"
    );
    Ok(topic_md.partitions().len())
}

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

    pub fn to_list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::with_capacity(self.iter().count());
        for (topic, partition, offset) in self.iter() {
            // Offsets are non-negative, so this cannot fail.
            let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
        tpl
    }
}

/// What [`collect_batch`] gathered.
#[derive(Debug, Default)]
pub struct Batch {
    pub offsets: Offsets,
    pub records: usize,
    /// Kafka timestamp (ms) of the oldest record, for the latency metric.
    pub oldest_ms: Option<i64>,
}

impl Batch {
    fn add(&mut self, msg: &BorrowedMessage<'_>) {
        self.offsets
            .record(msg.topic(), msg.partition(), msg.offset());
        self.records += 1;
        if let Some(ts) = msg.timestamp().to_millis() {
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
pub fn collect_batch(
    consumer: &StageConsumer,
    limits: BatchLimits,
    shutdown: &Shutdown,
    notifier: &Notifier,
    mut on_record: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Collected> {
    let generation = consumer.context().generation();
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
        let polled = consumer.poll(wait);
        if consumer.context().generation() != generation {
            // The poll that ran the rebalance may also have returned the
            // first record of the new assignment. It is not handled (the
            // stage must reset first), so put the position back on it, or
            // the next batch would commit past a record nobody processed.
            if let Some(Ok(msg)) = &polled {
                consumer
                    .seek(
                        msg.topic(),
                        msg.partition(),
                        Offset::Offset(msg.offset()),
                        TXN_TIMEOUT,
                    )
                    .with_context(|| {
                        format!(
                            "seeking {}/{} back to {}",
                            msg.topic(),
                            msg.partition(),
                            msg.offset()
                        )
                    })?;
            }
            return Ok(Collected::Rebalanced);
        }
        match polled {
            // Idle for `max_idle`, or the deadline: either way the batch is done.
            None if batch.records > 0 => break,
            None => {}
            Some(Ok(msg)) => {
                on_record(&msg).with_context(|| {
                    format!(
                        "{}/{} offset {}",
                        msg.topic(),
                        msg.partition(),
                        msg.offset()
                    )
                })?;
                batch.add(&msg);
            }
            Some(Err(err)) => {
                // librdkafka reports transient broker trouble here and
                // recovers by itself; it is not a reason to drop the batch.
                metrics::counter!(m::ERRORS, "kind" => "consume").increment(1);
                tracing::warn!(%err, "consumer error");
            }
        }
    }
    Ok(Collected::Batch(batch))
}

/// One record to produce in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub topic: String,
    /// An explicit partition (the changelog), or `None` for the partitioner.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Enqueues a record, waiting while the local queue is full.
fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    output: &Output,
) -> Result<(), KafkaError> {
    let mut record: BaseRecord<'_, [u8], [u8]> =
        BaseRecord::to(&output.topic).payload(output.payload.as_slice());
    if let Some(key) = &output.key {
        record = record.key(key.as_slice());
    }
    if let Some(partition) = output.partition {
        record = record.partition(partition);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((err, _)) => return Err(err),
        }
    }
}

/// Produces `outputs` and commits `offsets` for the consumer's group in one
/// transaction. On error the transaction is left for [`abort_and_rewind`].
pub fn commit_in_transaction(
    producer: &ThreadedProducer<DefaultProducerContext>,
    consumer: &StageConsumer,
    outputs: &[Output],
    offsets: &Offsets,
    notifier: &Notifier,
) -> anyhow::Result<()> {
    let start = Instant::now();
    producer.begin_transaction().context("begin_transaction")?;
    for output in outputs {
        send(producer, output).with_context(|| format!("producing to {}", output.topic))?;
    }
    notifier.watchdog();
    let group = consumer
        .group_metadata()
        .context("consumer has no group metadata")?;
    let produced = start.elapsed();
    producer
        .send_offsets_to_transaction(&offsets.to_list(), &group, TXN_TIMEOUT)
        .context("send_offsets_to_transaction")?;
    let offsets_sent = start.elapsed();
    notifier.watchdog();
    await_delivery(producer);
    // Flushes every produced record first; fails if any of them failed.
    producer
        .commit_transaction(TXN_TIMEOUT)
        .context("commit_transaction")?;
    tracing::debug!(
        records = outputs.len(),
        produce_ms = produced.as_secs_f64() * 1e3,
        offsets_ms = (offsets_sent - produced).as_secs_f64() * 1e3,
        commit_ms = (start.elapsed() - offsets_sent).as_secs_f64() * 1e3,
        "transaction committed"
    );
    Ok(())
}

/// Waits (up to [`TXN_TIMEOUT`]) until the broker has acknowledged every
/// produced record and the producer's thread has taken the reports.
///
/// rdkafka's `commit_transaction` flushes first, but it waits for
/// outstanding delivery reports by polling the producer in 100 ms steps; a
/// `ThreadedProducer`'s own thread takes the reports from under that poll,
/// so it sleeps out the full 100 ms: measured, nearly every commit took
/// 100 ms longer than its broker round trips. Checking the count in 1 ms
/// steps lets the flush inside `commit_transaction` find nothing to wait for.
/// Records that failed are still reported by `commit_transaction`.
fn await_delivery(producer: &ThreadedProducer<DefaultProducerContext>) {
    let deadline = Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// After a failed batch: aborts the open transaction and moves the consumer
/// back to its committed offsets, so the batch is consumed again. An error
/// here means the clients are unusable and must be rebuilt.
pub fn abort_and_rewind(
    producer: &ThreadedProducer<DefaultProducerContext>,
    consumer: &StageConsumer,
) -> anyhow::Result<()> {
    producer
        .abort_transaction(TXN_TIMEOUT)
        .context("abort_transaction")?;
    let committed = consumer
        .committed(TXN_TIMEOUT)
        .context("fetching committed offsets")?;
    let mut seek = TopicPartitionList::with_capacity(committed.count());
    for elem in committed.elements() {
        // No committed offset yet: the group starts at the beginning
        // (auto.offset.reset=earliest), so that is where we rewind to.
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        seek.add_partition_offset(elem.topic(), elem.partition(), offset)?;
    }
    let result = consumer
        .seek_partitions(seek, TXN_TIMEOUT)
        .context("seeking back")?;
    for elem in result.elements() {
        if let Err(err) = elem.error() {
            anyhow::bail!("seeking {}/{} back: {err}", elem.topic(), elem.partition());
        }
    }
    Ok(())
}

/// Reads the given partitions of `topic` from the beginning up to their end
/// (the last stable offset: only committed transactions), calling `on_record`
/// for each record. Used to restore state from a compacted changelog.
pub fn read_to_end(
    kafka: &KafkaArgs,
    client_id: &str,
    topic: &str,
    partitions: &[i32],
    shutdown: &Shutdown,
    notifier: &Notifier,
    mut on_record: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    if partitions.is_empty() {
        return Ok(0);
    }
    let mut config = base_config(kafka, client_id);
    config
        // Never joins the group (we assign by hand) and never commits; a
        // group id is still required by librdkafka for a consumer.
        .set("group.id", format!("{client_id}-restore"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    bound_consumer_memory(&mut config);
    apply_operator_properties(&mut config, kafka);
    let consumer: BaseConsumer<StageContext> = config
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
    let mut pending: std::collections::BTreeSet<i32> = partitions.iter().copied().collect();
    let mut records = 0;
    while !pending.is_empty() {
        notifier.watchdog();
        anyhow::ensure!(!shutdown.is_shutdown(), "shutdown requested during restore");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(msg)) => {
                on_record(&msg)?;
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

/// A stage of the transactional loop: what to do with each input record.
pub trait Transform {
    /// Handles one input record, pushing the records to produce. Must not
    /// have effects outside the stage's own memory: the batch may be dropped.
    fn record(&mut self, msg: &BorrowedMessage<'_>, out: &mut Vec<Output>) -> anyhow::Result<()>;

    /// End of a non-empty batch, just before its transaction: last outputs
    /// (the processor's changelog, once per key changed in the batch).
    fn end_batch(&mut self, _out: &mut Vec<Output>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The batch's transaction committed: publish its metrics.
    fn committed(&mut self);

    /// Forget all uncommitted work and (re)load whatever state belongs to
    /// `partitions` of the input topic, which the consumer now owns. Called
    /// at start, after every rebalance and after an aborted batch.
    fn reset(&mut self, partitions: &[i32]) -> anyhow::Result<()>;
}

/// Names and sizes of one transactional stage.
#[derive(Debug, Clone)]
pub struct TxnStage {
    /// Client id prefix, and the `stage` in logs.
    pub name: String,
    pub input_topic: String,
    pub group_id: String,
    pub transactional_id: String,
    pub limits: BatchLimits,
}

/// The longest pause between two Kafka sessions of a stage.
pub const SESSION_PAUSE_MAX: Duration = Duration::from_secs(30);

/// The pauses between rebuilding a stage's Kafka clients after a failed
/// session: exponential from 0.5 s, capped at [`SESSION_PAUSE_MAX`], without end.
pub fn session_pauses() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(SESSION_PAUSE_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs a transactional stage until shutdown. Errors that leave the clients
/// unusable rebuild them after a capped exponential pause; the stage only
/// returns on shutdown.
pub fn run_transactional(
    kafka: &KafkaArgs,
    stage: &TxnStage,
    transform: &mut impl Transform,
    shutdown: &Shutdown,
    notifier: &Notifier,
) -> anyhow::Result<()> {
    let mut pause = session_pauses();
    let mut ready = false;
    loop {
        let started = Instant::now();
        let result = transactional_session(kafka, stage, transform, shutdown, notifier, &mut ready);
        if started.elapsed() > Duration::from_secs(60) {
            // A session that ran for a while was healthy: start the pauses
            // between rebuilds from the beginning again.
            pause = session_pauses();
        }
        match result {
            Ok(()) => break,
            Err(err) if shutdown.is_shutdown() => {
                tracing::info!(error = format!("{err:#}"), "stopped during shutdown");
                break;
            }
            Err(err) => {
                metrics::counter!(m::ERRORS, "kind" => "session").increment(1);
                let wait = pause.next().unwrap_or(SESSION_PAUSE_MAX);
                tracing::error!(
                    error = format!("{err:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "Kafka session failed; rebuilding clients"
                );
                let until = Instant::now() + wait;
                while Instant::now() < until && !shutdown.is_shutdown() {
                    notifier.watchdog();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    notifier.stopping();
    Ok(())
}

fn transactional_session(
    kafka: &KafkaArgs,
    stage: &TxnStage,
    transform: &mut impl Transform,
    shutdown: &Shutdown,
    notifier: &Notifier,
    ready: &mut bool,
) -> anyhow::Result<()> {
    let producer = transactional_producer(kafka, &stage.name, &stage.transactional_id)?;
    let consumer =
        read_committed_consumer(kafka, &stage.name, &stage.group_id, &stage.input_topic)?;
    topic_partitions(&consumer, &stage.input_topic)?;
    tracing::info!(
        topic = stage.input_topic,
        group = stage.group_id,
        transactional_id = stage.transactional_id,
        "connected; waiting for partitions"
    );
    // Forces a reset (and state load) once the first assignment arrives.
    let mut seen_generation = u64::MAX;
    let mut outputs = Vec::new();
    while !shutdown.is_shutdown() {
        notifier.watchdog();
        let generation = consumer.context().generation();
        if generation != seen_generation && generation > 0 {
            let partitions = consumer.context().assigned(&stage.input_topic);
            transform.reset(&partitions)?;
            seen_generation = generation;
            if !*ready {
                notifier.ready(&format!("consuming {}", stage.input_topic));
                *ready = true;
            }
        }
        outputs.clear();
        let collected = collect_batch(&consumer, stage.limits, shutdown, notifier, |msg| {
            transform.record(msg, &mut outputs)
        });
        let batch = match collected {
            Ok(Collected::Batch(batch)) if batch.records == 0 => continue,
            Ok(Collected::Batch(batch)) => batch,
            // Nothing was produced; the top of the loop resets the stage.
            Ok(Collected::Rebalanced) => continue,
            Err(err) => {
                // A record the stage could not handle at all (not a bad
                // line: those go to the DLQ). Start the batch over.
                metrics::counter!(m::ERRORS, "kind" => "transform").increment(1);
                tracing::error!(error = format!("{err:#}"), "batch failed; rewinding");
                rewind_or_rebuild(&producer, &consumer, false)?;
                transform.reset(&consumer.context().assigned(&stage.input_topic))?;
                continue;
            }
        };
        let started = Instant::now();
        let result = transform.end_batch(&mut outputs).and_then(|()| {
            commit_in_transaction(&producer, &consumer, &outputs, &batch.offsets, notifier)
        });
        match result {
            Ok(()) => {
                metrics::histogram!(m::BATCH_WRITE_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::counter!(m::TRANSACTIONS, "outcome" => "committed").increment(1);
                metrics::counter!(m::RECORDS_IN, "topic" => stage.input_topic.clone())
                    .increment(batch.records as u64);
                batch.observe_latency();
                transform.committed();
                tracing::debug!(
                    records = batch.records,
                    outputs = outputs.len(),
                    "batch committed"
                );
            }
            Err(err) => {
                metrics::counter!(m::TRANSACTIONS, "outcome" => "aborted").increment(1);
                metrics::counter!(m::ERRORS, "kind" => "transaction").increment(1);
                tracing::warn!(
                    error = format!("{err:#}"),
                    records = batch.records,
                    "transaction failed; aborting and rewinding"
                );
                rewind_or_rebuild(&producer, &consumer, true)?;
                transform.reset(&consumer.context().assigned(&stage.input_topic))?;
            }
        }
    }
    tracing::info!("last batch committed; leaving the group");
    consumer.unsubscribe();
    Ok(())
}

/// Aborts (when a transaction may be open) and rewinds; an error means the
/// clients must be rebuilt, which the caller's session loop does.
fn rewind_or_rebuild(
    producer: &ThreadedProducer<DefaultProducerContext>,
    consumer: &StageConsumer,
    in_transaction: bool,
) -> anyhow::Result<()> {
    if in_transaction {
        abort_and_rewind(producer, consumer)
    } else {
        // No transaction was begun: only the consumer moved.
        let committed = consumer.committed(TXN_TIMEOUT)?;
        let mut seek = TopicPartitionList::with_capacity(committed.count());
        for elem in committed.elements() {
            let offset = match elem.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            seek.add_partition_offset(elem.topic(), elem.partition(), offset)?;
        }
        consumer.seek_partitions(seek, TXN_TIMEOUT)?;
        Ok(())
    }
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
        let tpl = offsets.to_list();
        assert_eq!(tpl.count(), 2);
        assert_eq!(
            tpl.find_partition("raw", 0).unwrap().offset(),
            Offset::Offset(8)
        );
    }

    #[test]
    fn session_pauses_grow_from_half_a_second_are_capped_and_never_end() {
        let pauses: Vec<Duration> = session_pauses().take(200).collect();
        assert_eq!(pauses.len(), 200, "the supervisor never gives up");
        // Jitter adds up to the pause itself on top.
        assert!(pauses[0] >= Duration::from_millis(500) && pauses[0] < Duration::from_secs(1));
        assert!(
            pauses.iter().all(|p| *p <= 2 * SESSION_PAUSE_MAX),
            "{pauses:?}"
        );
        assert!(pauses[199] >= SESSION_PAUSE_MAX, "{:?}", pauses[199]);
    }
}
