//! The command-line flags the stages share, as clap structs a stage flattens
//! into its own, each holding the one before: [`StageFlags`] (every binary),
//! [`ConsumerFlags`] (the three that consume a topic: + group and batches) and
//! [`TxnFlags`] (the two that commit Kafka transactions: + their instance
//! name and transactional id prefix).
//! A stage takes the one that has exactly the flags it can use.
//!
//! These are the raw flags (ripgrep's "low" arguments): `None` unless given.
//! [`super::Layers`] layers them over the environment and the pipeline file
//! and extracts the settled values.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::values::{self, Properties};

/// Shown after every stage's `--help`: where the defaults come from.
pub const LAYERS_HELP: &str = "\
Settings are layered, lowest first: the pipeline file (--pipeline, else \
PULSEWIRE_PIPELINE, else the provisioning/pipeline.toml built into this binary), \
then PULSEWIRE_* environment variables, then flags. Each flag --some-name has the \
variable PULSEWIRE_SOME_NAME (--kafka-property: PULSEWIRE_KAFKA_PROPERTIES), and \
the key some_name in the stage's [services.*] section, or in [topics.*], [kafka], \
[influxdb] or [connect] for the names, addresses and file every stage shares.";

/// The flags of every stage binary.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct StageFlags {
    /// The pipeline file giving every default [env: PULSEWIRE_PIPELINE]
    /// [default: the built-in provisioning/pipeline.toml].
    #[arg(long, value_name = "FILE", global = true)]
    pub pipeline: Option<PathBuf>,

    /// Kafka bootstrap servers, comma-separated `host:port` [default: every
    /// broker of the pipeline's [kafka]].
    #[arg(long, value_name = "HOST:PORT,...", value_parser = values::parse_bootstrap)]
    pub bootstrap_servers: Option<String>,

    /// Extra librdkafka client properties, `KEY=VALUE[,KEY=VALUE...]`
    /// (repeatable; e.g. `security.protocol=SSL`). A comma starts a new
    /// property only where `KEY=` follows, so list values such as
    /// `debug=eos,broker` stay whole. Applied to every Kafka client of the
    /// stage, after Pulsewire's own settings, so use with care.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = values::parse_properties)]
    pub kafka_properties: Vec<Properties>,

    /// Address of the Prometheus /metrics endpoint [default: 127.0.0.1 and
    /// the stage's metrics_port].
    #[arg(long, value_name = "IP:PORT", value_parser = values::parse_socket_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// Log filter when `RUST_LOG` is not set: a level (`error`, `warn`,
    /// `info`, `debug`, `trace`) or a tracing directive such as
    /// `info,rdkafka=debug`. `RUST_LOG`, when set, wins [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// The flags of a stage that consumes a topic in batches.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ConsumerFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub stage: StageFlags,

    /// Consumer group id; its committed offsets mark the last committed batch.
    #[arg(long, value_name = "ID", value_parser = values::parse_name)]
    pub group_id: Option<String>,

    /// Most records per batch (one transaction, or one InfluxDB write).
    #[arg(long, value_name = "N", value_parser = values::parse_positive)]
    pub batch_size: Option<usize>,

    /// Longest time to collect one batch before committing it, in milliseconds.
    #[arg(long, value_name = "MS", value_parser = values::parse_millis)]
    pub batch_interval_ms: Option<u64>,

    /// Once a batch has records: how long without a new one ends it, in
    /// milliseconds.
    #[arg(long, value_name = "MS", value_parser = values::parse_millis)]
    pub batch_idle_ms: Option<u64>,
}

/// The flags of a stage that commits Kafka transactions.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct TxnFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub consumer: ConsumerFlags,

    /// What every instance's Kafka transactional.id starts with; the
    /// transactional.id is `<prefix>-<instance>`.
    #[arg(long, value_name = "ID", value_parser = values::parse_name)]
    pub transactional_id_prefix: Option<String>,

    /// This instance's name (letters, digits, `.`, `_`, `-`): unique among
    /// the running instances of the stage, on every host, and the same
    /// across restarts of one instance, which then fences its killed
    /// predecessor by it. Required: no default is safe for two instances on
    /// one host (the NixOS units pass `<host name>-<n>`).
    #[arg(long, value_name = "NAME", value_parser = values::parse_instance)]
    pub instance: Option<String>,
}
