//! Exact running statistics for one (sensor, kind).
//!
//! The seed system truncated its running mean to an integer on every step and
//! drifted. Here the state is integers only — count and sum — and the mean is
//! derived from them whenever it is asked for, so it is the same whatever the
//! history and however often the state was saved and restored.
//!
//! The result does not depend on the order readings arrive in: min, max,
//! count and sum are commutative, and the latest value is chosen by event
//! time, with a fixed tie rule (see [`Stats::add`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reading::Reading;

/// Integer count and sum, min, max, and the latest value by event time.
///
/// There is no empty `Stats`: it is created from the first reading
/// ([`Stats::new`]), so `count >= 1` and min/max always mean something.
///
/// On the wire (JSON) it also carries `mean`, for people and for consumers
/// that do not want to divide; that field is ignored when reading it back,
/// because the integers are the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StatsWire", from = "StatsWire")]
pub struct Stats {
    pub count: u64,
    /// Exact: with at most `u64::MAX` values of at most 2^63 in magnitude the
    /// sum stays below 2^127, so an `i128` cannot overflow before `count` does.
    pub sum: i128,
    pub min: i64,
    pub max: i64,
    pub last_value: i64,
    pub last_time: DateTime<Utc>,
}

impl Stats {
    /// The statistics of a single reading.
    pub fn new(value: i64, time: DateTime<Utc>) -> Self {
        Self {
            count: 1,
            sum: i128::from(value),
            min: value,
            max: value,
            last_value: value,
            last_time: time,
        }
    }

    /// The statistics of a single reading.
    pub fn of(reading: &Reading) -> Self {
        Self::new(reading.value, reading.time)
    }

    /// Counts one more reading.
    ///
    /// The latest value is the one with the greatest event time, not the last
    /// to arrive. When two readings have the same event time (the processor
    /// treats those as duplicates, but `Stats` alone does not know), the
    /// greater value wins, so the result never depends on arrival order.
    ///
    /// `count` saturates at `u64::MAX` (about 580 billion years of readings at
    /// one per microsecond); below that everything is exact.
    pub fn add(&mut self, value: i64, time: DateTime<Utc>) {
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(i128::from(value));
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if (time, value) > (self.last_time, self.last_value) {
            self.last_value = value;
            self.last_time = time;
        }
    }

    /// Counts one more reading.
    pub fn add_reading(&mut self, reading: &Reading) {
        self.add(reading.value, reading.time);
    }

    /// sum / count, computed from the exact integers.
    ///
    /// While both fit an `f64` exactly (|sum| and count up to 2^53, which
    /// heart rates reach after some 10^13 readings), one IEEE division gives
    /// the correctly rounded quotient: the mean is exactly `sum / count` to
    /// the last bit. Beyond that, dividing in integers first and adding the
    /// remainder's fraction keeps the result within one unit in the last
    /// place. `NaN` for `count == 0`, which only a hand-built `Stats` can have.
    pub fn mean(&self) -> f64 {
        const EXACT: i128 = 1 << f64::MANTISSA_DIGITS;
        if self.count == 0 {
            return f64::NAN;
        }
        let count = i128::from(self.count);
        if self.sum.abs() <= EXACT && count <= EXACT {
            return self.sum as f64 / count as f64;
        }
        let (quotient, remainder) = (self.sum / count, self.sum % count);
        quotient as f64 + remainder as f64 / count as f64
    }
}

/// The JSON form of [`Stats`]: the fields plus the derived mean.
#[derive(Serialize, Deserialize)]
struct StatsWire {
    count: u64,
    sum: i128,
    min: i64,
    max: i64,
    /// `None` only for the mean of nothing (`count == 0`).
    #[serde(default)]
    mean: Option<f64>,
    last_value: i64,
    last_time: DateTime<Utc>,
}

impl From<Stats> for StatsWire {
    fn from(s: Stats) -> Self {
        Self {
            mean: Some(s.mean()).filter(|m| m.is_finite()),
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
            last_value: s.last_value,
            last_time: s.last_time,
        }
    }
}

impl From<StatsWire> for Stats {
    fn from(w: StatsWire) -> Self {
        Self {
            count: w.count,
            sum: w.sum,
            min: w.min,
            max: w.max,
            last_value: w.last_value,
            last_time: w.last_time,
        }
    }
}
