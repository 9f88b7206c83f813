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

fn strategy<'a, W: PointWriter>(
    writer: &'a W,
    broker: &Shared,
    runtime: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
    notifier: &'a Notifier,
) -> WriteThenCommit<'a, W, FakeDlq, impl FnMut() -> anyhow::Result<FakeDlq>> {
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

fn run_on<W: PointWriter>(
    broker: &Shared,
    shutdown: &Shutdown,
    commit: &mut WriteThenCommit<'_, W, FakeDlq, impl FnMut() -> anyhow::Result<FakeDlq>>,
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

/// A store that notes the waiting gauge at every write, then answers like
/// [`Fake`].
struct Watched {
    store: Fake,
    snapshotter: metrics_util::debugging::Snapshotter,
    gauge_at_write: std::sync::Mutex<Vec<f64>>,
}

impl Watched {
    fn gauge(&self) -> f64 {
        let values: Vec<f64> = self
            .snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| {
                let key = key.key();
                key.name() == m::WAITING_SECONDS
                    && key
                        .labels()
                        .any(|l| (l.key(), l.value()) == ("for", "influxdb"))
            })
            .map(|(.., value)| match value {
                metrics_util::debugging::DebugValue::Gauge(v) => v.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values.len(), 1, "one gauge");
        values[0]
    }
}

impl PointWriter for Watched {
    async fn write(&self, points: Vec<DataPoint>) -> Option<influx::Failure> {
        let gauge = self.gauge();
        self.gauge_at_write.lock().unwrap().push(gauge);
        self.store.write(points).await
    }
}

#[test]
fn a_batch_retried_shows_how_long_it_waits_for_influxdb() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let writer = Watched {
        store: Fake {
            flaky: 3.into(),
            ..Fake::default()
        },
        snapshotter: recorder.snapshotter(),
        gauge_at_write: Default::default(),
    };
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (stop, shutdown) = Shutdown::manual();
        let broker = Broker::new(
            &[(0, stats_json(1, 80)), (0, stats_json(2, 81))],
            &[0],
            stop,
        );
        let notifier = Notifier::from_env();
        let mut commit = strategy(&writer, &broker, &runtime, &shutdown, &notifier);
        run_on(&broker, &shutdown, &mut commit);
        assert_eq!(broker.borrow().committed, BTreeMap::from([(0, 2)]));
    });
    let seen = writer.gauge_at_write.lock().unwrap().clone();
    // Flowing: 0 at the first attempt; then the time since that first
    // failure, growing with each of the three retries; 0 once written.
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], 0.0);
    assert!(
        seen[1] > 0.0 && seen[1] < seen[2] && seen[2] < seen[3],
        "{seen:?}"
    );
    assert_eq!(writer.gauge(), 0.0);
    assert_eq!(*writer.store.accepted.lock().unwrap(), [80, 81]);
}
