//! The per-reading cost of the hot path: parse + validate a raw line, then
//! fold it into its (sensor, kind) state (exact statistics + duplicate
//! window). Criterion reports throughput in elements (readings) per second,
//! on one core: the benchmark is single-threaded.
//!
//! `cargo bench -p pulsewire-model --bench parse_stats`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pulsewire_model::parse::{KindRule, Parser};
use pulsewire_model::state::StateTable;

const LINES: usize = 100_000;
const SENSORS: u64 = 100;

/// `LINES` lines as the simulator writes them: 100 sensors, one reading a
/// second each, values 40..=200; every tenth line in RFC 3339 with an offset
/// and every hundredth a JSON string, so each parser path is exercised.
fn lines() -> Vec<Vec<u8>> {
    let mut rng: u64 = 0x5eed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    (0..LINES)
        .map(|i| {
            let sensor = i as u64 % SENSORS + 1;
            let second = i as u64 / SENSORS;
            let (h, m, s) = (second / 3600 % 24, second / 60 % 60, second % 60);
            let micros = next() % 1_000_000;
            let value = 40 + next() % 161;
            let line = match i % 100 {
                0 => format!(
                    "\"{sensor},heart_rate,2024-06-19T{h:02}:{m:02}:{s:02}.{micros:06}Z,{value}\""
                ),
                n if n % 10 == 0 => format!(
                    "{sensor},heart_rate,2024-06-19T{h:02}:{m:02}:{s:02}.{micros:06}+00:00,{value}"
                ),
                _ => format!(
                    "{sensor},heart_rate,2024-06-19 {h:02}:{m:02}:{s:02}.{micros:06},{value}"
                ),
            };
            line.into_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let parser = Parser::new(vec![KindRule::new("heart_rate", 30, 250)]);
    let lines = lines();
    assert!(lines
        .iter()
        .all(|line| matches!(parser.parse(line), Ok(Some(_)))));

    let mut group = c.benchmark_group("per_reading");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(10);

    group.bench_function("parse_validate", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(parser.parse(black_box(line)).ok());
            }
        })
    });

    group.bench_function("parse_validate_stats", |b| {
        b.iter_batched_ref(
            || StateTable::new(1024),
            |table| {
                for line in &lines {
                    if let Ok(Some(reading)) = parser.parse(black_box(line)) {
                        black_box(table.apply(&reading));
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
