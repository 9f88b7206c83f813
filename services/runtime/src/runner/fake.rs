//! Fakes of the runner's clients, over one in-memory broker, for tests of
//! the state machine (here and in the stages).
//!
//! The broker has one input topic ([`INPUT`]) with a log per partition, the
//! group's committed offsets, and the committed outputs of every producer.
//! Scripted [`Event`]s happen at the poll that follows the n-th delivered
//! record, so a test is deterministic whatever the timing. The broker
//! requests shutdown once every event has happened and every input record
//! is committed.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use super::integrity::MARKER_KEY;
use super::restore::Restore;
use super::txn::TxnProducer;
use super::{AsRecord, Offsets, Output, Record, Source};

pub const INPUT: &str = "in";

/// An owned input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl AsRecord for FakeRecord {
    fn record(&self) -> Record<'_> {
        Record {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            payload: self.payload.as_deref(),
            timestamp_ms: None,
        }
    }
}

/// Something that happens to the broker.
#[derive(Debug, Clone)]
pub enum Event {
    /// A rebalance: the consumer now owns these partitions, each from its
    /// committed offset (eager protocol).
    Assign(Vec<i32>),
    /// A producer appends a record to an input partition.
    Append(i32, &'static str),
    /// The next restore ends before the last committed transaction: its
    /// commit was acknowledged, its markers are not written yet.
    MarkersPending,
    /// Records of a partition before this offset are deleted (retention,
    /// `kafka-delete-records`).
    LogStart(i32, i64),
    /// librdkafka stops fetching a partition it could not place (a new
    /// group's, or one whose leader moved) and reports it once; a seek
    /// fetches it again.
    PositionLost(i32),
}

/// How a producer call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `send` fails (after the previous outputs entered the transaction).
    Send,
    /// `commit` times out; the transaction can still be aborted.
    CommitTimeout,
    /// Another instance took over the transactional id: every call of this
    /// producer fails from now on, `abort` included.
    Fenced,
}

#[derive(Debug, Default)]
pub struct Broker {
    pub input: BTreeMap<i32, Vec<FakeRecord>>,
    pub committed: BTreeMap<i32, i64>,
    position: BTreeMap<i32, i64>,
    pub assigned: Vec<i32>,
    pub generation: u64,
    /// Outputs of committed transactions (or of a plain producer), in order.
    pub produced: Vec<Output>,
    txn: Option<(Vec<Output>, Offsets)>,
    pub delivered: usize,
    events: VecDeque<(usize, Event)>,
    pub failures: VecDeque<Failure>,
    /// Producers built so far (one per session).
    pub producers: usize,
    pub aborts: usize,
    pub rewinds: usize,
    stop: Option<watch::Sender<bool>>,
    polls: usize,
    /// The group consumer's partitions are paused: polls deliver nothing.
    paused: bool,
    /// `max.poll.interval.ms`, in changelog records read: a consumer not
    /// polled while a restore reads more than this many is evicted from the
    /// group (a rebalance at its next poll).
    pub poll_limit: Option<usize>,
    /// Changelog records read since the group consumer's last poll.
    unpolled: usize,
    /// Restores evicted for want of a poll.
    pub evictions: usize,
    /// The next `n` restores end at the last stable offset before the last
    /// committed transaction: its commit was acknowledged, its markers are
    /// not written yet.
    pub markers_pending: usize,
    /// Index in `produced` where the last committed transaction starts.
    last_txn: usize,
    /// The first offset still in each input partition's log.
    log_start: BTreeMap<i32, i64>,
    /// Partitions whose position fell out of the log: reported once, as
    /// librdkafka does, then never fetched again.
    out_of_range: std::collections::BTreeSet<i32>,
    /// Partitions librdkafka stopped fetching ([`Event::PositionLost`]):
    /// `true` until the loss is reported.
    stopped: BTreeMap<i32, bool>,
}

pub type Shared = Rc<RefCell<Broker>>;

impl Broker {
    /// A broker whose input partitions hold `lines`, assigning `partitions`
    /// at the first poll; `stop` is the test's shutdown trigger.
    pub fn new(lines: &[(i32, &str)], partitions: &[i32], stop: watch::Sender<bool>) -> Shared {
        Rc::new(RefCell::new(Self::unshared(lines, partitions, stop)))
    }

    /// [`Broker::new`], to change before sharing.
    pub fn unshared(lines: &[(i32, &str)], partitions: &[i32], stop: watch::Sender<bool>) -> Self {
        let mut broker = Broker {
            stop: Some(stop),
            ..Broker::default()
        };
        for &(p, line) in lines {
            broker.append(p, line);
        }
        broker
            .events
            .push_back((0, Event::Assign(partitions.to_vec())));
        broker
    }

    /// `event` happens at the first poll after `delivered` records.
    pub fn at(&mut self, delivered: usize, event: Event) -> &mut Self {
        self.events.push_back((delivered, event));
        self
    }

    fn append(&mut self, partition: i32, line: &str) {
        let log = self.input.entry(partition).or_default();
        log.push(FakeRecord {
            topic: INPUT.into(),
            partition,
            offset: log.len() as i64,
            key: None,
            payload: Some(line.as_bytes().to_vec()),
        });
    }

    fn happen(&mut self) {
        while let Some((at, _)) = self.events.front() {
            if *at > self.delivered {
                break;
            }
            match self.events.pop_front().map(|(_, e)| e) {
                Some(Event::Assign(partitions)) => {
                    self.position = partitions
                        .iter()
                        .map(|p| (*p, self.committed.get(p).copied().unwrap_or(0)))
                        .collect();
                    self.assigned = partitions;
                    self.generation += 1;
                    self.paused = false;
                    // A poll runs one rebalance; later events wait for the next.
                    break;
                }
                Some(Event::Append(p, line)) => self.append(p, line),
                Some(Event::MarkersPending) => self.markers_pending += 1,
                Some(Event::LogStart(p, offset)) => {
                    self.log_start.insert(p, offset);
                }
                Some(Event::PositionLost(p)) => {
                    self.stopped.insert(p, true);
                }
                None => {}
            }
        }
    }

    fn done(&self) -> bool {
        self.events.is_empty()
            && self.txn.is_none()
            && self
                .input
                .iter()
                .all(|(p, log)| self.committed.get(p).copied().unwrap_or(0) == log.len() as i64)
    }

    /// The payloads committed to `topic`, in order, as text; without the
    /// input-offset markers (see [`Broker::markers`]).
    pub fn outputs(&self, topic: &str) -> Vec<String> {
        self.produced
            .iter()
            .filter(|o| o.topic == topic && o.key.as_deref() != Some(MARKER_KEY))
            .map(|o| String::from_utf8_lossy(&o.payload).into_owned())
            .collect()
    }

    /// The input-offset markers committed to `topic`: (partition, payload).
    pub fn markers(&self, topic: &str) -> Vec<(i32, String)> {
        self.produced
            .iter()
            .filter(|o| o.topic == topic && o.key.as_deref() == Some(MARKER_KEY))
            .map(|o| {
                let payload = String::from_utf8_lossy(&o.payload).into_owned();
                (o.partition.unwrap_or_default(), payload)
            })
            .collect()
    }

    fn fail(&mut self, when: Failure) -> bool {
        if self.failures.front() == Some(&when) {
            self.failures.pop_front();
            return true;
        }
        false
    }
}

/// The group consumer. Its generation starts at 0, as a new client's does.
pub struct FakeSource(pub Shared, u64);

impl FakeSource {
    /// A new consumer joins the group: the first poll rebalances, and it
    /// reads its partitions from their committed offsets.
    pub fn connect(broker: &Shared) -> anyhow::Result<Self> {
        let mut b = broker.borrow_mut();
        let assigned = b.assigned.clone();
        let at = b.delivered;
        if b.generation > 0 {
            b.events.push_front((at, Event::Assign(assigned)));
        }
        Ok(Self(broker.clone(), b.generation))
    }
}

impl Source for FakeSource {
    type Message<'a> = FakeRecord;
    type Group = ();

    fn poll(&self, _timeout: Duration) -> Option<anyhow::Result<FakeRecord>> {
        let mut b = self.0.borrow_mut();
        b.polls += 1;
        assert!(b.polls < 10_000, "the runner does not get anywhere");
        b.unpolled = 0;
        b.happen();
        if b.done() {
            if let Some(stop) = &b.stop {
                let _ = stop.send(true);
            }
        }
        let assigned = b.assigned.clone();
        for &p in &assigned {
            let position = b.position.get(&p).copied().unwrap_or(0);
            let start = b.log_start.get(&p).copied().unwrap_or(0);
            if position < start && b.out_of_range.insert(p) {
                // What `KafkaSource` makes of auto.offset.reset=error, paused
                // or not.
                return Some(Err(super::integrity::Refused(format!(
                    "offset {position} of {INPUT}/{p} is no longer in the log, which starts at \
                     {start}"
                ))
                .into()));
            }
        }
        let unreported = b.stopped.iter().find(|(_, &u)| u).map(|(&p, _)| p);
        if let Some(p) = unreported {
            b.stopped.insert(p, false);
            // What `KafkaSource` makes of it, paused or not.
            return Some(Err(super::integrity::PositionLost(format!(
                "{INPUT}/{p} not fetched"
            ))
            .into()));
        }
        if b.paused {
            return None;
        }
        for p in assigned {
            let position = b.position.get(&p).copied().unwrap_or(0);
            if b.out_of_range.contains(&p) || b.stopped.contains_key(&p) {
                continue;
            }
            if let Some(record) = b.input.get(&p).and_then(|log| log.get(position as usize)) {
                let record = record.clone();
                b.position.insert(p, position + 1);
                b.delivered += 1;
                return Some(Ok(record));
            }
        }
        None
    }

    fn generation(&self) -> u64 {
        self.0.borrow().generation - self.1
    }

    fn assigned(&self) -> Vec<i32> {
        self.0.borrow().assigned.clone()
    }

    fn seek(&self, topic: &str, partition: i32, offset: i64) -> anyhow::Result<()> {
        assert_eq!(topic, INPUT);
        let mut b = self.0.borrow_mut();
        b.position.insert(partition, offset);
        b.stopped.remove(&partition);
        // The record put back was not delivered after all.
        b.delivered -= 1;
        Ok(())
    }

    fn rewind(&self) -> anyhow::Result<()> {
        let mut b = self.0.borrow_mut();
        b.rewinds += 1;
        for p in b.assigned.clone() {
            let committed = b.committed.get(&p).copied().unwrap_or(0);
            b.position.insert(p, committed);
            b.stopped.remove(&p);
        }
        Ok(())
    }

    fn committed(&self, partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, i64>> {
        let b = self.0.borrow();
        Ok(partitions
            .iter()
            .filter_map(|p| b.committed.get(p).map(|o| (*p, *o)))
            .collect())
    }

    fn pause(&self) -> anyhow::Result<()> {
        self.0.borrow_mut().paused = true;
        Ok(())
    }

    fn resume(&self) -> anyhow::Result<()> {
        self.0.borrow_mut().paused = false;
        Ok(())
    }

    fn commit(&self, offsets: &Offsets) -> anyhow::Result<()> {
        let mut b = self.0.borrow_mut();
        for (_, p, o) in offsets.iter() {
            b.committed.insert(p, o);
        }
        Ok(())
    }

    fn group(&self) -> anyhow::Result<()> {
        Ok(())
    }

    fn leave(&self) {
        self.0.borrow_mut().assigned.clear();
    }
}

/// A transactional producer of the broker.
pub struct FakeProducer {
    broker: Shared,
    fenced: std::cell::Cell<bool>,
}

impl FakeProducer {
    pub fn connect(broker: &Shared) -> anyhow::Result<Self> {
        broker.borrow_mut().producers += 1;
        Ok(Self {
            broker: broker.clone(),
            fenced: false.into(),
        })
    }

    fn usable(&self) -> anyhow::Result<std::cell::RefMut<'_, Broker>> {
        anyhow::ensure!(!self.fenced.get(), "producer fenced");
        Ok(self.broker.borrow_mut())
    }
}

impl TxnProducer for FakeProducer {
    type Group = ();

    fn begin(&self) -> anyhow::Result<()> {
        let mut b = self.usable()?;
        anyhow::ensure!(b.txn.is_none(), "a transaction is already open");
        b.txn = Some(Default::default());
        Ok(())
    }

    fn send(&self, output: &Output) -> anyhow::Result<()> {
        let mut b = self.usable()?;
        anyhow::ensure!(!b.fail(Failure::Send), "send failed");
        let txn = b.txn.as_mut().expect("send outside a transaction");
        txn.0.push(output.clone());
        Ok(())
    }

    fn send_offsets(&self, offsets: &Offsets, _group: &()) -> anyhow::Result<()> {
        let mut b = self.usable()?;
        let txn = b.txn.as_mut().expect("offsets outside a transaction");
        txn.1 = offsets.clone();
        Ok(())
    }

    fn commit(&self) -> anyhow::Result<()> {
        let mut b = self.usable()?;
        anyhow::ensure!(!b.fail(Failure::CommitTimeout), "commit timed out");
        if b.fail(Failure::Fenced) {
            self.fenced.set(true);
            anyhow::bail!("producer fenced");
        }
        let (outputs, offsets) = b.txn.take().expect("commit outside a transaction");
        b.last_txn = b.produced.len();
        b.produced.extend(outputs);
        for (_, p, o) in offsets.iter() {
            b.committed.insert(p, o);
        }
        Ok(())
    }

    fn abort(&self) -> anyhow::Result<()> {
        let mut b = self.usable()?;
        b.aborts += 1;
        b.txn = None;
        Ok(())
    }
}

impl Drop for FakeProducer {
    /// The broker aborts the open transaction of a producer that is gone
    /// (what `init_transactions` of its successor does).
    fn drop(&mut self) {
        self.broker.borrow_mut().txn = None;
    }
}

/// Restores from the committed outputs, calling `keepalive` after every
/// record.
pub struct FakeRestore(pub Shared);

impl Restore for FakeRestore {
    /// Short, for tests of a changelog that never catches up.
    fn catch_up(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn read_to_end(
        &self,
        topic: &str,
        partitions: &[i32],
        on_record: &mut dyn FnMut(&Record<'_>) -> anyhow::Result<()>,
        keepalive: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let visible = {
            let mut b = self.0.borrow_mut();
            if b.markers_pending > 0 {
                b.markers_pending -= 1;
                b.last_txn
            } else {
                b.produced.len()
            }
        };
        let records: Vec<FakeRecord> = self.0.borrow().produced[..visible]
            .iter()
            .filter(|o| o.topic == topic && o.partition.is_some_and(|p| partitions.contains(&p)))
            .enumerate()
            .map(|(i, o)| FakeRecord {
                topic: o.topic.clone(),
                partition: o.partition.unwrap_or_default(),
                offset: i as i64,
                key: o.key.clone(),
                payload: Some(o.payload.clone()),
            })
            .collect();
        for record in &records {
            on_record(&record.record())?;
            {
                let mut b = self.0.borrow_mut();
                b.unpolled += 1;
                if b.poll_limit.is_some_and(|limit| b.unpolled > limit) {
                    // Evicted: the group reassigns the partitions, which the
                    // consumer learns at its next poll.
                    b.unpolled = 0;
                    b.evictions += 1;
                    let (at, assigned) = (b.delivered, b.assigned.clone());
                    b.events.push_front((at, Event::Assign(assigned)));
                }
            }
            keepalive()?;
        }
        Ok(records.len() as u64)
    }
}
