//! The dead-letter topic, read as the stages write it (read_committed:
//! records of aborted batches were never dead-lettered), with the filters
//! `list`, `show` and `replay` share.
//!
//! A record's time is its Kafka timestamp: when it was dead-lettered.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

use pulsewire_model::dlq::DlqRecord;

use crate::cli::{Filters, ListArgs, ShowArgs};
use crate::lag;
use crate::table::Table;
use crate::targets::Targets;
use crate::Exit;

const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a read to the end of the topic may take.
const READ_LIMIT: Duration = Duration::from_secs(120);

/// A record's place in a topic: `TOPIC:PARTITION:OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    /// Parses `TOPIC:PARTITION:OFFSET` (a topic name has no `:`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || format!("`{value}` is not TOPIC:PARTITION:OFFSET (e.g. heartrate.dlq:0:17)");
        let mut parts = value.rsplitn(3, ':');
        let (Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if topic.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            topic: topic.to_owned(),
            partition: partition.parse().ok().filter(|p| *p >= 0).ok_or_else(bad)?,
            offset: offset.parse().ok().filter(|o| *o >= 0).ok_or_else(bad)?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

/// One record of the DLQ topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub at: Position,
    pub time: Option<DateTime<Utc>>,
    /// The record, or why its payload is no DLQ record (a foreign producer).
    pub record: Result<DlqRecord, String>,
}

impl Entry {
    pub fn new(at: Position, time: Option<DateTime<Utc>>, payload: &[u8]) -> Self {
        let record =
            serde_json::from_slice(payload).map_err(|err| format!("not a DLQ record: {err}"));
        Self { at, time, record }
    }

    pub fn code(&self) -> &str {
        match &self.record {
            Ok(record) => &record.code,
            Err(_) => "unreadable",
        }
    }

    fn time_text(&self) -> String {
        self.time.map_or("-".into(), |t| {
            t.to_rfc3339_opts(SecondsFormat::Millis, true)
        })
    }

    /// The one-line summary `list --json` prints.
    pub fn summary_json(&self) -> serde_json::Value {
        let mut out =
            json!({"at": self.at.to_string(), "time": self.time_text(), "code": self.code()});
        match &self.record {
            Ok(r) => {
                out["stage"] = json!(r.stage);
                out["reason"] = json!(r.reason);
                out["source"] = json!(format!("{}:{}:{}", r.topic, r.partition, r.offset));
                out["raw"] = json!(r.raw);
                out["truncated"] = json!(!r.is_whole());
            }
            Err(err) => out["reason"] = json!(err),
        }
        out
    }
}

impl Filters {
    /// Whether `entry` is one of the chosen records (every given filter holds).
    pub fn matches(&self, entry: &Entry) -> bool {
        (self.reasons.is_empty() || self.reasons.iter().any(|r| r == entry.code()))
            && (self.at.is_empty() || self.at.contains(&entry.at))
            && self
                .since
                .is_none_or(|since| entry.time.is_some_and(|t| t >= since))
            && self
                .until
                .is_none_or(|until| entry.time.is_some_and(|t| t < until))
    }

    /// The chosen records of `entries`, earliest first, at most `limit`.
    pub fn choose(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut chosen: Vec<Entry> = entries.into_iter().filter(|e| self.matches(e)).collect();
        chosen.sort_by(|a, b| (a.time, &a.at).cmp(&(b.time, &b.at)));
        if let Some(limit) = self.limit {
            chosen.truncate(limit);
        }
        chosen
    }
}

/// Reads the chosen records of the DLQ topic.
pub fn read(targets: &Targets, filters: &Filters) -> anyhow::Result<Vec<Entry>> {
    let topic = &targets.pipeline.topics.dlq.name;
    if let Some(other) = filters.at.iter().find(|p| &p.topic != topic) {
        anyhow::bail!("--at {other}: the DLQ topic is {topic}");
    }
    let all = read_topic(&targets.bootstrap_servers, topic, filters.since)?;
    Ok(filters.choose(
        all.into_iter()
            .map(|r| Entry::new(r.at, r.time, &r.payload))
            .collect(),
    ))
}

/// One record as read from a topic.
pub struct Raw {
    pub at: Position,
    pub time: Option<DateTime<Utc>>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Every committed record of `topic` (from `since` on, when given).
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<Raw>> {
    let consumer: BaseConsumer = lag::reader(bootstrap, "pulsewire-ctl")
        .create()
        .context("creating a Kafka consumer")?;
    let ids = lag::partitions(&consumer, topic)?;
    let mut tpl = TopicPartitionList::new();
    for &p in &ids {
        let start = since.map_or(Offset::Beginning, |t| Offset::Offset(t.timestamp_millis()));
        tpl.add_partition_offset(topic, p, start)?;
    }
    if since.is_some() {
        tpl = consumer
            .offsets_for_times(tpl, TIMEOUT)
            .with_context(|| format!("offsets of {topic} by time"))?;
    }
    let mut open: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &ids {
        let (_, end) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        open.insert(p, end);
    }
    // Nothing to read where the start is the end (offsets_for_times says End).
    for e in tpl.elements() {
        if matches!(e.offset(), Offset::End) {
            open.remove(&e.partition());
        }
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let mut out = Vec::new();
    let deadline = Instant::now() + READ_LIMIT;
    open.retain(|_, end| *end > 0);
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic} took over {READ_LIMIT:?}"
        );
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => {
                let at = Position {
                    topic: topic.to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                };
                let time = m
                    .timestamp()
                    .to_millis()
                    .and_then(DateTime::from_timestamp_millis);
                out.push(Raw {
                    at,
                    time,
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
                if open
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    open.remove(&m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(err)) => return Err(err).context(format!("reading {topic}")),
        }
    }
    Ok(out)
}

/// `dlq list`.
pub fn list(targets: &Targets, args: &ListArgs) -> anyhow::Result<Exit> {
    let entries = read(targets, &args.filters)?;
    if args.json {
        for e in &entries {
            println!("{}", e.summary_json());
        }
    } else {
        print!("{}", list_table(&entries));
    }
    Ok(Exit::Ok)
}

/// The table `list` prints, with a count per reason below it.
pub fn list_table(entries: &[Entry]) -> String {
    let mut table = Table::new(["AT", "TIME", "STAGE", "CODE", "SOURCE", "RAW"]);
    let mut by_code: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries {
        *by_code.entry(e.code()).or_default() += 1;
        let (stage, source, raw) = match &e.record {
            Ok(r) => (
                r.stage.clone(),
                format!("{}:{}:{}", r.topic, r.partition, r.offset),
                shorten(&r.raw, 48, !r.is_whole()),
            ),
            Err(err) => ("?".into(), "-".into(), shorten(err, 48, false)),
        };
        table.row([
            e.at.to_string(),
            e.time_text(),
            stage,
            e.code().to_owned(),
            source,
            raw,
        ]);
    }
    let counts: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!(
        "{}{} record(s){}{}\n",
        table,
        entries.len(),
        if counts.is_empty() { "" } else { ": " },
        counts.join(", ")
    )
}

/// `text` escaped for one line and cut to `max` characters; `…` marks a cut
/// (or a record that keeps only the start of its line).
fn shorten(text: &str, max: usize, truncated: bool) -> String {
    let escaped: String = text.escape_debug().collect();
    let mut out: String = escaped.chars().take(max).collect();
    if truncated || escaped.chars().count() > max {
        out.push('…');
    }
    out
}

/// `dlq show`: whole records, one JSON object per line.
pub fn show(targets: &Targets, args: &ShowArgs) -> anyhow::Result<Exit> {
    let entries = read(targets, &args.filters)?;
    for want in &args.filters.at {
        anyhow::ensure!(
            entries.iter().any(|e| &e.at == want),
            "no committed DLQ record at {want}"
        );
    }
    for e in &entries {
        let record = match &e.record {
            Ok(r) => serde_json::to_value(r)?,
            Err(err) => json!({"error": err}),
        };
        println!(
            "{}",
            json!({"at": e.at.to_string(), "time": e.time_text(), "record": record})
        );
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: i64, secs: i64, code: &str, raw: &str) -> Entry {
        let mut record = DlqRecord::new(
            "aggregator",
            code,
            "why",
            raw.as_bytes(),
            "heartrate.raw",
            1,
            offset * 10,
        );
        record.code = code.into();
        Entry {
            at: Position {
                topic: "heartrate.dlq".into(),
                partition: (offset % 3) as i32,
                offset,
            },
            time: DateTime::from_timestamp(1_765_098_000 + secs, 0),
            record: Ok(record),
        }
    }

    fn t(secs: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_765_098_000 + secs, 0)
    }

    #[test]
    fn positions_parse_and_print_alike() {
        let p = Position::parse("heartrate.dlq:2:17").unwrap();
        assert_eq!(
            (p.topic.as_str(), p.partition, p.offset),
            ("heartrate.dlq", 2, 17)
        );
        assert_eq!(p.to_string(), "heartrate.dlq:2:17");
        for bad in ["heartrate.dlq:2", ":1:2", "t:-1:2", "t:1:x", "17"] {
            assert_eq!(
                Position::parse(bad).unwrap_err(),
                format!("`{bad}` is not TOPIC:PARTITION:OFFSET (e.g. heartrate.dlq:0:17)")
            );
        }
    }

    #[test]
    fn filters_take_reason_time_and_position_and_the_earliest_first() {
        let all = || {
            vec![
                entry(5, 50, "bad_time", "a"),
                entry(1, 10, "unknown_kind", "b"),
                entry(3, 30, "unknown_kind", "c"),
                entry(4, 40, "column_count", "d"),
            ]
        };
        let pick = |f: Filters| {
            f.choose(all())
                .iter()
                .map(|e| e.at.offset)
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Filters::default()), [1, 3, 4, 5]);
        assert_eq!(
            pick(Filters {
                reasons: vec!["unknown_kind".into()],
                ..Default::default()
            }),
            [1, 3]
        );
        assert_eq!(
            pick(Filters {
                since: t(30),
                until: t(50),
                ..Default::default()
            }),
            [3, 4]
        );
        assert_eq!(
            pick(Filters {
                limit: Some(2),
                ..Default::default()
            }),
            [1, 3]
        );
        let at = vec![Position::parse("heartrate.dlq:1:4").unwrap()];
        assert_eq!(
            pick(Filters {
                at,
                ..Default::default()
            }),
            [4]
        );
        let wrong_partition = vec![Position::parse("heartrate.dlq:0:4").unwrap()];
        assert!(pick(Filters {
            at: wrong_partition,
            ..Default::default()
        })
        .is_empty());
    }

    #[test]
    fn an_unreadable_payload_is_listed_not_dropped() {
        let at = Position::parse("heartrate.dlq:0:9").unwrap();
        let e = Entry::new(at, None, b"garbage");
        assert_eq!(e.code(), "unreadable");
        assert!(Filters {
            reasons: vec!["unreadable".into()],
            ..Default::default()
        }
        .matches(&e));
    }

    #[test]
    fn the_table_counts_by_reason_and_marks_cut_lines() {
        let mut long = entry(2, 20, "too_long", "x");
        if let Ok(r) = &mut long.record {
            r.raw_length = Some(5000);
        }
        let text = list_table(&[
            entry(1, 10, "unknown_kind", "7,spo2,2026-01-01 00:00:00,97\t"),
            long,
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("AT "), "{text}");
        assert!(
            lines[1].contains("heartrate.raw:1:10")
                && lines[1].ends_with("7,spo2,2026-01-01 00:00:00,97\\t"),
            "{text}"
        );
        assert!(lines[2].ends_with("x…"), "{text}");
        assert_eq!(lines[3], "2 record(s): too_long 1, unknown_kind 1");
    }
}
