//! Pulsewire benchmark tools (not part of the product).
//!
//! * `passthrough` — the ceiling: a minimal rdkafka consume -> produce loop with no
//!   parsing, acks=all and idempotence, optionally transactional like the stages.
//! * `fill`        — pre-fills a backlog: raw CSV lines (unkeyed, as Connect writes them)
//!   or JSON readings keyed by sensor id (the aggregator's output shape).
//! * `watch`       — waits until a consumer group has drained its topic and prints one JSON
//!   line with wall time, steady-state rate, CPU seconds and peak RSS of a process.
//! * `probe`       — offers readings at a fixed rate, either appended to a file (the one
//!   Kafka Connect tails) or produced straight to a raw topic; each line carries its own
//!   append time as its event time, so the store's timestamp is the append time.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
#[command(about = "Pulsewire benchmark tools: passthrough ceiling, backlog filler, drain watcher, e2e probe")]
struct Cli {
    /// Bootstrap servers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096")]
    brokers: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum PassMode {
    /// Idempotent producer, auto-committed consumer offsets (optimistic ceiling).
    Plain,
    /// Consume-transform-produce in Kafka transactions with the offsets sent in the transaction.
    Txn,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum FillKind {
    /// `sensor,heart_rate,YYYY-MM-DD HH:MM:SS.ffffff,value`, no key.
    Raw,
    /// `{"sensor_id":..,"kind":"heart_rate","time":"..Z","value":..}`, key = sensor id.
    Readings,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ProbeSink {
    File,
    Kafka,
}

#[derive(Subcommand)]
enum Cmd {
    Passthrough {
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
        #[arg(long)]
        group: String,
        #[arg(long, value_enum, default_value = "plain")]
        mode: PassMode,
        /// Transactional id (txn mode).
        #[arg(long, default_value = "bench-passthrough")]
        transactional_id: String,
        /// Transaction length / auto-commit interval in ms.
        #[arg(long, default_value_t = 100)]
        commit_ms: u64,
        /// Most records per transaction (txn mode), like the stages' --batch-size.
        #[arg(long, default_value_t = 2000)]
        batch_size: u64,
        /// Producer compression; lz4 is what the Pulsewire stages use.
        #[arg(long, default_value = "lz4")]
        compression: String,
    },
    Fill {
        #[arg(long)]
        topic: String,
        #[arg(long, value_enum)]
        kind: FillKind,
        #[arg(long, default_value_t = 2_000_000)]
        lines: u64,
        #[arg(long, default_value_t = 1000)]
        sensors: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// First sensor id.
        #[arg(long, default_value_t = 1)]
        first_sensor: u64,
    },
    Watch {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        /// Process whose CPU time and peak RSS are reported.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 900)]
        timeout_s: u64,
        /// Free-form label copied into the output.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Creates topics like provisioning's defaults (3 partitions, RF 3, min.insync.replicas=2).
    Mktopic {
        names: Vec<String>,
        /// cleanup.policy=compact (the processor's state topic).
        #[arg(long)]
        compact: bool,
    },
    /// Deletes every topic whose name starts with one of the prefixes.
    Rmtopics { prefixes: Vec<String> },
    /// Samples the lag of consumer groups (GROUP:TOPIC pairs) once per interval for a while.
    Lag {
        #[arg(long = "pair", required = true)]
        pairs: Vec<String>,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    Probe {
        #[arg(long, value_enum)]
        sink: ProbeSink,
        /// File to append to (sink=file).
        #[arg(long)]
        file: Option<String>,
        /// Topic to produce to (sink=kafka).
        #[arg(long)]
        topic: Option<String>,
        /// Readings per second offered.
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        sensors: u64,
        #[arg(long, default_value_t = 900_001)]
        first_sensor: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Passthrough { input, output, group, mode, transactional_id, commit_ms, batch_size, compression } => {
            PASS_COMPRESSION.with(|c| *c.borrow_mut() = compression);
            passthrough(&cli.brokers, &input, &output, &group, mode, &transactional_id, commit_ms, batch_size)
        }
        Cmd::Fill { topic, kind, lines, sensors, seed, first_sensor } => {
            fill(&cli.brokers, &topic, kind, lines, sensors, seed, first_sensor)
        }
        Cmd::Watch { group, topic, pid, timeout_s, label } => {
            watch(&cli.brokers, &group, &topic, pid, timeout_s, &label)
        }
        Cmd::Mktopic { names, compact } => mktopic(&cli.brokers, &names, compact),
        Cmd::Rmtopics { prefixes } => rmtopics(&cli.brokers, &prefixes),
        Cmd::Lag { pairs, seconds, interval_ms } => lag(&cli.brokers, &pairs, seconds, interval_ms),
        Cmd::Probe { sink, file, topic, rate, seconds, sensors, first_sensor } => {
            probe(&cli.brokers, sink, file, topic, rate, seconds, sensors, first_sensor)
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

thread_local! {
    static PASS_COMPRESSION: std::cell::RefCell<String> = std::cell::RefCell::new("none".into());
}

/// The stages' producer settings (services/runtime/src/runner/client.rs): acks=all, idempotence,
/// linger.ms=5, and (for the passthrough) the same compression. The fillers stay
/// uncompressed, like Kafka Connect's default producer.
fn producer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.num.messages", "10000");
    c
}

/// Sends with back-pressure: on a full local queue, serve delivery reports and retry.
fn send_retry(p: &BaseProducer, mut rec: BaseRecord<'_, [u8], [u8]>) -> Res {
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn passthrough(
    brokers: &str,
    input: &str,
    output: &str,
    group: &str,
    mode: PassMode,
    txid: &str,
    commit_ms: u64,
    batch_size: u64,
) -> Res {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // The stages' consumer read-ahead (services/runtime/src/runner/client.rs): with librdkafka's
        // default fetch.queue.backoff.ms (1 s after a full queue) the passthrough drained
        // slower than the stages it is meant to bound.
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "20000")
        .set("fetch.max.bytes", "8388608")
        .set("fetch.queue.backoff.ms", "20");
    if mode == PassMode::Plain {
        cc.set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", commit_ms.to_string());
    } else {
        cc.set("enable.auto.commit", "false");
    }
    let consumer: BaseConsumer = cc.create()?;
    consumer.subscribe(&[input])?;

    let mut pc = producer_config(brokers);
    pc.set("compression.type", PASS_COMPRESSION.with(|c| c.borrow().clone()))
        .set("partitioner", "murmur2_random");
    if mode == PassMode::Txn {
        pc.set("transactional.id", txid);
    }
    let producer: BaseProducer = pc.create()?;
    if mode == PassMode::Txn {
        producer.init_transactions(Duration::from_secs(30))?;
    }

    let mut n: u64 = 0;
    let mut in_batch: u64 = 0;
    let mut in_txn = false;
    let mut txn_start = Instant::now();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let tick = Duration::from_millis(commit_ms);
    loop {
        if mode == PassMode::Txn && !in_txn {
            producer.begin_transaction()?;
            in_txn = true;
            txn_start = Instant::now();
        }
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
                if let Some(k) = m.key() {
                    rec = rec.key(k);
                }
                if let Some(v) = m.payload() {
                    rec = rec.payload(v);
                }
                send_retry(&producer, rec)?;
                if mode == PassMode::Txn {
                    positions.insert(m.partition(), m.offset() + 1);
                    in_batch += 1;
                }
                n += 1;
                if n % 1024 == 0 {
                    producer.poll(Duration::ZERO);
                }
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {
                producer.poll(Duration::ZERO);
            }
        }
        if mode == PassMode::Txn && in_txn && (in_batch >= batch_size || txn_start.elapsed() >= tick) {
            in_batch = 0;
            if !positions.is_empty() {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in positions.drain() {
                    tpl.add_partition_offset(input, p, Offset::Offset(o))?;
                }
                let gm = consumer.group_metadata().ok_or("no group metadata")?;
                producer.send_offsets_to_transaction(&tpl, &gm, Duration::from_secs(30))?;
            }
            producer.commit_transaction(Duration::from_secs(30))?;
            in_txn = false;
        }
    }
}

/// Small deterministic PRNG (xorshift64*), so the backlog is reproducible without extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn fill(
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

fn proc_cpu_rss(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some((cpu, hwm / 1024.0))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn watch(brokers: &str, group: &str, topic: &str, pid: Option<u32>, timeout_s: u64, label: &str) -> Res {
    let t0 = Instant::now();
    let load_start = loadavg();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let to = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), to)?;
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    if parts.is_empty() {
        return Err(format!("topic {topic} has no partitions").into());
    }
    let mut low = HashMap::new();
    let mut high = HashMap::new();
    for &p in &parts {
        let (l, h) = consumer.fetch_watermarks(topic, p, to)?;
        low.insert(p, l);
        high.insert(p, h);
    }
    let total: i64 = parts.iter().map(|p| high[p] - low[p]).sum();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition(topic, p);
    }
    let (mut t_first, mut t10, mut t90) = (None, None, None);
    let (mut cpu10, mut cpu90) = (0.0, 0.0);
    let mut last_done: i64 = -1;
    let mut last_change = t0;
    let mut samples = 0u64;
    let mut res = None;
    while t0.elapsed() < Duration::from_secs(timeout_s) {
        std::thread::sleep(Duration::from_millis(50));
        let committed = match consumer.committed_offsets(tpl.clone(), to) {
            Ok(c) => c,
            Err(_) => continue,
        };
        let mut done: i64 = 0;
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                done += (o.min(high[&e.partition()]) - low[&e.partition()]).max(0);
            }
        }
        samples += 1;
        let now = t0.elapsed().as_secs_f64();
        let cpu_now = pid.and_then(proc_cpu_rss).map(|x| x.0).unwrap_or(0.0);
        if done > 0 && t_first.is_none() {
            t_first = Some(now);
        }
        if t10.is_none() && done * 10 >= total {
            t10 = Some(now);
            cpu10 = cpu_now;
        }
        if t90.is_none() && done * 10 >= total * 9 {
            t90 = Some(now);
            cpu90 = cpu_now;
        }
        if done != last_done {
            last_done = done;
            last_change = Instant::now();
        }
        let lag = total - done;
        // Transactional inputs carry one control record per transaction; tolerate one per
        // partition once progress has stopped for 3 s.
        let settled = lag <= parts.len() as i64 && last_change.elapsed() > Duration::from_secs(3);
        if lag == 0 || settled {
            let end = if lag == 0 { now } else { (last_change - t0).as_secs_f64() };
            let (cpu, rss) = pid.and_then(proc_cpu_rss).unwrap_or((0.0, 0.0));
            res = Some((end, cpu, rss));
            break;
        }
    }
    let (end, cpu, rss) = res.ok_or("timeout: group did not drain")?;
    let (t10, t90) = (t10.unwrap_or(0.0), t90.unwrap_or(end));
    let steady = if t90 > t10 { 0.8 * total as f64 / (t90 - t10) } else { 0.0 };
    let steady_cpu_per_m = if t90 > t10 && cpu90 > cpu10 { (cpu90 - cpu10) / (0.8 * total as f64) * 1e6 } else { 0.0 };
    println!(
        "{}",
        serde_json::json!({
            "label": label, "topic": topic, "group": group, "messages": total,
            "wall_s": end, "first_commit_s": t_first, "t10_s": t10, "t90_s": t90,
            "rate_total": total as f64 / end, "rate_steady": steady,
            "cpu_s": cpu, "cpu_s_per_million": cpu / total as f64 * 1e6,
            "steady_cpu_s_per_million": steady_cpu_per_m,
            "peak_rss_mb": rss, "load_start": load_start, "load_end": loadavg(), "samples": samples
        })
    );
    Ok(())
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    ClientConfig::new().set("bootstrap.servers", brokers).create()
}

fn mktopic(brokers: &str, names: &[String], compact: bool) -> Res {
    let a = admin(brokers)?;
    let policy = if compact { "compact" } else { "delete" };
    let new: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, 3, TopicReplication::Fixed(3))
                .set("min.insync.replicas", "2")
                .set("cleanup.policy", policy)
        })
        .collect();
    for r in futures::executor::block_on(a.create_topics(&new, &AdminOptions::new()))? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("creating {t}: {e}").into()),
        }
    }
    // Wait until every new topic has leaders, so the first producer does not race creation.
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    for n in names {
        for _ in 0..100 {
            let md = c.fetch_metadata(Some(n), Duration::from_secs(5))?;
            let t = &md.topics()[0];
            if t.error().is_none() && t.partitions().len() == 3 && t.partitions().iter().all(|p| p.leader() >= 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn rmtopics(brokers: &str, prefixes: &[String]) -> Res {
    let a = admin(brokers)?;
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let md = c.fetch_metadata(None, Duration::from_secs(10))?;
    let doomed: Vec<&str> = md
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    if !doomed.is_empty() {
        futures::executor::block_on(a.delete_topics(&doomed, &AdminOptions::new()))?;
    }
    eprintln!("deleted {} topics", doomed.len());
    Ok(())
}

fn lag(brokers: &str, pairs: &[String], seconds: u64, interval_ms: u64) -> Res {
    let to = Duration::from_secs(5);
    let mut clients = Vec::new();
    for pair in pairs {
        let (g, t) = pair.split_once(':').ok_or("--pair GROUP:TOPIC")?;
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", g)
            .set("enable.auto.commit", "false")
            .create()?;
        clients.push((pair.clone(), t.to_string(), c, Vec::<i64>::new()));
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        for (_, topic, c, series) in clients.iter_mut() {
            let mut tpl = TopicPartitionList::new();
            for p in 0..3 {
                tpl.add_partition(topic, p);
            }
            let mut lag = 0i64;
            if let Ok(com) = c.committed_offsets(tpl, to) {
                for e in com.elements() {
                    let (lo, hi) = c.fetch_watermarks(topic, e.partition(), to).unwrap_or((0, 0));
                    let done = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => lo,
                    };
                    lag += (hi - done).max(0);
                }
                series.push(lag);
            }
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    let mut out = serde_json::Map::new();
    for (pair, _, _, series) in clients {
        let max = series.iter().copied().max().unwrap_or(-1);
        let last = series.last().copied().unwrap_or(-1);
        out.insert(pair, serde_json::json!({"max": max, "last": last, "series": series}));
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn probe(
    brokers: &str,
    sink: ProbeSink,
    file: Option<String>,
    topic: Option<String>,
    rate: u64,
    seconds: u64,
    sensors: u64,
    first_sensor: u64,
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
        ProbeSink::Kafka => Some(producer_config(brokers).set("linger.ms", "1").create()?),
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
