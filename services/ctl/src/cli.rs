//! The command line: `status`, `dlq list`, `dlq show`, `dlq replay`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::dlq::Position;

/// The Pulsewire operator CLI: the pipeline's health per hop, and the
/// dead-letter topic.
#[derive(Debug, Parser)]
#[command(name = "pulsewire-ctl", version, after_help = TARGETS_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub targets: TargetFlags,
    #[command(subcommand)]
    pub command: Command,
}

const TARGETS_HELP: &str = "\
Where the pipeline runs comes from the targets file (--targets, else \
PULSEWIRE_CTL_TARGETS, else /etc/pulsewire/ctl-targets.json when it exists), \
which the NixOS module writes: the pipeline file, the brokers, each stage's \
/metrics address, Connect's REST URL and the file holding its password. \
Without one, everything is derived from the pipeline file on this host.";

/// Where to find the pipeline; each overrides the targets file.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetFlags {
    /// The targets file [env: PULSEWIRE_CTL_TARGETS]
    /// [default: /etc/pulsewire/ctl-targets.json if it exists].
    #[arg(long, value_name = "FILE", global = true)]
    pub targets: Option<PathBuf>,
    /// The pipeline file [env: PULSEWIRE_PIPELINE] [default: the targets
    /// file's, else the built-in provisioning/pipeline.toml].
    #[arg(long, value_name = "FILE", global = true)]
    pub pipeline: Option<PathBuf>,
    /// Kafka bootstrap servers [env: PULSEWIRE_BOOTSTRAP_SERVERS]
    /// [default: the targets file's, else the pipeline's brokers].
    #[arg(long, value_name = "HOST:PORT,...", global = true,
          value_parser = pulsewire_runtime::config::parse_bootstrap)]
    pub bootstrap_servers: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per hop (Connect, aggregator, processor, uploader): up or down,
    /// records per second, lag and the last error. Exits 3 when a hop is down.
    Status(StatusArgs),
    /// The dead-letter topic: every record a stage could not use.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Time between the two /metrics samples the rates come from.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = pulsewire_runtime::config::parse_millis)]
    pub interval_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per DLQ record: where it is, when, which stage, its reason.
    List(ListArgs),
    /// Whole DLQ records as JSON, one per line (`--at` for one).
    Show(ShowArgs),
    /// Re-injects the chosen records' original payloads into the topic each
    /// was read from, exactly once: records replayed before are skipped.
    Replay(ReplayArgs),
}

/// Which DLQ records a command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Filters {
    /// Only records with this reason code (e.g. `unknown_kind`); repeatable.
    #[arg(long = "reason", value_name = "CODE")]
    pub reasons: Vec<String>,
    /// Only records dead-lettered at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only records dead-lettered before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only the record at TOPIC:PARTITION:OFFSET of the DLQ; repeatable.
    #[arg(long = "at", value_name = "TOPIC:PARTITION:OFFSET", value_parser = Position::parse)]
    pub at: Vec<Position>,
    /// At most this many records (the earliest).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filters: Filters,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Say what would be replayed, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| {
            format!("`{value}` is not an RFC 3339 time (e.g. 2026-12-07T09:00:00Z): {err}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_with_an_offset() {
        assert_eq!(
            parse_time("2026-12-07T10:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-12-07T09:00:00+00:00"
        );
        let err = parse_time("2026-12-07 09:00").unwrap_err();
        assert!(
            err.starts_with("`2026-12-07 09:00` is not an RFC 3339 time"),
            "{err}"
        );
    }

    #[test]
    fn filters_parse_from_flags() {
        let cli = Cli::try_parse_from([
            "pulsewire-ctl",
            "dlq",
            "replay",
            "--reason",
            "unknown_kind",
            "--reason",
            "bad_time",
            "--since",
            "2026-12-07T09:00:00Z",
            "--at",
            "heartrate.dlq:2:17",
            "--limit",
            "5",
        ])
        .unwrap();
        let Command::Dlq {
            command: DlqCommand::Replay(args),
        } = cli.command
        else {
            panic!("not a replay: {:?}", cli.command)
        };
        let f = args.filters;
        assert_eq!(f.reasons, ["unknown_kind", "bad_time"]);
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-12-07T09:00:00+00:00");
        assert_eq!(
            f.at,
            [Position {
                topic: "heartrate.dlq".into(),
                partition: 2,
                offset: 17
            }]
        );
        assert_eq!(f.limit, Some(5));
        assert!(!args.dry_run);
    }

    #[test]
    fn a_bad_position_names_the_flag_value() {
        let err =
            Cli::try_parse_from(["pulsewire-ctl", "dlq", "show", "--at", "heartrate.dlq:x:1"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("`heartrate.dlq:x:1`"), "{err}");
    }
}
