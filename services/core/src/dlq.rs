//! The dead-letter record: what was rejected, why, and where it came from.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRecord {
    /// The stage that rejected it (`aggregator`, `uploader`).
    pub stage: String,
    pub reason: String,
    /// The raw payload, lossless: UTF-8 text when it is valid UTF-8.
    pub raw: String,
    /// Base64 of the raw bytes when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_base64: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
