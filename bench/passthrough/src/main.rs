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

mod fill;
mod kafka;
mod passthrough;
mod probe;
mod watch;

use clap::{Parser, Subcommand, ValueEnum};

use crate::fill::fill;
use crate::kafka::{mktopic, rmtopics};
use crate::passthrough::{passthrough, PASS_COMPRESSION};
use crate::probe::probe;
use crate::watch::{lag, watch};

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
        /// The producer's linger.ms (sink=kafka): 1 sends nearly every reading on its own.
        #[arg(long, default_value_t = 1)]
        linger_ms: u64,
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
        Cmd::Probe { sink, file, topic, rate, seconds, sensors, first_sensor, linger_ms } => {
            probe(&cli.brokers, sink, file, topic, rate, seconds, sensors, first_sensor, linger_ms)
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
