//! `pulsewire-uploader`: stats records → InfluxDB v2.
//!
//! Consumes the stats topic (`read_committed`), writes each record as a point
//! with the `influxdb2` client in batches by size and time, retries network
//! errors and 5xx with capped exponential backoff, sends points the server
//! refuses to the DLQ with its message, and commits offsets only after the
//! batch was acknowledged ([`upload`]). The token comes from
//! `--influx-token-file` (systemd `LoadCredential`) or `PULSEWIRE_INFLUX_TOKEN`,
//! never from a flag value that `ps` would show.

mod influx;
mod point;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use pulsewire_runtime::config::{self, pipeline, KafkaArgs, LogArgs};
use pulsewire_runtime::notify::Notifier;
use pulsewire_runtime::runner::BatchLimits;
use pulsewire_runtime::shutdown::Shutdown;

/// Writes every reading with its statistics to InfluxDB 2 (measurement =
/// kind, tag sensor_id, fields value/mean/min/max/count, time = event time).
/// Every default comes from provisioning/pipeline.toml.
#[derive(Debug, clap::Parser)]
#[command(
    name = "pulsewire-uploader",
    version,
    after_help = "The InfluxDB token is read from --influx-token-file, or else from the \
                  PULSEWIRE_INFLUX_TOKEN environment variable; there is deliberately no flag \
                  for the token itself."
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Topic of readings with their statistics (from the processor).
    #[arg(long, env = "PULSEWIRE_STATS_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.stats.name.as_str(), value_parser = config::parse_name)]
    stats_topic: String,

    /// Dead-letter topic for points InfluxDB refuses (with the server's message).
    #[arg(long, env = "PULSEWIRE_DLQ_TOPIC", value_name = "TOPIC",
          default_value = pipeline().topics.dlq.name.as_str(), value_parser = config::parse_name)]
    dlq_topic: String,

    /// Consumer group id; offsets are committed after each acknowledged batch.
    #[arg(long, env = "PULSEWIRE_GROUP_ID", value_name = "ID",
          default_value = pipeline().services.uploader.group_id.as_str(), value_parser = config::parse_name)]
    group_id: String,

    /// InfluxDB base URL.
    #[arg(long, env = "PULSEWIRE_INFLUX_URL", value_name = "URL",
          default_value_t = pipeline().influxdb.url(), value_parser = parse_url)]
    influx_url: String,

    /// InfluxDB organisation.
    #[arg(long, env = "PULSEWIRE_INFLUX_ORG", value_name = "ORG",
          default_value = pipeline().influxdb.org.as_str(), value_parser = config::parse_name)]
    influx_org: String,

    /// InfluxDB bucket.
    #[arg(long, env = "PULSEWIRE_INFLUX_BUCKET", value_name = "BUCKET",
          default_value = pipeline().influxdb.bucket.as_str(), value_parser = config::parse_name)]
    influx_bucket: String,

    /// File holding the InfluxDB API token (e.g. $CREDENTIALS_DIRECTORY/influx-token).
    #[arg(long, env = "PULSEWIRE_INFLUX_TOKEN_FILE", value_name = "PATH")]
    influx_token_file: Option<PathBuf>,

    /// Most points per InfluxDB write.
    #[arg(long, env = "PULSEWIRE_BATCH_SIZE", value_name = "N",
          default_value_t = pipeline().services.uploader.batch_size, value_parser = config::parse_positive)]
    batch_size: usize,

    /// Longest time to collect one batch before writing it, in milliseconds.
    #[arg(long, env = "PULSEWIRE_BATCH_INTERVAL_MS", value_name = "MS",
          default_value_t = pipeline().services.uploader.batch_interval_ms, value_parser = config::parse_millis)]
    batch_interval_ms: u64,

    /// Once a batch has records: how long without a new one ends it, in
    /// milliseconds.
    #[arg(long, env = "PULSEWIRE_BATCH_IDLE_MS", value_name = "MS",
          default_value_t = pipeline().services.uploader.batch_idle_ms, value_parser = config::parse_millis)]
    batch_idle_ms: u64,

    /// Longest pause between retries of a failing write, in milliseconds
    /// (the pause doubles from 200 ms up to this; retries never stop).
    #[arg(long, env = "PULSEWIRE_RETRY_MAX_MS", value_name = "MS", default_value = "30000",
          value_parser = config::parse_millis)]
    retry_max_ms: u64,

    /// Longest wait for InfluxDB to answer one write, in milliseconds.
    #[arg(long, env = "PULSEWIRE_WRITE_TIMEOUT_MS", value_name = "MS", default_value = "10000",
          value_parser = config::parse_millis)]
    write_timeout_ms: u64,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "PULSEWIRE_METRICS_ADDR", value_name = "IP:PORT",
          default_value_t = config::local_addr(pipeline().services.uploader.metrics_port),
          value_parser = config::parse_socket_addr)]
    metrics_addr: SocketAddr,

    #[command(flatten)]
    log: LogArgs,
}

/// clap parser: an http(s) URL with a host (the client would panic on less).
fn parse_url(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| format!("`{value}` must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{value}` has no host"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pulsewire_runtime::telemetry::init(&args.log)?;
    let token = config::influx_token(
        args.influx_token_file.as_deref(),
        std::env::var(config::INFLUX_TOKEN_ENV).ok(),
    )?;
    pulsewire_runtime::metrics::install(args.metrics_addr)?;
    let notifier = Arc::new(Notifier::from_env());
    let shutdown = Shutdown::listen()?;

    let influx = influx::Influx {
        client: influxdb2::Client::new(&args.influx_url, &args.influx_org, token),
        bucket: args.influx_bucket.clone(),
        timeout: Duration::from_millis(args.write_timeout_ms),
    };
    let settings = upload::Settings {
        kafka: args.kafka.clone(),
        stats_topic: args.stats_topic.clone(),
        dlq_topic: args.dlq_topic.clone(),
        group_id: args.group_id.clone(),
        limits: BatchLimits {
            max_records: args.batch_size,
            max_wait: Duration::from_millis(args.batch_interval_ms),
            max_idle: Duration::from_millis(args.batch_idle_ms),
        },
        retry: influx::Retry {
            max_interval: Duration::from_millis(args.retry_max_ms),
        },
    };
    tracing::info!(
        stats = args.stats_topic,
        url = args.influx_url,
        org = args.influx_org,
        bucket = args.influx_bucket,
        "starting"
    );
    upload::run(&settings, &influx, shutdown, notifier).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_validation_and_flag_errors() {
        assert_eq!(
            parse_url("http://127.0.0.1:8086/").unwrap(),
            "http://127.0.0.1:8086"
        );
        assert!(parse_url("127.0.0.1:8086").is_err());
        assert!(parse_url("http:///x").is_err());
        let err = Args::try_parse_from(["u", "--influx-url", "localhost"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--influx-url"), "{err}");
        let err = Args::try_parse_from(["u", "--batch-size", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--batch-size") && err.contains("at least 1"),
            "{err}"
        );
        let args = Args::try_parse_from(["u"]).unwrap();
        assert_eq!(args.batch_size, 5000);
        assert_eq!(args.metrics_addr.to_string(), "127.0.0.1:9303");
    }
}
