//! The runner's state machine, driven by the fakes of [`super::fake`].
//!
//! The stage counts the records of each partition and keeps the counts in a
//! changelog, so every output says which count the stage had when it saw
//! the record: a record processed twice, or a count not restored after an
//! abort, shows in the outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::fake::{Broker, Event, Failure, FakeProducer, FakeRestore, FakeSource, Shared};
use super::run::Env;
use super::txn::Transactional;
use super::*;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

#[derive(Default)]
struct Counter {
    counts: BTreeMap<i32, u64>,
    dirty: BTreeSet<i32>,
    resets: usize,
    restored: Vec<Vec<i32>>,
    /// Fail on this payload once.
    fail_on: Option<&'static str>,
}

impl Transform for Counter {
    type Output = Output;

    fn changelog(&self) -> Option<&str> {
        Some("counts")
    }

    fn record(&mut self, record: &Record<'_>, out: &mut Vec<Output>) -> anyhow::Result<()> {
        let payload = String::from_utf8_lossy(record.payload.unwrap_or_default()).into_owned();
        if self.fail_on == Some(payload.as_str()) {
            self.fail_on = None;
            anyhow::bail!("cannot handle {payload}");
        }
        let count = self.counts.entry(record.partition).or_default();
        *count += 1;
        self.dirty.insert(record.partition);
        out.push(output("out", None, format!("{payload}#{count}")));
        Ok(())
    }

    fn end_batch(&mut self, out: &mut Vec<Output>) -> anyhow::Result<()> {
        for p in &self.dirty {
            out.push(output("counts", Some(*p), self.counts[p].to_string()));
        }
        Ok(())
    }

    fn committed(&mut self) {
        self.dirty.clear();
    }

    fn reset(&mut self) {
        self.counts.clear();
        self.dirty.clear();
        self.resets += 1;
    }

    fn restore(&mut self, record: &Record<'_>) -> anyhow::Result<()> {
        let count = std::str::from_utf8(record.payload.unwrap_or_default())?.parse()?;
        self.counts.insert(record.partition, count);
        Ok(())
    }

    fn restored(&mut self, partitions: &[i32]) {
        self.restored.push(partitions.to_vec());
    }
}

fn output(topic: &str, partition: Option<i32>, payload: String) -> Output {
    Output {
        topic: topic.into(),
        partition,
        key: None,
        payload: payload.into_bytes(),
    }
}

fn spec(max_records: usize) -> StageSpec {
    StageSpec {
        name: "test".into(),
        input_topic: fake::INPUT.into(),
        group_id: "group".into(),
        transactional_id: None,
        limits: BatchLimits {
            max_records,
            max_wait: Duration::from_millis(200),
            max_idle: Duration::from_millis(1),
        },
    }
}

/// Runs `stage` over `broker` until the broker has everything committed.
fn run_stage(broker: &Shared, shutdown: &Shutdown, stage: &mut Counter, max_records: usize) {
    let notifier = Notifier::from_env();
    let env = Env {
        shutdown,
        notifier: &notifier,
    };
    let mut commit = Transactional::new(|| FakeProducer::connect(broker), &notifier);
    run(
        &spec(max_records),
        &env,
        || FakeSource::connect(broker),
        &mut commit,
        &FakeRestore(broker.clone()),
        stage,
    )
    .unwrap();
}

/// Runs a fresh [`Counter`] in batches of at most `max_records` over a broker
/// whose input holds `lines` and assigns `partitions`, its producer calls
/// failing with `failures` in turn; the broker and the stage, for the asserts.
fn run_failing(
    lines: &[(i32, &str)],
    partitions: &[i32],
    failures: &[Failure],
    max_records: usize,
) -> (Shared, Counter) {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(lines, partitions, stop);
    broker.borrow_mut().failures.extend(failures);
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, max_records);
    (broker, stage)
}

fn lines(n: usize, partition: i32) -> Vec<(i32, &'static str)> {
    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    NAMES[..n].iter().map(|l| (partition, *l)).collect()
}

#[test]
fn batches_commit_outputs_changelog_and_offsets_together() {
    let (broker, _) = run_failing(&lines(5, 0), &[0], &[], 2);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3", "d#4", "e#5"]);
    // One changelog record per batch of at most two records.
    assert_eq!(b.outputs("counts"), ["2", "4", "5"]);
    assert_eq!(b.committed, BTreeMap::from([(0, 5)]));
    assert_eq!((b.aborts, b.producers), (0, 1));
    assert!(b.assigned.is_empty(), "left the group at shutdown");
}

#[test]
fn a_failed_send_aborts_rewinds_and_redoes_the_batch_from_restored_state() {
    // The first send of the first batch fails.
    let (broker, stage) = run_failing(&lines(4, 0), &[0], &[Failure::Send], 2);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3", "d#4"]);
    assert_eq!((b.aborts, b.rewinds, b.producers), (1, 1, 1));
    // Reset at the assignment and after the abort, each with a restore.
    assert_eq!(stage.resets, 2);
    assert_eq!(stage.restored, [vec![0], vec![0]]);
}

#[test]
fn a_record_the_stage_cannot_handle_rewinds_the_batch() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(3, 0), &[0], stop);
    let mut stage = Counter {
        fail_on: Some("b"),
        ..Counter::default()
    };
    run_stage(&broker, &shutdown, &mut stage, 10);
    let b = broker.borrow();
    // `a` was counted in the failed batch, then forgotten and counted again.
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3"]);
    assert_eq!((b.aborts, b.rewinds), (0, 1), "nothing was begun to abort");
}

#[test]
fn a_commit_timeout_aborts_and_nothing_of_the_batch_is_visible_twice() {
    let mut lines = lines(2, 0);
    lines.extend(self::lines(2, 1));
    let (broker, _) = run_failing(&lines, &[0, 1], &[Failure::CommitTimeout], 10);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "a#1", "b#2"]);
    assert_eq!(b.outputs("counts"), ["2", "2"]);
    assert_eq!(b.committed, BTreeMap::from([(0, 2), (1, 2)]));
    assert_eq!((b.aborts, b.rewinds, b.producers), (1, 1, 1));
}

#[test]
fn a_fenced_producer_rebuilds_the_session_which_redoes_the_batch() {
    let (broker, stage) = run_failing(&lines(3, 0), &[0], &[Failure::Fenced], 10);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3"]);
    assert_eq!(b.committed, BTreeMap::from([(0, 3)]));
    // The abort failed too (fenced), so the clients were rebuilt.
    assert_eq!((b.aborts, b.producers), (0, 2));
    assert_eq!(
        stage.resets, 2,
        "the new session reset and restored the stage"
    );
}

#[test]
fn a_rebalance_mid_batch_drops_the_batch_and_restarts_from_committed_offsets() {
    let (stop, shutdown) = Shutdown::manual();
    let mut lines = lines(4, 0);
    lines.extend(self::lines(2, 1));
    let broker = Broker::new(&lines, &[0], stop);
    // After two records of the first batch, partition 1 is added.
    broker.borrow_mut().at(2, Event::Assign(vec![0, 1]));
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 10);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3", "d#4", "a#1", "b#2"]);
    assert_eq!(b.committed, BTreeMap::from([(0, 4), (1, 2)]));
    assert_eq!(
        b.aborts, 0,
        "nothing was committed or begun before the rebalance"
    );
    assert_eq!(stage.restored, [vec![0], vec![0, 1]]);
}

#[test]
fn a_restore_that_meets_new_input_continues_from_the_committed_state() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(3, 0), &[0], stop);
    // After the first batch: new input, and in the same poll a rebalance.
    // The record polled with the rebalance is put back, the counts are
    // restored, and only then is the record counted.
    broker
        .borrow_mut()
        .at(3, Event::Append(0, "x"))
        .at(3, Event::Assign(vec![0]));
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 3);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3", "x#4"]);
    assert_eq!(b.outputs("counts"), ["3", "4"]);
    assert_eq!(stage.restored, [vec![0], vec![0]]);
    assert_eq!(stage.counts, BTreeMap::from([(0, 4)]));
}
