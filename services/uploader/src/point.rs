//! A stats record as an InfluxDB point.
//!
//! Measurement = the reading's kind, tag `sensor_id`, fields `value`, `mean`,
//! `min`, `max`, `count` (integers as line-protocol integers, the mean as a
//! float), timestamp = the reading's event time in nanoseconds. InfluxDB
//! identifies a point by measurement + tags + timestamp, so writing the same
//! record twice (a batch replayed after a crash before its offsets were
//! committed) overwrites the point with identical values: the uploader is
//! idempotent, which is what makes at-least-once delivery into InfluxDB exact.

use influxdb2::models::DataPoint;
use pulsewire_model::reading::StatsRecord;

pub fn point(record: &StatsRecord) -> anyhow::Result<DataPoint> {
    let stats = &record.stats;
    let count = i64::try_from(stats.count).unwrap_or(i64::MAX);
    DataPoint::builder(record.reading.kind.as_str())
        .tag("sensor_id", record.reading.sensor_id.to_string())
        .field("value", record.reading.value)
        .field("mean", stats.mean())
        .field("min", stats.min)
        .field("max", stats.max)
        .field("count", count)
        .timestamp(record.reading.time_ns())
        .build()
        .map_err(|e| anyhow::anyhow!("building point: {e}"))
}

/// The exact line-protocol text of points, as the client sends it.
#[cfg(test)]
pub fn line_protocol(points: &[DataPoint]) -> String {
    use influxdb2::models::WriteDataPoint as _;
    let mut buf = Vec::new();
    for p in points {
        p.write_data_point_to(&mut buf)
            .expect("writing to a Vec cannot fail");
    }
    String::from_utf8(buf).expect("line protocol of UTF-8 strings is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use pulsewire_model::reading::Reading;
    use pulsewire_model::stats::Stats;

    fn record(value: i64, count: u64, sum: i128) -> StatsRecord {
        let time = Utc.with_ymd_and_hms(2024, 6, 19, 13, 58, 41).unwrap()
            + chrono::Duration::microseconds(74766);
        StatsRecord {
            reading: Reading {
                sensor_id: 1,
                kind: "heart_rate".into(),
                time,
                value,
            },
            stats: Stats {
                count,
                sum,
                min: 60,
                max: 80,
                last_value: value,
                last_time: time,
            },
        }
    }

    #[test]
    fn exact_line_protocol() {
        let p = point(&record(60, 5, 350)).unwrap();
        assert_eq!(
            line_protocol(&[p]),
            "heart_rate,sensor_id=1 count=5i,max=80i,mean=70,min=60i,value=60i 1718805521074766000\n"
        );
        let p = point(&record(61, 3, 211)).unwrap();
        assert_eq!(
            line_protocol(&[p]),
            "heart_rate,sensor_id=1 count=3i,max=80i,mean=70.33333333333333,min=60i,value=61i 1718805521074766000\n"
        );
    }
}
