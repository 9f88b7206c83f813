//! The session state machine and its supervisor.
//!
//! A session builds the clients (the strategy's producer first, so a
//! transactional predecessor is fenced before we read), then loops: reset and
//! restore the stage when the assignment changed, collect a batch, commit it.
//! A failed batch is aborted and rewound to the committed offsets and the
//! stage forgets its uncommitted work; if even that fails, the session ends
//! with an error and the supervisor rebuilds every client after a capped
//! exponential pause, which amounts to the same thing.

use std::time::{Duration, Instant};

use super::batch::{self, Batch, Collected};
use super::integrity::{self, is_refused};
use super::restore::Restore;
use super::{Source, StageSpec, Transform};
use crate::metrics as m;
use crate::notify::Notifier;
use crate::shutdown::Shutdown;

/// How a batch becomes durable together with its input offsets.
pub trait Commit<S: Source> {
    type Output;

    /// Builds this strategy's clients for a new session.
    fn open(&mut self) -> anyhow::Result<()>;

    /// Makes `outputs` durable and commits `batch`'s offsets. An error
    /// leaves the batch for [`Commit::abort`] and a rewind.
    fn commit(
        &mut self,
        source: &S,
        outputs: &[Self::Output],
        batch: &Batch,
    ) -> anyhow::Result<Committed>;

    /// After a failed commit, before the rewind. An error means the clients
    /// are unusable and the session is rebuilt.
    fn abort(&mut self) -> anyhow::Result<()>;
}

/// What became of a batch that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Outputs and offsets are durable.
    Yes,
    /// Outputs are durable, the offsets did not move: the batch will be
    /// written again (harmless into an idempotent sink).
    OutputsOnly,
    /// Shutdown came before the outputs were durable: nothing committed,
    /// the session ends.
    Stopped,
}

/// What a runner needs from its process.
pub struct Env<'a> {
    pub shutdown: &'a Shutdown,
    pub notifier: &'a Notifier,
}

/// The longest pause between two Kafka sessions of a stage.
pub const SESSION_PAUSE_MAX: Duration = Duration::from_secs(30);

/// The pauses between rebuilding a stage's Kafka clients after a failed
/// session: exponential from 0.5 s, capped at [`SESSION_PAUSE_MAX`], without end.
pub fn session_pauses() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder as _;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(SESSION_PAUSE_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs a stage until shutdown. `connect` builds the group consumer of a
/// session; errors that leave the clients unusable rebuild them after a
/// capped exponential pause; the stage only returns on shutdown, or with a
/// [`integrity::Refused`] error when it must not run at all.
pub fn run<S, T, C>(
    spec: &StageSpec,
    env: &Env<'_>,
    mut connect: impl FnMut() -> anyhow::Result<S>,
    commit: &mut C,
    restore: &impl Restore,
    transform: &mut T,
) -> anyhow::Result<()>
where
    S: Source,
    C: Commit<S>,
    T: Transform<Output = C::Output>,
{
    m::zero_by(m::RECORDS_IN, "topic", &[&spec.input_topic]);
    m::zero_by(m::ERRORS, "kind", &["consume", "session", "transform"]);
    m::zero_histograms(&[
        m::BATCH_WRITE_SECONDS,
        m::BATCH_RECORDS,
        m::PROCESSING_SECONDS,
    ]);
    m::waiting("kafka", 0.0);
    let mut pause = session_pauses();
    let mut ready = false;
    // Since when sessions have been failing, one after the other.
    let mut failing_since: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let result = commit.open().and_then(|()| {
            let source = connect()?;
            session(spec, env, &source, commit, restore, transform, &mut ready)
        });
        if started.elapsed() > Duration::from_secs(60) {
            // A session that ran for a while was healthy: start the pauses
            // between rebuilds from the beginning again.
            pause = session_pauses();
            failing_since = None;
        }
        match result {
            Ok(()) => break,
            // Retrying cannot help: the process stops (`integrity`).
            Err(err) if is_refused(&err) => return Err(err),
            Err(err) if env.shutdown.is_shutdown() => {
                tracing::info!(error = format!("{err:#}"), "stopped during shutdown");
                break;
            }
            Err(err) => {
                m::error("session");
                let wait = pause.next().unwrap_or(SESSION_PAUSE_MAX);
                let waited = failing_since.get_or_insert(started).elapsed();
                m::waiting("kafka", waited.as_secs_f64());
                tracing::error!(
                    error = format!("{err:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "waiting for Kafka: the session failed, failing for {} s; rebuilding clients, \
                     nothing uncommitted is lost",
                    waited.as_secs()
                );
                let until = Instant::now() + wait;
                while Instant::now() < until && !env.shutdown.is_shutdown() {
                    env.notifier.watchdog();
                    std::thread::sleep(Duration::from_millis(100).min(wait));
                }
            }
        }
    }
    env.notifier.stopping();
    Ok(())
}

fn session<S, T, C>(
    spec: &StageSpec,
    env: &Env<'_>,
    source: &S,
    commit: &mut C,
    restore: &impl Restore,
    transform: &mut T,
    ready: &mut bool,
) -> anyhow::Result<()>
where
    S: Source,
    C: Commit<S>,
    T: Transform<Output = C::Output>,
{
    tracing::info!(
        topic = spec.input_topic,
        group = spec.group_id,
        "connected; waiting for partitions"
    );
    // Forces a reset (and restore) once the first assignment arrives.
    let mut seen_generation = u64::MAX;
    let mut outputs = Vec::new();
    while !env.shutdown.is_shutdown() {
        env.notifier.watchdog();
        let generation = source.generation();
        if generation != seen_generation && generation > 0 {
            if !reset(spec, env, source, restore, transform)? {
                continue;
            }
            seen_generation = generation;
            if !*ready {
                env.notifier
                    .ready(&format!("consuming {}", spec.input_topic));
                *ready = true;
            }
        }
        outputs.clear();
        let collected = batch::collect(source, spec.limits, env.shutdown, env.notifier, |r| {
            transform.record(r, &mut outputs)
        });
        let batch = match collected {
            Ok(Collected::Batch(batch)) if batch.records == 0 => continue,
            Ok(Collected::Batch(batch)) => batch,
            // Nothing was committed; the top of the loop resets the stage.
            Ok(Collected::Rebalanced) => continue,
            Err(err) if is_refused(&err) => return Err(err),
            Err(err) => {
                if integrity::is_position_lost(&err) {
                    // librdkafka stopped fetching a partition it could not
                    // place (a new group's, or while leaders moved).
                    tracing::info!(reason = %err, "rewinding to the committed offsets");
                } else {
                    // A record the stage could not handle at all (not a bad
                    // line: those go to the DLQ). Start the batch over.
                    m::error("transform");
                    tracing::error!(error = format!("{err:#}"), "batch failed; rewinding");
                }
                source.rewind()?;
                if !reset(spec, env, source, restore, transform)? {
                    seen_generation = u64::MAX;
                }
                continue;
            }
        };
        let started = Instant::now();
        let result = transform
            .end_batch(&mut outputs)
            .and_then(|()| commit.commit(source, &outputs, &batch));
        match result {
            Ok(Committed::Stopped) => {
                tracing::info!(
                    records = batch.records,
                    "shutdown before the batch was durable; left uncommitted for the next start"
                );
                return Ok(());
            }
            Ok(committed) => {
                metrics::histogram!(m::BATCH_WRITE_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::counter!(m::RECORDS_IN, "topic" => spec.input_topic.clone())
                    .increment(batch.records as u64);
                if committed == Committed::Yes {
                    batch.observe_latency();
                }
                transform.committed();
                m::waiting("kafka", 0.0);
                tracing::debug!(
                    records = batch.records,
                    outputs = outputs.len(),
                    "batch committed"
                );
            }
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    records = batch.records,
                    "commit failed; aborting and rewinding"
                );
                commit.abort()?;
                source.rewind()?;
                if !reset(spec, env, source, restore, transform)? {
                    seen_generation = u64::MAX;
                }
            }
        }
    }
    tracing::info!("last batch committed; leaving the group");
    source.leave();
    Ok(())
}

/// Makes the stage forget its uncommitted work and restores its changelog
/// for the partitions now assigned, checked against the group's offsets
/// ([`integrity::restore_checked`]). Returns `false` if the assignment
/// changed meanwhile: the caller resets again.
fn reset<S: Source, T: Transform>(
    spec: &StageSpec,
    env: &Env<'_>,
    source: &S,
    restore: &impl Restore,
    transform: &mut T,
) -> anyhow::Result<bool> {
    let partitions = source.assigned();
    let Some(topic) = transform.changelog().map(str::to_string) else {
        transform.reset();
        transform.restored(&partitions);
        return Ok(true);
    };
    let started = Instant::now();
    // Paused, the group consumer can be polled during the restore (so the
    // group keeps it) without fetching input.
    source.pause()?;
    let restored = integrity::restore_checked(
        spec,
        &topic,
        &partitions,
        source,
        restore,
        transform,
        env.notifier,
    );
    source.resume()?;
    if restored? {
        metrics::histogram!(m::RESTORE_SECONDS).record(started.elapsed().as_secs_f64());
        tracing::info!(
            ?partitions,
            ms = started.elapsed().as_millis() as u64,
            "state restored from changelog"
        );
        Ok(true)
    } else {
        tracing::info!(?partitions, "assignment changed during the restore");
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_pauses_grow_from_half_a_second_are_capped_and_never_end() {
        let pauses: Vec<Duration> = session_pauses().take(200).collect();
        assert_eq!(pauses.len(), 200, "the supervisor never gives up");
        // Jitter adds up to the pause itself on top.
        assert!(pauses[0] >= Duration::from_millis(500) && pauses[0] < Duration::from_secs(1));
        assert!(
            pauses.iter().all(|p| *p <= 2 * SESSION_PAUSE_MAX),
            "{pauses:?}"
        );
        assert!(pauses[199] >= SESSION_PAUSE_MAX, "{:?}", pauses[199]);
    }
}
