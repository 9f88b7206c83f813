//! The dead-letter record: what was rejected, why, and where it came from.
//!
//! Every record a stage cannot use goes to the DLQ topic as one of these, so
//! nothing is dropped silently and an operator can see, fix and re-inject it.
//! The raw payload is kept losslessly up to [`MAX_RAW_BYTES`]: as text when it
//! is UTF-8 (readable in any console consumer), and additionally as base64
//! when it is not. A longer payload keeps that much of its start plus its
//! whole length and SHA-256, so the record stays far below Kafka's message
//! limit whatever arrives (a 1 MB line of NUL bytes would be 6 MB of escaped
//! JSON), and the operator can still tell which line it was.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::parse::Rejection;

/// Most bytes of a payload a record keeps: the longest line the aggregator
/// accepts by default, so every line short enough to be a reading is kept
/// whole. JSON-escaped (at most 6 bytes per byte) and base64'd when it is not
/// UTF-8, that is at most ~31 KiB of record.
pub const MAX_RAW_BYTES: usize = 4096;

/// The code of a record written before records carried one.
pub const UNKNOWN_CODE: &str = "unknown";

fn unknown_code() -> String {
    UNKNOWN_CODE.to_owned()
}

/// Most bytes of a reason a record keeps (a server's message can be long).
pub const MAX_REASON_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// The stage that rejected it (`aggregator`, `processor`, `uploader`).
    pub stage: String,
    /// Why, as a stable slug for filters and metric labels: the parser's
    /// [`Rejection::reason_code`] for a rejected line, the processor's refusal
    /// (`late`, `conflict`, `state_full`, `unreadable_reading`) or the
    /// uploader's (`influx_refused`, `unreadable_stats`). Records written
    /// before the field existed read as [`UNKNOWN_CODE`].
    #[serde(default = "unknown_code")]
    pub code: String,
    /// Human-readable reason ([`Rejection`]'s `Display`, a server's message).
    pub reason: String,
    /// The raw payload, lossless: UTF-8 text when it is valid UTF-8,
    /// otherwise a lossy rendering for reading (see `raw_base64`).
    pub raw: String,
    /// Base64 (standard, padded) of the raw bytes when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_base64: Option<String>,
    /// The whole payload's length in bytes, when `raw` holds only its first
    /// [`MAX_RAW_BYTES`].
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_length: Option<u64>,
    /// Lowercase hex SHA-256 of the whole payload, when `raw` holds only its start.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_sha256: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl DlqRecord {
    /// A record for `raw`, read at `topic`/`partition`/`offset`, refused by
    /// `stage` for `reason` (whose stable slug is `code`).
    pub fn new(
        stage: &str,
        code: &str,
        reason: impl Into<String>,
        raw: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Self {
        let (kept, raw_length, raw_sha256) = if raw.len() > MAX_RAW_BYTES {
            let sha256 = format!("{:x}", Sha256::digest(raw));
            (
                prefix(raw, MAX_RAW_BYTES),
                Some(raw.len() as u64),
                Some(sha256),
            )
        } else {
            (raw, None, None)
        };
        let (raw, raw_base64) = match std::str::from_utf8(kept) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (
                String::from_utf8_lossy(kept).into_owned(),
                Some(BASE64.encode(kept)),
            ),
        };
        let reason = reason.into();
        Self {
            stage: stage.to_owned(),
            code: code.to_owned(),
            reason: prefix_str(&reason, MAX_REASON_BYTES).to_owned(),
            raw,
            raw_base64,
            raw_length,
            raw_sha256,
            topic: topic.to_owned(),
            partition,
            offset,
        }
    }

    /// A record for a line the parser rejected.
    pub fn rejected(
        stage: &str,
        rejection: &Rejection,
        raw: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Self {
        Self::new(
            stage,
            rejection.reason_code(),
            rejection.to_string(),
            raw,
            topic,
            partition,
            offset,
        )
    }

    /// Whether `raw` is the whole payload, not only its start.
    pub fn is_whole(&self) -> bool {
        self.raw_length.is_none()
    }

    /// The exact original bytes (for re-injection); `None` when the record
    /// keeps only their start.
    pub fn raw_bytes(&self) -> Option<Result<Vec<u8>, base64::DecodeError>> {
        if !self.is_whole() {
            return None;
        }
        Some(match &self.raw_base64 {
            Some(encoded) => BASE64.decode(encoded),
            None => Ok(self.raw.clone().into_bytes()),
        })
    }
}

/// The first `max` bytes of `raw`, cut before a UTF-8 character that would
/// not fit when `raw` is UTF-8 up to there.
fn prefix(raw: &[u8], max: usize) -> &[u8] {
    let head = &raw[..max];
    match std::str::from_utf8(head) {
        Err(e) if e.error_len().is_none() => &head[..e.valid_up_to()],
        _ => head,
    }
}

fn prefix_str(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
