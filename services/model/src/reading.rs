//! A validated reading and the record the processor emits for it.
//!
//! These are the JSON payloads of the `readings` and `stats` topics: the
//! aggregator turns a raw line into a [`Reading`] ([`crate::parse`]), the
//! processor folds it into its sensor's statistics ([`crate::state`]) and emits
//! a [`StatsRecord`], which the uploader writes to InfluxDB.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// One validated measurement from one sensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub sensor_id: u64,
    pub kind: String,
    /// Event time, normalised to UTC.
    pub time: DateTime<Utc>,
    pub value: i64,
}

impl Reading {
    /// The reading's natural identity: (sensor, kind, event instant).
    pub fn key(&self) -> ReadingKey {
        ReadingKey {
            sensor_id: self.sensor_id,
            kind: self.kind.clone(),
            time_ns: self.time_ns(),
        }
    }

    /// Event time as nanoseconds since the Unix epoch.
    ///
    /// The parser only produces times inside the range an `i64` of
    /// nanoseconds can hold (1677-09-21 to 2262-04-11), so this is exact for
    /// every reading that went through [`crate::parse::Parser`]. A reading
    /// built by hand outside that range saturates rather than panicking.
    pub fn time_ns(&self) -> i64 {
        time_ns(&self.time)
    }
}

/// `time` as nanoseconds since the Unix epoch, saturating outside the range
/// an `i64` can hold (see [`Reading::time_ns`]).
pub fn time_ns(time: &DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt()
        .unwrap_or(if time.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        })
}

/// Identity of a reading; two notations of the same instant are the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadingKey {
    pub sensor_id: u64,
    pub kind: String,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
}

/// A reading together with its sensor's statistics after counting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRecord {
    pub reading: Reading,
    pub stats: Stats,
}
