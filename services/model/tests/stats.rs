//! Exact statistics: the seed dataset, huge counts, and equality with a naive
//! recomputation for any sequence and order of readings.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use pulsewire_model::reading::{Reading, StatsRecord};
use pulsewire_model::stats::Stats;

fn at(ns: i64) -> DateTime<Utc> {
    Utc.timestamp_nanos(ns)
}

#[test]
fn seed_dataset_sensor_one() {
    // Sensor 1 of the seed: 80, 75, 70, 65, 60, one second apart.
    let t0 = 1_718_805_517_074_766_000;
    let mut stats = Stats::new(80, at(t0));
    for (i, v) in [75, 70, 65, 60].into_iter().enumerate() {
        stats.add(v, at(t0 + (i as i64 + 1) * 1_000_000_000));
    }
    assert_eq!(
        (stats.count, stats.sum, stats.min, stats.max),
        (5, 350, 60, 80)
    );
    assert_eq!(stats.mean(), 70.0);
    assert_eq!(
        (stats.last_value, stats.last_time),
        (60, at(t0 + 4_000_000_000))
    );
}

#[test]
fn latest_is_by_event_time_not_arrival() {
    let mut stats = Stats::new(70, at(3_000));
    stats.add(90, at(5_000)); // the latest event
    stats.add(40, at(1_000)); // arrives last, happened first
    stats.add(50, at(4_000));
    assert_eq!((stats.last_value, stats.last_time), (90, at(5_000)));
}

#[test]
fn tie_on_event_time_keeps_the_greater_value_in_any_order() {
    let mut a = Stats::new(60, at(1));
    a.add(80, at(1));
    let mut b = Stats::new(80, at(1));
    b.add(60, at(1));
    assert_eq!(a, b);
    assert_eq!(a.last_value, 80);
}

#[test]
fn mean_is_not_truncated() {
    let mut stats = Stats::new(60, at(0));
    stats.add(61, at(1));
    assert_eq!(stats.mean(), 60.5);
    stats.add(61, at(2));
    assert_eq!(stats.mean(), 182.0 / 3.0);
}

#[test]
fn mean_is_the_correctly_rounded_quotient() {
    // 18 x 31 + 17 x 30 = 1068 over 35 readings. Integer quotient plus the
    // remainder's fraction (30 + 18/35) rounds twice and lands one unit in
    // the last place low, at 30.514285714285712.
    let mut stats = Stats::new(31, at(0));
    for i in 1..35 {
        stats.add(if i < 18 { 31 } else { 30 }, at(i));
    }
    assert_eq!((stats.count, stats.sum), (35, 1068));
    assert_eq!(stats.mean(), 30.514285714285716);
    assert_eq!(stats.mean(), 1068.0 / 35.0);
}

#[test]
fn no_overflow_at_huge_counts() {
    // A state as it would be after u64::MAX - 1 readings of i64::MAX: far
    // beyond f64's and i64's exact range, still exact in u64 + i128; at both
    // extremes.
    for extreme in [i64::MAX, i64::MIN] {
        let n = u64::MAX - 1;
        let mut stats = Stats {
            count: n,
            sum: i128::from(n) * i128::from(extreme),
            min: extreme,
            max: extreme,
            last_value: extreme,
            last_time: at(0),
        };
        stats.add(extreme, at(1));
        assert_eq!(stats.count, u64::MAX);
        assert_eq!(stats.sum, i128::from(u64::MAX) * i128::from(extreme));
        assert_eq!(stats.mean(), extreme as f64);
    }

    // A mean whose remainder matters: (3 * 2^62 + 1) / 3 readings.
    let big = Stats {
        count: 3,
        sum: 3 * (1_i128 << 62) + 1,
        min: 0,
        max: 0,
        last_value: 0,
        last_time: at(0),
    };
    assert_eq!(big.mean(), (1_u64 << 62) as f64);
}

#[test]
fn json_carries_exact_integers_and_a_derived_mean() {
    let stats = Stats {
        count: u64::MAX,
        sum: i128::from(u64::MAX) * 250,
        min: 30,
        max: 250,
        last_value: 72,
        last_time: "2024-06-19T13:58:41.074766Z".parse().unwrap(),
    };
    let json = serde_json::to_string(&stats).unwrap();
    assert_eq!(
        json,
        r#"{"count":18446744073709551615,"sum":4611686018427387903750,"min":30,"max":250,"mean":250.0,"last_value":72,"last_time":"2024-06-19T13:58:41.074766Z"}"#
    );
    assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), stats);
    // The wire mean is informational: the integers are the truth.
    let lying = json.replace("\"mean\":250.0", "\"mean\":1.0");
    assert_eq!(serde_json::from_str::<Stats>(&lying).unwrap().mean(), 250.0);

    let record = StatsRecord {
        reading: Reading {
            sensor_id: 1,
            kind: "heart_rate".into(),
            time: stats.last_time,
            value: 72,
        },
        stats: stats.clone(),
    };
    let back: StatsRecord = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
    assert_eq!(back, record);
}

/// What the statistics of `readings` must be, computed the obvious way.
fn naive(readings: &[(i64, i64)]) -> (u64, i128, i64, i64, i64, i64) {
    let count = readings.len() as u64;
    let sum = readings.iter().map(|&(_, v)| i128::from(v)).sum();
    let min = readings.iter().map(|&(_, v)| v).min().unwrap();
    let max = readings.iter().map(|&(_, v)| v).max().unwrap();
    // Latest by event time; equal times: greater value.
    let &(t, v) = readings.iter().max().unwrap();
    (count, sum, min, max, v, t)
}

fn fold(readings: &[(i64, i64)]) -> Stats {
    let (t, v) = readings[0];
    let mut stats = Stats::new(v, at(t));
    for &(t, v) in &readings[1..] {
        stats.add(v, at(t));
    }
    stats
}

proptest! {
    #[test]
    fn stats_equal_naive_recomputation_in_any_order(
        // (event time ns, value): small time range so ties happen.
        readings in prop::collection::vec((0_i64..50, any::<i64>()), 1..200),
        seed in any::<u64>(),
    ) {
        let stats = fold(&readings);
        let (count, sum, min, max, last_value, last_ns) = naive(&readings);
        prop_assert_eq!(stats.count, count);
        prop_assert_eq!(stats.sum, sum);
        prop_assert_eq!(stats.min, min);
        prop_assert_eq!(stats.max, max);
        prop_assert_eq!(stats.last_value, last_value);
        prop_assert_eq!(stats.last_time, at(last_ns));
        let expected_mean = sum as f64 / count as f64;
        prop_assert!((stats.mean() - expected_mean).abs() <= expected_mean.abs() * 1e-12 + 1e-9);

        // Any other order gives the identical state.
        let mut shuffled = readings.clone();
        let mut rng = seed;
        for i in (1..shuffled.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (rng >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(fold(&shuffled), stats);
    }

    #[test]
    fn mean_of_heart_rates_is_exact_quotient(
        values in prop::collection::vec(30_i64..=250, 1..500),
    ) {
        let stats = fold(&values.iter().enumerate().map(|(i, &v)| (i as i64, v)).collect::<Vec<_>>());
        let sum: i64 = values.iter().sum();
        prop_assert_eq!(stats.mean(), sum as f64 / values.len() as f64);
    }
}
