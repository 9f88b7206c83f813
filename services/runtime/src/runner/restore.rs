//! Reading a stage's changelog back: every record of the owned partitions,
//! from the beginning to the end (the last stable offset: only committed
//! transactions).
//!
//! The end a read_committed consumer reports is the last stable offset
//! (LSO), which lags behind a commit until the coordinator has written its
//! markers: a restore right after a commit could stop short of it while the
//! group's offsets are already past it. So the restore first waits until
//! every partition's LSO has reached the high watermark it had when the
//! restore began: then every transaction that wrote below it has ended, and
//! reading to the end includes every committed one. Whether that end holds
//! the state of the group's committed offsets is checked by
//! [`super::integrity`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{topic_partitions, ClientConfigs, StageContext, TRANSACTION_TIMEOUT};
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
        self.await_stable(&consumer, topic, partitions)?;
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
                    m::error("restore");
                    tracing::warn!(%err, topic, "error while restoring");
                }
            }
        }
        Ok(records)
    }
}

/// How long a restore waits for the last stable offsets to catch up. This
/// instance's own earlier transactions were aborted by `init_transactions`;
/// another instance's (killed, not restarted) stays open until the
/// coordinator aborts it: the transaction timeout, plus up to the brokers'
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10 s by
/// default) before the coordinator looks.
pub const STABLE_WAIT: Duration = TRANSACTION_TIMEOUT.saturating_add(Duration::from_secs(15));

/// One ListOffsets request; a failed one (a leader moving) is asked again.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);

impl KafkaRestore<'_> {
    /// Waits until the last stable offset of every partition of `topic` to
    /// restore has reached the high watermark it has now.
    fn await_stable(
        &self,
        restore: &BaseConsumer<StageContext>,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<()> {
        let uncommitted: BaseConsumer<StageContext> = self
            .clients
            .high_watermark_consumer()
            .create_with_context(StageContext::default())
            .context("creating the high-watermark consumer")?;
        wait_until_stable(
            topic,
            partitions,
            Instant::now() + STABLE_WAIT,
            |p| Ok(uncommitted.fetch_watermarks(topic, p, WATERMARK_TIMEOUT)?.1),
            // The restore consumer is read_committed: its "high" is the LSO.
            |p| Ok(restore.fetch_watermarks(topic, p, WATERMARK_TIMEOUT)?.1),
            || {
                self.notifier.watchdog();
                anyhow::ensure!(
                    !self.shutdown.is_shutdown(),
                    "shutdown requested during restore"
                );
                std::thread::sleep(Duration::from_millis(100));
                Ok(())
            },
        )
    }
}

/// Where one partition stands in [`wait_until_stable`].
enum Stable {
    /// No high watermark yet; the last answer.
    Unknown(String),
    /// The high watermark to reach, and the last answer.
    Behind(i64, String),
}

/// Learns each partition's high watermark (`high_watermark`), then asks
/// `stable_offset` for its last stable offset until that has reached it,
/// calling `pause` between rounds; a failed request is asked again. Past
/// `deadline`, fails with an error that names each partition still behind.
pub fn wait_until_stable(
    topic: &str,
    partitions: &[i32],
    deadline: Instant,
    mut high_watermark: impl FnMut(i32) -> anyhow::Result<i64>,
    mut stable_offset: impl FnMut(i32) -> anyhow::Result<i64>,
    mut pause: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut behind: BTreeMap<i32, Stable> = partitions
        .iter()
        .map(|&p| (p, Stable::Unknown("not asked".into())))
        .collect();
    loop {
        behind.retain(|&p, state| {
            if let Stable::Unknown(_) = state {
                *state = match high_watermark(p) {
                    Ok(high) => Stable::Behind(high, String::new()),
                    Err(err) => Stable::Unknown(format!("{err:#}")),
                };
            }
            let Stable::Behind(high, last) = state else {
                return true;
            };
            match stable_offset(p) {
                Ok(stable) if stable >= *high => false,
                Ok(stable) => {
                    *last = format!("last stable offset {stable}");
                    true
                }
                Err(err) => {
                    *last = format!("{err:#}");
                    true
                }
            }
        });
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let detail: Vec<String> = behind
                .iter()
                .map(|(p, state)| match state {
                    Stable::Unknown(err) => format!("partition {p} (high watermark: {err})"),
                    Stable::Behind(high, last) => {
                        format!("partition {p} ({last}, high watermark {high})")
                    }
                })
                .collect();
            anyhow::bail!(
                "changelog {topic} not restorable: its last stable offset did not reach the \
                 high watermark of the restore's start within {} s (an open transaction, or \
                 no answer) on {}",
                STABLE_WAIT.as_secs(),
                detail.join(", ")
            );
        }
        pause()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_waits_until_the_last_stable_offset_reaches_the_high_watermark() {
        // Partition 1's last commit has no markers yet: its LSO is 40 while
        // its high watermark is 42, for two rounds.
        let high = BTreeMap::from([(0, 10), (1, 42)]);
        let mut asked = Vec::new();
        let mut lso_1 = [40, 40, 42].into_iter();
        let mut pauses = 0;
        let far = Instant::now() + Duration::from_secs(3600);
        wait_until_stable(
            "state",
            &[0, 1],
            far,
            |p| Ok(high[&p]),
            |p| {
                asked.push(p);
                Ok(if p == 0 { 10 } else { lso_1.next().unwrap() })
            },
            || {
                pauses += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(asked, [0, 1, 1, 1], "partition 0 was stable at once");
        assert_eq!(pauses, 2);
    }

    #[test]
    fn a_failed_request_is_asked_again() {
        let mut high_answers = [Err("Broker: Not leader for partition"), Ok(7)].into_iter();
        let mut stable_answers = [Err("Local: Timed out"), Ok(7)].into_iter();
        let mut pauses = 0;
        wait_until_stable(
            "state",
            &[2],
            Instant::now() + Duration::from_secs(3600),
            |_| high_answers.next().unwrap().map_err(anyhow::Error::msg),
            |_| stable_answers.next().unwrap().map_err(anyhow::Error::msg),
            || {
                pauses += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(pauses, 2);
    }

    #[test]
    fn a_last_stable_offset_that_never_catches_up_fails_naming_the_partition() {
        let err = wait_until_stable(
            "state",
            &[0, 1, 2, 3],
            Instant::now(),
            |p| match p {
                3 => anyhow::bail!("Local: Timed out"),
                _ => Ok([10, 42, 5][p as usize]),
            },
            |p| match p {
                1 => Ok(40),
                2 => anyhow::bail!("Broker: Not leader for partition"),
                _ => Ok(10),
            },
            || panic!("no pause after the deadline"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "changelog state not restorable: its last stable offset did not reach the high \
             watermark of the restore's start within 75 s (an open transaction, or no answer) \
             on partition 1 (last stable offset 40, high watermark 42), partition 2 (Broker: \
             Not leader for partition, high watermark 5), partition 3 (high watermark: Local: \
             Timed out)"
        );
    }
}
