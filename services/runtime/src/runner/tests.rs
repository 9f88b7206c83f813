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
    try_run_stage(broker, shutdown, stage, max_records).unwrap();
}

/// [`run_stage`], with the runner's result.
fn try_run_stage(
    broker: &Shared,
    shutdown: &Shutdown,
    stage: &mut Counter,
    max_records: usize,
) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let env = Env {
        shutdown,
        notifier: &notifier,
    };
    let mut commit = Transactional::new(|| FakeProducer::connect(broker), &notifier)
        .with_markers(stage.changelog());
    run(
        &spec(max_records),
        &env,
        || FakeSource::connect(broker),
        &mut commit,
        &FakeRestore(broker.clone()),
        stage,
    )
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
    // Each transaction also carries its input offsets to the changelog.
    let marker = |next| {
        (
            0,
            format!(r#"{{"topic":"in","partition":0,"next_offset":{next}}}"#),
        )
    };
    assert_eq!(b.markers("counts"), [marker(2), marker(4), marker(5)]);
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

/// A broker whose partition 0 holds `lines`, whose changelog `counts` holds
/// `changelog` (partition 0) and whose group committed `committed` on it.
fn broker_with_state(
    lines: &[(i32, &'static str)],
    changelog: &[(&[u8], &str)],
    committed: Option<i64>,
    stop: tokio::sync::watch::Sender<bool>,
) -> Shared {
    let mut broker = Broker::unshared(lines, &[0], stop);
    for (key, payload) in changelog {
        broker.produced.push(Output {
            topic: "counts".into(),
            partition: Some(0),
            key: Some(key.to_vec()),
            payload: payload.as_bytes().to_vec(),
        });
    }
    broker.committed.extend(committed.map(|c| (0, c)));
    std::rc::Rc::new(std::cell::RefCell::new(broker))
}

const MARKER: &[u8] = integrity::MARKER_KEY;

/// Runs a [`Counter`] that must refuse to run; its message.
fn refusal(broker: &Shared, shutdown: &Shutdown) -> String {
    let mut stage = Counter::default();
    let err = try_run_stage(broker, shutdown, &mut stage, 10).unwrap_err();
    assert!(integrity::is_refused(&err), "{err:#}");
    let b = broker.borrow();
    assert_eq!(
        b.outputs("out"),
        Vec::<String>::new(),
        "nothing was counted"
    );
    assert_eq!(b.producers, 1, "not retried: the stage stops");
    format!("{err:#}")
}

#[test]
fn a_restore_right_after_a_commit_reads_again_until_the_commit_is_visible() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(4, 0), &[0], stop);
    // After the first batch a rebalance, and the restore it runs ends
    // before that batch (acknowledged, its markers not yet written).
    broker
        .borrow_mut()
        .at(2, Event::MarkersPending)
        .at(2, Event::Assign(vec![0]));
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 2);
    let b = broker.borrow();
    // Restored short, the counts would start over: c#1, d#2.
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3", "d#4"]);
    assert_eq!(stage.restored, [vec![0], vec![0]]);
    assert_eq!(b.markers_pending, 0);
}

#[test]
fn a_deleted_changelog_refuses_to_run_and_says_so() {
    let (stop, shutdown) = Shutdown::manual();
    // The group committed 2, the changelog is empty (deleted, recreated).
    let broker = broker_with_state(&lines(3, 0), &[], Some(2), stop);
    let msg = refusal(&broker, &shutdown);
    assert!(
        msg.starts_with(
            "changelog counts partition 0 does not match the committed offset of group group \
             on in/0: the changelog holds no state and no input offset, the group committed 2, \
             still after 0.5 s: the changelog was deleted, recreated or truncated."
        ),
        "{msg}"
    );
    assert!(msg.contains("--delete-offsets"), "{msg}");
}

#[test]
fn a_changelog_ahead_of_the_groups_offset_refuses_to_run() {
    let (stop, shutdown) = Shutdown::manual();
    let marker = r#"{"topic":"in","partition":0,"next_offset":3}"#;
    // The group's offset was reset from 3 to 1.
    let broker = broker_with_state(
        &lines(3, 0),
        &[(b"0", "3"), (MARKER, marker)],
        Some(1),
        stop,
    );
    let msg = refusal(&broker, &shutdown);
    assert!(
        msg.contains(
            "the state is at input offset 3, the group's committed offset is 1: the group's \
             offsets were reset or deleted"
        ),
        "{msg}"
    );
    assert!(msg.contains("--reset-offsets --to-offset 3"), "{msg}");
}

#[test]
fn a_changelog_of_another_input_refuses_to_run() {
    let (stop, shutdown) = Shutdown::manual();
    let marker = r#"{"topic":"other","partition":0,"next_offset":3}"#;
    let broker = broker_with_state(&lines(4, 0), &[(MARKER, marker)], Some(3), stop);
    let msg = refusal(&broker, &shutdown);
    assert!(
        msg.contains("its state belongs to input other/0, not to this stage's input"),
        "{msg}"
    );
}

#[test]
fn state_without_committed_offsets_refuses_to_run() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = broker_with_state(&lines(3, 0), &[(b"0", "3")], None, stop);
    let msg = refusal(&broker, &shutdown);
    assert!(
        msg.contains("it holds 1 state records, but the group has no committed offset"),
        "{msg}"
    );
}

#[test]
fn a_changelog_from_before_markers_is_trusted_and_gets_them() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = broker_with_state(&lines(3, 0), &[(b"0", "2")], Some(2), stop);
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 10);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["c#3"]);
    let marker = r#"{"topic":"in","partition":0,"next_offset":3}"#;
    assert_eq!(b.markers("counts"), [(0, marker.to_string())]);
}

#[test]
fn a_restore_longer_than_the_poll_limit_keeps_the_group() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(6, 0), &[0], stop);
    // A consumer not polled for 3 changelog records is evicted. After six
    // batches of one record the changelog holds 12 (state and markers).
    broker
        .borrow_mut()
        .at(6, Event::Append(0, "x"))
        .at(6, Event::Assign(vec![0]))
        .poll_limit = Some(3);
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 1);
    let b = broker.borrow();
    assert_eq!(b.evictions, 0);
    assert_eq!(
        b.outputs("out"),
        ["a#1", "b#2", "c#3", "d#4", "e#5", "f#6", "x#7"]
    );
    assert_eq!(stage.restored, [vec![0], vec![0]]);
}

#[test]
fn a_committed_offset_gone_from_the_log_stops_the_stage() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(4, 0), &[0], stop);
    // After the first batch (committed: 2), records up to 3 are deleted.
    broker.borrow_mut().at(2, Event::LogStart(0, 3));
    let mut stage = Counter::default();
    let err = try_run_stage(&broker, &shutdown, &mut stage, 2).unwrap_err();
    assert!(integrity::is_refused(&err), "{err:#}");
    assert_eq!(
        format!("{err:#}"),
        "offset 2 of in/0 is no longer in the log, which starts at 3"
    );
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2"], "nothing skipped to");
    assert_eq!(b.committed, BTreeMap::from([(0, 2)]));
    assert_eq!(b.producers, 1, "not retried: the stage stops");
}

#[test]
fn a_committed_offset_gone_from_the_log_during_a_restore_stops_the_stage() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(4, 0), &[0], stop);
    // A rebalance after the first batch; at the next poll, the first of
    // the restore it runs, the paused consumer reports the lost offset
    // (once, as librdkafka does).
    broker
        .borrow_mut()
        .at(2, Event::Assign(vec![0]))
        .at(2, Event::LogStart(0, 3));
    let mut stage = Counter::default();
    let err = try_run_stage(&broker, &shutdown, &mut stage, 2).unwrap_err();
    assert!(integrity::is_refused(&err), "{err:#}");
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2"]);
    assert_eq!(
        stage.restored,
        [vec![0]],
        "the second restore did not finish"
    );
}

#[test]
fn a_partition_librdkafka_stopped_fetching_mid_batch_is_rewound_and_nothing_counts_twice() {
    let (stop, shutdown) = Shutdown::manual();
    let both: Vec<(i32, &str)> = lines(4, 0).into_iter().chain(lines(2, 1)).collect();
    let broker = Broker::new(&both, &[0, 1], stop);
    // After two records of a batch of four, partition 1 stops being
    // fetched (a leader moved): a batch of partition 0 alone would commit,
    // and partition 1 would never be read again.
    broker.borrow_mut().at(2, Event::PositionLost(1));
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 4);
    let b = broker.borrow();
    let mut out = b.outputs("out");
    out.sort();
    assert_eq!(out, ["a#1", "a#1", "b#2", "b#2", "c#3", "d#4"]);
    assert_eq!(b.committed, BTreeMap::from([(0, 4), (1, 2)]));
    assert_eq!(b.rewinds, 1);
}

#[test]
fn a_position_lost_during_a_restore_is_placed_again_after_it() {
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&lines(4, 0), &[0], stop);
    // A new assignment after the first batch; its partition is reported
    // unplaced while the restore runs (a new group's partitions are).
    broker
        .borrow_mut()
        .at(2, Event::Assign(vec![0]))
        .at(2, Event::PositionLost(0));
    let mut stage = Counter::default();
    run_stage(&broker, &shutdown, &mut stage, 2);
    let b = broker.borrow();
    assert_eq!(b.outputs("out"), ["a#1", "b#2", "c#3", "d#4"]);
    assert_eq!(b.committed, BTreeMap::from([(0, 4)]));
    assert_eq!(stage.restored, [vec![0], vec![0]]);
}
