//! `passthrough`: the ceiling, a minimal consume -> produce loop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{producer_config, send_retry, Res};
use crate::PassMode;

thread_local! {
    pub(crate) static PASS_COMPRESSION: std::cell::RefCell<String> = std::cell::RefCell::new("none".into());
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn passthrough(
    brokers: &str,
    input: &str,
    output: &str,
    group: &str,
    mode: PassMode,
    txid: &str,
    commit_ms: u64,
    batch_size: u64,
) -> Res {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // The stages' consumer read-ahead (services/runtime/src/runner/client.rs): with librdkafka's
        // default fetch.queue.backoff.ms (1 s after a full queue) the passthrough drained
        // slower than the stages it is meant to bound.
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "20000")
        .set("fetch.max.bytes", "8388608")
        .set("fetch.queue.backoff.ms", "20");
    if mode == PassMode::Plain {
        cc.set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", commit_ms.to_string());
    } else {
        cc.set("enable.auto.commit", "false");
    }
    let consumer: BaseConsumer = cc.create()?;
    consumer.subscribe(&[input])?;

    let mut pc = producer_config(brokers);
    pc.set("compression.type", PASS_COMPRESSION.with(|c| c.borrow().clone()))
        .set("partitioner", "murmur2_random");
    if mode == PassMode::Txn {
        pc.set("transactional.id", txid);
    }
    let producer: BaseProducer = pc.create()?;
    if mode == PassMode::Txn {
        producer.init_transactions(Duration::from_secs(30))?;
    }

    let mut n: u64 = 0;
    let mut in_batch: u64 = 0;
    let mut in_txn = false;
    let mut txn_start = Instant::now();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let tick = Duration::from_millis(commit_ms);
    loop {
        if mode == PassMode::Txn && !in_txn {
            producer.begin_transaction()?;
            in_txn = true;
            txn_start = Instant::now();
        }
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                if let Some(v) = m.payload() {
                    rec = rec.payload(v);
                }
                send_retry(&producer, rec)?;
                if mode == PassMode::Txn {
                    positions.insert(m.partition(), m.offset() + 1);
                    in_batch += 1;
                }
                n += 1;
                if n % 1024 == 0 {
                    producer.poll(Duration::ZERO);
                }
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {
                producer.poll(Duration::ZERO);
            }
        }
        if mode == PassMode::Txn && in_txn && (in_batch >= batch_size || txn_start.elapsed() >= tick) {
            in_batch = 0;
            if !positions.is_empty() {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in positions.drain() {
                    tpl.add_partition_offset(input, p, Offset::Offset(o))?;
                }
                let gm = consumer.group_metadata().ok_or("no group metadata")?;
                producer.send_offsets_to_transaction(&tpl, &gm, Duration::from_secs(30))?;
            }
            producer.commit_transaction(Duration::from_secs(30))?;
            in_txn = false;
        }
    }
}
