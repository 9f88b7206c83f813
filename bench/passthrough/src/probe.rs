//! `probe`: readings offered at a fixed rate, stamped with their append time.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::fill::Rng;
use crate::kafka::{producer_config, send_retry, Res};
use crate::ProbeSink;

#[allow(clippy::too_many_arguments)]
pub(crate) fn probe(
    brokers: &str,
    sink: ProbeSink,
    file: Option<String>,
    topic: Option<String>,
    rate: u64,
    seconds: u64,
    sensors: u64,
    first_sensor: u64,
    linger_ms: u64,
) -> Res {
    let mut out = match sink {
        ProbeSink::File => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file.as_deref().ok_or("--file required")?)?,
        ),
        ProbeSink::Kafka => None,
    };
    let producer: Option<BaseProducer> = match sink {
        ProbeSink::Kafka => Some(producer_config(brokers).set("linger.ms", linger_ms.to_string()).create()?),
        ProbeSink::File => None,
    };
    let topic = topic.unwrap_or_default();
    let mut rng = Rng(0x1234_5678);
    let mut value: Vec<i64> = (0..sensors).map(|_| 60 + (rng.next() % 20) as i64).collect();
    let start = Instant::now();
    let total = rate * seconds;
    let mut sent: u64 = 0;
    let mut buf = String::with_capacity(64 * 1024);
    let mut last_us: i64 = 0;
    while sent < total {
        // Emit exactly as many readings as the offered rate allows by now (1 ms ticks).
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        buf.clear();
        while sent < due {
            let s = sent % sensors;
            let v = &mut value[s as usize];
            *v = (*v + (rng.next() % 5) as i64 - 2).clamp(40, 200);
            // Event time = append time; strictly increasing so every reading is distinct.
            let mut now = chrono::Utc::now();
            let us = now.timestamp_micros();
            if us <= last_us {
                now = chrono::DateTime::from_timestamp_micros(last_us + 1).unwrap();
            }
            last_us = now.timestamp_micros();
            use std::fmt::Write as _;
            let line_start = buf.len();
            writeln!(buf, "{},heart_rate,{},{}", first_sensor + s, now.format("%Y-%m-%d %H:%M:%S%.6f"), v)?;
            if let Some(p) = &producer {
                let line = &buf[line_start..buf.len() - 1];
                send_retry(p, BaseRecord::to(&topic).payload(line.as_bytes()))?;
            }
            sent += 1;
        }
        if let Some(f) = out.as_mut() {
            if !buf.is_empty() {
                f.write_all(buf.as_bytes())?;
            }
        }
        if let Some(p) = &producer {
            p.poll(Duration::ZERO);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some(p) = &producer {
        p.flush(Duration::from_secs(30))?;
    }
    eprintln!("probe: offered {sent} readings in {:.2}s", start.elapsed().as_secs_f64());
    Ok(())
}
