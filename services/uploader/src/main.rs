//! `pulsewire-uploader`: stats records → InfluxDB v2.
//!
//! Consumes the stats topic (`read_committed`), writes each record as a point
//! with the `influxdb2` client in batches by size and time, retries network
//! errors and 5xx with capped exponential backoff, sends points the server
//! refuses to the DLQ with its message, and commits offsets only after the
//! batch was acknowledged ([`upload`]). The token comes from
//! `--influx-token-file` (systemd `LoadCredential`) or `PULSEWIRE_INFLUX_TOKEN`,
//! never from a flag value that `ps` would show.

mod ca;
mod influx;
mod point;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use pulsewire_runtime::config::{self, de, ConsumerFlags, ConsumerSettings, Layers, Stage};
use pulsewire_runtime::notify::Notifier;
use pulsewire_runtime::runner;
use pulsewire_runtime::shutdown::Shutdown;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use pulsewire_runtime::config::parse_url;

/// Writes every reading with its statistics to InfluxDB 2 (measurement =
/// kind, tag sensor_id, fields value/mean/min/max/count, time = event time).
#[derive(Debug, clap::Parser, Serialize)]
#[command(name = "pulsewire-uploader", version, after_help = config::LAYERS_HELP)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    flags: ConsumerFlags,

    /// Topic of readings with their statistics (from the processor).
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    stats_topic: Option<String>,

    /// Dead-letter topic for points InfluxDB refuses (with the server's message).
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    dlq_topic: Option<String>,

    /// InfluxDB base URL [default: port of the pipeline's [influxdb] on 127.0.0.1].
    #[arg(long, value_name = "URL", value_parser = config::parse_url)]
    influx_url: Option<String>,

    /// PEM file of the CA to trust for an https --influx-url (e.g. the store's
    /// self-signed certificate); only it is trusted then. Without it an https
    /// URL is checked against the built-in public roots.
    #[arg(long, value_name = "PATH")]
    influx_ca_file: Option<PathBuf>,

    /// InfluxDB organisation.
    #[arg(long, value_name = "ORG", value_parser = config::parse_name)]
    influx_org: Option<String>,

    /// InfluxDB bucket.
    #[arg(long, value_name = "BUCKET", value_parser = config::parse_name)]
    influx_bucket: Option<String>,

    /// File holding the InfluxDB API token (e.g. $CREDENTIALS_DIRECTORY/influx-token);
    /// without it the token is read from PULSEWIRE_INFLUX_TOKEN. There is
    /// deliberately no flag for the token itself, which `ps` would show.
    #[arg(long, env = "PULSEWIRE_INFLUX_TOKEN_FILE", value_name = "PATH")]
    #[serde(skip)]
    influx_token_file: Option<PathBuf>,

    /// Longest pause between retries of a failing write, in milliseconds
    /// (the pause doubles from 200 ms up to this; retries never stop).
    #[arg(long, value_name = "MS", value_parser = config::parse_millis)]
    retry_max_ms: Option<u64>,

    /// Longest wait for InfluxDB to answer one write, in milliseconds.
    #[arg(long, value_name = "MS", value_parser = config::parse_millis)]
    write_timeout_ms: Option<u64>,
}

/// The uploader's own settings, resolved from the layers.
#[derive(Debug, Deserialize)]
struct Settings {
    #[serde(deserialize_with = "de::name")]
    stats_topic: String,
    #[serde(deserialize_with = "de::name")]
    dlq_topic: String,
    #[serde(deserialize_with = "de::url")]
    influx_url: String,
    #[serde(default, deserialize_with = "ca::optional")]
    influx_ca_file: Option<ca::CaFile>,
    #[serde(deserialize_with = "de::name")]
    influx_org: String,
    #[serde(deserialize_with = "de::name")]
    influx_bucket: String,
    #[serde(deserialize_with = "de::millis")]
    retry_max_ms: u64,
    #[serde(deserialize_with = "de::millis")]
    write_timeout_ms: u64,
}

fn main() -> anyhow::Result<()> {
    pulsewire_runtime::memory::service_main(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let layers = Layers::load(Stage::Uploader, &args)?;
    let (consumer, own): (ConsumerSettings, Settings) = (layers.extract()?, layers.extract()?);
    let common = layers.start()?;
    let token = config::influx_token(
        args.influx_token_file.as_deref(),
        std::env::var(config::INFLUX_TOKEN_ENV).ok(),
    )?;
    let notifier = Arc::new(Notifier::from_env());
    let shutdown = Shutdown::listen()?;

    let influx = influx::Influx {
        client: ca::influx_client(
            &own.influx_url,
            &own.influx_org,
            token,
            own.influx_ca_file.as_ref(),
        )?,
        bucket: own.influx_bucket.clone(),
        timeout: Duration::from_millis(own.write_timeout_ms),
    };
    let settings = upload::Settings {
        kafka: common.kafka,
        stats_topic: own.stats_topic.clone(),
        dlq_topic: own.dlq_topic.clone(),
        group_id: consumer.group_id.clone(),
        limits: consumer.limits(),
        retry: influx::Retry {
            max_interval: Duration::from_millis(own.retry_max_ms),
        },
    };
    tracing::info!(
        stats = own.stats_topic,
        url = own.influx_url,
        ca = own
            .influx_ca_file
            .as_ref()
            .map(|ca| ca.path().display().to_string()),
        org = own.influx_org,
        bucket = own.influx_bucket,
        "starting"
    );
    // A committed offset gone from the log stops the uploader for good.
    runner::exit_if_refused(upload::run(&settings, &influx, shutdown, notifier).await)?;
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
        let layers = Layers::new(Stage::Uploader, [], &args);
        let layers = layers.unwrap();
        let consumer: ConsumerSettings = layers.extract().unwrap();
        assert_eq!(consumer.batch_size, 5000);
        assert_eq!(
            layers.stage().unwrap().metrics_addr.to_string(),
            "127.0.0.1:9303"
        );
        let own: Settings = layers.extract().unwrap();
        assert_eq!(own.influx_url, "http://127.0.0.1:8086");
        assert_eq!((own.retry_max_ms, own.write_timeout_ms), (30000, 10000));
        let env = [("PULSEWIRE_INFLUX_URL".to_string(), "localhost".to_string())];
        let layers = Layers::new(Stage::Uploader, env, &args);
        let err = layers
            .unwrap()
            .extract::<Settings>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PULSEWIRE_INFLUX_URL") && err.contains("http://"),
            "{err}"
        );
    }

    #[test]
    fn the_ca_file_is_checked_in_every_layer() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ca.pem");
        let none = Args::try_parse_from(["u"]).unwrap();
        let own: Settings = Layers::new(Stage::Uploader, [], &none)
            .unwrap()
            .extract()
            .unwrap();
        assert!(own.influx_ca_file.is_none());

        let args = Args::try_parse_from(["u", "--influx-ca-file", ca]).unwrap();
        let own: Settings = Layers::new(Stage::Uploader, [], &args)
            .unwrap()
            .extract()
            .unwrap();
        assert_eq!(own.influx_ca_file.unwrap().path(), std::path::Path::new(ca));

        let missing = "/nonexistent/store-ca.pem";
        let env = [("PULSEWIRE_INFLUX_CA_FILE".to_string(), missing.to_string())];
        let err = Layers::new(Stage::Uploader, env.clone(), &none)
            .unwrap()
            .extract::<Settings>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read the CA file `/nonexistent/store-ca.pem`")
                && err.contains("PULSEWIRE_INFLUX_CA_FILE")
                && err.contains("environment"),
            "{err}"
        );
        // The flag wins over the variable, and is named when it is wrong.
        let own: Settings = Layers::new(Stage::Uploader, env.clone(), &args)
            .unwrap()
            .extract()
            .unwrap();
        assert_eq!(own.influx_ca_file.unwrap().path(), std::path::Path::new(ca));
        let bad = Args::try_parse_from(["u", "--influx-ca-file", missing]).unwrap();
        let err = Layers::new(Stage::Uploader, [], &bad)
            .unwrap()
            .extract::<Settings>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/store-ca.pem") && err.contains("--influx-ca-file"),
            "{err}"
        );
    }
}
