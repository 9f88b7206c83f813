//! The benchmarks' fair ceiling (`bench/run`, `docs/benchmarks.md`): a stage
//! built exactly like the aggregator and the processor, on their runtime
//! ([`TransactionalStage`]: the same read_committed group consumer, threaded
//! transactional producer, batches, and one transaction per batch with the
//! input offsets), whose transform copies every record to the output topic
//! unchanged. A stage can only be slower than this by what its own
//! per-record work costs.
//!
//! ```text
//! cargo run --release -p pulsewire-runtime --example passthrough -- \
//!     --like aggregator --input bench.raw --output bench.out \
//!     --bootstrap-servers 127.0.0.1:19092 --group-id g --transactional-id-prefix g --instance bench
//! ```
//!
//! `--like` takes that stage's batch settings from the pipeline file, so the
//! ceiling commits at the same cadence as the stage it is compared with.

use clap::Parser as _;
use pulsewire_runtime::config::{self, Layers, Stage, TxnFlags};
use pulsewire_runtime::runner::{Output, Record, TransactionalStage, Transform};
use serde::Serialize;

#[derive(Debug, clap::Parser, Serialize)]
#[command(name = "passthrough")]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    flags: TxnFlags,

    /// The stage whose batch settings (pipeline file, `[services.<stage>]`)
    /// the ceiling runs with.
    #[arg(long, value_enum)]
    #[serde(skip)]
    like: Like,

    /// Topic to read.
    #[arg(long, value_parser = config::parse_name)]
    #[serde(skip)]
    input: String,

    /// Topic every record is copied to, with its key.
    #[arg(long, value_parser = config::parse_name)]
    #[serde(skip)]
    output: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Like {
    Aggregator,
    Processor,
}

/// Copies each record, key and payload, to `output`.
struct Copy {
    output: String,
}

impl Transform for Copy {
    type Output = Output;

    fn record(&mut self, record: &Record<'_>, out: &mut Vec<Output>) -> anyhow::Result<()> {
        out.push(Output {
            topic: self.output.clone(),
            partition: None,
            key: record.key.map(<[u8]>::to_vec),
            payload: record.payload.unwrap_or_default().to_vec(),
        });
        Ok(())
    }

    fn committed(&mut self) {}

    fn reset(&mut self) {}
}

fn main() -> anyhow::Result<()> {
    pulsewire_runtime::memory::service_main(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let stage = match args.like {
        Like::Aggregator => Stage::Aggregator,
        Like::Processor => Stage::Processor,
    };
    let layers = Layers::load(stage, &args)?;
    TransactionalStage::start(&layers, "passthrough", &args.input)?
        .run(Copy {
            output: args.output,
        })
        .await
}
