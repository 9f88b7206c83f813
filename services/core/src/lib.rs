//! Pulsewire's shared core.
//!
//! The domain logic is pure and tested without Kafka: a CSV line becomes a
//! [`reading::Reading`] or a [`parse::Rejection`] ([`parse`]), readings fold
//! into exact per-(sensor, kind) statistics ([`stats`], [`state`]), and
//! [`replay`] runs that same path over a file. The rest is the plumbing every
//! stage binary shares: the provisioning defaults ([`config`]), logging
//! ([`telemetry`]), the Prometheus endpoint ([`metrics`]), systemd readiness
//! and watchdog ([`notify`]), shutdown on SIGTERM ([`shutdown`]) and Kafka
//! clients with transactional consume-transform-produce ([`kafka`]).

pub mod config;
pub mod dlq;
pub mod kafka;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod reading;
pub mod replay;
pub mod shutdown;
pub mod state;
pub mod stats;
pub mod telemetry;
