//! Pulsewire's stage runtime: the plumbing every stage binary shares around
//! the pure domain model of [`pulsewire_model`].
//!
//! # Layout
//! - [`config`]: the provisioning defaults (`pipeline.toml`) and the flags
//!   every stage shares.
//! - [`runner`]: the Kafka runner: clients, batches, commit strategies,
//!   changelog restore and session supervision.
//! - [`telemetry`]: logging to journald or stderr.
//! - [`metrics`]: the Prometheus endpoint and the metric names.
//! - [`notify`]: systemd readiness, status and watchdog.
//! - [`shutdown`]: SIGTERM/SIGINT as a small watch type.
//! - [`memory`]: how a service starts: malloc arenas capped, then Tokio.

pub mod config;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod runner;
pub mod shutdown;
pub mod telemetry;
