//! Offline replay: the operator's check, and the reference for the tests.
//!
//! `pulsewire-processor replay FILE` runs the very parse → validate →
//! statistics path the aggregator and processor run, in-process and without
//! Kafka. The binary only needs to call [`run`], with the parser the
//! aggregator would build from the same pipeline file (its kinds and its
//! `max_line_bytes`: `Pipeline::parser` in `pulsewire_runtime::config`):
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use pulsewire_model::parse::{KindRule, Parser};
//! use pulsewire_model::state::StateTable;
//! let parser = Parser::new(vec![KindRule::new("heart_rate", 30, 250)]).with_max_line_bytes(4096);
//! pulsewire_model::replay::run(
//!     std::path::Path::new("readings.csv"),
//!     &parser,
//!     // dedup_window and max_states from pipeline.toml, as the processor's
//!     StateTable::new(1024).with_max_states(10_000),
//!     &mut std::io::stdout().lock(),
//!     &mut std::io::stderr().lock(),
//! )?; // Err (naming the file) only when the file cannot be read: exit non-zero
//! # Ok(())
//! # }
//! ```
//!
//! Output:
//! - stdout: one JSON object per (sensor, kind), sorted by sensor id then
//!   kind: `sensor_id`, `kind`, `count`, `min`, `max`, `mean` (float),
//!   `last_value`, `last_time` (RFC 3339 UTC with the input's sub-second
//!   precision, in groups of 3 digits: `2024-06-19T13:58:41.074766Z`).
//!   [`Summary`] is that object.
//! - stderr: one JSON object per line that was not counted: `line` (1-based),
//!   `reason` (the DLQ text), `code` (its slug), `raw` (the line without its
//!   `\n`; lossy if it is not UTF-8, and then also `raw_base64` with the exact
//!   bytes). Besides parser rejections, this reports duplicates (`code`
//!   `duplicate`), late readings (`late`), conflicts (`conflict`) and
//!   readings the table has no room for (`state_full`), see [`crate::state`].
//!
//! Lines are split on `\n` only (a `\r` before it is the parser's business);
//! a last line without `\n` counts. Whatever the file contains, the result is
//! `Ok`: bad lines are reported, never fatal.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::parse::Parser;
use crate::state::{Applied, SensorState, StateTable};

/// One line of replay's stdout: the final statistics of one (sensor, kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub sensor_id: u64,
    pub kind: String,
    pub count: u64,
    pub min: i64,
    pub max: i64,
    pub mean: f64,
    pub last_value: i64,
    /// RFC 3339, UTC, `Z`.
    pub last_time: String,
}

impl Summary {
    pub fn of(state: &SensorState) -> Self {
        let stats = &state.stats;
        Self {
            sensor_id: state.sensor_id,
            kind: state.kind.clone(),
            count: stats.count,
            min: stats.min,
            max: stats.max,
            mean: stats.mean(),
            last_value: stats.last_value,
            last_time: stats.last_time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        }
    }
}

/// What a replay saw, line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Lines read (including skipped and rejected ones).
    pub lines: u64,
    pub counted: u64,
    /// Blank lines and header rows.
    pub skipped: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Readings at an instant already counted with another value.
    pub conflicts: u64,
    /// Readings of a new (sensor, kind) once the table kept its maximum.
    pub full: u64,
}

/// Replays the file at `path`: summaries to `out`, uncounted lines to `err`
/// (formats in the module docs). `Err` only when the file cannot be read, or
/// `out`/`err` cannot be written; the message names the file.
pub fn run(
    path: &Path,
    parser: &Parser,
    table: StateTable,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    run_reader(BufReader::new(file), parser, table, out, err)
        .with_context(|| format!("replaying {}", path.display()))?;
    Ok(())
}

/// [`run`] over any buffered reader, into `table` (empty, with the limits
/// the processor has); returns what it saw.
pub fn run_reader(
    mut input: impl BufRead,
    parser: &Parser,
    mut table: StateTable,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if input
            .read_until(b'\n', &mut buf)
            .context("cannot read input")?
            == 0
        {
            break;
        }
        totals.lines += 1;
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        match parser.parse(raw) {
            Ok(None) => totals.skipped += 1,
            Ok(Some(reading)) => {
                let applied = table.apply(&reading);
                match &applied {
                    Applied::Counted(_) => totals.counted += 1,
                    Applied::Duplicate => totals.duplicates += 1,
                    Applied::Late => totals.late += 1,
                    Applied::Conflict { .. } => totals.conflicts += 1,
                    Applied::Full => totals.full += 1,
                }
                if let Some((code, reason)) = applied.refusal(&reading, &table) {
                    report(err, totals.lines, code, &reason, raw)?;
                }
            }
            Err(rejection) => {
                totals.rejected += 1;
                let reason = rejection.to_string();
                report(err, totals.lines, rejection.reason_code(), &reason, raw)?;
            }
        }
    }
    for state in table.sorted() {
        serde_json::to_writer(&mut *out, &Summary::of(state))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    err.flush()?;
    Ok(totals)
}

/// One stderr line for a line that was not counted.
fn report(err: &mut impl Write, line: u64, code: &str, reason: &str, raw: &[u8]) -> io::Result<()> {
    #[derive(Serialize)]
    struct LineReport<'a> {
        line: u64,
        reason: &'a str,
        code: &'a str,
        raw: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        raw_base64: Option<String>,
    }
    let raw_base64 = std::str::from_utf8(raw)
        .is_err()
        .then(|| BASE64.encode(raw));
    let record = LineReport {
        line,
        reason,
        code,
        raw: String::from_utf8_lossy(raw),
        raw_base64,
    };
    serde_json::to_writer(&mut *err, &record)?;
    err.write_all(b"\n")
}
