//! Restoring a changelog that provably holds every committed batch, and
//! refusing to run when state and input offsets do not belong together
//! (see `docs/delivery.md`, "Processor state: the changelog").
//!
//! Every transaction of a stage with a changelog also writes, to changelog
//! partition `p`, one [`Marker`] per input partition `p` of the batch: the
//! input topic, the partition and the offset committed in the same
//! transaction. Compaction keeps the latest one (one reserved key). After a
//! restore, each partition's last marker is compared with the group's
//! committed offset:
//! - equal: the restored state is the state after the last committed batch;
//! - behind: the batch's markers are not visible yet (a `read_committed`
//!   consumer reads up to the last stable offset, and the broker
//!   acknowledges a commit before its markers are written): read again
//!   until they are, up to [`CATCH_UP`], then refuse;
//! - ahead, another input topic, or state without offsets, or offsets
//!   without any changelog: the changelog is not this group's, or one of
//!   them was reset or deleted. The stage refuses to run ([`Refused`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::restore::Restore;
use super::{AsRecord, Offsets, Output, Record, Source, StageSpec, Transform};
use crate::notify::Notifier;

/// The key of every marker record. State keys are `sensor/kind` with a
/// decimal sensor id, so a key starting with `@` never collides with one.
pub const MARKER_KEY: &[u8] = b"@input-offset";

/// How long a restore waits for the markers of a committed transaction to
/// become visible: as long as it waits for the last stable offset (longer,
/// the transaction cannot still be open).
pub const CATCH_UP: Duration = super::restore::STABLE_WAIT;

/// The exit status of a stage that refuses to run: `EX_CONFIG` of
/// sysexits.h. The units do not restart on it (`RestartPreventExitStatus`).
pub const EXIT_REFUSED: i32 = 78;

/// The input offset a changelog partition's state corresponds to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub topic: String,
    pub partition: i32,
    /// The next input offset to consume: the group's committed offset.
    pub next_offset: i64,
}

impl Marker {
    fn decode(record: &Record<'_>) -> anyhow::Result<Self> {
        serde_json::from_slice(record.payload.unwrap_or_default()).with_context(|| {
            format!(
                "unreadable input-offset marker at {}/{} offset {}",
                record.topic, record.partition, record.offset
            )
        })
    }
}

/// The marker records of a batch with `offsets`, to `changelog`.
pub fn markers(changelog: &str, offsets: &Offsets) -> Vec<Output> {
    offsets
        .iter()
        .map(|(topic, partition, next_offset)| {
            let marker = Marker {
                topic: topic.to_string(),
                partition,
                next_offset,
            };
            Output {
                topic: changelog.to_string(),
                partition: Some(partition),
                key: Some(MARKER_KEY.to_vec()),
                payload: serde_json::to_vec(&marker).expect("a marker serialises"),
            }
        })
        .collect()
}

/// The stage must not run: state and offsets do not belong together, or an
/// input offset is gone. The process exits with [`EXIT_REFUSED`] and this
/// message, and is not restarted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether `err` means the stage refuses to run.
pub fn is_refused(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refused>().is_some()
}

/// librdkafka stopped fetching a partition it could not place (no committed
/// offset yet, or a position lost while leaders moved), with every
/// committed offset still in the log. Not a fault: the runner rewinds to
/// the committed offsets, which fetches it again.
#[derive(Debug, thiserror::Error)]
#[error("a partition's position needs placing: {0}")]
pub struct PositionLost(pub String);

/// Whether `err` asks the runner to rewind ([`PositionLost`]).
pub fn is_position_lost(err: &anyhow::Error) -> bool {
    err.downcast_ref::<PositionLost>().is_some()
}

/// Whether `err` ends collecting a batch and goes to the runner: the stage
/// must stop ([`Refused`]) or rewind ([`PositionLost`]).
pub fn ends_batch(err: &anyhow::Error) -> bool {
    is_refused(err) || is_position_lost(err)
}

/// Ends the process with [`EXIT_REFUSED`] if the stage refused to run;
/// otherwise hands `result` back.
pub fn exit_if_refused(result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(err) = &result {
        if is_refused(err) {
            tracing::error!(error = format!("{err:#}"), "refusing to run");
            eprintln!("Error: {err:#}");
            std::process::exit(EXIT_REFUSED);
        }
    }
    result
}

/// A rebalance came during the restore: the restore is void.
#[derive(Debug, thiserror::Error)]
#[error("the assignment changed during the restore")]
struct Rebalanced;

/// What one changelog partition held.
#[derive(Debug, Default)]
struct Seen {
    marker: Option<Marker>,
    states: u64,
}

enum Verdict {
    Consistent,
    /// Markers of an acknowledged commit not visible yet; why, for the log.
    Behind(String),
    Refuse(String),
}

/// The names a message needs.
struct Names<'a> {
    changelog: &'a str,
    input: &'a str,
    group: &'a str,
}

impl Names<'_> {
    fn refuse(&self, partition: i32, what: String, fix: &str) -> String {
        format!(
            "changelog {} partition {partition} does not match the committed offset of group {} \
             on {}/{partition}: {what}. The stage refuses to run rather than count from the \
             wrong state. {fix}",
            self.changelog, self.group, self.input
        )
    }

    fn judge(&self, partition: i32, seen: &Seen, committed: Option<i64>) -> Verdict {
        let delete_offsets = format!(
            "To start this state over on purpose, stop the stage, delete the changelog's records \
             and the group's offsets (kafka-consumer-groups.sh --group {} --topic {} \
             --delete-offsets), then start it; or restore the changelog from a backup.",
            self.group, self.input
        );
        match (&seen.marker, committed) {
            (Some(m), _) if m.topic != self.input || m.partition != partition => {
                Verdict::Refuse(self.refuse(
                    partition,
                    format!(
                        "its state belongs to input {}/{}, not to this stage's input",
                        m.topic, m.partition
                    ),
                    "Point the stage at its own changelog (state_topic).",
                ))
            }
            (Some(m), Some(c)) if m.next_offset == c => Verdict::Consistent,
            (Some(m), Some(c)) if m.next_offset < c => Verdict::Behind(format!(
                "changelog at input offset {}, group committed {c}",
                m.next_offset
            )),
            (Some(m), committed) => Verdict::Refuse(self.refuse(
                partition,
                format!(
                    "the state is at input offset {}, the group's committed offset is {}: the \
                     group's offsets were reset or deleted, and counting from there would count \
                     readings twice",
                    m.next_offset,
                    committed.map_or("none".into(), |c| c.to_string())
                ),
                &format!(
                    "Set the group's offset back to {} (kafka-consumer-groups.sh --group {} \
                     --topic {}:{partition} --reset-offsets --to-offset {} --execute). {}",
                    m.next_offset, self.group, self.input, m.next_offset, delete_offsets
                ),
            )),
            (None, None) if seen.states > 0 => Verdict::Refuse(self.refuse(
                partition,
                format!(
                    "it holds {} state records, but the group has no committed offset",
                    seen.states
                ),
                &delete_offsets,
            )),
            (None, None) => Verdict::Consistent,
            // Written before markers existed: trusted (see `restore`).
            (None, Some(_)) if seen.states > 0 => Verdict::Consistent,
            (None, Some(c)) => Verdict::Behind(format!(
                "the changelog holds no state and no input offset, the group committed {c}"
            )),
        }
    }
}

/// Restores `transform` from its changelog `topic` for `partitions`, and
/// checks the state against the group's committed offsets (module docs).
/// Keeps the group consumer alive meanwhile: its partitions are paused by
/// the caller, and it is polled on every step of the restore, so a long
/// restore never exceeds `max.poll.interval.ms`. Returns `false` if the
/// assignment changed during the restore (the caller resets again), and a
/// [`Refused`] error if the stage must not run.
pub fn restore_checked<S: Source, T: Transform>(
    spec: &StageSpec,
    topic: &str,
    partitions: &[i32],
    source: &S,
    restore: &impl Restore,
    transform: &mut T,
    notifier: &Notifier,
) -> anyhow::Result<bool> {
    let names = Names {
        changelog: topic,
        input: &spec.input_topic,
        group: &spec.group_id,
    };
    let generation = source.generation();
    // A position lost while paused is placed again once the restore is done.
    let lost = std::cell::Cell::new(false);
    let mut keepalive = || -> anyhow::Result<()> {
        notifier.watchdog();
        match source.poll(Duration::ZERO) {
            // Paused partitions deliver nothing new, but a record fetched
            // before the pause may still be queued: put it back.
            Some(Ok(msg)) => {
                let r = msg.record();
                source.seek(r.topic, r.partition, r.offset)?;
            }
            // A committed input offset is gone from the log.
            Some(Err(err)) if is_refused(&err) => return Err(err),
            Some(Err(err)) if is_position_lost(&err) => lost.set(true),
            Some(Err(err)) => tracing::warn!(error = format!("{err:#}"), "consumer error"),
            None => {}
        }
        anyhow::ensure!(source.generation() == generation, Rebalanced);
        Ok(())
    };
    let deadline = Instant::now() + restore.catch_up();
    loop {
        transform.reset();
        let mut seen: BTreeMap<i32, Seen> =
            partitions.iter().map(|&p| (p, Seen::default())).collect();
        let read = restore.read_to_end(
            topic,
            partitions,
            &mut |r| {
                let entry = seen.entry(r.partition).or_default();
                if r.key == Some(MARKER_KEY) {
                    entry.marker = Some(Marker::decode(r)?);
                    Ok(())
                } else {
                    entry.states += 1;
                    transform.restore(r)
                }
            },
            &mut keepalive,
        );
        match read {
            Err(err) if err.downcast_ref::<Rebalanced>().is_some() => return Ok(false),
            Err(err) => return Err(err),
            Ok(_) => {}
        }
        let committed = source.committed(partitions)?;
        let mut behind = Vec::new();
        for (&p, s) in &seen {
            match names.judge(p, s, committed.get(&p).copied()) {
                Verdict::Consistent => {}
                Verdict::Behind(why) => behind.push((p, why)),
                Verdict::Refuse(msg) => return Err(Refused(msg).into()),
            }
        }
        let Some((p, why)) = behind.first() else {
            let unmarked: Vec<i32> = seen
                .iter()
                .filter(|(p, s)| s.marker.is_none() && committed.contains_key(p))
                .map(|(p, _)| *p)
                .collect();
            if !unmarked.is_empty() {
                tracing::warn!(
                    changelog = topic,
                    partitions = ?unmarked,
                    "changelog written before input-offset markers: trusted this once; the \
                     next committed batch of each partition adds its marker"
                );
            }
            if lost.get() {
                source.rewind()?;
            }
            transform.restored(partitions);
            return Ok(true);
        };
        if Instant::now() >= deadline {
            return Err(Refused(names.refuse(
                *p,
                format!(
                    "{why}, still after {} s: the changelog was deleted, recreated or \
                     truncated",
                    restore.catch_up().as_secs_f64()
                ),
                "Restore the changelog from a backup, or start this state over on purpose by \
                 deleting the changelog's records and the group's offsets \
                 (kafka-consumer-groups.sh --delete-offsets).",
            ))
            .into());
        }
        tracing::info!(
            changelog = topic,
            partition = p,
            why,
            "restored state is behind the committed offset; reading again"
        );
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            match keepalive() {
                Err(err) if err.downcast_ref::<Rebalanced>().is_some() => return Ok(false),
                other => other?,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_do_not_restart_a_stage_that_refuses_to_run() {
        let units = include_str!("../../../../nixos/pipeline.nix");
        let line = format!("RestartPreventExitStatus = \"{EXIT_REFUSED}\";");
        assert!(units.contains(&line), "nixos/pipeline.nix lacks {line}");
    }

    #[test]
    fn markers_carry_each_partitions_committed_offset_under_the_reserved_key() {
        let mut offsets = Offsets::default();
        offsets.record("readings", 2, 41);
        let out = markers("state", &offsets);
        assert_eq!(
            out,
            [Output {
                topic: "state".into(),
                partition: Some(2),
                key: Some(b"@input-offset".to_vec()),
                payload: br#"{"topic":"readings","partition":2,"next_offset":42}"#.to_vec(),
            }]
        );
    }
}
