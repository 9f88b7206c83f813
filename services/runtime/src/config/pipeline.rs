//! `provisioning/pipeline.toml`, typed: the lowest layer of every setting.
//!
//! Only the parts the services use are declared; the rest (Connect's topics,
//! Grafana, the rollups) is read by Nix and the local stack. The
//! `[services.*]` sections are the stages' own and refuse unknown keys, so a
//! misspelt setting stops the service instead of being ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};

use pulsewire_model::parse::{KindRule, Parser};

use super::layers::with_consumer_fields;
use super::values::de;

/// The text of `provisioning/pipeline.toml`, as built into this binary: the
/// pipeline a service runs with unless `--pipeline` names another file.
pub const PIPELINE_TOML: &str = include_str!("../../../../provisioning/pipeline.toml");

/// `provisioning/pipeline.toml`, typed.
#[derive(Debug, Clone, Deserialize)]
pub struct Pipeline {
    pub kafka: Kafka,
    pub topics: Topics,
    pub services: Services,
    pub influxdb: Influxdb,
    pub connect: Connect,
    pub ctl: Ctl,
    pub kinds: BTreeMap<String, KindSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kafka {
    pub brokers: u16,
    pub host: String,
    pub plaintext_port_base: u16,
}

impl Kafka {
    /// `host:port` of every broker's client listener, comma-separated: broker N
    /// (1-based) listens on `plaintext_port_base + 2*(N-1)`.
    pub fn bootstrap_servers(&self) -> String {
        (0..self.brokers)
            .map(|n| format!("{}:{}", self.host, self.plaintext_port_base + 2 * n))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Topic {
    #[serde(deserialize_with = "de::name")]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Topics {
    pub raw: Topic,
    pub readings: Topic,
    pub stats: Topic,
    pub dlq: Topic,
    pub processor_state: Topic,
    /// The markers of `pulsewire-ctl dlq replay` (compacted).
    pub dlq_replayed: Topic,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Services {
    pub aggregator: Aggregator,
    pub processor: Processor,
    pub uploader: Uploader,
    pub simulator: Simulator,
}

with_consumer_fields! {
    /// `[services.aggregator]`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Aggregator {
        /// What each instance's transactional.id starts with.
        #[serde(deserialize_with = "de::name")]
        pub transactional_id_prefix: String,
        pub metrics_port: u16,
        /// The longest accepted line, for the aggregator and for `replay`.
        #[serde(deserialize_with = "de::positive")]
        pub max_line_bytes: usize,
        /// How far ahead of the clock a reading's time may be, in seconds.
        #[serde(deserialize_with = "de::positive")]
        pub max_clock_ahead_secs: usize,
    }
}

/// The limits a line is judged by: the aggregator's settings of the same
/// names, which `replay` shares.
#[derive(Debug, Clone)]
pub struct ParseLimits {
    pub max_line_bytes: usize,
    pub max_clock_ahead_secs: usize,
}

with_consumer_fields! {
    /// `[services.processor]`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Processor {
        /// What each instance's transactional.id starts with.
        #[serde(deserialize_with = "de::name")]
        pub transactional_id_prefix: String,
        pub metrics_port: u16,
        #[serde(deserialize_with = "de::positive")]
        pub dedup_window: usize,
        /// The most (sensor, kind)s the processor keeps state for.
        #[serde(deserialize_with = "de::positive")]
        pub max_states: usize,
    }
}

with_consumer_fields! {
    /// `[services.uploader]`.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Uploader {
        pub metrics_port: u16,
        #[serde(deserialize_with = "de::millis")]
        pub retry_max_ms: u64,
        #[serde(deserialize_with = "de::millis")]
        pub write_timeout_ms: u64,
    }
}

/// `[services.simulator]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Simulator {
    pub metrics_port: u16,
    pub sensors: u32,
    pub rate_per_sensor: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Influxdb {
    pub port: u16,
    #[serde(deserialize_with = "de::name")]
    pub org: String,
    #[serde(deserialize_with = "de::name")]
    pub bucket: String,
}

impl Influxdb {
    /// The appliance's InfluxDB runs on the same host as everything else.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Connect {
    pub file: String,
    pub rest_port: u16,
    #[serde(deserialize_with = "de::name")]
    pub connector_name: String,
}

/// `[ctl]`: the operator CLI's own settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Ctl {
    /// The transactional.id of `dlq replay`.
    #[serde(deserialize_with = "de::name")]
    pub transactional_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KindSpec {
    pub min: i64,
    pub max: i64,
}

/// A stage binary: which `[services.*]` section holds its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Simulator,
    Aggregator,
    Processor,
    Uploader,
}

/// Which pipeline file a binary runs with, and what named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineSource {
    BuiltIn,
    File { path: PathBuf, named_by: String },
}

impl PipelineSource {
    /// `--pipeline` if given, else `PULSEWIRE_PIPELINE` if set, else the
    /// built-in copy.
    pub fn choose(flag: Option<&Path>, env: Option<PathBuf>) -> Self {
        match (flag, env) {
            (Some(path), _) => Self::File {
                path: path.to_path_buf(),
                named_by: "--pipeline".into(),
            },
            (None, Some(path)) => Self::File {
                path,
                named_by: super::PIPELINE_ENV.into(),
            },
            (None, None) => Self::BuiltIn,
        }
    }
}

impl fmt::Display for PipelineSource {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::BuiltIn => f.write_str("the built-in provisioning/pipeline.toml"),
            Self::File { path, named_by } => {
                write!(f, "pipeline file {} (from {named_by})", path.display())
            }
        }
    }
}

impl Pipeline {
    /// Parses a pipeline file; the error names the key that is wrong.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Self::parse(text, &PipelineSource::BuiltIn)
    }

    /// Reads and parses the pipeline `source` names. Every error names the
    /// source, and the key where one is to blame.
    pub fn load(source: &PipelineSource) -> anyhow::Result<Self> {
        match source {
            PipelineSource::BuiltIn => Self::parse(PIPELINE_TOML, source),
            PipelineSource::File { path, .. } => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {source}"))?;
                Self::parse(&text, source)
            }
        }
    }

    fn parse(text: &str, source: &PipelineSource) -> anyhow::Result<Self> {
        // TOML syntax first (its error has the line), then the typed
        // extraction through figment (its error has the dotted key).
        let dict: Dict = toml::from_str(text).with_context(|| format!("{source}"))?;
        let pipeline: Self = super::layers::Layer::new(source.to_string(), dict, dotted)
            .figment()
            .extract()?;
        pipeline
            .validate()
            .map_err(|err| anyhow::anyhow!("{err} in {source}"))?;
        Ok(pipeline)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.kafka.brokers >= 1, "kafka.brokers must be at least 1");
        anyhow::ensure!(
            !self.kinds.is_empty(),
            "at least one [kinds.*] table is needed"
        );
        for (name, spec) in &self.kinds {
            anyhow::ensure!(
                spec.min <= spec.max,
                "kinds.{name}: min {} is above max {}",
                spec.min,
                spec.max
            );
        }
        Ok(())
    }

    /// The configured kinds as parser rules, in name order.
    pub fn kind_rules(&self) -> Vec<KindRule> {
        self.kinds
            .iter()
            .map(|(name, spec)| KindRule {
                name: name.clone(),
                min: spec.min,
                max: spec.max,
            })
            .collect()
    }

    /// The parser of this pipeline: its kinds, and the aggregator's line
    /// and clock limits unless `limits` overrides them. `replay` and the
    /// aggregator both build theirs here, so they judge a line alike.
    pub fn parser(&self, limits: Option<&ParseLimits>) -> Parser {
        let a = &self.services.aggregator;
        let own = ParseLimits {
            max_line_bytes: a.max_line_bytes,
            max_clock_ahead_secs: a.max_clock_ahead_secs,
        };
        let limits = limits.unwrap_or(&own);
        Parser::new(self.kind_rules())
            .with_max_line_bytes(limits.max_line_bytes)
            .with_max_ahead(Duration::from_secs(limits.max_clock_ahead_secs as u64))
    }

    /// The file's values under the flat names of the stage's settings (the
    /// names of its flags and, upper-cased after `PULSEWIRE_`, of its
    /// variables): the stage's `[services.*]` keys, with `metrics_port`
    /// turned into `metrics_addr`, and the facts every stage may need.
    pub fn defaults(&self, stage: Stage) -> Dict {
        let s = &self.services;
        let section = match stage {
            Stage::Simulator => Value::serialize(&s.simulator),
            Stage::Aggregator => Value::serialize(&s.aggregator),
            Stage::Processor => Value::serialize(&s.processor),
            Stage::Uploader => Value::serialize(&s.uploader),
        };
        let mut dict = section
            .ok()
            .and_then(Value::into_dict)
            .expect("a [services.*] section serializes to a table");
        let port = dict
            .remove("metrics_port")
            .and_then(|port| port.to_u128())
            .and_then(|port| u16::try_from(port).ok())
            .expect("every [services.*] section has a metrics_port");
        let t = &self.topics;
        let flat = [
            ("metrics_addr", super::local_addr(port).to_string()),
            ("bootstrap_servers", self.kafka.bootstrap_servers()),
            ("raw_topic", t.raw.name.clone()),
            ("readings_topic", t.readings.name.clone()),
            ("stats_topic", t.stats.name.clone()),
            ("state_topic", t.processor_state.name.clone()),
            ("dlq_topic", t.dlq.name.clone()),
            ("influx_url", self.influxdb.url()),
            ("influx_org", self.influxdb.org.clone()),
            ("influx_bucket", self.influxdb.bucket.clone()),
            ("output", self.connect.file.clone()),
        ];
        dict.extend(flat.map(|(key, value)| (key.to_string(), Value::from(value))));
        dict
    }
}

/// A key of the pipeline file as written in it: `services.aggregator.batch_size`.
fn dotted(keys: &[&str]) -> String {
    keys.join(".")
}

/// The pipeline built into this binary. Parsed once; a broken file is a
/// build defect caught by the unit tests, so panicking here is acceptable.
pub fn pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        Pipeline::load(&PipelineSource::BuiltIn)
            .expect("built-in provisioning/pipeline.toml is valid")
    })
}
