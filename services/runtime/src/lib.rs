//! Pulsewire's stage runtime: the plumbing every stage binary shares around
//! the pure domain model of [`pulsewire_model`].
//!
//! # Layout
//! - [`config`]: the provisioning defaults (`pipeline.toml`) and the flags
//!   every stage shares.
//! - [`kafka`]: Kafka clients and the transactional
//!   consume-transform-produce runner.
//! - [`telemetry`]: logging to journald or stderr.
//! - [`metrics`]: the Prometheus endpoint and the metric names.
//! - [`notify`]: systemd readiness, status and watchdog.
//! - [`shutdown`]: SIGTERM/SIGINT as a small watch type.

pub mod config;
pub mod kafka;
pub mod metrics;
pub mod notify;
pub mod shutdown;
pub mod telemetry;
