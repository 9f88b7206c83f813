//! The processor's state: statistics plus a bounded duplicate window per
//! (sensor, kind). Serialisable so it can be stored in, and restored from,
//! the compacted state topic.

use serde::{Deserialize, Serialize};

use crate::reading::Reading;
use crate::stats::Stats;

/// What applying a reading did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Counted; the statistics after counting it.
    Counted(Stats),
    /// Same identity as a reading already counted; nothing changed.
    Duplicate,
}

/// State of one (sensor, kind): its statistics and recent event times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    pub sensor_id: u64,
    pub kind: String,
    pub stats: Stats,
    /// Event times (ns since epoch) of the most recent accepted readings.
    pub recent: Vec<i64>,
}

/// All (sensor, kind) states a processor owns.
#[derive(Debug, Default)]
pub struct StateTable {}

impl StateTable {
    pub fn new(dedup_window: usize) -> Self {
        let _ = dedup_window;
        todo!()
    }

    pub fn apply(&mut self, reading: &Reading) -> Applied {
        let _ = reading;
        todo!()
    }
}
