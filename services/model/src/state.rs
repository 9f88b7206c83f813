//! The processor's state: statistics plus a bounded duplicate window per
//! (sensor, kind). Serialisable so it can be stored in, and restored from,
//! the compacted state topic.
//!
//! # The duplicate rule
//!
//! A reading is identified by (sensor, kind, event instant in nanoseconds), so
//! `13:58:37.5` and `13:58:39.5+02:00` are one reading. Each (sensor, kind)
//! remembers the event times of the `dedup_window` **latest by event time**
//! readings it counted (pipeline.toml: `dedup_window = 1024`). For a new
//! reading with event time `t` ([`StateTable::apply`]):
//!
//! - `t` is in the window with the same value: [`Applied::Duplicate`],
//!   nothing changes; with another value: [`Applied::Conflict`], nothing
//!   changes (two readings cannot both be the sensor's at one instant, and
//!   the second goes to the DLQ for an operator to judge);
//! - the window is full and `t` is older than all of it, or `t` is below the
//!   state's `floor` (one past the latest time that ever left the window):
//!   [`Applied::Late`], nothing changes. Such a reading may be one that was counted and has since
//!   left the window, so counting it could count it twice; refusing it keeps
//!   the promise "never counted twice" exact, at the price of readings that
//!   arrive more than `dedup_window` readings late (about 17 minutes at one
//!   reading a second). The processor counts these in a metric and sends them
//!   to the DLQ, so none is silently dropped;
//! - otherwise it is counted, `t` joins the window and the oldest time leaves
//!   it when it is over size: [`Applied::Counted`].
//!
//! Because the window holds the latest event times, not the latest arrivals,
//! every counted reading at or after the window's oldest time is in it: the
//! rule holds in any arrival order, and the state after a set of readings does
//! not depend on their order (as long as none is late). The floor carries
//! that knowledge across a restart with a larger `dedup_window`: the restored
//! window is then not full, but what left it before may have been counted.
//!
//! The state's record in the compacted changelog topic is in [`crate::changelog`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};

use chrono::SecondsFormat;
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
    /// Older than every event time in a full duplicate window, so it cannot be
    /// told apart from an already counted reading; nothing changed. See the
    /// module docs.
    Late,
    /// Same (sensor, kind, instant) as a counted reading, another value (the
    /// counted one); nothing changed.
    Conflict { counted: i64 },
    /// A (sensor, kind) the table has no room for ([`StateTable::with_max_states`]);
    /// nothing changed.
    Full,
}

impl Applied {
    /// Why `reading` was not counted, as the DLQ reason and a stable code for
    /// metric labels; `None` when it was counted.
    pub fn refusal(&self, reading: &Reading, table: &StateTable) -> Option<(&'static str, String)> {
        let (sensor, kind) = (reading.sensor_id, &reading.kind);
        let time = reading.time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        Some(match self {
            Applied::Counted(_) => return None,
            Applied::Duplicate => (
                "duplicate",
                format!("duplicate: sensor {sensor} {kind} already has a reading at {time}"),
            ),
            Applied::Late => (
                "late",
                format!(
                    "late: {time} is older than the {} latest readings of sensor {sensor} {kind}; \
                     cannot rule out a duplicate",
                    table.dedup_window()
                ),
            ),
            Applied::Conflict { counted } => (
                "conflict",
                format!(
                    "conflict: sensor {sensor} {kind} already has value {counted} at {time}, not {}",
                    reading.value
                ),
            ),
            Applied::Full => (
                "state_full",
                format!(
                    "state full: {} sensor kinds are tracked, the most this processor keeps; \
                     sensor {sensor} {kind} is not one of them",
                    table.len()
                ),
            ),
        })
    }
}

/// The value remembered for a time restored from a changelog record written
/// before values were kept: a reading at that time is taken as a duplicate.
pub const UNKNOWN_VALUE: i64 = i64::MIN;

/// State of one (sensor, kind): its statistics and recent event times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    pub sensor_id: u64,
    pub kind: String,
    pub stats: Stats,
    /// Event times (ns since epoch) of the latest-by-event-time accepted
    /// readings, at most `dedup_window` of them, ascending and distinct. A
    /// JSON array. A sorted ring rather than a `BTreeSet`: 8 bytes per time
    /// instead of ~20 (8 MB, not ~20 MB, for 1,000 full windows of 1024),
    /// and readings mostly arrive in order, so a new time goes to the back.
    #[serde(deserialize_with = "ascending_times")]
    pub recent: VecDeque<i64>,
    /// The value counted at each time of `recent` ([`UNKNOWN_VALUE`] where a
    /// restored record did not say).
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub values: VecDeque<i64>,
    /// One past the latest event time that has left `recent`: readings
    /// before it may have been counted, so they are late whatever the
    /// window's size. `None` while nothing has left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<i64>,
}

impl SensorState {
    /// The state after counting its first reading.
    pub fn new(reading: &Reading) -> Self {
        Self {
            sensor_id: reading.sensor_id,
            kind: reading.kind.clone(),
            stats: Stats::of(reading),
            recent: VecDeque::from([reading.time_ns()]),
            values: VecDeque::from([reading.value]),
            floor: None,
        }
    }

    /// The duplicate rule (module docs) for a reading of this (sensor, kind).
    fn apply(&mut self, reading: &Reading, window: usize) -> Applied {
        let t = reading.time_ns();
        let pos = match self.recent.back() {
            // The common case, a reading newer than all others: no search.
            Some(&newest) if t > newest => self.recent.len(),
            _ => match self.recent.binary_search(&t) {
                Ok(i) => {
                    return match self.values[i] {
                        v if v == reading.value || v == UNKNOWN_VALUE => Applied::Duplicate,
                        counted => Applied::Conflict { counted },
                    }
                }
                Err(pos) => pos,
            },
        };
        // pos 0 of a non-empty window: older than its oldest time.
        if self.recent.len() >= window && pos == 0 || self.floor.is_some_and(|floor| t < floor) {
            return Applied::Late;
        }
        self.recent.insert(pos, t);
        self.values.insert(pos, reading.value);
        self.trim(window);
        self.stats.add_reading(reading);
        Applied::Counted(self.stats.clone())
    }

    /// Gives every time a value, [`UNKNOWN_VALUE`] where a record had none.
    pub(crate) fn fill_unknown_values(&mut self) {
        if self.values.len() != self.recent.len() {
            self.values = self.recent.iter().map(|_| UNKNOWN_VALUE).collect();
        }
    }

    /// Keeps the `window` latest times; the floor rises past those that leave.
    fn trim(&mut self, window: usize) {
        while self.recent.len() > window {
            self.values.pop_front();
            if let Some(gone) = self.recent.pop_front() {
                self.floor = Some(gone.saturating_add(1).max(self.floor.unwrap_or(i64::MIN)));
            }
        }
    }
}

/// All (sensor, kind) states a processor owns.
///
/// The processor applies a batch with [`StateTable::apply`], writes the states
/// of the (sensor, kind)s that were counted ([`StateTable::get`]) to the
/// changelog, and on start feeds the changelog back through
/// [`StateTable::insert_restored`].
#[derive(Debug, Default)]
pub struct StateTable {
    states: HashMap<(u64, String), SensorState>,
    dedup_window: usize,
    max_states: Option<usize>,
}

impl StateTable {
    /// An empty table remembering `dedup_window` event times per
    /// (sensor, kind). A window of 0 is taken as 1: the rule needs at least the
    /// latest time to mean anything.
    pub fn new(dedup_window: usize) -> Self {
        Self {
            states: HashMap::new(),
            dedup_window,
            max_states: None,
        }
    }

    /// The same table keeping at most `max` (sensor, kind)s: a reading of
    /// any other is [`Applied::Full`]. Memory then stays under about
    /// `max * dedup_window * 16` bytes of windows, whatever ids arrive.
    pub fn with_max_states(mut self, max: usize) -> Self {
        self.max_states = Some(max);
        self
    }

    pub fn dedup_window(&self) -> usize {
        self.dedup_window.max(1)
    }

    /// Counts `reading` unless it is a duplicate or late (module docs).
    pub fn apply(&mut self, reading: &Reading) -> Applied {
        let window = self.dedup_window();
        let full = self.max_states.is_some_and(|max| self.states.len() >= max);
        match self.states.entry((reading.sensor_id, reading.kind.clone())) {
            Entry::Vacant(_) if full => Applied::Full,
            Entry::Vacant(slot) => {
                Applied::Counted(slot.insert(SensorState::new(reading)).stats.clone())
            }
            Entry::Occupied(slot) => slot.into_mut().apply(reading, window),
        }
    }

    pub fn get(&self, sensor_id: u64, kind: &str) -> Option<&SensorState> {
        self.states.get(&(sensor_id, kind.to_owned()))
    }

    /// Puts a state read back from the changelog in place, replacing any state
    /// of the same (sensor, kind) — the changelog's last record wins, as in
    /// compaction. Its window is trimmed to this table's size, in case the
    /// configured window shrank. Returns the state it replaced.
    pub fn insert_restored(&mut self, mut state: SensorState) -> Option<SensorState> {
        state.fill_unknown_values();
        state.trim(self.dedup_window());
        self.states
            .insert((state.sensor_id, state.kind.clone()), state)
    }

    /// Forgets one (sensor, kind), e.g. on a changelog tombstone.
    pub fn remove(&mut self, sensor_id: u64, kind: &str) -> Option<SensorState> {
        self.states.remove(&(sensor_id, kind.to_owned()))
    }

    /// Forgets everything, e.g. when partitions are revoked before a restore.
    pub fn clear(&mut self) {
        self.states.clear();
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// All states, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &SensorState> {
        self.states.values()
    }

    /// All states sorted by sensor id, then kind (the order `replay` prints).
    pub fn sorted(&self) -> Vec<&SensorState> {
        let mut states: Vec<_> = self.states.values().collect();
        states.sort_by(|a, b| (a.sensor_id, &a.kind).cmp(&(b.sensor_id, &b.kind)));
        states
    }
}

/// serde: a JSON array of times, kept ascending and distinct whatever order
/// it was written in (the window's invariant).
fn ascending_times<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VecDeque<i64>, D::Error> {
    let times = BTreeSet::<i64>::deserialize(d)?;
    Ok(times.into_iter().collect())
}
