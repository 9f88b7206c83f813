//! The write-then-commit strategy on the runner's fake clients.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use pulsewire_model::reading::Reading;
use pulsewire_model::stats::Stats;
use pulsewire_runtime::runner::fake::{Broker, FakeSource, Shared};
use pulsewire_runtime::runner::Output;

use super::*;
use crate::influx::tests::Fake;

/// The DLQ of the fake broker; notes the committed offsets at each send.
struct FakeDlq {
    broker: Shared,
    committed_at_send: std::cell::RefCell<Vec<BTreeMap<i32, i64>>>,
}

impl DeadLetters for FakeDlq {
    async fn send(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        let mut b = self.broker.borrow_mut();
        self.committed_at_send
            .borrow_mut()
            .push(b.committed.clone());
        b.produced.push(Output {
            topic: "dlq".into(),
            partition: None,
            key: None,
            payload,
        });
        Ok(())
    }
}

const RETRY: Retry = Retry {
    max_interval: Duration::from_millis(5),
};

fn strategy<'a>(
    writer: &'a Fake,
    broker: &Shared,
    runtime: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
    notifier: &'a Notifier,
) -> WriteThenCommit<'a, Fake, FakeDlq, impl FnMut() -> anyhow::Result<FakeDlq>> {
    let broker = broker.clone();
    WriteThenCommit {
        writer,
        retry: &RETRY,
        connect_dlq: move || {
            Ok(FakeDlq {
                broker: broker.clone(),
                committed_at_send: Default::default(),
            })
        },
        dlq: None,
        runtime: runtime.handle().clone(),
        shutdown: shutdown.clone(),
        notifier,
    }
}

fn run_on(
    broker: &Shared,
    shutdown: &Shutdown,
    commit: &mut WriteThenCommit<'_, Fake, FakeDlq, impl FnMut() -> anyhow::Result<FakeDlq>>,
) {
    let spec = StageSpec {
        name: "test".into(),
        input_topic: "in".into(),
        group_id: "group".into(),
        transactional_id: None,
        limits: BatchLimits {
            max_records: 10,
            max_wait: Duration::from_millis(200),
            max_idle: Duration::from_millis(1),
        },
    };
    let notifier = Notifier::from_env();
    let env = Env {
        shutdown,
        notifier: &notifier,
    };
    let connect = || FakeSource::connect(broker);
    runner::run(&spec, &env, connect, commit, &NoChangelog, &mut ToPoints).unwrap();
}

fn stats_json(sensor_id: u64, value: i64) -> &'static str {
    let time = Utc.with_ymd_and_hms(2024, 6, 19, 13, 58, 41).unwrap();
    let record = StatsRecord {
        reading: Reading {
            sensor_id,
            kind: "heart_rate".into(),
            time,
            value,
        },
        stats: Stats {
            count: 1,
            sum: value.into(),
            min: value,
            max: value,
            last_value: value,
            last_time: time,
        },
    };
    Box::leak(serde_json::to_string(&record).unwrap().into_boxed_str())
}

#[test]
fn points_are_written_refused_ones_dead_lettered_then_offsets_committed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, shutdown) = Shutdown::manual();
    let lines = [
        (0, stats_json(1, 80)),
        (0, stats_json(2, 999)),
        (1, "{not json"),
        (1, stats_json(3, 70)),
    ];
    let broker = Broker::new(&lines, &[0, 1], stop);
    let writer = Fake {
        flaky: 2.into(),
        ..Fake::default()
    };
    let notifier = Notifier::from_env();
    let mut commit = strategy(&writer, &broker, &runtime, &shutdown, &notifier);
    run_on(&broker, &shutdown, &mut commit);

    let mut accepted = writer.accepted.lock().unwrap().clone();
    accepted.sort();
    assert_eq!(
        accepted,
        vec![70, 80],
        "written after two transient failures"
    );
    let b = broker.borrow();
    let dead: Vec<DlqRecord> = b
        .produced
        .iter()
        .map(|o| serde_json::from_slice(&o.payload).unwrap())
        .collect();
    let mut got: Vec<(i32, i64, bool)> = dead
        .iter()
        .map(|r| {
            let refused = r.reason.starts_with("InfluxDB refused the point: HTTP 400");
            let unreadable = r.reason.starts_with("unreadable stats record");
            assert!(refused || unreadable, "{}", r.reason);
            (r.partition, r.offset, refused)
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(0, 1, true), (1, 0, false)]);
    assert!(dead.iter().all(|r| r.stage == "uploader"));
    // The DLQ records were sent before any offset moved.
    let dlq = commit.dlq.as_ref().unwrap();
    assert_eq!(*dlq.committed_at_send.borrow(), vec![BTreeMap::new(); 2]);
    assert_eq!(b.committed, BTreeMap::from([(0, 2), (1, 2)]));
}

#[test]
fn shutdown_while_the_store_fails_leaves_the_batch_uncommitted() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, shutdown) = Shutdown::manual();
    let broker = Broker::new(&[(0, stats_json(1, 80))], &[0], stop);
    // The store never answers; the strategy sees shutdown already requested.
    let writer = Fake {
        flaky: u32::MAX.into(),
        ..Fake::default()
    };
    let (stop_writes, writes_shutdown) = Shutdown::manual();
    stop_writes.send(true).unwrap();
    let notifier = Notifier::from_env();
    let mut commit = strategy(&writer, &broker, &runtime, &writes_shutdown, &notifier);
    run_on(&broker, &shutdown, &mut commit);
    let b = broker.borrow();
    assert!(writer.accepted.lock().unwrap().is_empty());
    assert!(b.produced.is_empty(), "nothing to the DLQ");
    assert!(b.committed.is_empty(), "the batch waits for the next start");
}
