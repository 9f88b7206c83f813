//! Where the pipeline runs, resolved once: the pipeline file (names, groups,
//! topics), the brokers, each stage's `/metrics` addresses, Connect's REST
//! API with the file holding its password, and the readings file.
//!
//! The targets file is JSON rendered by `nixos/lib/pulsewire.nix`
//! (`ctlTargets`): the NixOS module installs it as
//! `/etc/pulsewire/ctl-targets.json`, the local stack writes its own. Only
//! the file names a secret's *path*; the password itself is read when it is
//! needed and never appears on a command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use pulsewire_runtime::config::{Pipeline, PipelineSource, PIPELINE_ENV};

use crate::cli::TargetFlags;

/// The targets file the NixOS module installs.
pub const DEFAULT_TARGETS: &str = "/etc/pulsewire/ctl-targets.json";
/// The variable naming another targets file.
pub const TARGETS_ENV: &str = "PULSEWIRE_CTL_TARGETS";
const BOOTSTRAP_ENV: &str = "PULSEWIRE_BOOTSTRAP_SERVERS";

/// The stages that consume a topic, in pipeline order.
pub const STAGES: [&str; 3] = ["aggregator", "processor", "uploader"];

/// The targets file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsFile {
    pub pipeline: Option<PathBuf>,
    pub bootstrap_servers: Option<String>,
    /// Each stage's `/metrics` addresses (`host:port`), one per instance.
    #[serde(default)]
    pub metrics: BTreeMap<String, Vec<String>>,
    pub connect: Option<ConnectTarget>,
    /// The file Connect tails (for its lag in bytes).
    pub readings_file: Option<PathBuf>,
}

/// Connect's REST API and its basic-auth login.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectTarget {
    pub url: String,
    pub user: String,
    /// The file holding `user`'s password (one line).
    pub password_file: PathBuf,
    /// The connector's name [default: the pipeline's `connect.connector_name`].
    pub connector: Option<String>,
}

/// Everything resolved.
#[derive(Debug)]
pub struct Targets {
    pub pipeline: Pipeline,
    pub bootstrap_servers: String,
    pub metrics: BTreeMap<String, Vec<String>>,
    pub connect: Option<ConnectTarget>,
    pub readings_file: PathBuf,
}

impl Targets {
    /// Flags over variables over the targets file over the pipeline file.
    pub fn resolve(flags: &TargetFlags) -> anyhow::Result<Self> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let (file, path) = match (&flags.targets, env(TARGETS_ENV)) {
            (Some(path), _) => (Some(read(path, "--targets")?), Some(path.clone())),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                (Some(read(&path, TARGETS_ENV)?), Some(path))
            }
            (None, None) if Path::new(DEFAULT_TARGETS).exists() => {
                let path = PathBuf::from(DEFAULT_TARGETS);
                (Some(read(&path, "the default")?), Some(path))
            }
            (None, None) => (None, None),
        };
        let file = file.unwrap_or_default();
        let mut source = PipelineSource::choose(
            flags.pipeline.as_deref(),
            env(PIPELINE_ENV).map(PathBuf::from),
        );
        if let (PipelineSource::BuiltIn, Some(pipeline), Some(targets)) =
            (&source, &file.pipeline, &path)
        {
            source = PipelineSource::File {
                path: pipeline.clone(),
                named_by: format!("targets file {}", targets.display()),
            };
        }
        let pipeline = Pipeline::load(&source)?;
        let bootstrap_servers = match (&flags.bootstrap_servers, std::env::var(BOOTSTRAP_ENV)) {
            (Some(servers), _) => servers.clone(),
            (None, Ok(servers)) if !servers.is_empty() => {
                pulsewire_runtime::config::parse_bootstrap(&servers)
                    .map_err(|err| anyhow::anyhow!("{err} for {BOOTSTRAP_ENV}"))?
            }
            _ => file
                .bootstrap_servers
                .clone()
                .unwrap_or_else(|| pipeline.kafka.bootstrap_servers()),
        };
        let metrics = metrics_targets(&pipeline, &file.metrics)?;
        let readings_file = file
            .readings_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(&pipeline.connect.file));
        Ok(Self {
            pipeline,
            bootstrap_servers,
            metrics,
            connect: file.connect,
            readings_file,
        })
    }

    /// The connector's name on this host.
    pub fn connector(&self) -> &str {
        self.connect
            .as_ref()
            .and_then(|c| c.connector.as_deref())
            .unwrap_or(&self.pipeline.connect.connector_name)
    }

    /// The stage's consumer group and input topic.
    pub fn stage_input(&self, stage: &str) -> (&str, &str) {
        let (s, t) = (&self.pipeline.services, &self.pipeline.topics);
        match stage {
            "aggregator" => (&s.aggregator.group_id, &t.raw.name),
            "processor" => (&s.processor.group_id, &t.readings.name),
            "uploader" => (&s.uploader.group_id, &t.stats.name),
            other => unreachable!("no stage {other}"),
        }
    }
}

fn read(path: &Path, named_by: &str) -> anyhow::Result<TargetsFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read targets file {} ({named_by})", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("targets file {} ({named_by})", path.display()))
}

/// Each stage's `/metrics` addresses: the file's, else the pipeline's port
/// on this host. A stage the file does not know is refused by name.
fn metrics_targets(
    pipeline: &Pipeline,
    given: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    if let Some(unknown) = given.keys().find(|k| !STAGES.contains(&k.as_str())) {
        anyhow::bail!(
            "targets file: `metrics` names no stage `{unknown}` (stages: {})",
            STAGES.join(", ")
        );
    }
    let s = &pipeline.services;
    let own = |port: u16| vec![format!("127.0.0.1:{port}")];
    Ok(STAGES
        .iter()
        .map(|stage| {
            let default = match *stage {
                "aggregator" => own(s.aggregator.metrics_port),
                "processor" => own(s.processor.metrics_port),
                _ => own(s.uploader.metrics_port),
            };
            let addrs = given.get(*stage).cloned().unwrap_or(default);
            (stage.to_string(), addrs)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_overrides_the_pipeline_ports() {
        let file: TargetsFile = serde_json::from_str(
            r#"{"metrics": {"processor": ["127.0.0.1:11302", "127.0.0.1:11402"]},
                "connect": {"url": "http://127.0.0.1:10083", "user": "pulsewire",
                            "password_file": "/run/secret"}}"#,
        )
        .unwrap();
        let m = metrics_targets(pulsewire_runtime::config::pipeline(), &file.metrics).unwrap();
        assert_eq!(m["aggregator"], ["127.0.0.1:9301"]);
        assert_eq!(m["processor"], ["127.0.0.1:11302", "127.0.0.1:11402"]);
        assert_eq!(m["uploader"], ["127.0.0.1:9303"]);
        assert_eq!(
            file.connect.unwrap().password_file,
            Path::new("/run/secret")
        );
    }

    #[test]
    fn an_unknown_stage_or_key_is_refused_by_name() {
        let given = BTreeMap::from([("simulatr".to_string(), vec![])]);
        let err = metrics_targets(pulsewire_runtime::config::pipeline(), &given).unwrap_err();
        assert_eq!(
            err.to_string(),
            "targets file: `metrics` names no stage `simulatr` (stages: aggregator, processor, uploader)"
        );
        let err = serde_json::from_str::<TargetsFile>(r#"{"brokers": "x"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown field `brokers`"),
            "{err}"
        );
    }
}
