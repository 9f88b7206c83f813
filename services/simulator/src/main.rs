//! `pulsewire-simulator`: a fleet of smartwatches reporting heart rate.
//!
//! Appends CSV lines in the seed's format to the file Kafka Connect tails
//! (see [`sink`] for why the file is only ever appended to), or produces them
//! straight to the raw topic with `--kafka`. `--replay FILE` sends an
//! existing CSV's lines instead of simulated ones. The model is in [`fleet`].

mod fleet;
mod progress;
mod sink;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Parser as _;
use pulsewire_runtime::config::{self, de, Layers, Stage, StageFlags};
use pulsewire_runtime::metrics as m;
use pulsewire_runtime::notify::Notifier;
use pulsewire_runtime::runner::client::{topic_partitions, ClientConfigs};
use pulsewire_runtime::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;

/// Simulates smartwatches (resting baseline, random walk, activity bursts,
/// 40-200 bpm) and appends their readings as CSV lines to the file Kafka
/// Connect tails.
#[derive(Debug, clap::Parser, Serialize)]
#[command(name = "pulsewire-simulator", version, after_help = config::LAYERS_HELP)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    flags: StageFlags,

    /// The CSV file to append to (never truncated or rotated; see
    /// --max-file-bytes) [default: the pipeline's [connect] file].
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,

    /// Number of simulated sensors (ids 1..=N).
    #[arg(long, value_name = "N", value_parser = parse_sensors)]
    sensors: Option<u32>,

    /// Readings per second per sensor.
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    rate_per_sensor: Option<f64>,

    /// Raw topic for --kafka.
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    raw_topic: Option<String>,

    #[command(flatten)]
    #[serde(skip)]
    run: RunFlags,
}

/// The flags of one run, which have no value in the pipeline file (and so
/// take their variables through clap alone).
#[derive(Debug, Default, clap::Args)]
struct RunFlags {
    /// Refuse to grow --output past this many bytes (0: no limit). The file is
    /// append-only for Connect's exactly-once source, so this is how it is bounded.
    #[arg(long, env = "PULSEWIRE_MAX_FILE_BYTES", value_name = "BYTES", default_value_t = 1 << 30)]
    max_file_bytes: u64,

    /// Seed of the random generator; the same seed (and --start-time) gives the
    /// same lines. Without it a random seed is drawn and logged.
    #[arg(long, env = "PULSEWIRE_SEED", value_name = "N")]
    seed: Option<u64>,

    /// Stop after this many lines.
    #[arg(long, env = "PULSEWIRE_COUNT", value_name = "N", value_parser = config::parse_positive)]
    count: Option<usize>,

    /// Stamp readings from this instant on, one tick (1/--rate-per-sensor s)
    /// apart, instead of the wall clock: deterministic output.
    /// `YYYY-MM-DD HH:MM:SS[.f]` (UTC) or RFC 3339.
    #[arg(long, env = "PULSEWIRE_START_TIME", value_name = "TIME", value_parser = parse_time)]
    start_time: Option<DateTime<Utc>>,

    /// Write as fast as possible instead of in real time.
    #[arg(long, env = "PULSEWIRE_FAST")]
    fast: bool,

    /// Emit the lines of this CSV file instead of simulated readings.
    #[arg(long, env = "PULSEWIRE_REPLAY", value_name = "FILE")]
    replay: Option<PathBuf>,

    /// Lines per second in --replay mode (ignored with --fast).
    #[arg(long, env = "PULSEWIRE_RATE", value_name = "LINES_PER_S", default_value = "10", value_parser = parse_rate)]
    rate: f64,

    /// Produce the lines to the raw Kafka topic instead of the file (load tests).
    #[arg(long, env = "PULSEWIRE_KAFKA")]
    kafka: bool,
}

/// The simulator's own settings, resolved from the layers.
#[derive(Debug, Deserialize)]
struct Settings {
    output: PathBuf,
    #[serde(deserialize_with = "sensors")]
    sensors: u32,
    #[serde(deserialize_with = "rate")]
    rate_per_sensor: f64,
    #[serde(deserialize_with = "de::name")]
    raw_topic: String,
}

fn sensors<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    de::checked(d, parse_sensors)
}

fn rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    de::checked(d, parse_rate)
}

fn parse_sensors(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{value}` is not a whole number")),
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err(format!(
            "`{value}` is not a rate between 0 (exclusive) and 1000000 per second"
        )),
    }
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| format!("`{value}` is neither `YYYY-MM-DD HH:MM:SS[.f]` nor RFC 3339"))
}

/// Where the lines come from.
enum Source {
    Fleet {
        fleet: Box<fleet::Fleet>,
        start: Option<DateTime<Utc>>,
        period: Duration,
        tick: u64,
    },
    Replay {
        lines: tokio::io::Lines<tokio::io::BufReader<tokio::fs::File>>,
        per_batch: usize,
    },
}

impl Source {
    /// The next batch of lines (empty at the end of a replay).
    async fn next(&mut self, out: &mut Vec<String>) -> anyhow::Result<()> {
        match self {
            Source::Fleet {
                fleet,
                start,
                period,
                tick,
            } => {
                let time = match start {
                    Some(start) => *start + chrono::Duration::from_std(*period * (*tick as u32))?,
                    None => Utc::now(),
                };
                *tick += 1;
                fleet.tick(time, out);
            }
            Source::Replay { lines, per_batch } => {
                while out.len() < *per_batch {
                    match lines.next_line().await? {
                        Some(line) => out.push(format!("{line}\n")),
                        None => break,
                    }
                }
            }
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    pulsewire_runtime::memory::service_main(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let layers = Layers::load(Stage::Simulator, &args)?;
    let own: Settings = layers.extract()?;
    let common = layers.start()?;
    let notifier = Notifier::from_env();
    let mut shutdown = Shutdown::listen()?;

    // A replay into the file goes on where an earlier run stopped (progress.rs).
    let mut progress = None;
    let (mut source, interval) = match &args.run.replay {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot read --replay {}", path.display()))?;
            let bytes = file.metadata().await?.len();
            // Batches of ~0.1 s worth of lines keep pacing smooth.
            let per_batch = if args.run.fast {
                1000
            } else {
                (args.run.rate / 10.0).ceil().max(1.0) as usize
            };
            let interval = Duration::from_secs_f64(per_batch as f64 / args.run.rate);
            let mut lines = tokio::io::BufReader::new(file).lines();
            if !args.run.kafka {
                let at = progress::Progress::file_for(&own.output);
                let done = progress::Progress::load(&at, path, bytes)?;
                if done.lines > 0 {
                    tracing::info!(lines = done.lines, progress = %at.display(), "resuming the replay");
                }
                for _ in 0..done.lines {
                    lines.next_line().await?;
                }
                progress = Some((done, at));
            }
            (Source::Replay { lines, per_batch }, interval)
        }
        None => {
            let seed = args.run.seed.unwrap_or_else(rand::random);
            tracing::info!(
                seed,
                sensors = own.sensors,
                rate_per_sensor = own.rate_per_sensor,
                "simulating"
            );
            let period = Duration::from_secs_f64(1.0 / own.rate_per_sensor);
            let fleet = Box::new(fleet::Fleet::new(own.sensors, seed));
            (
                Source::Fleet {
                    fleet,
                    start: args.run.start_time,
                    period,
                    tick: 0,
                },
                period,
            )
        }
    };

    let mut sink = if args.run.kafka {
        let clients = ClientConfigs::new(&common.kafka, "pulsewire-simulator");
        let producer = clients.idempotent_producer()?;
        // Readiness for --kafka: the brokers answer for the raw topic.
        let metadata: rdkafka::consumer::BaseConsumer = clients.plain().create()?;
        tokio::task::block_in_place(|| topic_partitions(&metadata, &own.raw_topic))?;
        sink::LineWriter::Kafka {
            producer,
            topic: own.raw_topic.clone(),
        }
    } else {
        sink::LineWriter::file(&own.output, args.run.max_file_bytes).await?
    };
    let target = if args.run.kafka {
        own.raw_topic.clone()
    } else {
        own.output.display().to_string()
    };
    notifier.ready(&format!("writing to {target}"));

    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = 0usize;
    let mut lines = Vec::new();
    let mut full = false;
    while !shutdown.is_shutdown() {
        notifier.watchdog();
        if full {
            // Stay up (a restart would only hit the limit again) but idle.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.recv() => break,
            }
        }
        if !args.run.fast {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.recv() => break,
            }
        }
        lines.clear();
        // In fast mode, group ticks so each flush carries ~1000 lines.
        loop {
            source.next(&mut lines).await?;
            let more =
                args.run.fast && matches!(source, Source::Fleet { .. }) && lines.len() < 1000;
            if !more || args.run.count.is_some_and(|c| written + lines.len() >= c) {
                break;
            }
        }
        if let Some(count) = args.run.count {
            lines.truncate(count - written);
        }
        if lines.is_empty() {
            tracing::info!(written, "replay file exhausted");
            break;
        }
        match sink.write_batch(&lines).await {
            Ok(()) => {
                if let Some((done, at)) = &mut progress {
                    done.advance(lines.len(), at)?;
                }
            }
            Err(err) if err.is::<sink::Full>() => {
                metrics::gauge!("pulsewire_simulator_file_full").set(1.0);
                tracing::error!(
                    error = %err,
                    "not writing any more: the file is append-only for Connect's exactly-once \
                     source and must not be truncated or rotated; raise --max-file-bytes or point \
                     the simulator and a new connector at a new file"
                );
                notifier.status("file full: see the log");
                full = true;
                continue;
            }
            Err(err) => return Err(err),
        }
        written += lines.len();
        metrics::counter!(m::LINES_WRITTEN).increment(lines.len() as u64);
        if args.run.count.is_some_and(|c| written >= c) {
            tracing::info!(written, "--count reached");
            break;
        }
    }
    notifier.stopping();
    tracing::info!(written, "stopped");
    Ok(())
}
