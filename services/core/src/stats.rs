//! Exact running statistics for one (sensor, kind).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Integer count and sum, min, max, and the latest value by event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub sum: i128,
    pub min: i64,
    pub max: i64,
    pub last_value: i64,
    pub last_time: DateTime<Utc>,
}

impl Stats {
    /// sum / count, computed from the exact integers.
    pub fn mean(&self) -> f64 {
        todo!()
    }
}
