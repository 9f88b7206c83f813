//! The duplicate rule, late readings, and the changelog round trip.

mod common;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use pulsewire_model::reading::Reading;
use pulsewire_model::state::{Applied, SensorState, StateTable};

fn reading(sensor_id: u64, kind: &str, ns: i64, value: i64) -> Reading {
    Reading {
        sensor_id,
        kind: kind.into(),
        time: Utc.timestamp_nanos(ns),
        value,
    }
}

fn counted(applied: Applied) -> pulsewire_model::stats::Stats {
    match applied {
        Applied::Counted(stats) => stats,
        other => panic!("expected Counted, got {other:?}"),
    }
}

#[test]
fn pipeline_window_is_1024() {
    assert_eq!(common::dedup_window(), 1024);
}

#[test]
fn same_identity_is_a_duplicate_even_in_another_notation() {
    let parser = common::parser();
    let mut table = StateTable::new(common::dedup_window());
    let first = parser
        .parse(b"1,heart_rate,2024-06-19 13:58:37.074766,80")
        .unwrap()
        .unwrap();
    assert_eq!(counted(table.apply(&first)).count, 1);
    for same in [
        "1,heart_rate,2024-06-19 13:58:37.074766,80",
        "1,heart_rate,2024-06-19T13:58:37.074766Z,80",
        "1,heart_rate,2024-06-19T15:58:37.074766000+02:00,80",
    ] {
        let r = parser.parse(same.as_bytes()).unwrap().unwrap();
        assert_eq!(table.apply(&r), Applied::Duplicate, "{same}");
    }
    // Same identity, other value: not counted, a conflict for the DLQ
    // (issue 11, item 3: it used to be dropped as a duplicate).
    let other = parser
        .parse(b"\"1,heart_rate,2024-06-19 13:58:37.0747660,99\"")
        .unwrap()
        .unwrap();
    let conflict = table.apply(&other);
    assert_eq!(conflict, Applied::Conflict { counted: 80 });
    assert_eq!(
        conflict.refusal(&other, &table).unwrap(),
        (
            "conflict",
            "conflict: sensor 1 heart_rate already has value 80 at 2024-06-19T13:58:37.074766Z, not 99"
                .to_owned()
        )
    );
    assert_eq!(table.get(1, "heart_rate").unwrap().stats.count, 1);
    // Another sensor, another kind or another instant is not a duplicate.
    assert_eq!(
        counted(table.apply(&reading(2, "heart_rate", first.time_ns(), 80))).count,
        1
    );
    assert_eq!(
        counted(table.apply(&reading(1, "spo2", first.time_ns(), 97))).count,
        1
    );
    assert_eq!(
        counted(table.apply(&reading(1, "heart_rate", first.time_ns() + 1, 80))).count,
        2
    );
    let state = table.get(1, "heart_rate").unwrap();
    assert_eq!((state.stats.count, state.stats.sum), (2, 160));
    assert_eq!(table.len(), 3);
}

#[test]
fn latest_by_event_time_with_out_of_order_input() {
    let mut table = StateTable::new(16);
    for (ns, v) in [(30, 70), (50, 90), (10, 40), (40, 60), (20, 50)] {
        table.apply(&reading(5, "heart_rate", ns, v));
    }
    let stats = &table.get(5, "heart_rate").unwrap().stats;
    assert_eq!(
        (stats.last_value, stats.last_time),
        (90, Utc.timestamp_nanos(50))
    );
    assert_eq!(
        (stats.count, stats.min, stats.max, stats.mean()),
        (5, 40, 90, 62.0)
    );
}

#[test]
fn window_keeps_the_latest_event_times_and_refuses_older_readings_when_full() {
    let mut table = StateTable::new(3);
    for ns in [10, 20, 30] {
        counted(table.apply(&reading(1, "heart_rate", ns, 60)));
    }
    // Window full {10, 20, 30}: older than all of it is late, not counted.
    assert_eq!(table.apply(&reading(1, "heart_rate", 5, 60)), Applied::Late);
    // Inside the window's span but new: counted, and 10 leaves the window.
    assert_eq!(
        counted(table.apply(&reading(1, "heart_rate", 15, 60))).count,
        4
    );
    let recent: Vec<_> = table
        .get(1, "heart_rate")
        .unwrap()
        .recent
        .iter()
        .copied()
        .collect();
    assert_eq!(recent, vec![15, 20, 30]);
    // 10 was counted and has left the window: it is now late, so never
    // counted twice.
    assert_eq!(
        table.apply(&reading(1, "heart_rate", 10, 60)),
        Applied::Late
    );
    assert_eq!(
        table.apply(&reading(1, "heart_rate", 15, 60)),
        Applied::Duplicate
    );
    assert_eq!(
        counted(table.apply(&reading(1, "heart_rate", 40, 60))).count,
        5
    );
    assert_eq!(table.get(1, "heart_rate").unwrap().stats.count, 5);
}

#[test]
fn window_of_zero_means_one() {
    let mut table = StateTable::new(0);
    assert_eq!(table.dedup_window(), 1);
    counted(table.apply(&reading(1, "heart_rate", 10, 60)));
    assert_eq!(
        table.apply(&reading(1, "heart_rate", 10, 60)),
        Applied::Duplicate
    );
    assert_eq!(table.apply(&reading(1, "heart_rate", 9, 60)), Applied::Late);
    counted(table.apply(&reading(1, "heart_rate", 11, 60)));
}

#[test]
fn state_survives_the_changelog_round_trip() {
    let mut table = StateTable::new(4);
    for ns in 1..=6 {
        table.apply(&reading(3, "heart_rate", ns * 1_000, 60 + ns));
    }
    let state = table.get(3, "heart_rate").unwrap().clone();
    assert_eq!(state.changelog_key(), "3/heart_rate");
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(
        json,
        r#"{"sensor_id":3,"kind":"heart_rate","stats":{"count":6,"sum":381,"min":61,"max":66,"mean":63.5,"last_value":66,"last_time":"1970-01-01T00:00:00.000006Z"},"recent":[3000,4000,5000,6000],"values":[63,64,65,66],"floor":2001}"#
    );

    // A restarted processor restores, then sees a redelivered reading.
    let mut restored = StateTable::new(4);
    assert!(restored
        .insert_restored(serde_json::from_str::<SensorState>(&json).unwrap())
        .is_none());
    assert_eq!(restored.get(3, "heart_rate"), Some(&state));
    assert_eq!(
        restored.apply(&reading(3, "heart_rate", 6_000, 66)),
        Applied::Duplicate
    );
    assert_eq!(
        counted(restored.apply(&reading(3, "heart_rate", 7_000, 67))).count,
        7
    );

    // A smaller configured window trims the restored one to its latest times.
    let mut small = StateTable::new(2);
    small.insert_restored(state.clone());
    let recent: Vec<_> = small
        .get(3, "heart_rate")
        .unwrap()
        .recent
        .iter()
        .copied()
        .collect();
    assert_eq!(recent, vec![5_000, 6_000]);

    assert_eq!(
        restored.remove(3, "heart_rate").map(|s| s.sensor_id),
        Some(3)
    );
    assert!(restored.get(3, "heart_rate").is_none());
    small.clear();
    assert!(small.is_empty());
}

#[test]
fn sorted_is_by_sensor_then_kind() {
    let mut table = StateTable::new(8);
    for (sensor, kind) in [
        (10, "heart_rate"),
        (2, "spo2"),
        (2, "heart_rate"),
        (1, "spo2"),
    ] {
        table.apply(&reading(sensor, kind, 1, 60));
    }
    let order: Vec<_> = table
        .sorted()
        .into_iter()
        .map(|s| (s.sensor_id, s.kind.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            (1, "spo2"),
            (2, "heart_rate"),
            (2, "spo2"),
            (10, "heart_rate")
        ]
    );
    assert_eq!(table.iter().count(), 4);
}

proptest! {
    /// Redelivering any readings (the at-least-once case after a crash) in any
    /// order never changes the state: every reading is counted exactly once
    /// as long as none is more than a window late.
    #[test]
    fn redelivery_never_double_counts(
        times in prop::collection::btree_set(0_i64..1_000, 1..100),
        redelivered in prop::collection::vec(0_usize..100, 0..100),
    ) {
        let times: Vec<i64> = times.into_iter().collect();
        let mut table = StateTable::new(1024);
        for &t in &times {
            table.apply(&reading(1, "heart_rate", t, 60 + t % 100));
        }
        let before = table.get(1, "heart_rate").unwrap().clone();
        for i in redelivered {
            let t = times[i % times.len()];
            prop_assert_eq!(table.apply(&reading(1, "heart_rate", t, 60 + t % 100)), Applied::Duplicate);
        }
        prop_assert_eq!(table.get(1, "heart_rate").unwrap(), &before);
        prop_assert_eq!(before.stats.count, times.len() as u64);
    }

    /// With a window smaller than the stream, no reading is ever counted
    /// twice: each is Counted at most once, whatever is replayed, and what is
    /// refused is Duplicate or Late.
    #[test]
    fn small_window_counts_each_identity_at_most_once(
        stream in prop::collection::vec(0_i64..40, 1..300),
    ) {
        let mut table = StateTable::new(8);
        let mut counted_times = std::collections::BTreeSet::new();
        for &t in &stream {
            if let Applied::Counted(_) = table.apply(&reading(1, "heart_rate", t, 60)) {
                prop_assert!(counted_times.insert(t), "{} counted twice", t);
            }
        }
        prop_assert_eq!(table.get(1, "heart_rate").unwrap().stats.count, counted_times.len() as u64);
    }
}

/// Issue 11, item 5: a window restored from a changelog written under a
/// smaller `dedup_window` is not "full" under the larger one, yet readings
/// older than it may have been counted: they must stay late.
#[test]
fn raising_the_window_never_counts_an_evicted_reading_again() {
    let mut small = StateTable::new(3);
    for ns in [10, 20, 30, 40] {
        counted(small.apply(&reading(1, "heart_rate", ns, 60)));
    }
    // 10 was counted and has left the window {20, 30, 40}.
    let record = small.get(1, "heart_rate").unwrap().to_changelog();

    let mut large = StateTable::new(6);
    large.insert_restored(SensorState::from_changelog(&record).unwrap());
    assert_eq!(
        large.apply(&reading(1, "heart_rate", 10, 60)),
        Applied::Late
    );
    assert_eq!(large.apply(&reading(1, "heart_rate", 5, 60)), Applied::Late);
    assert_eq!(
        large.apply(&reading(1, "heart_rate", 30, 60)),
        Applied::Duplicate
    );
    // Never counted, and newer than everything that left the window: counted.
    assert_eq!(
        counted(large.apply(&reading(1, "heart_rate", 15, 60))).count,
        5
    );
    assert_eq!(
        counted(large.apply(&reading(1, "heart_rate", 50, 60))).count,
        6
    );

    // A window that was full but never evicted anything keeps no floor:
    // readings older than it were never counted.
    let mut full = StateTable::new(3);
    for ns in [10, 20, 30] {
        counted(full.apply(&reading(1, "heart_rate", ns, 60)));
    }
    let record = full.get(1, "heart_rate").unwrap().to_changelog();
    let mut large = StateTable::new(6);
    large.insert_restored(SensorState::from_changelog(&record).unwrap());
    assert_eq!(
        counted(large.apply(&reading(1, "heart_rate", 5, 60))).count,
        4
    );
}

/// Issue 11, item 7: every distinct id used to become a state entry, so a
/// flood of ids grew the processor without bound.
#[test]
fn a_bounded_table_refuses_new_sensors_once_full() {
    let mut table = StateTable::new(4).with_max_states(2);
    counted(table.apply(&reading(1, "heart_rate", 10, 60)));
    counted(table.apply(&reading(2, "heart_rate", 10, 61)));
    let third = reading(3, "heart_rate", 10, 62);
    let full = table.apply(&third);
    assert_eq!(full, Applied::Full);
    assert_eq!(
        full.refusal(&third, &table).unwrap(),
        (
            "state_full",
            "state full: 2 sensor kinds are tracked, the most this processor keeps; sensor 3 heart_rate is not one of them"
                .to_owned()
        )
    );
    assert_eq!(table.len(), 2);
    assert!(table.get(3, "heart_rate").is_none());
    // The sensors it has keep counting; another kind of one is a new entry.
    assert_eq!(
        counted(table.apply(&reading(1, "heart_rate", 20, 60))).count,
        2
    );
    assert_eq!(table.apply(&reading(1, "spo2", 20, 97)), Applied::Full);
    // Unbounded by default.
    let mut open = StateTable::new(4);
    for id in 1..=1_000 {
        counted(open.apply(&reading(id, "heart_rate", 10, 60)));
    }
    assert_eq!(open.len(), 1_000);
}

#[test]
fn refusals_name_the_reading() {
    let mut table = StateTable::new(2);
    for ns in [1_000_000_000, 2_000_000_000] {
        counted(table.apply(&reading(5, "heart_rate", ns, 70)));
    }
    let again = reading(5, "heart_rate", 2_000_000_000, 70);
    let duplicate = table.apply(&again);
    assert_eq!(
        duplicate.refusal(&again, &table).unwrap().1,
        "duplicate: sensor 5 heart_rate already has a reading at 1970-01-01T00:00:02Z"
    );
    let old = reading(5, "heart_rate", 500_000_000, 70);
    let late = table.apply(&old);
    assert_eq!(
        late.refusal(&old, &table).unwrap(),
        (
            "late",
            "late: 1970-01-01T00:00:00.500Z is older than the 2 latest readings of sensor 5 heart_rate; cannot rule out a duplicate"
                .to_owned()
        )
    );
    let new = reading(5, "heart_rate", 3_000_000_000, 71);
    let applied = table.apply(&new);
    assert_eq!(applied.refusal(&new, &table), None);
}
