//! The layering: pipeline file, then `PULSEWIRE_*` variables, then flags,
//! merged once with figment and extracted into typed settings.
//!
//! Every layer is a flat table under the same names: a setting `batch_size`
//! is `batch_size` in the stage's `[services.*]` section, `PULSEWIRE_BATCH_SIZE`
//! in the environment and `--batch-size` on the command line. A value that
//! fails its check is reported under the name and the source it came from:
//! `must be at least 1 for key "PULSEWIRE_BATCH_SIZE" in the environment`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use super::pipeline::{Pipeline, PipelineSource, Stage};
use super::values::{de, Properties};
use crate::runner::BatchLimits;

/// The variable naming the pipeline file when `--pipeline` is not given.
pub const PIPELINE_ENV: &str = "PULSEWIRE_PIPELINE";

/// What every variable of a setting starts with.
const ENV_PREFIX: &str = "PULSEWIRE_";

/// One layer: a flat table with a name for error messages and the way its
/// keys are written there.
pub(crate) struct Layer {
    name: String,
    dict: Dict,
    key: fn(&[&str]) -> String,
}

impl Layer {
    pub(crate) fn new(name: String, dict: Dict, key: fn(&[&str]) -> String) -> Self {
        Self { name, dict, key }
    }

    pub(crate) fn figment(self) -> Figment {
        Figment::from(self)
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let key = self.key;
        Metadata::named(self.name.clone()).interpolater(move |_: &Profile, k: &[&str]| key(k))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// A stage's settings, layered: resolved once at start, then extracted into
/// the typed pieces the stage needs ([`StageSettings`], [`ConsumerSettings`]
/// and the stage's own struct).
pub struct Layers {
    pipeline: Pipeline,
    figment: Figment,
}

impl Layers {
    /// Loads the pipeline file (`--pipeline`, else `PULSEWIRE_PIPELINE`, else
    /// the built-in copy) and layers this process's `PULSEWIRE_*` variables
    /// and the given `flags` (only those set) over the stage's values in it.
    pub fn load(stage: Stage, flags: &impl Serialize) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self::new(stage, env, flags)
    }

    /// [`Layers::load`] with the environment given: what the tests call.
    pub fn new(
        stage: Stage,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &impl Serialize,
    ) -> anyhow::Result<Self> {
        let env: Dict = env
            .into_iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
                Some((key, Value::from(v)))
            })
            .collect();
        let mut flags = set_flags(flags)?;
        // The file is chosen before it is read, so it is no setting itself.
        let path = |layer: Option<Value>| layer.and_then(|v| v.into_string()).map(PathBuf::from);
        let source = PipelineSource::choose(
            path(flags.remove("pipeline")).as_deref(),
            path(env.get("pipeline").cloned()),
        );
        let pipeline = Pipeline::load(&source)?;
        let file = Layer::new(source.to_string(), pipeline.defaults(stage), |k| {
            k.join(".")
        });
        let env = Layer::new("the environment".into(), env, |k| {
            format!("{ENV_PREFIX}{}", k.join(".").to_ascii_uppercase())
        });
        let flags = Layer::new("the command line".into(), flags, |k| {
            format!("--{}", k.join(".").replace('_', "-"))
        });
        let figment = file.figment().merge(env).merge(flags);
        Ok(Self { pipeline, figment })
    }

    /// The pipeline file the settings were layered on.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Extracts one typed piece of the settings; the error names the key
    /// and the layer of the value that failed its check.
    pub fn extract<'a, T: Deserialize<'a>>(&self) -> anyhow::Result<T> {
        Ok(self.figment.extract()?)
    }

    /// The settings every stage has, after which the stage starts logging and
    /// serving metrics with them.
    pub fn start(&self) -> anyhow::Result<StageSettings> {
        let settings = self.stage()?;
        crate::telemetry::init(&settings.log)?;
        crate::metrics::install(settings.metrics_addr)?;
        Ok(settings)
    }

    /// The settings every stage has.
    pub fn stage(&self) -> anyhow::Result<StageSettings> {
        #[derive(Deserialize)]
        struct Metrics {
            #[serde(deserialize_with = "de::socket_addr")]
            metrics_addr: SocketAddr,
        }
        Ok(StageSettings {
            kafka: self.extract()?,
            log: self.extract()?,
            metrics_addr: self.extract::<Metrics>()?.metrics_addr,
        })
    }
}

/// The flags given, as a table: those not given (`None`, no repetition)
/// leave the layers below alone.
fn set_flags(flags: &impl Serialize) -> anyhow::Result<Dict> {
    let value = Value::serialize(flags)?;
    let mut dict = value
        .into_dict()
        .ok_or_else(|| anyhow::anyhow!("the flags are not a struct"))?;
    dict.retain(|_, v| match v {
        Value::Empty(..) => false,
        Value::Array(_, items) => !items.is_empty(),
        _ => true,
    });
    Ok(dict)
}

/// The Kafka connection of a stage: `--bootstrap-servers` (default: the
/// brokers of the pipeline file's `[kafka]`) and `--kafka-property`.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaArgs {
    #[serde(deserialize_with = "de::bootstrap")]
    pub bootstrap_servers: String,
    #[serde(
        rename = "kafka_properties",
        default,
        deserialize_with = "de::properties"
    )]
    pub properties: Vec<Properties>,
}

impl KafkaArgs {
    /// Every extra property, in the order given.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties
            .iter()
            .flat_map(|p| p.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// The log filter of a stage (`--log-level`, default `info`).
#[derive(Debug, Clone, Deserialize)]
pub struct LogArgs {
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

fn default_log_level() -> String {
    "info".into()
}

/// What every stage binary runs with.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub kafka: KafkaArgs,
    pub log: LogArgs,
    pub metrics_addr: SocketAddr,
}

/// Declares a struct with the settings of a consuming stage (its group and
/// its batches, each with its check) followed by the fields given. The
/// fields are written out in the struct, not `#[serde(flatten)]`ed: flatten
/// would lose figment's key in error messages and does not go with
/// `deny_unknown_fields`. Used for [`ConsumerSettings`] and the consuming
/// stages' `[services.*]` sections, so the two cannot drift apart.
macro_rules! with_consumer_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            #[serde(deserialize_with = "de::name")]
            pub group_id: String,
            #[serde(deserialize_with = "de::positive")]
            pub batch_size: usize,
            #[serde(deserialize_with = "de::millis")]
            pub batch_interval_ms: u64,
            #[serde(deserialize_with = "de::millis")]
            pub batch_idle_ms: u64,
            $($fields)*
        }
    };
}
pub(crate) use with_consumer_fields;

with_consumer_fields! {
    /// What every consuming stage runs with: its group and its batches.
    #[derive(Debug, Clone, Deserialize)]
    pub struct ConsumerSettings {}
}

impl ConsumerSettings {
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_records: self.batch_size,
            max_wait: Duration::from_millis(self.batch_interval_ms),
            max_idle: Duration::from_millis(self.batch_idle_ms),
        }
    }
}

/// The variable of `--instance`, named when neither is given.
const INSTANCE_ENV: &str = "PULSEWIRE_INSTANCE";

/// What every transactional stage runs with besides its group.
#[derive(Debug, Clone, Deserialize)]
pub struct TxnSettings {
    #[serde(deserialize_with = "de::name")]
    pub transactional_id_prefix: String,
    #[serde(default, deserialize_with = "de::optional_instance")]
    pub instance: Option<String>,
}

impl TxnSettings {
    /// This instance's Kafka transactional.id: `<prefix>-<instance>`. One
    /// per instance, as KIP-447 allows: the instances share the input through
    /// the consumer group, and a zombie of another instance is fenced by the
    /// group generation its offsets carry (`send_offsets_to_transaction`), a
    /// zombie of this one by the id itself (`init_transactions`).
    pub fn transactional_id(&self) -> anyhow::Result<String> {
        let instance = self.instance.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "no instance name: pass --instance NAME or set {INSTANCE_ENV}, unique among \
                 the running instances of this stage and the same across its restarts \
                 (its transactional.id is {}-NAME)",
                self.transactional_id_prefix
            )
        })?;
        Ok(format!("{}-{instance}", self.transactional_id_prefix))
    }
}
