//! The dead-letter record: what was rejected, why, and where it came from.
//!
//! Every record a stage cannot use goes to the DLQ topic as one of these, so
//! nothing is dropped silently and an operator can see, fix and re-inject it.
//! The raw payload is kept losslessly: as text when it is UTF-8 (readable in
//! any console consumer), and additionally as base64 when it is not.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::parse::Rejection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// The stage that rejected it (`aggregator`, `processor`, `uploader`).
    pub stage: String,
    /// Human-readable reason ([`Rejection`]'s `Display`, a server's message).
    pub reason: String,
    /// The raw payload, lossless: UTF-8 text when it is valid UTF-8,
    /// otherwise a lossy rendering for reading (see `raw_base64`).
    pub raw: String,
    /// Base64 (standard, padded) of the raw bytes when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_base64: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl DlqRecord {
    /// A record for `raw`, read at `topic`/`partition`/`offset`, refused by
    /// `stage` for `reason`.
    pub fn new(
        stage: &str,
        reason: impl Into<String>,
        raw: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Self {
        let (raw, raw_base64) = match std::str::from_utf8(raw) {
            Ok(text) => (text.to_owned(), None),
            Err(_) => (
                String::from_utf8_lossy(raw).into_owned(),
                Some(BASE64.encode(raw)),
            ),
        };
        Self {
            stage: stage.to_owned(),
            reason: reason.into(),
            raw,
            raw_base64,
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
        Self::new(stage, rejection.to_string(), raw, topic, partition, offset)
    }

    /// The exact original bytes (for re-injection).
    pub fn raw_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match &self.raw_base64 {
            Some(encoded) => BASE64.decode(encoded),
            None => Ok(self.raw.clone().into_bytes()),
        }
    }
}
