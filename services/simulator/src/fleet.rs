//! A fleet of simulated smartwatches and the CSV lines they report.
//!
//! Each sensor has its own resting baseline (55–80 bpm). Its heart rate
//! follows a bounded random walk that is pulled back towards a target: the
//! baseline at rest, or baseline + 30–80 bpm during an occasional activity
//! burst (about one every four minutes per sensor, lasting 20 s to 2 min).
//! Values are clamped to 40–200 bpm, inside the validator's 30–250. All
//! randomness comes from one ChaCha8 stream seeded by `--seed`, so a seed and
//! a start time reproduce a run line for line.

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const MIN_BPM: f64 = 40.0;
pub const MAX_BPM: f64 = 200.0;

/// The seed's line format: `1,heart_rate,2024-06-19 13:58:37.074766,80`.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

#[derive(Debug, Clone)]
struct Watch {
    id: u64,
    baseline: f64,
    rate: f64,
    /// Target and remaining ticks of the current activity burst.
    burst: Option<(f64, u32)>,
}

#[derive(Debug, Clone)]
pub struct Fleet {
    rng: ChaCha8Rng,
    watches: Vec<Watch>,
}

impl Fleet {
    pub fn new(sensors: u32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let watches = (1..=u64::from(sensors))
            .map(|id| {
                let baseline = rng.gen_range(55.0..=80.0);
                Watch {
                    id,
                    baseline,
                    rate: baseline,
                    burst: None,
                }
            })
            .collect();
        Self { rng, watches }
    }

    /// One reading per sensor, all stamped `time`, appended to `out` as
    /// lines with their `\n`.
    pub fn tick(&mut self, time: DateTime<Utc>, out: &mut Vec<String>) {
        let stamp = time.format(TIME_FORMAT).to_string();
        for watch in &mut self.watches {
            let target = match &mut watch.burst {
                Some((target, left)) => {
                    let target = *target;
                    *left -= 1;
                    if *left == 0 {
                        watch.burst = None;
                    }
                    target
                }
                None if self.rng.gen_bool(0.004) => {
                    let target = watch.baseline + self.rng.gen_range(30.0..=80.0);
                    watch.burst = Some((target, self.rng.gen_range(20..=120)));
                    target
                }
                None => watch.baseline,
            };
            let step = (target - watch.rate) * 0.08 + self.rng.gen_range(-1.5..=1.5);
            watch.rate = (watch.rate + step).clamp(MIN_BPM, MAX_BPM);
            out.push(format!(
                "{},heart_rate,{stamp},{}\n",
                watch.id,
                watch.rate.round() as i64
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use pulsewire_model::parse::{KindRule, Parser};

    fn run(seed: u64, ticks: u32) -> Vec<String> {
        let mut fleet = Fleet::new(10, seed);
        let start = Utc.with_ymd_and_hms(2024, 6, 19, 13, 58, 37).unwrap();
        let mut out = Vec::new();
        for t in 0..ticks {
            fleet.tick(start + chrono::Duration::seconds(t.into()), &mut out);
        }
        out
    }

    #[test]
    fn a_seed_reproduces_the_run() {
        assert_eq!(run(7, 100), run(7, 100));
        assert_ne!(run(7, 100), run(8, 100));
    }

    #[test]
    fn lines_are_valid_readings_within_bounds() {
        let parser = Parser::new(vec![KindRule::new("heart_rate", 30, 250)]);
        let lines = run(1, 3000);
        assert_eq!(lines.len(), 30_000);
        assert_eq!(
            lines[0].split(',').nth(2).unwrap(),
            "2024-06-19 13:58:37.000000"
        );
        let mut max_seen = 0;
        for line in &lines {
            let reading = parser.parse(line.trim_end().as_bytes()).unwrap().unwrap();
            assert!((40..=200).contains(&reading.value), "{line}");
            max_seen = max_seen.max(reading.value);
        }
        assert!(max_seen > 110, "bursts happen in 3000 s (max {max_seen})");
    }
}
