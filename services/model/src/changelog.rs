//! The processor's state in its compacted changelog topic: one record per
//! (sensor, kind), keyed by [`SensorState::changelog_key`].
//!
//! `serde_json` of a [`SensorState`] spells `recent` as a JSON array, about
//! 20 bytes per remembered time, ~20 KiB with a full window of 1024. The
//! processor writes one record per changed (sensor, kind) per batch, so with
//! 1,000 sensors that was ~20 MB per batch, more than the stats themselves.
//! The changelog therefore uses [`SensorState::to_changelog`]: the same JSON
//! object with a version field `"v": 3`, the `floor` once times have left
//! the window (see [`crate::state`]), and `recent` packed into one string,
//! `recent_packed`: ascending times as a decimal unit,
//! a count, the first time, the first gap, and then how much each gap
//! differs from the one before, as protobuf varints, base64. Sensors report
//! at a steady pace, so those differences are small: readings exactly one
//! second apart take 1 byte per time (~1.5 KiB of record for a full window
//! of 1024 instead of ~20 KiB), a jitter of a few milliseconds 2-3 bytes.
//! [`SensorState::from_changelog`] also reads version 2 (the same without
//! `floor`) and the version-less JSON written before it. Neither says what
//! left its window, so their floor is taken as the window's oldest time:
//! never counted twice, at the price of refusing a reading older than every
//! one a sensor had counted before this build.

use std::collections::{BTreeSet, VecDeque};

use anyhow::Context as _;
use base64::Engine as _;
use integer_encoding::VarInt;
use serde::{Deserialize, Serialize};

use crate::state::SensorState;
use crate::stats::Stats;

impl SensorState {
    /// The key of this state's record in the compacted state topic: unique per
    /// (sensor, kind), so compaction keeps exactly the latest state of each.
    pub fn changelog_key(&self) -> String {
        format!("{}/{}", self.sensor_id, self.kind)
    }

    /// The payload of this state's changelog record, format version
    /// [`CHANGELOG_VERSION`] (module docs).
    pub fn to_changelog(&self) -> Vec<u8> {
        let record = ChangelogOut {
            v: CHANGELOG_VERSION,
            sensor_id: self.sensor_id,
            kind: &self.kind,
            stats: &self.stats,
            recent_packed: base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(pack_times(self.recent.iter().copied())),
            values_packed: base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(pack_values(self.values.iter().copied())),
            floor: self.floor,
        };
        let mut payload =
            Vec::with_capacity(256 + record.recent_packed.len() + record.values_packed.len());
        // A struct of plain fields and a map-free Stats: cannot fail.
        serde_json::to_writer(&mut payload, &record).expect("a changelog record serialises");
        payload
    }

    /// Reads a changelog record: version [`CHANGELOG_VERSION`], or the
    /// version-less JSON of [`SensorState`] written by earlier processors.
    pub fn from_changelog(payload: &[u8]) -> anyhow::Result<Self> {
        let record: ChangelogIn =
            serde_json::from_slice(payload).context("changelog record is not valid JSON")?;
        let base64 = |field: &str, text: &str| {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(text.as_bytes())
                .with_context(|| format!("{field} is not base64"))
        };
        let packed =
            |text: String| unpack_times(&base64("recent_packed", &text)?).context("recent_packed");
        let (recent, values, floor) = match (record.v, record.recent, record.recent_packed) {
            (Some(CHANGELOG_VERSION), None, Some(text)) => {
                let values = record.values_packed.context("values_packed is missing")?;
                let values =
                    unpack_values(&base64("values_packed", &values)?).context("values_packed")?;
                (packed(text)?, values, record.floor)
            }
            // Written before the floor and the values were recorded: whatever
            // left the window then is unknown, so everything before it counts
            // as having left; the values are unknown.
            (Some(2), None, Some(text)) => {
                let recent = packed(text)?;
                let floor = recent.front().copied();
                (recent, VecDeque::new(), floor)
            }
            (None, Some(recent), None) => {
                let floor = recent.first().copied();
                (recent.into_iter().collect(), VecDeque::new(), floor)
            }
            (Some(v), _, _) if !(2..=CHANGELOG_VERSION).contains(&v) => {
                anyhow::bail!("changelog record version {v} is not supported (this build reads up to {CHANGELOG_VERSION})")
            }
            _ => anyhow::bail!("changelog record has neither a valid recent nor recent_packed"),
        };
        anyhow::ensure!(
            values.is_empty() || values.len() == recent.len(),
            "values_packed has {} values for {} times",
            values.len(),
            recent.len()
        );
        let mut state = Self {
            sensor_id: record.sensor_id,
            kind: record.kind,
            stats: record.stats,
            recent,
            values,
            floor,
        };
        state.fill_unknown_values();
        Ok(state)
    }
}

/// Version of the changelog records [`SensorState::to_changelog`] writes.
/// Records without a version are the plain JSON of [`SensorState`]; version 2
/// is version 3 without `floor`.
pub const CHANGELOG_VERSION: u32 = 3;

#[derive(Serialize)]
struct ChangelogOut<'a> {
    v: u32,
    sensor_id: u64,
    kind: &'a str,
    stats: &'a Stats,
    recent_packed: String,
    values_packed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    floor: Option<i64>,
}

#[derive(Deserialize)]
struct ChangelogIn {
    #[serde(default)]
    v: Option<u32>,
    sensor_id: u64,
    kind: String,
    stats: Stats,
    #[serde(default)]
    recent: Option<BTreeSet<i64>>,
    #[serde(default)]
    recent_packed: Option<String>,
    #[serde(default)]
    values_packed: Option<String>,
    #[serde(default)]
    floor: Option<i64>,
}

const POW10: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Packs ascending, distinct times (ns): a byte `e` (the unit is `10^e` ns,
/// the largest power of ten up to a second dividing every time), the count,
/// the first time in units (signed), the first gap in units, then for every
/// further time how its gap differs from the previous gap (signed, in
/// wrapping `u64` arithmetic, so any `i64` times round-trip exactly). Every
/// number after `e` is a protobuf varint ([`integer_encoding`]): unsigned
/// LEB128, signed ones zigzag-mapped first so small negatives stay short.
fn pack_times(times: impl ExactSizeIterator<Item = i64> + Clone) -> Vec<u8> {
    let mut e = POW10.len() - 1;
    for t in times.clone() {
        while e > 0 && t.unsigned_abs() % POW10[e] != 0 {
            e -= 1;
        }
        if e == 0 {
            break;
        }
    }
    let unit = POW10[e];
    let mut out = Vec::with_capacity(4 + times.len() * 2);
    out.push(e as u8);
    put(&mut out, times.len() as u64);
    let mut iter = times;
    let Some(first) = iter.next() else {
        return out;
    };
    // Divisible by the unit: exact.
    put(&mut out, first / unit as i64);
    let (mut prev, mut prev_gap) = (first, None::<u64>);
    for t in iter {
        let gap = t.abs_diff(prev) / unit;
        match prev_gap {
            None => put(&mut out, gap),
            Some(p) => put(&mut out, gap.wrapping_sub(p) as i64),
        }
        (prev, prev_gap) = (t, Some(gap));
    }
    out
}

/// The inverse of `pack_times`; refuses anything `pack_times` could not
/// have written (a zero gap, overflow, a wrong count, trailing bytes).
fn unpack_times(bytes: &[u8]) -> anyhow::Result<VecDeque<i64>> {
    let (&e, mut rest) = bytes.split_first().context("empty")?;
    let unit = *POW10
        .get(usize::from(e))
        .with_context(|| format!("unit exponent {e} out of range"))?;
    let count: u64 = take(&mut rest)?;
    let mut times = VecDeque::new();
    let mut prev: Option<(i64, Option<u64>)> = None;
    for _ in 0..count {
        let (t, gap) = match prev {
            None => {
                let t = take::<i64>(&mut rest)?
                    .checked_mul(unit as i64)
                    .context("time out of range")?;
                (t, None)
            }
            Some((p, prev_gap)) => {
                let gap = match prev_gap {
                    None => take(&mut rest)?,
                    Some(g) => g.wrapping_add(take::<i64>(&mut rest)? as u64),
                };
                anyhow::ensure!(gap > 0, "times are not ascending");
                let step = gap.checked_mul(unit).context("gap out of range")?;
                let t = p.checked_add_unsigned(step).context("time out of range")?;
                (t, Some(gap))
            }
        };
        times.push_back(t);
        prev = Some((t, gap));
    }
    anyhow::ensure!(rest.is_empty(), "{} trailing bytes", rest.len());
    Ok(times)
}

/// Packs the values of a window, in the order of its times: the count, the
/// first value, then each one's difference from the one before (wrapping,
/// so any `i64`s round-trip), all protobuf varints. A steady heart rate
/// takes one byte per value.
fn pack_values(values: impl ExactSizeIterator<Item = i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + values.len());
    put(&mut out, values.len() as u64);
    let mut prev = 0_i64;
    for v in values {
        put(&mut out, v.wrapping_sub(prev));
        prev = v;
    }
    out
}

/// The inverse of `pack_values`.
fn unpack_values(mut bytes: &[u8]) -> anyhow::Result<VecDeque<i64>> {
    let count: u64 = take(&mut bytes)?;
    let mut prev = 0_i64;
    let values = (0..count)
        .map(|_| {
            prev = prev.wrapping_add(take::<i64>(&mut bytes)?);
            Ok(prev)
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(bytes.is_empty(), "{} trailing bytes", bytes.len());
    Ok(values)
}

fn put(out: &mut Vec<u8>, n: impl VarInt) {
    out.extend_from_slice(&n.encode_var_vec());
}

/// The next varint of `bytes`, which then starts after it.
fn take<V: VarInt>(bytes: &mut &[u8]) -> anyhow::Result<V> {
    let (n, len) = V::decode_var(bytes).context("truncated or overlong varint")?;
    *bytes = &bytes[len..];
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Reading;
    use crate::state::UNKNOWN_VALUE;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn state_with(times: impl IntoIterator<Item = i64>) -> SensorState {
        let first = Reading {
            sensor_id: 42,
            kind: "heart_rate".into(),
            time: Utc.with_ymd_and_hms(2024, 6, 19, 13, 58, 37).unwrap(),
            value: 80,
        };
        let mut state = SensorState::new(&first);
        state.recent = times.into_iter().collect();
        // Values that rise and fall, as a heart rate does.
        state.values = state.recent.iter().map(|t| 60 + t.rem_euclid(41)).collect();
        state
    }

    #[test]
    fn changelog_record_round_trips_exactly() {
        let base = 1_718_805_517_074_766_000_i64; // 2024-06-19 13:58:37.074766
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![base],
            (0..1024).map(|i| base + i * 1_000_000_000).collect(),
            (0..1024).map(|i| base + i * 1_000_123_000).collect(),
            vec![-5_000_000_000, -1, 0, 1, 7, 1_000_000_000],
            vec![i64::MIN, -1, 0, i64::MAX],
            vec![i64::MIN + 1, i64::MAX - 1],
        ];
        for (times, floor) in cases
            .into_iter()
            .flat_map(|t| [(t.clone(), None), (t, Some(-3))])
        {
            let mut state = state_with(times.clone());
            state.floor = floor;
            let payload = state.to_changelog();
            let text = std::str::from_utf8(&payload).unwrap();
            assert!(
                text.starts_with(r#"{"v":3,"sensor_id":42,"kind":"heart_rate","#),
                "{text}"
            );
            assert_eq!(text.contains(r#","floor":-3}"#), floor.is_some(), "{text}");
            assert_eq!(
                SensorState::from_changelog(&payload).unwrap(),
                state,
                "{times:?}"
            );
        }
    }

    #[test]
    fn changelog_record_is_small() {
        // 1,024 readings a second apart with microsecond timestamps.
        let base = 1_718_805_517_074_766_000_i64;
        let state = state_with((0..1024).map(|i| base + i * 1_000_000_000 + (i % 7) * 1_000));
        let legacy = serde_json::to_vec(&state).unwrap().len();
        let packed = state.to_changelog().len();
        assert!(legacy > 20_000, "{legacy}");
        assert!(packed < 6_500, "{packed} bytes (legacy {legacy})");
        // Exactly one second apart, a heart rate moving by a few beats: one
        // byte per time and one per value.
        let mut steady = state_with((0..1024).map(|i| base + i * 1_000_000_000));
        steady.values = (0..1024).map(|i| 70 + (i % 9) - 4).collect();
        let steady = steady.to_changelog().len();
        assert!(steady < 3_100, "{steady} bytes");
    }

    #[test]
    fn legacy_records_restore_and_bad_ones_are_refused() {
        let written = state_with([3_000, 4_000, 5_000]);
        let legacy = serde_json::to_vec(&written).unwrap();
        // Legacy records do not say what left their window: the floor is
        // their oldest time.
        let state = SensorState {
            floor: Some(3_000),
            values: [UNKNOWN_VALUE; 3].into(),
            ..written.clone()
        };
        assert_eq!(SensorState::from_changelog(&legacy).unwrap(), state);
        // Version 2, as the processor wrote it before the floor (bytes of a
        // real v2 record): the same.
        let v2 = r#"{"v":2,"sensor_id":42,"kind":"heart_rate","stats":{"count":1,"sum":80,"min":80,"max":80,"mean":80.0,"last_value":80,"last_time":"2024-06-19T13:58:37Z"},"recent_packed":"AwMGAQA"}"#;
        assert_eq!(SensorState::from_changelog(v2.as_bytes()).unwrap(), state);
        // Written out of order or twice, a window still restores ascending.
        let shuffled = String::from_utf8(legacy)
            .unwrap()
            .replace("[3000,4000,5000]", "[5000,3000,4000,3000]");
        assert_eq!(
            SensorState::from_changelog(shuffled.as_bytes()).unwrap(),
            state
        );
        let direct: SensorState = serde_json::from_str(&shuffled).unwrap();
        assert_eq!(direct, written);

        for version in ["4", "1"] {
            let other = String::from_utf8(state.to_changelog())
                .unwrap()
                .replace(r#""v":3"#, &format!(r#""v":{version}"#));
            let err = SensorState::from_changelog(other.as_bytes()).unwrap_err();
            assert!(
                format!("{err:#}").contains(&format!("version {version}")),
                "{err:#}"
            );
        }
        assert!(SensorState::from_changelog(b"{not json").is_err());

        // A zero gap, trailing bytes, a truncated varint, a bad unit.
        assert!(unpack_times(&[0, 2, 2, 0]).is_err());
        assert!(unpack_times(&[0, 1, 2, 9]).is_err());
        assert!(unpack_times(&[0, 1, 0x80]).is_err());
        assert!(unpack_times(&[10, 0]).is_err());
        assert!(unpack_times(&[]).is_err());
        assert_eq!(unpack_times(&[0, 2, 2, 3]).unwrap(), VecDeque::from([1, 4]));
        // 1, 4, then a gap of 3 - 2 = 1 (zigzag(-2) = 3): 5.
        assert_eq!(
            unpack_times(&[0, 3, 2, 3, 3]).unwrap(),
            VecDeque::from([1, 4, 5])
        );
        // A second gap of 3 - 3 = 0 (zigzag(-3) = 5) is refused.
        assert!(unpack_times(&[0, 3, 2, 3, 5]).is_err());
        // The writer's bytes are the v2 records already in changelogs, byte for
        // byte: 1 s steps in seconds (e = 9), and a negative first time.
        assert_eq!(pack_times([1, 4, 5].into_iter()), [0, 3, 2, 3, 3]);
        let seconds = [-2_000_000_000, -1_000_000_000, 0, 1_000_000_000];
        assert_eq!(pack_times(seconds.into_iter()), [9, 4, 3, 1, 0, 0]);
        assert!(
            unpack_times(&[0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2]).is_err()
        );
    }

    proptest! {
        #[test]
        fn packed_times_round_trip(times in proptest::collection::btree_set(any::<i64>(), 0..64),
                                   scaled in proptest::collection::btree_set(-1_000_000_000i64..1_000_000_000, 0..64),
                                   e in 0u32..10) {
            let packed = pack_times(times.iter().copied());
            prop_assert_eq!(unpack_times(&packed).unwrap(), times.into_iter().collect::<VecDeque<_>>());
            let unit = 10i64.pow(e);
            let scaled: BTreeSet<i64> = scaled.into_iter().map(|t| t * unit).collect();
            let packed = pack_times(scaled.iter().copied());
            prop_assert_eq!(unpack_times(&packed).unwrap(), scaled.into_iter().collect::<VecDeque<_>>());
        }
    }
}
