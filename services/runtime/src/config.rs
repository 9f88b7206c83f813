//! A stage's settings: the pipeline file, the environment and the flags,
//! layered and resolved once at start.
//!
//! `provisioning/pipeline.toml` is the one place where topic names, ports,
//! group ids and sizes are written; the NixOS modules and the local test stack
//! read the same file. A copy is compiled into every binary and is the
//! default; `--pipeline FILE` (or `PULSEWIRE_PIPELINE`) names another, which
//! is how the NixOS units run with the very file the module rendered from.
//! `PULSEWIRE_*` variables override the file and flags override both.
//!
//! # Layout
//! - [`pipeline`](Pipeline): the file, typed, and the flat defaults of a stage.
//! - [`flags`](StageFlags): the clap flags the stages share.
//! - [`layers`](Layers): the layering (figment) and the settled settings.
//! - [`values`](parse_name): the checks of every value, whichever layer it
//!   came from, so a bad value stops the service at start with a message
//!   naming the flag, the variable or the file and key.
//!
//! A stage binary parses its flags, calls [`Layers::load`] and extracts
//! [`StageSettings`], [`ConsumerSettings`], [`TxnSettings`] and its own
//! settings struct from it.

mod flags;
mod layers;
mod pipeline;
#[cfg(test)]
mod tests;
mod values;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

pub use flags::{ConsumerFlags, StageFlags, TxnFlags, LAYERS_HELP};
pub use layers::{
    ConsumerSettings, KafkaArgs, Layers, LogArgs, StageSettings, TxnSettings, PIPELINE_ENV,
};
pub use pipeline::{
    pipeline, Aggregator, Connect, Ctl, Influxdb, Kafka, KindSpec, ParseLimits, Pipeline,
    PipelineSource, Processor, Services, Simulator, Stage, Topic, Topics, Uploader, PIPELINE_TOML,
};
pub use values::{
    de, parse_bootstrap, parse_instance, parse_millis, parse_name, parse_positive,
    parse_properties, parse_property, parse_socket_addr, parse_url, Properties, MAX_INSTANCE_LEN,
};

/// `127.0.0.1:<port>`, the default of a service's `--metrics-addr`: the
/// metrics endpoint is only for the local scraper unless an operator opens it.
pub fn local_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where the InfluxDB token comes from: the file named by
/// `--influx-token-file` (systemd `LoadCredential`), else the
/// `PULSEWIRE_INFLUX_TOKEN` variable. Never a flag value, which `ps` would show.
pub const INFLUX_TOKEN_ENV: &str = "PULSEWIRE_INFLUX_TOKEN";

/// Reads the InfluxDB token. The error names the flag and the path so the
/// operator knows which credential is missing.
pub fn influx_token(file: Option<&Path>, env: Option<String>) -> anyhow::Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --influx-token-file {}", path.display()))?,
        None => env.unwrap_or_default(),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        match file {
            Some(path) => anyhow::bail!("--influx-token-file {} is empty", path.display()),
            None => anyhow::bail!(
                "no InfluxDB token: pass --influx-token-file PATH or set {INFLUX_TOKEN_ENV}"
            ),
        }
    }
    Ok(token)
}
