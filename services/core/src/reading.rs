//! A validated reading and the record the processor emits for it.
//!
//! These are the JSON payloads of the `readings` and `stats` topics.

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
        todo!()
    }
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
