//! The Pulsewire operator CLI: what an operator over ssh wants before
//! opening Grafana, and the dead-letter topic's records, with a way back in.
//!
//! # Layout
//! - [`cli`]: the flags and subcommands (clap).
//! - `targets`: where the pipeline runs (the pipeline file, the brokers,
//!   each stage's `/metrics`, Connect's REST API and its credential), from
//!   the targets file the NixOS module or the local stack renders.
//! - `scrape`: one stage's `/metrics`, read into the counters status needs.
//! - `connect`: the connector's and its task's state, and its file position.
//! - `lag`: a consumer group's exact lag (records it has yet to commit).
//! - `status`: the hops, one row each, as a table or JSON.
//! - `dlq`: reading the dead-letter topic with filters.
//! - `replay`: re-injecting chosen DLQ records exactly once.
//! - `table`: plain text columns.

pub mod cli;
mod connect;
mod dlq;
mod http;
mod lag;
mod replay;
mod scrape;
mod status;
mod table;
mod targets;

use cli::{Cli, Command, DlqCommand};

/// The exit status: scripts branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// All is well (every hop up; the records were shown or replayed).
    Ok = 0,
    /// An error stopped the command (unreachable brokers, bad flags).
    Failed = 1,
    /// The command refused: a DLQ record cannot be replayed (its line was
    /// truncated, or it came from no topic a replay can write to).
    Refused = 2,
    /// `status`: at least one hop is down.
    Down = 3,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let targets = targets::Targets::resolve(&cli.targets)?;
    match cli.command {
        Command::Status(args) => status::run(&targets, &args),
        Command::Dlq { command } => match command {
            DlqCommand::List(args) => dlq::list(&targets, &args),
            DlqCommand::Show(args) => dlq::show(&targets, &args),
            DlqCommand::Replay(args) => replay::run(&targets, &args),
        },
    }
}
