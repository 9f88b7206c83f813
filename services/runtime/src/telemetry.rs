//! Logging: `tracing` events to journald under systemd, to stderr elsewhere.
//!
//! systemd sets `JOURNAL_STREAM` when a unit's stdout/stderr are connected to
//! the journal; then events go to journald natively, so their structured
//! fields (`sensor`, `topic`, `partition`, `offset`, ...) become journal
//! fields an operator can filter on (`journalctl -u pulsewire-aggregator
//! TOPIC=heartrate.raw`). If the journal socket cannot be opened (a container
//! without journald, a test harness that sets the variable), we fall back to
//! stderr rather than losing the logs. Everywhere else, human-readable lines
//! go to stderr, which keeps stdout free for `replay`'s JSON output.
//!
//! librdkafka's own log lines arrive through the `log` crate and are bridged
//! into `tracing` by the subscriber's `tracing-log` support.

use anyhow::Context as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use crate::config::LogArgs;

/// Where the logs went; returned so `main` can mention it once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Journald,
    Stderr,
    /// `JOURNAL_STREAM` was set but the journal socket could not be opened.
    StderrFallback,
}

/// The filter: `RUST_LOG` when set, else `--log-level`. A bad value names its
/// source so the operator knows which one to fix.
pub fn filter(args: &LogArgs) -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("invalid RUST_LOG `{directives}`")),
        _ => EnvFilter::try_new(&args.log_level)
            .with_context(|| format!("invalid --log-level `{}`", args.log_level)),
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(args: &LogArgs) -> anyhow::Result<LogOutput> {
    let filter = filter(args)?;
    let (journald, output) = if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(layer) => (Some(layer), LogOutput::Journald),
            Err(_) => (None, LogOutput::StderrFallback),
        }
    } else {
        (None, LogOutput::Stderr)
    };
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Under systemd without the journal, colours would be noise.
            .with_ansi(
                output == LogOutput::Stderr && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            )
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init()
        .context("installing the log subscriber")?;
    if output == LogOutput::StderrFallback {
        tracing::warn!(
            "JOURNAL_STREAM is set but the journal socket is unavailable; logging to stderr"
        );
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_log_level_names_the_flag() {
        // RUST_LOG is not set under `cargo test` unless the caller sets it.
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        let err = filter(&LogArgs {
            log_level: "info,=[".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("--log-level"), "{err}");
        assert!(filter(&LogArgs {
            log_level: "debug,rdkafka=warn".into()
        })
        .is_ok());
    }
}
