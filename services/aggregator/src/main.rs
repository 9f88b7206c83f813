//! `pulsewire-aggregator`: raw CSV lines from Kafka Connect → typed readings.
//!
//! Consumes the raw topic, parses and validates every line with
//! [`pulsewire_model::parse::Parser`], produces each valid reading as JSON keyed
//! by its sensor id to the readings topic, and each rejected line to the DLQ
//! with its reason and source position. Exactly once: outputs and input
//! offsets are committed in one Kafka transaction (see
//! [`pulsewire_runtime::runner`]). This file is only flags and wiring; the
//! per-record logic is in [`stage`].

mod stage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use pulsewire_model::parse::{Parser, MAX_LINE_BYTES};
use pulsewire_runtime::config::{self, pipeline, KafkaArgs, LogArgs};
use pulsewire_runtime::notify::Notifier;
use pulsewire_runtime::runner::{self, BatchLimits, StageSpec};
use pulsewire_runtime::shutdown::Shutdown;

/// Parses and validates raw heart-rate lines; valid readings go to the
/// readings topic keyed by sensor id, rejected lines to the dead-letter topic.
/// Every default comes from provisioning/pipeline.toml.
#[derive(Debug, clap::Parser)]
#[command(name = "pulsewire-aggregator", version)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Topic of raw CSV lines (written by Kafka Connect's FileStreamSource).
    #[arg(long, env = "PULSEWIRE_RAW_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.raw.name.as_str(), value_parser = config::parse_name)]
    raw_topic: String,

    /// Topic the typed JSON readings are produced to, keyed by sensor id.
    #[arg(long, env = "PULSEWIRE_READINGS_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.readings.name.as_str(), value_parser = config::parse_name)]
    readings_topic: String,

    /// Dead-letter topic for rejected lines (JSON with raw bytes, reason, source position).
    #[arg(long, env = "PULSEWIRE_DLQ_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.dlq.name.as_str(), value_parser = config::parse_name)]
    dlq_topic: String,

    /// Consumer group id; its committed offsets mark the last committed batch.
    #[arg(long, env = "PULSEWIRE_GROUP_ID", value_name = "ID",
          default_value = pipeline().services.aggregator.group_id.as_str(), value_parser = config::parse_name)]
    group_id: String,

    /// Kafka transactional.id. Must be unique per running instance and stable
    /// across restarts: a restarted instance fences its killed predecessor by it.
    #[arg(long, env = "PULSEWIRE_TRANSACTIONAL_ID", value_name = "ID",
          default_value = pipeline().services.aggregator.transactional_id.as_str(), value_parser = config::parse_name)]
    transactional_id: String,

    /// Most records per transaction.
    #[arg(long, env = "PULSEWIRE_BATCH_SIZE", value_name = "N",
          default_value_t = pipeline().services.aggregator.batch_size, value_parser = config::parse_positive)]
    batch_size: usize,

    /// Longest time to collect one batch before committing it, in milliseconds.
    #[arg(long, env = "PULSEWIRE_BATCH_INTERVAL_MS", value_name = "MS",
          default_value_t = pipeline().services.aggregator.batch_interval_ms, value_parser = config::parse_millis)]
    batch_interval_ms: u64,

    /// Once a batch has records: how long without a new one ends it, in
    /// milliseconds.
    #[arg(long, env = "PULSEWIRE_BATCH_IDLE_MS", value_name = "MS",
          default_value_t = pipeline().services.aggregator.batch_idle_ms, value_parser = config::parse_millis)]
    batch_idle_ms: u64,

    /// Longest accepted line in bytes; longer lines go to the DLQ as too long.
    #[arg(long, env = "PULSEWIRE_MAX_LINE_BYTES", value_name = "BYTES", default_value_t = MAX_LINE_BYTES,
          value_parser = config::parse_positive)]
    max_line_bytes: usize,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "PULSEWIRE_METRICS_ADDR", value_name = "IP:PORT",
          default_value_t = config::local_addr(pipeline().services.aggregator.metrics_port),
          value_parser = config::parse_socket_addr)]
    metrics_addr: SocketAddr,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pulsewire_runtime::telemetry::init(&args.log)?;
    pulsewire_runtime::metrics::install(args.metrics_addr)?;
    let notifier = Arc::new(Notifier::from_env());
    let shutdown = Shutdown::listen()?;

    let parser = Parser::new(pipeline().kind_rules()).with_max_line_bytes(args.max_line_bytes);
    let mut transform =
        stage::Aggregate::new(parser, args.readings_topic.clone(), args.dlq_topic.clone());
    let stage = StageSpec {
        name: "pulsewire-aggregator".into(),
        input_topic: args.raw_topic.clone(),
        group_id: args.group_id.clone(),
        transactional_id: Some(args.transactional_id.clone()),
        limits: BatchLimits {
            max_records: args.batch_size,
            max_wait: Duration::from_millis(args.batch_interval_ms),
            max_idle: Duration::from_millis(args.batch_idle_ms),
        },
    };
    tracing::info!(
        raw = args.raw_topic,
        readings = args.readings_topic,
        dlq = args.dlq_topic,
        "starting"
    );
    // The Kafka loop is synchronous (librdkafka's transactional calls block);
    // it runs on a blocking thread while the runtime serves signals and metrics.
    tokio::task::spawn_blocking(move || {
        runner::run_transactional(&args.kafka, &stage, &mut transform, &shutdown, &notifier)
    })
    .await??;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_limit_defaults_to_the_parsers() {
        // `replay` parses with the parser's default; the aggregator must agree.
        let args = Args::try_parse_from(["pulsewire-aggregator"]).unwrap();
        assert_eq!(args.max_line_bytes, MAX_LINE_BYTES);
    }
}
