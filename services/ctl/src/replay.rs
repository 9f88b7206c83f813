//! `dlq replay`: the chosen DLQ records' original payloads go back into the
//! topic each was read from, exactly once, after the operator fixed the
//! cause (a kind added to the pipeline, a limit raised, the store repaired).
//!
//! Where a record goes: back to its source topic, as the stage that refused
//! it read it there: a line the aggregator rejected to the raw topic
//! (unkeyed, as Connect writes it), a reading the processor refused to the
//! readings topic and a stats record the uploader could not write to the
//! stats topic (both keyed by sensor id, as the stages key them). Nothing
//! else is written anywhere.
//!
//! Exactly once: one Kafka transaction (transactional.id from `[ctl]` in the
//! pipeline file) writes the payloads and, per replayed record, a marker
//! keyed by its DLQ position into the compacted `dlq_replayed` topic. The
//! markers are read after `init_transactions`, which fences any other replay
//! of the same id and completes (or aborts) its transaction first, so the
//! set read is every replay that ever committed; records already marked are
//! skipped. A crash mid-way aborts the whole transaction.
//!
//! Refused, with nothing written and exit 2: a record that keeps only the
//! start of its payload (over `MAX_RAW_BYTES`), one whose payload cannot be
//! restored, and one from a topic a replay does not write to.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;

use pulsewire_model::reading::{Reading, StatsRecord};
use pulsewire_runtime::config::Topics;

use crate::cli::ReplayArgs;
use crate::dlq::{self, Entry, Position};
use crate::targets::Targets;
use crate::Exit;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One record to write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The DLQ record it comes from (the marker's key).
    pub from: Position,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What a replay of the chosen records does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub replay: Vec<Replay>,
    /// Chosen but replayed before.
    pub skipped: Vec<Position>,
}

/// The plan for `chosen`, given the DLQ positions already replayed; or
/// every reason to refuse, one line per record.
pub fn plan(
    chosen: &[Entry],
    replayed: &HashSet<String>,
    topics: &Topics,
) -> Result<Plan, Vec<String>> {
    let mut plan = Plan::default();
    let mut refused = Vec::new();
    for entry in chosen {
        match restore(entry, topics) {
            Err(why) => refused.push(format!("{}: {why}", entry.at)),
            Ok(_) if replayed.contains(&entry.at.to_string()) => {
                plan.skipped.push(entry.at.clone())
            }
            Ok(replay) => plan.replay.push(replay),
        }
    }
    if refused.is_empty() {
        Ok(plan)
    } else {
        Err(refused)
    }
}

/// The record to write back for one DLQ entry.
fn restore(entry: &Entry, topics: &Topics) -> Result<Replay, String> {
    let record = entry.record.as_ref().map_err(Clone::clone)?;
    let Some(payload) = record.raw_bytes() else {
        return Err(format!(
            "its {} keeps only the first {} of the {} bytes (sha256 {}); the whole line is not in the DLQ, \
             so it cannot be replayed: append the corrected line to the readings file instead",
            record.code,
            record.raw.len(),
            record.raw_length.unwrap_or_default(),
            record.raw_sha256.as_deref().unwrap_or("-")
        ));
    };
    let payload = payload.map_err(|err| format!("its raw_base64 does not decode: {err}"))?;
    let sensor_key = |id: u64| Some(id.to_string().into_bytes());
    let key = if record.topic == topics.raw.name {
        None
    } else if record.topic == topics.readings.name {
        let reading: Reading = serde_json::from_slice(&payload).map_err(|err| {
            format!("its payload is no reading ({err}); the processor would refuse it again")
        })?;
        sensor_key(reading.sensor_id)
    } else if record.topic == topics.stats.name {
        let stats: StatsRecord = serde_json::from_slice(&payload).map_err(|err| {
            format!("its payload is no stats record ({err}); the uploader would refuse it again")
        })?;
        sensor_key(stats.reading.sensor_id)
    } else {
        return Err(format!(
            "it was read from {}, not from {}, {} or {}: a replay writes only to those",
            record.topic, topics.raw.name, topics.readings.name, topics.stats.name
        ));
    };
    Ok(Replay {
        from: entry.at.clone(),
        topic: record.topic.clone(),
        key,
        payload,
    })
}

/// The DLQ positions already replayed: the keys of the marker topic.
fn replayed(targets: &Targets) -> anyhow::Result<HashSet<String>> {
    let topic = &targets.pipeline.topics.dlq_replayed.name;
    Ok(dlq::read_topic(&targets.bootstrap_servers, topic, None)?
        .into_iter()
        .filter_map(|r| r.key.and_then(|k| String::from_utf8(k).ok()))
        .collect())
}

/// `dlq replay`.
pub fn run(targets: &Targets, args: &ReplayArgs) -> anyhow::Result<Exit> {
    let chosen = dlq::read(targets, &args.filters)?;
    if chosen.is_empty() {
        println!("no DLQ record matches: nothing replayed");
        return Ok(Exit::Ok);
    }
    let producer = if args.dry_run {
        None
    } else {
        Some(producer(targets)?)
    };
    let plan = match plan(&chosen, &replayed(targets)?, &targets.pipeline.topics) {
        Ok(plan) => plan,
        Err(refused) => {
            eprintln!("pulsewire-ctl: refusing to replay; nothing was written:");
            for line in refused {
                eprintln!("  {line}");
            }
            return Ok(Exit::Refused);
        }
    };
    if let Some(producer) = producer {
        if !plan.replay.is_empty() {
            write(&producer, targets, &plan)?;
        }
    }
    let verb = if args.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    for r in &plan.replay {
        println!("{verb} {} -> {}", r.from, r.topic);
    }
    println!(
        "{verb} {} record(s); skipped {} replayed before",
        plan.replay.len(),
        plan.skipped.len()
    );
    Ok(Exit::Ok)
}

fn producer(targets: &Targets) -> anyhow::Result<BaseProducer> {
    let id = &targets.pipeline.ctl.transactional_id;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &targets.bootstrap_servers)
        .set("transactional.id", id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .context("creating the Kafka producer")?;
    producer
        .init_transactions(TIMEOUT)
        .with_context(|| format!("init_transactions (transactional.id {id})"))?;
    Ok(producer)
}

/// Writes the plan's records and markers in one transaction.
fn write(producer: &BaseProducer, targets: &Targets, plan: &Plan) -> anyhow::Result<()> {
    let markers = &targets.pipeline.topics.dlq_replayed.name;
    producer.begin_transaction().context("begin_transaction")?;
    let result = (|| {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        for r in &plan.replay {
            let mut record = BaseRecord::<[u8], [u8]>::to(&r.topic).payload(&r.payload);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            send(producer, record)?;
            let key = r.from.to_string();
            let marker = json!({"dlq": key, "to": r.topic, "replayed_at": now}).to_string();
            send(
                producer,
                BaseRecord::to(markers)
                    .key(key.as_bytes())
                    .payload(marker.as_bytes()),
            )?;
        }
        producer
            .commit_transaction(TIMEOUT)
            .context("commit_transaction")
    })();
    if let Err(err) = result {
        let _ = producer.abort_transaction(TIMEOUT);
        return Err(err.context("the replay was aborted: nothing was written"));
    }
    Ok(())
}

/// Queues one record, waiting while librdkafka's queue is full.
fn send<'a>(producer: &BaseProducer, mut record: BaseRecord<'a, [u8], [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(100));
            }
            Err((err, _)) => return Err(err).context("queueing a record"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulsewire_model::dlq::DlqRecord;

    fn topics() -> Topics {
        pulsewire_runtime::config::pipeline().topics.clone()
    }

    fn entry(offset: i64, record: DlqRecord) -> Entry {
        Entry {
            at: Position {
                topic: "heartrate.dlq".into(),
                partition: 0,
                offset,
            },
            time: None,
            record: Ok(record),
        }
    }

    #[test]
    fn lines_go_back_unkeyed_and_marked_ones_are_skipped() {
        let line = b"7,spo2,2026-01-01 00:00:00,97";
        let chosen = [
            entry(
                3,
                DlqRecord::new(
                    "aggregator",
                    "unknown_kind",
                    "unknown kind",
                    line,
                    "heartrate.raw",
                    1,
                    40,
                ),
            ),
            entry(
                4,
                DlqRecord::new(
                    "aggregator",
                    "unknown_kind",
                    "unknown kind",
                    b"\xff7",
                    "heartrate.raw",
                    2,
                    9,
                ),
            ),
        ];
        let replayed = HashSet::from(["heartrate.dlq:0:4".to_string()]);
        let plan = plan(&chosen, &replayed, &topics()).unwrap();
        assert_eq!(
            plan.replay,
            [Replay {
                from: chosen[0].at.clone(),
                topic: "heartrate.raw".into(),
                key: None,
                payload: line.to_vec()
            }]
        );
        assert_eq!(plan.skipped, [chosen[1].at.clone()]);
        // A non-UTF-8 line comes back byte for byte.
        let plan = super::plan(&chosen[1..], &HashSet::new(), &topics()).unwrap();
        assert_eq!(plan.replay[0].payload, b"\xff7");
    }

    #[test]
    fn a_refused_reading_goes_back_keyed_by_its_sensor() {
        let reading =
            br#"{"sensor_id":12,"kind":"heart_rate","time":"2026-01-01T00:00:00Z","value":80}"#;
        let chosen = [entry(
            1,
            DlqRecord::new(
                "processor",
                "state_full",
                "full",
                reading,
                "heartrate.readings",
                0,
                5,
            ),
        )];
        let plan = plan(&chosen, &HashSet::new(), &topics()).unwrap();
        assert_eq!(plan.replay[0].topic, "heartrate.readings");
        assert_eq!(plan.replay[0].key.as_deref(), Some(&b"12"[..]));
    }

    #[test]
    fn a_truncated_line_refuses_the_whole_replay() {
        let long = vec![b'9'; pulsewire_model::dlq::MAX_RAW_BYTES + 10];
        let chosen = [
            entry(
                1,
                DlqRecord::new(
                    "aggregator",
                    "unknown_kind",
                    "x",
                    b"1,spo2,t,1",
                    "heartrate.raw",
                    0,
                    1,
                ),
            ),
            entry(
                2,
                DlqRecord::new(
                    "aggregator",
                    "too_long",
                    "too long",
                    &long,
                    "heartrate.raw",
                    0,
                    2,
                ),
            ),
            entry(
                3,
                DlqRecord::new("uploader", "influx_refused", "x", b"{}", "elsewhere", 0, 3),
            ),
        ];
        let refused = plan(&chosen, &HashSet::new(), &topics()).unwrap_err();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with(
                "heartrate.dlq:0:2: its too_long keeps only the first 4096 of the 4106 bytes"
            ),
            "{}",
            refused[0]
        );
        assert_eq!(
            refused[1],
            "heartrate.dlq:0:3: it was read from elsewhere, not from heartrate.raw, heartrate.readings or \
             heartrate.stats: a replay writes only to those"
        );
    }
}
