//! systemd readiness, watchdog and stopping notifications (`Type=notify`).
//!
//! `READY=1` is sent once the stage is really able to work — connected to
//! Kafka with its first partition assignment (or at least broker metadata),
//! the simulator's file opened — so units ordered `After=` it start against a
//! working service, not a process that merely exists.
//!
//! `WATCHDOG=1` is sent from the stage's main loop, never from a timer thread:
//! a timer would keep pinging while the loop is hung, which is exactly the
//! failure the watchdog exists to catch. The loop calls [`Notifier::watchdog`]
//! every iteration; it pings when half of `WatchdogSec` has passed since the
//! last ping, so any single blocking step (a transaction commit, a batch
//! write) may take up to half the interval without a false restart.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a cheap no-op.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The service's side of the `sd_notify` protocol.
#[derive(Debug)]
pub struct Notifier {
    /// Half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    ping_every: Option<Duration>,
    last_ping: Mutex<Instant>,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC`/`WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::new(watchdog_interval(
            usec.as_deref(),
            pid.as_deref(),
            std::process::id(),
        ))
    }

    fn new(watchdog: Option<Duration>) -> Self {
        Self {
            ping_every: watchdog.map(|d| d / 2),
            last_ping: Mutex::new(Instant::now()),
        }
    }

    /// The full watchdog interval systemd enforces, if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.ping_every.map(|d| d * 2)
    }

    /// `READY=1` with a human-readable status (`systemctl status` shows it).
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        tracing::info!(status, "ready");
        *self.last_ping.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Updates the status line without changing state.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// Called every main-loop iteration: pings when half the watchdog interval
    /// has passed since the last ping. Returns whether it pinged.
    pub fn watchdog(&self) -> bool {
        let Some(every) = self.ping_every else {
            return false;
        };
        let mut last = self.last_ping.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() < every {
            return false;
        }
        *last = Instant::now();
        drop(last);
        self.send(&[NotifyState::Watchdog]);
        true
    }

    /// `STOPPING=1`: systemd then knows the exit that follows is intended.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        // A failed notification must not take the service down; systemd will
        // notice a missing READY or ping on its own.
        if let Err(err) = sd_notify::notify(false, states) {
            tracing::warn!(%err, "sd_notify failed");
        }
    }
}

/// `sd_watchdog_enabled(3)`: the watchdog applies to us when `WATCHDOG_USEC`
/// is a positive number and `WATCHDOG_PID` is unset or our pid.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => Some(Duration::from_micros(usec)),
        Some(Ok(p)) if p == own_pid => Some(Duration::from_micros(usec)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_applies_only_to_the_named_pid() {
        let d = Duration::from_secs(30);
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), Some(d));
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), Some(d));
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn pings_at_half_the_interval() {
        let n = Notifier::new(Some(Duration::from_millis(40)));
        assert!(!n.watchdog(), "no ping right after start");
        std::thread::sleep(Duration::from_millis(25));
        assert!(n.watchdog(), "ping after half the interval");
        assert!(!n.watchdog(), "not again immediately");
        let off = Notifier::new(None);
        assert!(!off.watchdog());
    }
}
