//! Kafka client configuration, and the rdkafka side of the runner's traits.
//!
//! Every client config comes from [`ClientConfigs`], which applies the
//! operator's `--kafka-property` values last, once, so they win over
//! Pulsewire's own settings for every client alike.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::source::KafkaSource;
pub use super::source::StageContext;
use super::txn::{TxnProducer, TXN_TIMEOUT};
use super::{AsRecord, Offsets, Record};
use crate::config::KafkaArgs;

/// `init_transactions` may have to wait for a predecessor's transaction to
/// be aborted. A timeout is retried by rebuilding the session, which keeps
/// pinging the watchdog in between, so this stays as short as the others.
const INIT_TIMEOUT: Duration = TXN_TIMEOUT;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The transactional producers' `transaction.timeout.ms`: the coordinator
/// aborts a transaction left open for longer (its producer killed).
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Memory bounds for librdkafka's own buffers. Its defaults are sized for
/// big brokers, not a 50 MB service: a consumer pre-fetches up to 64 MB
/// (`queued.max.messages.kbytes`) in fetches of up to 50 MB
/// (`fetch.max.bytes`), and a producer may queue 1 GB
/// (`queue.buffering.max.kbytes`). A stage hands over at most one batch at a
/// time (20,000 records of ~100-300 bytes, a few MB), so a few MB of
/// read-ahead keeps the consumer busy and the producer never needs more than
/// one transaction's worth.
///
/// With a small read-ahead the queue is often full, and librdkafka then waits
/// `fetch.queue.backoff.ms` (default 1000) before fetching that partition
/// again; a short backoff refills the queue as soon as the stage has taken a
/// batch from it (measurements: `docs/benchmarks.md`, "History").
///
/// 5,000 records per partition (15,000 over three) still keep a batch of
/// 20,000 fed: draining 1,000,000 records, four runs each, the stages kept
/// their rate with it, and with the malloc arenas capped ([`crate::memory`])
/// the aggregator peaked at 46–48 MB instead of 58–64 MB.
const CONSUMER_MEMORY: [(&str, &str); 4] = [
    ("queued.max.messages.kbytes", "8192"),
    ("queued.min.messages", "5000"),
    ("fetch.max.bytes", "8388608"),
    ("fetch.queue.backoff.ms", "20"),
];
const PRODUCER_QUEUE_KBYTES: &str = "32768";

/// Builds the config of each kind of client a stage uses.
///
/// Every config has the brokers, a client id that names the stage in broker
/// logs, and, applied last, the operator's extra properties. librdkafka's
/// own log level follows the log filter for the `librdkafka` target (read
/// when the config is created), so
/// `--log-level info,librdkafka=debug --kafka-property debug=eos` shows its
/// transaction protocol.
#[derive(Debug, Clone)]
pub struct ClientConfigs {
    bootstrap_servers: String,
    client_id: String,
    properties: Vec<(String, String)>,
}

impl ClientConfigs {
    pub fn new(kafka: &KafkaArgs, client_id: &str) -> Self {
        Self {
            bootstrap_servers: kafka.bootstrap_servers.clone(),
            client_id: client_id.to_string(),
            properties: kafka
                .properties()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The shared settings, the role's own, then the operator's.
    fn build(&self, role: impl FnOnce(&mut ClientConfig)) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id);
        role(&mut config);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// A plain client, for metadata requests.
    pub fn plain(&self) -> ClientConfig {
        self.build(|_| {})
    }

    fn producer_settings(config: &mut ClientConfig) {
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The Java client's partitioner, so a sensor maps to the same
            // partition whichever client produced its records.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            // See CONSUMER_MEMORY: the default allows 1 GB.
            .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES);
    }

    /// An idempotent, non-transactional producer (uploader DLQ, simulator).
    pub fn idempotent_producer(&self) -> anyhow::Result<FutureProducer> {
        self.build(Self::producer_settings)
            .create()
            .context("creating the producer")
    }

    /// A transactional producer, with `init_transactions` done: from here on
    /// a predecessor with the same `transactional.id` is fenced and its open
    /// transaction aborted.
    pub fn transactional_producer(&self, transactional_id: &str) -> anyhow::Result<KafkaProducer> {
        let config = self.build(|config| {
            Self::producer_settings(config);
            config
                .set("transactional.id", transactional_id)
                .set(
                    "transaction.timeout.ms",
                    TRANSACTION_TIMEOUT.as_millis().to_string(),
                )
                // A transaction begun right after the previous commit may be
                // refused with CONCURRENT_TRANSACTIONS until the coordinator
                // has written that commit's markers (about a millisecond
                // here); librdkafka retries after retry.backoff.ms, 100 ms by
                // default. 20 ms is what the Java client waits in that case;
                // later retries still back off exponentially.
                .set("retry.backoff.ms", "20");
        });
        let producer: ThreadedProducer<DefaultProducerContext> = config
            .create()
            .context("creating the transactional producer")?;
        producer.init_transactions(INIT_TIMEOUT).with_context(|| {
            format!("init_transactions for transactional.id {transactional_id}")
        })?;
        Ok(KafkaProducer(producer))
    }

    /// A group consumer of `topic` that only sees committed transactions and
    /// never commits on its own: offsets move only with a committed batch.
    pub fn group_consumer(&self, group_id: &str, topic: &str) -> anyhow::Result<KafkaSource> {
        let consumer: BaseConsumer<StageContext> = self
            .group_config(group_id)
            .create_with_context(StageContext::with_lag(group_id, topic))
            .context("creating the consumer")?;
        consumer
            .subscribe(&[topic])
            .with_context(|| format!("subscribing to {topic}"))?;
        topic_partitions(&consumer, topic)?;
        Ok(KafkaSource {
            consumer,
            topic: topic.to_string(),
            group_id: group_id.to_string(),
        })
    }

    fn group_config(&self, group_id: &str) -> ClientConfig {
        self.build(|config| {
            config
                .set("group.id", group_id)
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // A new group starts at the beginning; any other reset stops
                // the stage or rewinds it (see `source`).
                .set("auto.offset.reset", "earliest")
                // A SIGKILLed predecessor holds its partitions until its
                // session expires; keep that wait short so a restart resumes
                // quickly.
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "2000")
                // Eager: a revocation takes the whole assignment, and
                // rebalance callbacks only run inside `poll`, which is never
                // called while a transaction is open.
                .set("partition.assignment.strategy", "range")
                // The lag gauge (`lag`): computed from these, once a second.
                .set("statistics.interval.ms", "1000");
            bound_consumer_memory(config);
        })
    }

    /// A client that asks for high watermarks: read_uncommitted, since a
    /// read_committed client's `fetch_watermarks` answers the last stable
    /// offset instead (librdkafka sends its isolation level with ListOffsets).
    /// Set after the operator's properties: the restore depends on it.
    pub fn high_watermark_consumer(&self) -> ClientConfig {
        let mut config = self.restore_consumer();
        config.set("isolation.level", "read_uncommitted");
        config
    }

    /// A consumer that reads changelog partitions assigned by hand.
    pub fn restore_consumer(&self) -> ClientConfig {
        self.build(|config| {
            config
                // Never joins the group and never commits; a group id is
                // still required by librdkafka for a consumer.
                .set("group.id", format!("{}-restore", self.client_id))
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "true");
            bound_consumer_memory(config);
        })
    }
}

fn bound_consumer_memory(config: &mut ClientConfig) {
    for (key, value) in CONSUMER_MEMORY {
        config.set(key, value);
    }
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

impl AsRecord for BorrowedMessage<'_> {
    fn record(&self) -> Record<'_> {
        Record {
            topic: self.topic(),
            partition: self.partition(),
            offset: self.offset(),
            key: self.key(),
            payload: self.payload(),
            timestamp_ms: self.timestamp().to_millis(),
        }
    }
}

/// The offsets as rdkafka's list.
pub fn offset_list(offsets: &Offsets) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.iter().count());
    for (topic, partition, offset) in offsets.iter() {
        // Offsets are non-negative, so this cannot fail.
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    tpl
}

/// Enqueues `record`, waiting while the producer's local queue is full, for
/// `wait` at most. The queue drains as the brokers acknowledge; a queue that
/// stays full for that long means they do not (all down, or the records
/// refused), and waiting on would hold the open transaction and starve the
/// watchdog. The error fails the batch, which is then aborted and rewound.
fn enqueue<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
    wait: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline =>
            {
                record = back;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((err, back)) => {
                return Err(err).with_context(|| {
                    format!(
                        "producing to {} (local queue waited on for up to {} ms)",
                        back.topic,
                        wait.as_millis()
                    )
                })
            }
        }
    }
}

/// A transactional producer.
pub struct KafkaProducer(ThreadedProducer<DefaultProducerContext>);

impl KafkaProducer {
    /// Waits (up to [`TXN_TIMEOUT`]) until the broker has acknowledged every
    /// produced record and the producer's thread has taken the reports.
    /// rdkafka's `commit_transaction` waits for outstanding delivery reports
    /// by polling in 100 ms steps, while the producer's own thread takes the
    /// reports from under that poll; checking the count in 1 ms steps first
    /// leaves that flush nothing to wait for (`docs/benchmarks.md`, "A 100 ms
    /// sleep in every commit"). Records that failed are still reported by
    /// `commit_transaction`.
    fn await_delivery(&self) {
        let deadline = Instant::now() + TXN_TIMEOUT;
        while self.0.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl TxnProducer for KafkaProducer {
    type Group = ConsumerGroupMetadata;

    fn begin(&self) -> anyhow::Result<()> {
        Ok(self.0.begin_transaction()?)
    }

    /// Enqueues a record, waiting (up to [`TXN_TIMEOUT`]) while the local
    /// queue is full.
    fn send(&self, output: &super::Output) -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&output.topic).payload(output.payload.as_slice());
        if let Some(key) = &output.key {
            record = record.key(key.as_slice());
        }
        if let Some(partition) = output.partition {
            record = record.partition(partition);
        }
        enqueue(&self.0, record, TXN_TIMEOUT)
    }

    /// Waits for the batch's records first. Their partitions are registered
    /// with the transaction (AddPartitionsToTxn) before they can be sent, and
    /// librdkafka would otherwise send AddOffsetsToTxn while that
    /// registration is still being written: the coordinator refuses it with
    /// CONCURRENT_TRANSACTIONS, and librdkafka retries after 20, 40, 80 ms...
    /// (measured: 230 ms of a 275 ms commit under load; `docs/benchmarks.md`,
    /// "Where a hop's time goes"). The Java client orders the two the same way.
    fn send_offsets(&self, offsets: &Offsets, group: &ConsumerGroupMetadata) -> anyhow::Result<()> {
        self.await_delivery();
        Ok(self
            .0
            .send_offsets_to_transaction(&offset_list(offsets), group, TXN_TIMEOUT)?)
    }

    fn commit(&self) -> anyhow::Result<()> {
        self.await_delivery();
        // Flushes every produced record first; fails if any of them failed.
        Ok(self.0.commit_transaction(TXN_TIMEOUT)?)
    }

    fn abort(&self) -> anyhow::Result<()> {
        Ok(self.0.abort_transaction(TXN_TIMEOUT)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_rdkafkas_list() {
        let mut offsets = Offsets::default();
        offsets.record("raw", 0, 7);
        offsets.record("raw", 2, 0);
        let tpl = offset_list(&offsets);
        assert_eq!(tpl.count(), 2);
        assert_eq!(
            tpl.find_partition("raw", 0).unwrap().offset(),
            Offset::Offset(8)
        );
    }

    #[test]
    fn a_queue_that_stays_full_fails_the_send() {
        // A real producer whose queue holds one record and whose broker does
        // not exist: the first record stays queued, so the queue stays full.
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("queue.buffering.max.messages", "1")
            .create()
            .unwrap();
        let record = || BaseRecord::<[u8], [u8]>::to("raw").payload(b"x".as_slice());
        enqueue(&producer, record(), Duration::ZERO).unwrap();
        let err = enqueue(&producer, record(), Duration::from_millis(50)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "producing to raw (local queue waited on for up to 50 ms)"
        );
        assert_eq!(
            err.downcast_ref::<KafkaError>(),
            Some(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
        );
    }

    #[test]
    fn the_pipeline_file_says_what_the_stages_do_with_deleted_input() {
        let kafka = KafkaArgs {
            bootstrap_servers: "127.0.0.1:1".into(),
            properties: vec![],
        };
        let group = ClientConfigs::new(&kafka, "pulsewire-test").group_config("g");
        let set = group.get("auto.offset.reset").unwrap();
        // Every `auto.offset.reset=VALUE` that pipeline.toml's comments name.
        let said: Vec<&str> = crate::config::PIPELINE_TOML
            .split("auto.offset.reset=")
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_alphabetic())
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            said,
            [set],
            "pipeline.toml's comment against the consumer's setting"
        );
    }

    #[test]
    fn operator_properties_win_over_every_role() {
        let kafka = KafkaArgs {
            bootstrap_servers: "127.0.0.1:1".into(),
            properties: vec![crate::config::Properties(vec![
                ("linger.ms".into(), "50".into()),
                ("isolation.level".into(), "read_uncommitted".into()),
            ])],
        };
        let clients = ClientConfigs::new(&kafka, "pulsewire-test");
        let producer = clients.build(ClientConfigs::producer_settings);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("acks"), Some("all"));
        let restore = clients.restore_consumer();
        assert_eq!(restore.get("isolation.level"), Some("read_uncommitted"));
        assert_eq!(restore.get("group.id"), Some("pulsewire-test-restore"));
        assert_eq!(restore.get("queued.min.messages"), Some("5000"));
        assert_eq!(
            clients.plain().get("bootstrap.servers"),
            Some("127.0.0.1:1")
        );
    }
}
