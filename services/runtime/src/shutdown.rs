//! Graceful shutdown on SIGTERM (systemd's stop) and SIGINT (Ctrl-C).
//!
//! The signal only flips a flag; each stage's main loop checks it between
//! batches, so the batch in flight is finished (transaction committed, points
//! acknowledged, offsets committed) before the process exits 0. Nothing is
//! cut off halfway, and the next start resumes exactly after the last
//! committed batch. A second signal exits at once for an impatient operator;
//! that is still safe, because every stage is built to survive SIGKILL.

use tokio::sync::watch;

/// Tells the holder whether shutdown was requested; cheap to clone and check.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Starts listening for SIGTERM and SIGINT. Needs a Tokio runtime.
    pub fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            for round in 0.. {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                if round == 0 {
                    tracing::info!(
                        signal = name,
                        "shutdown requested; finishing the batch in flight"
                    );
                    let _ = tx.send(true);
                } else {
                    tracing::warn!(signal = name, "second signal; exiting now");
                    std::process::exit(1);
                }
            }
        });
        Ok(Self { rx })
    }

    /// A shutdown that is triggered by hand (tests, one-shot modes).
    pub fn manual() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self { rx })
    }

    /// Whether shutdown was requested. Never blocks; for synchronous loops.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown is requested; for `select!` in async loops.
    pub async fn recv(&mut self) {
        // An error means the sender is gone, which only happens at exit.
        let _ = self.rx.wait_for(|&stop| stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_shutdown_is_seen_by_clones() {
        let (tx, mut shutdown) = Shutdown::manual();
        let other = shutdown.clone();
        assert!(!shutdown.is_shutdown());
        tx.send(true).unwrap();
        shutdown.recv().await;
        assert!(other.is_shutdown());
    }
}
