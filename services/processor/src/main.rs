//! `pulsewire-processor`: readings → exact running statistics per (sensor, kind).
//!
//! Consumes the readings topic, folds each reading into its (sensor, kind)
//! state with [`pulsewire_model::state::StateTable`], and produces the reading
//! with its updated statistics to the stats topic, keyed by sensor id. The
//! state lives in a compacted changelog topic written in the same Kafka
//! transaction as the outputs and the input offsets, so after any crash the
//! state restored from the changelog is exactly the state after the last
//! committed batch (see [`stage`]).
//!
//! `pulsewire-processor replay FILE` runs the same parse → validate →
//! statistics path over a CSV file without Kafka ([`pulsewire_model::replay`]).

mod stage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use pulsewire_model::parse::Parser;
use pulsewire_runtime::config::{self, pipeline, KafkaArgs, LogArgs};
use pulsewire_runtime::notify::Notifier;
use pulsewire_runtime::runner::{self, BatchLimits, StageSpec};
use pulsewire_runtime::shutdown::Shutdown;

/// Keeps exact running statistics (count, min, max, mean, latest value) per
/// sensor and kind, exactly once, with its state in a compacted Kafka topic.
/// Every default comes from provisioning/pipeline.toml.
#[derive(Debug, clap::Parser)]
#[command(name = "pulsewire-processor", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    kafka: KafkaArgs,

    /// Topic of typed readings (from the aggregator), keyed by sensor id.
    #[arg(long, env = "PULSEWIRE_READINGS_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.readings.name.as_str(), value_parser = config::parse_name)]
    readings_topic: String,

    /// Topic each reading is produced to together with its updated statistics.
    #[arg(long, env = "PULSEWIRE_STATS_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.stats.name.as_str(), value_parser = config::parse_name)]
    stats_topic: String,

    /// Compacted changelog of the per-(sensor, kind) state; needs at least as
    /// many partitions as the readings topic (state of readings partition N
    /// lives in its partition N).
    #[arg(long, env = "PULSEWIRE_STATE_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.processor_state.name.as_str(), value_parser = config::parse_name)]
    state_topic: String,

    /// Dead-letter topic for readings that cannot be counted (late, unreadable).
    #[arg(long, env = "PULSEWIRE_DLQ_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.dlq.name.as_str(), value_parser = config::parse_name)]
    dlq_topic: String,

    /// Consumer group id; its committed offsets mark the last committed batch.
    #[arg(long, env = "PULSEWIRE_GROUP_ID", value_name = "ID",
          default_value = pipeline().services.processor.group_id.as_str(), value_parser = config::parse_name)]
    group_id: String,

    /// Kafka transactional.id. Must be unique per running instance and stable
    /// across restarts: a restarted instance fences its killed predecessor by it.
    #[arg(long, env = "PULSEWIRE_TRANSACTIONAL_ID", value_name = "ID",
          default_value = pipeline().services.processor.transactional_id.as_str(), value_parser = config::parse_name)]
    transactional_id: String,

    /// Event times remembered per (sensor, kind) to recognise duplicates; a
    /// reading older than all of a full window is refused as late (to the DLQ).
    #[arg(long, env = "PULSEWIRE_DEDUP_WINDOW", value_name = "N",
          default_value_t = pipeline().services.processor.dedup_window, value_parser = config::parse_positive)]
    dedup_window: usize,

    /// Most records per transaction.
    #[arg(long, env = "PULSEWIRE_BATCH_SIZE", value_name = "N",
          default_value_t = pipeline().services.processor.batch_size, value_parser = config::parse_positive)]
    batch_size: usize,

    /// Longest time to collect one batch before committing it, in milliseconds.
    #[arg(long, env = "PULSEWIRE_BATCH_INTERVAL_MS", value_name = "MS",
          default_value_t = pipeline().services.processor.batch_interval_ms, value_parser = config::parse_millis)]
    batch_interval_ms: u64,

    /// Once a batch has records: how long without a new one ends it, in
    /// milliseconds.
    #[arg(long, env = "PULSEWIRE_BATCH_IDLE_MS", value_name = "MS",
          default_value_t = pipeline().services.processor.batch_idle_ms, value_parser = config::parse_millis)]
    batch_idle_ms: u64,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "PULSEWIRE_METRICS_ADDR", value_name = "IP:PORT",
          default_value_t = config::local_addr(pipeline().services.processor.metrics_port),
          value_parser = config::parse_socket_addr)]
    metrics_addr: SocketAddr,

    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Replays a CSV file through parse → validate → statistics without Kafka:
    /// one JSON summary per (sensor, kind) on stdout, sorted by sensor id then
    /// kind; one JSON object per uncounted line on stderr. Exits 0 whatever
    /// the file contains, non-zero only if it cannot be read.
    Replay {
        /// The CSV file (`sensor_id,kind,timestamp,value` lines).
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Replay { file }) = &args.command {
        // No logging setup: stdout and stderr carry replay's JSON only.
        let parser = Parser::new(pipeline().kind_rules());
        return pulsewire_model::replay::run(
            file,
            &parser,
            args.dedup_window,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
    }

    pulsewire_runtime::telemetry::init(&args.log)?;
    pulsewire_runtime::metrics::install(args.metrics_addr)?;
    let notifier = Arc::new(Notifier::from_env());
    let shutdown = Shutdown::listen()?;

    let mut transform = stage::Process::new(
        stage::Topics {
            stats: args.stats_topic.clone(),
            state: args.state_topic.clone(),
            dlq: args.dlq_topic.clone(),
        },
        args.dedup_window,
    );
    let stage = StageSpec {
        name: "pulsewire-processor".into(),
        input_topic: args.readings_topic.clone(),
        group_id: args.group_id.clone(),
        transactional_id: Some(args.transactional_id.clone()),
        limits: BatchLimits {
            max_records: args.batch_size,
            max_wait: Duration::from_millis(args.batch_interval_ms),
            max_idle: Duration::from_millis(args.batch_idle_ms),
        },
    };
    tracing::info!(
        readings = args.readings_topic,
        stats = args.stats_topic,
        state = args.state_topic,
        "starting"
    );
    tokio::task::spawn_blocking(move || {
        runner::run_transactional(&args.kafka, &stage, &mut transform, &shutdown, &notifier)
    })
    .await??;
    tracing::info!("stopped");
    Ok(())
}
