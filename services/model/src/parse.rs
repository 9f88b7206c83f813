//! Turning one raw record (a CSV line, or a JSON string holding one) into a
//! [`Reading`], or into the precise reason it was rejected.
//!
//! This is the one place where the input format is defined; the aggregator
//! calls it for every record of the raw topic and `replay` for every line of
//! a file, so both always agree. The rules, in the order they are checked:
//!
//! 1. At most [`MAX_LINE_BYTES`] bytes (checked first, so a huge record costs
//!    nothing more), valid UTF-8.
//! 2. A JSON string (`"1,heart_rate,..."`, Connect's `JsonConverter` without
//!    schemas) or a JSON envelope (`{"schema":..,"payload":"1,heart_rate,.."}`,
//!    with schemas) is decoded first; then one trailing `\n` and one trailing
//!    `\r` are dropped.
//! 3. A blank line or a header row ([`HEADERS`], fields trimmed) is skipped:
//!    `Ok(None)`. Any other line starting with `sensor_id` is judged like
//!    every line (and so rejected), never dropped silently.
//! 4. `sensor_id,kind,timestamp,value`, split by the `csv` crate's engine (so
//!    quoted fields work; spaces around fields are trimmed):
//!    - `sensor_id`: a positive integer (ASCII digits only);
//!    - `kind`: one of the configured [`KindRule`] names;
//!    - `timestamp`: `YYYY-MM-DD HH:MM:SS` with an optional fraction of 1–9
//!      digits, taken as UTC, or RFC 3339 with an offset; normalised to UTC
//!      and to a whole number of nanoseconds inside 1677-09-21..2262-04-11
//!      (what an `i64` of nanoseconds since the epoch holds — the reading's
//!      identity, see [`Reading::key`] — less the two lowest values and the
//!      highest, which InfluxDB refuses);
//!    - `value`: an integer inside the kind's inclusive range.
//! 5. When the parser has a clock limit ([`Parser::with_max_ahead`]): a time
//!    no later than now plus that limit. A watch whose clock runs ahead would
//!    otherwise fill its duplicate window with future times (so its correct
//!    readings become `late`) and pin `last_value`.
//!
//! Everything else is a [`Rejection`] whose `Display` text is the reason
//! written to the DLQ and whose [`Rejection::reason_code`] labels metrics.

use std::cell::RefCell;

use chrono::format::ParseErrorKind;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::reading::Reading;

/// The longest record a [`Parser::new`] parser accepts, in bytes, until
/// [`Parser::with_max_line_bytes`] sets another: the bound of the tests, the
/// benches and the fuzz target. The services do not use it: the aggregator
/// and `replay` both take `max_line_bytes` from `[services.aggregator]` in the
/// pipeline file they run with (`pulsewire_runtime::config`), so they judge a
/// line alike. A CSV reading is about 45 bytes and its JSON envelope about
/// 100, so anything near this bound is garbage (a binary blob, lines glued
/// together) and is not worth parsing.
pub const MAX_LINE_BYTES: usize = 4096;

/// Header rows, which are skipped rather than rejected: the seed's and ours.
pub const HEADERS: [[&str; 4]; 2] = [
    ["sensor_id", "data_type", "timestamp", "value"],
    ["sensor_id", "kind", "timestamp", "value"],
];

/// The event times InfluxDB stores, in nanoseconds since the epoch: an `i64`
/// but for its two lowest values and its highest (its `MinNanoTime` and
/// `MaxNanoTime`).
pub const TIME_NS: std::ops::RangeInclusive<i64> = (i64::MIN + 2)..=(i64::MAX - 1);

/// The representable range of event times, for the rejection text.
const TIME_RANGE: &str = "outside 1677-09-21..2262-04-11 UTC";

/// Why a line was rejected. `Display` is the reason written to the DLQ; the
/// texts are stable (tests pin them), so operators can grep for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("line too long: {len} bytes, limit {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("not valid UTF-8")]
    NotUtf8,
    /// Starts with `{` but is not a JSON object with a string `payload`.
    #[error("malformed JSON envelope: {0}")]
    BadJson(String),
    /// A `\n` or `\r` inside the record: two lines glued together, which must
    /// not be silently cut to the first.
    #[error("line break inside the record")]
    LineBreak,
    /// Not splittable as CSV at all. Unreachable for UTF-8 input without
    /// line breaks, which is all that reaches the splitter; kept so that a
    /// surprise is a rejection, not a panic.
    #[error("malformed CSV: {0}")]
    BadCsv(String),
    #[error("wrong column count: expected {expected}, got {got}")]
    ColumnCount { expected: usize, got: usize },
    #[error("bad sensor id {id:?}: {why}")]
    BadSensorId { id: String, why: &'static str },
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    #[error("unparsable time {0:?}")]
    BadTime(String),
    /// Well-formed but no such instant (Feb 30, hour 25) or not representable.
    #[error("impossible time {time:?}: {why}")]
    ImpossibleTime { time: String, why: &'static str },
    #[error("bad value {value:?}: {why}")]
    BadValue { value: String, why: &'static str },
    #[error("value {value} out of range {min}..={max} for {kind}")]
    ValueOutOfRange {
        value: i64,
        min: i64,
        max: i64,
        kind: String,
    },
    /// Later than the clock plus the allowed skew.
    #[error("time {time:?} is {ahead_secs} s ahead of the clock (at most {max_secs} s allowed)")]
    FutureTime {
        time: String,
        ahead_secs: i64,
        max_secs: u64,
    },
}

impl Rejection {
    /// A short, stable slug for metric labels and for grouping DLQ records.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Rejection::TooLong { .. } => "too_long",
            Rejection::NotUtf8 => "not_utf8",
            Rejection::BadJson(_) => "bad_json",
            Rejection::LineBreak => "line_break",
            Rejection::BadCsv(_) => "bad_csv",
            Rejection::ColumnCount { .. } => "column_count",
            Rejection::BadSensorId { .. } => "bad_sensor_id",
            Rejection::UnknownKind(_) => "unknown_kind",
            Rejection::BadTime(_) => "bad_time",
            Rejection::ImpossibleTime { .. } => "impossible_time",
            Rejection::BadValue { .. } => "bad_value",
            Rejection::ValueOutOfRange { .. } => "value_out_of_range",
            Rejection::FutureTime { .. } => "future_time",
        }
    }

    /// Every code [`Rejection::reason_code`] can return, so a metrics
    /// exporter can pre-register its label values.
    pub const CODES: &'static [&'static str] = &[
        "too_long",
        "not_utf8",
        "bad_json",
        "line_break",
        "bad_csv",
        "column_count",
        "bad_sensor_id",
        "unknown_kind",
        "bad_time",
        "impossible_time",
        "bad_value",
        "value_out_of_range",
        "future_time",
    ];
}

/// The value range accepted for one kind of reading (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindRule {
    pub name: String,
    pub min: i64,
    pub max: i64,
}

impl KindRule {
    pub fn new(name: impl Into<String>, min: i64, max: i64) -> Self {
        Self {
            name: name.into(),
            min,
            max,
        }
    }
}

/// Parses and validates lines against the configured kinds.
#[derive(Debug, Clone)]
pub struct Parser {
    kinds: Vec<KindRule>,
    max_line_bytes: usize,
    max_ahead: Option<std::time::Duration>,
}

impl Parser {
    /// A parser accepting `kinds` (from `[kinds.*]` in pipeline.toml) and
    /// records of up to [`MAX_LINE_BYTES`].
    pub fn new(kinds: Vec<KindRule>) -> Self {
        Self {
            kinds,
            max_line_bytes: MAX_LINE_BYTES,
            max_ahead: None,
        }
    }

    /// The same parser with another length bound.
    pub fn with_max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// The same parser refusing times more than `limit` ahead of the clock
    /// (rule 5; pipeline.toml's `max_clock_ahead_secs`).
    pub fn with_max_ahead(mut self, limit: std::time::Duration) -> Self {
        self.max_ahead = Some(limit);
        self
    }

    pub fn kinds(&self) -> &[KindRule] {
        &self.kinds
    }

    /// `Ok(None)` for a line that is skipped (blank, header row),
    /// `Ok(Some(reading))` for a valid one, `Err(rejection)` otherwise.
    ///
    /// Never panics, whatever the bytes (the `parse_line` fuzz target checks).
    pub fn parse(&self, payload: &[u8]) -> Result<Option<Reading>, Rejection> {
        // The clock is read only when rule 5 applies.
        let now = self.max_ahead.map(|_| Utc::now());
        self.parse_at(payload, now)
    }

    /// [`Parser::parse`] with the clock's reading given (`None`: no clock
    /// limit is applied).
    pub fn parse_at(
        &self,
        payload: &[u8],
        now: Option<DateTime<Utc>>,
    ) -> Result<Option<Reading>, Rejection> {
        if payload.len() > self.max_line_bytes {
            return Err(Rejection::TooLong {
                len: payload.len(),
                limit: self.max_line_bytes,
            });
        }
        let text = std::str::from_utf8(payload).map_err(|_| Rejection::NotUtf8)?;

        let decoded: String;
        let mut line = text;
        let outer = text.trim();
        if outer.starts_with('{') {
            decoded = decode_envelope(outer)?;
            line = &decoded;
        } else if outer.starts_with('"') {
            // A JSON string. If it does not decode as one, it may still be a
            // CSV line whose first field is quoted, so fall through to CSV.
            if let Ok(inner) = serde_json::from_str::<String>(outer) {
                decoded = inner;
                line = &decoded;
            }
        }

        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Ok(None);
        }
        if line.contains(['\n', '\r']) {
            return Err(Rejection::LineBreak);
        }

        let mut out = vec![0; line.len()];
        let fields = split_csv(line, &mut out)?;
        if HEADERS.iter().any(|header| fields[..] == header[..]) {
            return Ok(None);
        }
        let [id, kind, time, value] = fields[..] else {
            return Err(Rejection::ColumnCount {
                expected: 4,
                got: fields.len(),
            });
        };

        let sensor_id = parse_sensor_id(id)?;
        let rule = self
            .kinds
            .iter()
            .find(|rule| rule.name == kind)
            .ok_or_else(|| Rejection::UnknownKind(kind.to_owned()))?;
        let text = time;
        let time = parse_time(text)?;
        let value = parse_value(value)?;
        if !(rule.min..=rule.max).contains(&value) {
            return Err(Rejection::ValueOutOfRange {
                value,
                min: rule.min,
                max: rule.max,
                kind: rule.name.clone(),
            });
        }
        if let (Some(max), Some(now)) = (self.max_ahead, now) {
            let ahead = time.signed_duration_since(now);
            if ahead.to_std().is_ok_and(|ahead| ahead > max) {
                return Err(Rejection::FutureTime {
                    time: text.to_owned(),
                    ahead_secs: ahead.num_seconds(),
                    max_secs: max.as_secs(),
                });
            }
        }
        Ok(Some(Reading {
            sensor_id,
            kind: rule.name.clone(),
            time,
            value,
        }))
    }
}

/// Splits one line (no line breaks in it) into its trimmed fields.
///
/// This is the `csv` crate's own engine, `csv-core`, used directly: the
/// `csv::Reader` wrapper is built for streams and costs tens of microseconds
/// to set up per line (it builds the state machine's tables), far more than
/// the parse. So each thread keeps one state machine and resets it per line.
/// (Copying a built one is no way out: csv-core 0.1.13's `Clone` drops most
/// of the tables.) Quoted fields are unquoted (`"heart_rate"` is `heart_rate`).
fn split_csv<'a>(line: &str, out: &'a mut [u8]) -> Result<Vec<&'a str>, Rejection> {
    thread_local! {
        static CSV: RefCell<csv_core::Reader> = RefCell::new(csv_core::Reader::new());
    }
    CSV.with(|csv| {
        let mut reader = csv.borrow_mut();
        reader.reset();
        split_with(&mut reader, line, out)
    })
}

fn split_with<'a>(
    reader: &mut csv_core::Reader,
    line: &str,
    out: &'a mut [u8],
) -> Result<Vec<&'a str>, Rejection> {
    use csv_core::ReadRecordResult;

    // Unquoting only shrinks a field, so `out` (as long as the line) holds
    // every field, and there are at most one more fields than bytes.
    let mut ends = vec![0; line.len() + 1];
    let (mut input, mut written, mut fields) = (line.as_bytes(), 0, 0);
    loop {
        let at_end = input.is_empty();
        let (result, read, wrote, ended) =
            reader.read_record(input, &mut out[written..], &mut ends[fields..]);
        input = &input[read..];
        written += wrote;
        fields += ended;
        match result {
            // The input was all of the line; an empty input now says "end of
            // data", which closes the last field.
            ReadRecordResult::InputEmpty if !at_end => continue,
            ReadRecordResult::InputEmpty => {
                return Err(Rejection::BadCsv("no end of record".to_owned()));
            }
            ReadRecordResult::Record => break,
            ReadRecordResult::End => return Ok(Vec::new()),
            ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {
                return Err(Rejection::BadCsv("field buffer too small".to_owned()));
            }
        }
    }
    // `ends` are offsets into `out` from the start of the record. The input
    // was UTF-8 and the parser only removes ASCII quotes, so each field is
    // UTF-8 too; checking again costs little and cannot panic.
    let out = &out[..written];
    let mut start = 0;
    ends[..fields]
        .iter()
        .map(|&end| {
            let field = std::str::from_utf8(&out[start..end])
                .map_err(|_| Rejection::BadCsv("field is not UTF-8".to_owned()))?;
            start = end;
            Ok(field.trim())
        })
        .collect()
}

/// The string `payload` of a Connect `JsonConverter` envelope
/// (`schemas.enable=true`).
fn decode_envelope(text: &str) -> Result<String, Rejection> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        payload: Option<String>,
    }
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| Rejection::BadJson(e.to_string()))?;
    envelope
        .payload
        .ok_or_else(|| Rejection::BadJson("no string \"payload\"".to_owned()))
}

fn parse_sensor_id(id: &str) -> Result<u64, Rejection> {
    let bad = |why| Rejection::BadSensorId {
        id: id.to_owned(),
        why,
    };
    // u64::from_str would also take "+5"; an id is digits and nothing else.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a positive integer"));
    }
    match id.parse::<u64>() {
        Ok(0) => Err(bad("not a positive integer")),
        Ok(n) => Ok(n),
        Err(_) => Err(bad("too large")),
    }
}

fn parse_value(value: &str) -> Result<i64, Rejection> {
    let bad = |why| Rejection::BadValue {
        value: value.to_owned(),
        why,
    };
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not an integer"));
    }
    value.parse::<i64>().map_err(|_| bad("too large"))
}

/// Both accepted timestamp forms, normalised to UTC and whole nanoseconds.
fn parse_time(text: &str) -> Result<DateTime<Utc>, Rejection> {
    let unparsable = || Rejection::BadTime(text.to_owned());
    let impossible = |why| Rejection::ImpossibleTime {
        time: text.to_owned(),
        why,
    };

    // chrono reads any number of fraction digits and drops those beyond
    // nanoseconds; the format allows 1 to 9, and an empty fraction is a typo.
    if let Some((_, after_dot)) = text.split_once('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) {
            return Err(unparsable());
        }
    }

    let parsed = match DateTime::parse_from_rfc3339(text) {
        Ok(with_offset) => Ok(with_offset.with_timezone(&Utc)),
        Err(rfc_err) if naive_shape(text) => {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map(|naive| naive.and_utc())
                .map_err(|naive_err| (rfc_err.kind(), naive_err.kind()))
        }
        Err(rfc_err) => Err((rfc_err.kind(), ParseErrorKind::Invalid)),
    };
    let time = parsed.map_err(|kinds| match kinds {
        (ParseErrorKind::OutOfRange | ParseErrorKind::Impossible, _)
        | (_, ParseErrorKind::OutOfRange | ParseErrorKind::Impossible) => {
            impossible("no such date or time")
        }
        _ => unparsable(),
    })?;

    // The identity of a reading is its instant in i64 nanoseconds; rebuilding
    // the time from that number makes `time` and `key()` agree exactly (a
    // leap second `23:59:60` becomes the next midnight, as in every
    // nanosecond clock).
    let ns = time
        .timestamp_nanos_opt()
        .filter(|ns| TIME_NS.contains(ns))
        .ok_or_else(|| impossible(TIME_RANGE))?;
    Ok(DateTime::from_timestamp_nanos(ns))
}

/// Whether `text` starts with the fixed-width `YYYY-MM-DD HH:MM:SS`.
///
/// chrono's `%m`, `%H`, ... also take one digit (`2024-6-9 1:2:3`); the
/// format written by the seed and promised to operators is zero-padded, and
/// accepting more would make two spellings of one line look different in
/// the DLQ and the same in the statistics.
fn naive_shape(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 19
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}
