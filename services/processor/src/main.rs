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

use std::path::PathBuf;

use clap::Parser as _;
use pulsewire_model::state::StateTable;
use pulsewire_runtime::config::{self, de, Layers, Stage, TxnFlags};
use pulsewire_runtime::runner;
use serde::{Deserialize, Serialize};

/// Keeps exact running statistics (count, min, max, mean, latest value) per
/// sensor and kind, exactly once, with its state in a compacted Kafka topic.
#[derive(Debug, clap::Parser, Serialize)]
#[command(name = "pulsewire-processor", version, after_help = config::LAYERS_HELP)]
struct Args {
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,

    #[command(flatten)]
    #[serde(flatten)]
    flags: TxnFlags,

    /// Topic of typed readings (from the aggregator), keyed by sensor id.
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    readings_topic: Option<String>,

    /// Topic each reading is produced to together with its updated statistics.
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    stats_topic: Option<String>,

    /// Compacted changelog of the per-(sensor, kind) state; needs at least as
    /// many partitions as the readings topic (state of readings partition N
    /// lives in its partition N).
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    state_topic: Option<String>,

    /// Dead-letter topic for readings that cannot be counted (late, unreadable).
    #[arg(long, value_name = "TOPIC", value_parser = config::parse_name)]
    dlq_topic: Option<String>,

    /// Event times remembered per (sensor, kind) to recognise duplicates; a
    /// reading older than all of a full window is refused as late (to the DLQ).
    #[arg(long, value_name = "N", value_parser = config::parse_positive)]
    dedup_window: Option<usize>,

    /// The most (sensor, kind)s to keep state for; readings of any other go
    /// to the DLQ as state_full.
    #[arg(long, value_name = "N", value_parser = config::parse_positive)]
    max_states: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Replays a CSV file through parse → validate → statistics without Kafka:
    /// one JSON summary per (sensor, kind) on stdout, sorted by sensor id then
    /// kind; one JSON object per uncounted line on stderr. Exits 0 whatever
    /// the file contains, non-zero only if it cannot be read. Lines are judged
    /// by the kinds and the aggregator's max_line_bytes and
    /// max_clock_ahead_secs of the same pipeline
    /// file (--pipeline), so replay and the pipeline agree on every line.
    Replay {
        /// The CSV file (`sensor_id,kind,timestamp,value` lines).
        file: PathBuf,
    },
}

/// The processor's own settings, resolved from the layers.
#[derive(Debug, Deserialize)]
struct Settings {
    #[serde(deserialize_with = "de::name")]
    readings_topic: String,
    #[serde(deserialize_with = "de::name")]
    stats_topic: String,
    #[serde(deserialize_with = "de::name")]
    state_topic: String,
    #[serde(deserialize_with = "de::name")]
    dlq_topic: String,
    #[serde(deserialize_with = "de::positive")]
    dedup_window: usize,
    #[serde(deserialize_with = "de::positive")]
    max_states: usize,
}

fn main() -> anyhow::Result<()> {
    pulsewire_runtime::memory::service_main(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let layers = Layers::load(Stage::Processor, &args)?;
    let settings: Settings = layers.extract()?;
    if let Some(Command::Replay { file }) = &args.command {
        // No logging setup: stdout and stderr carry replay's JSON only.
        return pulsewire_model::replay::run(
            file,
            &layers.pipeline().parser(None),
            StateTable::new(settings.dedup_window).with_max_states(settings.max_states),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        );
    }
    let stage = runner::TransactionalStage::start(
        &layers,
        "pulsewire-processor",
        &settings.readings_topic,
    )?;

    let transform = stage::Process::new(
        stage::Topics {
            stats: settings.stats_topic.clone(),
            state: settings.state_topic.clone(),
            dlq: settings.dlq_topic.clone(),
        },
        settings.dedup_window,
        settings.max_states,
    );
    tracing::info!(
        readings = settings.readings_topic,
        stats = settings.stats_topic,
        state = settings.state_topic,
        "starting"
    );
    stage.run(transform).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_takes_its_window_and_bound_from_the_pipeline_file() {
        let text = config::PIPELINE_TOML
            .replace("dedup_window = 1024", "dedup_window = 3")
            .replace("max_states = 10000", "max_states = 2");
        let path = std::env::temp_dir().join(format!("pw-replay-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let args = Args::try_parse_from([
            "pulsewire-processor",
            "--pipeline",
            path.to_str().unwrap(),
            "replay",
            "x.csv",
        ])
        .unwrap();
        let layers = Layers::new(Stage::Processor, [], &args);
        std::fs::remove_file(&path).unwrap();
        let settings: Settings = layers.unwrap().extract().unwrap();
        assert_eq!((settings.dedup_window, settings.max_states), (3, 2));
        assert!(matches!(args.command, Some(Command::Replay { .. })));
    }
}
