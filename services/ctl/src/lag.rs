//! A consumer group's lag on its input topic, exact: the records it has yet
//! to commit.
//!
//! The usual `end offset - committed offset` is not a record count on
//! transactional topics: every commit leaves a marker that takes an offset,
//! so a group that has consumed everything still shows a lag of one per
//! partition, and an aborted batch's records count as lag forever. So the
//! offsets only bound the lag: where the group's committed offset is below
//! the last stable offset, the records in between are read (read_committed,
//! as the stages read) and counted. Beyond [`COUNT_LIMIT`] offsets the bound
//! is reported instead, marked as not exact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Most offsets read to count a lag exactly (a few MB of CSV lines).
pub const COUNT_LIMIT: i64 = 1_000_000;

/// A group's lag on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// Records after the committed offsets (or the offset bound, unless `exact`).
    pub records: u64,
    pub exact: bool,
    /// Per partition: the committed offset and the last stable offset.
    pub partitions: BTreeMap<i32, PartitionLag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// `None` when the group has committed nothing there (it starts at the beginning).
    pub committed: Option<i64>,
    pub last_stable: i64,
    pub records: u64,
}

/// A client config for reading as the stages do (read_committed), never
/// committing: `group` is only named to look up its offsets.
pub fn reader(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    config
}

/// The partitions of `topic`.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("metadata of topic {topic}"))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("no topic {topic}"))?;
    if let Some(err) = found.error() {
        anyhow::bail!("topic {topic}: {:?}", err);
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    anyhow::ensure!(!ids.is_empty(), "topic {topic} has no partitions");
    Ok(ids)
}

/// The lag of `group` on `topic`.
pub fn group_lag(bootstrap: &str, group: &str, topic: &str) -> anyhow::Result<Lag> {
    let consumer: BaseConsumer = reader(bootstrap, group)
        .create()
        .context("creating a Kafka consumer")?;
    let ids = partitions(&consumer, topic)?;
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .with_context(|| format!("committed offsets of group {group}"))?;
    let mut bounds = BTreeMap::new();
    for &p in &ids {
        let (low, last_stable) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .with_context(|| format!("offsets of {topic}/{p}"))?;
        let committed = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => Some(n),
            _ => None,
        };
        let start = committed.unwrap_or(low).max(low);
        bounds.insert(p, (committed, start, last_stable));
    }
    let gap: i64 = bounds
        .values()
        .map(|(_, start, end)| (end - start).max(0))
        .sum();
    let exact = gap <= COUNT_LIMIT;
    let counts = if exact && gap > 0 {
        // Another client for reading: the group's own name stays untouched.
        let ranges = bounds
            .iter()
            .map(|(p, (_, start, end))| (*p, *start, *end))
            .collect();
        count_records(bootstrap, topic, ranges)?
    } else {
        BTreeMap::new()
    };
    let partitions: BTreeMap<i32, PartitionLag> = bounds
        .into_iter()
        .map(|(p, (committed, start, last_stable))| {
            let records = if exact {
                counts.get(&p).copied().unwrap_or(0)
            } else {
                (last_stable - start).max(0) as u64
            };
            (
                p,
                PartitionLag {
                    committed,
                    last_stable,
                    records,
                },
            )
        })
        .collect();
    Ok(Lag {
        records: partitions.values().map(|p| p.records).sum(),
        exact,
        partitions,
    })
}

/// The committed records in `[start, end)` of each partition.
fn count_records(
    bootstrap: &str,
    topic: &str,
    ranges: Vec<(i32, i64, i64)>,
) -> anyhow::Result<BTreeMap<i32, u64>> {
    let consumer: BaseConsumer = reader(bootstrap, "pulsewire-ctl")
        .create()
        .context("creating a Kafka consumer")?;
    let mut tpl = TopicPartitionList::new();
    let mut open = BTreeMap::new();
    for (p, start, end) in ranges {
        if end > start {
            tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
            open.insert(p, end);
        }
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let mut counts = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "counting the lag of {topic}: partitions {:?} not read to their end within 60 s",
            open.keys().collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(message)) => {
                let p = message.partition();
                if let Some(&end) = open.get(&p) {
                    if message.offset() < end {
                        *counts.entry(p).or_insert(0) += 1;
                    }
                    if message.offset() + 1 >= end {
                        open.remove(&p);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(err)) => return Err(err).context(format!("reading {topic}")),
        }
    }
    Ok(counts)
}
