//! Pulsewire's domain model: everything a reading goes through, pure and
//! tested without Kafka, and without an I/O dependency in its build (the fuzz
//! target and the parse benchmark depend on this crate alone).
//!
//! # Layout
//! - [`parse`]: the one definition of the input line format; a CSV line
//!   becomes a [`reading::Reading`], a skipped header, or a typed
//!   [`parse::Rejection`] with a stable reason code.
//! - [`reading`]: the reading and the record the processor emits with it.
//! - [`stats`]: exact per-(sensor, kind) statistics.
//! - [`state`]: the processor's state table (statistics plus the duplicate
//!   window).
//! - [`changelog`]: the state's record in the compacted changelog topic.
//! - [`dlq`]: the dead-letter record every stage writes for input it refuses.
//! - [`replay`]: the aggregator's and processor's path over a file, offline.

pub mod changelog;
pub mod dlq;
pub mod parse;
pub mod reading;
pub mod replay;
pub mod state;
pub mod stats;
