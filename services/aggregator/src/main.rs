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

use clap::Parser as _;
use pulsewire_runtime::config::{self, de, Layers, ParseLimits, Stage, TxnFlags};
use pulsewire_runtime::runner;
use serde::{Deserialize, Serialize};

/// Parses and validates raw heart-rate lines; valid readings go to the
/// readings topic keyed by sensor id, rejected lines to the dead-letter topic.
#[derive(Debug, clap::Parser, Serialize)]
#[command(name = "pulsewire-aggregator", version, after_help = config::LAYERS_HELP)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    flags: TxnFlags,

    /// Topic of raw CSV lines (written by Kafka Connect's FileStreamSource).
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    raw_topic: Option<String>,

    /// Topic the typed JSON readings are produced to, keyed by sensor id.
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    readings_topic: Option<String>,

    /// Dead-letter topic for rejected lines (JSON with raw bytes, reason, source position).
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    dlq_topic: Option<String>,

    /// Longest accepted line in bytes; longer lines go to the DLQ as too long.
    #[arg(long, value_name = "BYTES", value_parser = config::parse_positive)]
    max_line_bytes: Option<usize>,

    /// Readings stamped more than this many seconds ahead of the clock go to
    /// the DLQ as future_time.
    #[arg(long, value_name = "SECONDS", value_parser = config::parse_positive)]
    max_clock_ahead_secs: Option<usize>,
}

/// The aggregator's own settings, resolved from the layers.
#[derive(Debug, Deserialize)]
struct Settings {
    #[serde(deserialize_with = "de::name")]
    raw_topic: String,
    #[serde(deserialize_with = "de::name")]
    readings_topic: String,
    #[serde(deserialize_with = "de::name")]
    dlq_topic: String,
    // Not a flattened ParseLimits: serde's flatten would hide which key a
    // bad value came from.
    #[serde(deserialize_with = "de::positive")]
    max_line_bytes: usize,
    #[serde(deserialize_with = "de::positive")]
    max_clock_ahead_secs: usize,
}

impl Settings {
    fn limits(&self) -> ParseLimits {
        ParseLimits {
            max_line_bytes: self.max_line_bytes,
            max_clock_ahead_secs: self.max_clock_ahead_secs,
        }
    }
}

fn main() -> anyhow::Result<()> {
    pulsewire_runtime::memory::service_main(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let layers = Layers::load(Stage::Aggregator, &args)?;
    let settings: Settings = layers.extract()?;
    let stage =
        runner::TransactionalStage::start(&layers, "pulsewire-aggregator", &settings.raw_topic)?;

    let parser = layers.pipeline().parser(Some(&settings.limits()));
    let transform = stage::Aggregate::new(
        parser,
        settings.readings_topic.clone(),
        settings.dlq_topic.clone(),
    );
    tracing::info!(
        raw = settings.raw_topic,
        readings = settings.readings_topic,
        dlq = settings.dlq_topic,
        "starting"
    );
    stage.run(transform).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let args = Args::try_parse_from(
            std::iter::once("pulsewire-aggregator").chain(args.iter().copied()),
        )?;
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Layers::new(Stage::Aggregator, env, &args)?.extract()
    }

    #[test]
    fn the_line_limit_defaults_to_the_pipelines() {
        // `replay` parses with the pipeline's limit; the aggregator must agree.
        let pipeline = config::pipeline();
        let limit = pipeline.services.aggregator.max_line_bytes;
        assert_eq!(settings(&[], &[]).unwrap().max_line_bytes, limit);
        let line = format!("1,heart_rate,2024-06-19 13:58:37,80{}", " ".repeat(limit));
        assert!(pipeline.parser(None).parse(line.as_bytes()).is_err());
        let wider = ParseLimits {
            max_line_bytes: 2 * limit,
            max_clock_ahead_secs: 300,
        };
        assert!(pipeline.parser(Some(&wider)).parse(line.as_bytes()).is_ok());
        let set = settings(
            &["--max-line-bytes", "10"],
            &[("PULSEWIRE_MAX_LINE_BYTES", "20")],
        );
        assert_eq!(set.unwrap().max_line_bytes, 10);
        let err = settings(&[], &[("PULSEWIRE_RAW_TOPIC", " ")]).unwrap_err();
        assert!(format!("{err}").contains("PULSEWIRE_RAW_TOPIC"), "{err}");
    }

    #[test]
    fn the_clock_limit_comes_from_the_pipeline_and_reaches_the_parser() {
        let pipeline = config::pipeline();
        let own = pipeline.services.aggregator.max_clock_ahead_secs;
        assert_eq!(own, 300);
        let resolved = settings(&[], &[]).unwrap().limits();
        assert_eq!(resolved.max_clock_ahead_secs, own);
        let flagged = settings(&["--max-clock-ahead-secs", "60"], &[])
            .unwrap()
            .limits();
        assert_eq!(flagged.max_clock_ahead_secs, 60);
        let ahead = chrono::Utc::now() + chrono::Duration::seconds(120);
        let line = format!("1,heart_rate,{},80", ahead.format("%Y-%m-%d %H:%M:%S"));
        assert!(pipeline
            .parser(Some(&resolved))
            .parse(line.as_bytes())
            .is_ok());
        let err = pipeline
            .parser(Some(&flagged))
            .parse(line.as_bytes())
            .unwrap_err();
        assert_eq!(err.reason_code(), "future_time");
        let err = settings(&[], &[("PULSEWIRE_MAX_CLOCK_AHEAD_SECS", "0")]).unwrap_err();
        assert!(
            format!("{err}").contains("PULSEWIRE_MAX_CLOCK_AHEAD_SECS"),
            "{err}"
        );
    }
}
