//! `fill`: pre-fills a backlog of raw lines or keyed readings.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::kafka::{producer_config, send_retry, Res};
use crate::FillKind;

/// Small deterministic PRNG (xorshift64*), so the backlog is reproducible without extra crates.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub(crate) fn fill(
    brokers: &str,
    topic: &str,
    kind: FillKind,
    lines: u64,
    sensors: u64,
    seed: u64,
    first_sensor: u64,
) -> Res {
    let producer: BaseProducer = producer_config(brokers).create()?;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Per-sensor resting baseline and a bounded random walk in 40..=200 bpm.
    let mut value: Vec<i64> = (0..sensors).map(|_| 55 + (rng.next() % 30) as i64).collect();
    // 2024-06-19 13:58:37.074766 UTC, the seed dataset's first instant.
    let base = chrono::NaiveDate::from_ymd_opt(2024, 6, 19)
        .unwrap()
        .and_hms_micro_opt(13, 58, 37, 74_766)
        .unwrap();
    let started = Instant::now();
    let mut bytes: u64 = 0;
    let mut payload = String::with_capacity(128);
    let mut key = String::with_capacity(16);
    for i in 0..lines {
        let s = i % sensors;
        let step = (i / sensors) as i64;
        let v = &mut value[s as usize];
        *v = (*v + (rng.next() % 7) as i64 - 3).clamp(40, 200);
        let t = base + chrono::Duration::seconds(step);
        let id = first_sensor + s;
        payload.clear();
        key.clear();
        use std::fmt::Write as _;
        match kind {
            FillKind::Raw => {
                write!(payload, "{},heart_rate,{},{}", id, t.format("%Y-%m-%d %H:%M:%S%.6f"), v)?;
            }
            FillKind::Readings => {
                write!(
                    payload,
                    "{{\"sensor_id\":{},\"kind\":\"heart_rate\",\"time\":\"{}Z\",\"value\":{}}}",
                    id,
                    t.format("%Y-%m-%dT%H:%M:%S%.6f"),
                    v
                )?;
                write!(key, "{id}")?;
            }
        }
        bytes += payload.len() as u64;
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(payload.as_bytes());
        if kind == FillKind::Readings {
            rec = rec.key(key.as_bytes());
        }
        send_retry(&producer, rec)?;
        if i % 4096 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"topic": topic, "lines": lines, "sensors": sensors,
            "avg_bytes": bytes as f64 / lines as f64, "seconds": secs, "rate": lines as f64 / secs})
    );
    Ok(())
}
