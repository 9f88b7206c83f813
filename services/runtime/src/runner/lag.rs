//! Consumer lag per partition, from librdkafka's statistics.
//!
//! A stage's group consumer asks librdkafka for statistics once a second
//! (`statistics.interval.ms`); its context hands them to [`partition_lags`]
//! and publishes the result as the gauge [`crate::metrics::CONSUMER_LAG`].
//!
//! librdkafka's own `consumer_lag` is measured against the *committed*
//! offset, and a transactional stage's offsets are committed inside its
//! transaction, which librdkafka's statistics never see: it would stay at its
//! first value. The lag here is therefore the partition's last stable offset
//! (`ls_offset`, the end a `read_committed` consumer can reach) minus the
//! consumer's own position: the offset after the last record handed to the
//! stage (`app_offset`), or, before the first record of an assignment, the
//! committed offset, or, for a group that never committed, the log start
//! (`auto.offset.reset=earliest`).

use rdkafka::statistics::{Partition, Statistics};

/// librdkafka's "no offset" (`RD_KAFKA_OFFSET_INVALID`) is -1001; every
/// real offset is non-negative.
fn known(offset: i64) -> Option<i64> {
    (offset >= 0).then_some(offset)
}

/// How far the consumer is behind on one partition, or `None` when the
/// statistics do not say yet (no metadata, no position).
///
/// A partition not assigned to this consumer has lag 0 here: another
/// instance of the group reports it, and a partition revoked from this one
/// must not keep its last value.
pub fn lag(partition: &Partition) -> Option<i64> {
    if !partition.desired {
        return Some(0);
    }
    let end = known(partition.ls_offset).or(known(partition.hi_offset))?;
    let position = known(partition.app_offset)
        .or(known(partition.committed_offset))
        .or(known(partition.lo_offset))?;
    Some((end - position).max(0))
}

/// The lag of every partition of `topic` the statistics know, by partition
/// number (librdkafka's internal partition -1 left out).
pub fn partition_lags(stats: &Statistics, topic: &str) -> Vec<(i32, i64)> {
    let Some(topic) = stats.topics.get(topic) else {
        return Vec::new();
    };
    let mut lags: Vec<(i32, i64)> = topic
        .partitions
        .values()
        .filter(|p| p.partition >= 0)
        .filter_map(|p| Some((p.partition, lag(p)?)))
        .collect();
    lags.sort_unstable();
    lags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statistics of an aggregator's group consumer on the local stack, as
    /// librdkafka 2.12 emitted them: a second instance of the group, given
    /// partitions 0 and 1 of `heartrate.raw` (both empty, never committed:
    /// no position yet but the log start), while the first instance kept
    /// partition 2, which held the 31 lines written.
    const SAMPLE: &str = include_str!("lag-sample.json");

    fn sample() -> Statistics {
        serde_json::from_str(SAMPLE).expect("librdkafka statistics sample")
    }

    #[test]
    fn a_real_sample_gives_every_partition_of_the_topic() {
        let stats = sample();
        let raw = &stats.topics["heartrate.raw"].partitions;
        assert!(raw[&0].desired && raw[&1].desired && !raw[&2].desired);
        assert_eq!(
            (raw[&0].app_offset, raw[&0].committed_offset),
            (-1001, -1001)
        );
        assert_eq!((raw[&0].lo_offset, raw[&0].ls_offset), (0, 0));
        // librdkafka's internal partition -1 is left out.
        assert!(raw.contains_key(&-1));
        let lags = partition_lags(&stats, "heartrate.raw");
        assert_eq!(lags, vec![(0, 0), (1, 0), (2, 0)]);
    }

    #[test]
    fn lag_is_the_stable_end_minus_the_position_clamped_at_zero() {
        let stats = sample();
        let mut p = stats.topics["heartrate.raw"].partitions[&0].clone();
        p.desired = true;
        p.ls_offset = 120;
        p.hi_offset = 125;
        p.app_offset = 100;
        p.committed_offset = 90;
        assert_eq!(lag(&p), Some(20));
        // Before the first record of an assignment: from the committed offset.
        p.app_offset = -1001;
        assert_eq!(lag(&p), Some(30));
        // A group that never committed starts at the log start.
        p.committed_offset = -1001;
        p.lo_offset = 5;
        assert_eq!(lag(&p), Some(115));
        // A position past the stable end (an open transaction's records
        // are not counted) is no lag, never a negative one.
        p.app_offset = 130;
        assert_eq!(lag(&p), Some(0));
        // Not assigned here: 0, whatever the offsets say.
        p.desired = false;
        assert_eq!(lag(&p), Some(0));
        // Assigned but nothing known yet: no value rather than a guess.
        p.desired = true;
        p.ls_offset = -1001;
        p.hi_offset = -1001;
        assert_eq!(lag(&p), None);
    }

    #[test]
    fn an_unknown_topic_has_no_lags() {
        assert!(partition_lags(&sample(), "heartrate.readings").is_empty());
    }
}
