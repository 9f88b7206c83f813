//! Writing a batch to InfluxDB v2: retries, and isolating refused points.
//!
//! Failures are of two kinds ([`classify`]):
//! - transient: the network, a timeout, 5xx, 429, and also 401/403/404 (a
//!   wrong token, org or bucket is an operator's mistake to fix, not a fault
//!   of the data). Retried with capped exponential backoff for as long as it
//!   takes; the records wait in Kafka, uncommitted, so nothing is lost while
//!   InfluxDB is down.
//! - refused: any other 4xx (400 bad point, 413 too large, 422 outside the
//!   retention period). The batch is split in halves until the refused points
//!   are alone; those go to the DLQ with the server's message, the rest is
//!   written. Re-writing points that were already accepted is harmless: a
//!   point is identified by measurement + tags + time and overwrites itself.

use std::cell::Cell;
use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

use influxdb2::models::DataPoint;
use influxdb2::{Client, RequestError};

/// How one failed write is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Retry the same write later.
    Transient(String),
    /// The server refused the data itself; the message is the server's.
    Refused(String),
}

/// The decision for an HTTP status and the server's message. 2xx is not a
/// failure (InfluxDB answers 204, some compatible servers 200).
pub fn classify(status: u16, text: &str) -> Option<Failure> {
    let message = format!("HTTP {status}: {}", server_message(text));
    match status {
        200..=299 => None,
        401 | 403 | 404 | 408 | 429 => Some(Failure::Transient(message)),
        400..=499 => Some(Failure::Refused(message)),
        _ => Some(Failure::Transient(message)),
    }
}

/// What the server said: InfluxDB answers `{"code": "...", "message": "..."}`,
/// whose `message` is the readable part; any other body is taken as it is.
fn server_message(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
    }
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => body.message,
        Err(_) => text.trim().to_owned(),
    }
}

fn classify_error(err: RequestError) -> Option<Failure> {
    match err {
        RequestError::Http { status, text } => classify(status.as_u16(), &text),
        other => Some(Failure::Transient(other.to_string())),
    }
}

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_interval: Duration,
}

impl Retry {
    fn backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(self.max_interval)
            .with_jitter()
            // Never give up: the data is safe in Kafka until InfluxDB is back.
            .without_max_times()
    }
}

/// Something that writes a slice of points: the real client, or a fake in
/// the tests.
pub trait PointWriter {
    fn write(&self, points: Vec<DataPoint>) -> impl Future<Output = Option<Failure>> + Send;
}

/// The InfluxDB v2 client writing to one bucket with nanosecond precision.
pub struct Influx {
    pub client: Client,
    pub bucket: String,
    pub timeout: Duration,
}

impl PointWriter for Influx {
    async fn write(&self, points: Vec<DataPoint>) -> Option<Failure> {
        let write = self.client.write_with_precision(
            &self.bucket,
            futures::stream::iter(points),
            influxdb2::api::write::TimestampPrecision::Nanoseconds,
        );
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => classify_error(err),
            Err(_) => Some(Failure::Transient(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// How long a batch has waited for InfluxDB: the gauge
/// `pulsewire_waiting_seconds{for="influxdb"}`, 0 while writes go through
/// and growing from a batch's first failed write until it is written, and
/// one log line per retry that says what the uploader waits for.
#[derive(Debug)]
pub struct Waiting {
    points: usize,
    since: Cell<Option<Instant>>,
}

impl Waiting {
    /// For a batch of `points` points; sets the gauge to 0.
    pub fn new(points: usize) -> Self {
        Self::gauge(0.0);
        Self {
            points,
            since: Cell::new(None),
        }
    }

    fn gauge(seconds: f64) {
        pulsewire_runtime::metrics::waiting("influxdb", seconds);
    }

    /// A write failed and is retried in `retry_in`.
    fn failed(&self, failure: &Failure, retry_in: Duration) {
        let since = self.since.get().unwrap_or_else(Instant::now);
        self.since.set(Some(since));
        let waited = since.elapsed();
        Self::gauge(waited.as_secs_f64());
        let (Failure::Transient(why) | Failure::Refused(why)) = failure;
        tracing::warn!(
            retry_in_ms = retry_in.as_millis() as u64,
            "waiting for InfluxDB: {why} for {} s; batch of {} points kept in Kafka, uncommitted",
            waited.as_secs(),
            self.points
        );
    }

    /// Brings the gauge up to date while the batch waits.
    pub fn tick(&self) {
        if let Some(since) = self.since.get() {
            Self::gauge(since.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Waiting {
    /// The batch is written (or the uploader stops): nothing waits.
    fn drop(&mut self) {
        Self::gauge(0.0);
    }
}

/// Writes `points`, retrying transient failures. `Err` carries the
/// server's message when it refused the data.
async fn write_retrying(
    writer: &impl PointWriter,
    points: &[DataPoint],
    retry: &Retry,
    waiting: &Waiting,
) -> Result<(), String> {
    use backon::Retryable as _;
    let op = || async {
        match writer.write(points.to_vec()).await {
            None => Ok(()),
            Some(failure) => Err(failure),
        }
    };
    let notify = |failure: &Failure, wait: Duration| {
        pulsewire_runtime::metrics::error("influx_write");
        waiting.failed(failure, wait);
    };
    op.retry(retry.backoff())
        .when(|failure| matches!(failure, Failure::Transient(_)))
        .notify(notify)
        .await
        .map_err(|failure| match failure {
            Failure::Refused(msg) | Failure::Transient(msg) => msg,
        })
}

/// Writes all points; returns the indexes of the points the server refused,
/// each with its message. Returns only when every point is written or
/// refused (transient failures are retried without end, told by `waiting`).
pub async fn write_all(
    writer: &impl PointWriter,
    points: &[DataPoint],
    retry: &Retry,
    waiting: &Waiting,
) -> Vec<(usize, String)> {
    let mut refused = Vec::new();
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..points.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        if let Err(msg) = write_retrying(writer, &points[range.clone()], retry, waiting).await {
            if range.len() == 1 {
                refused.push((range.start, msg));
            } else {
                // Bisect: the halves that are fine get written, the bad
                // points end up alone.
                let mid = range.start + range.len() / 2;
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
        }
    }
    refused.sort();
    refused
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn status_classification() {
        assert_eq!(classify(204, ""), None);
        assert_eq!(classify(200, ""), None);
        for s in [500, 502, 503, 504, 429, 401, 403, 404] {
            assert!(
                matches!(classify(s, "x"), Some(Failure::Transient(_))),
                "{s}"
            );
        }
        for s in [400, 413, 422] {
            assert!(matches!(classify(s, "x"), Some(Failure::Refused(_))), "{s}");
        }
        assert_eq!(
            classify(400, "unable to parse 'x': bad timestamp\n"),
            Some(Failure::Refused(
                "HTTP 400: unable to parse 'x': bad timestamp".into()
            ))
        );
    }

    #[test]
    fn influxdb_error_bodies_give_their_message() {
        // As InfluxDB 2.7 answers a point in a shard where `value` is a string.
        let body = r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict: input field \"value\" on measurement \"heart_rate\" is type integer, already exists as type string dropped=1"}"#;
        assert_eq!(
            classify(422, body),
            Some(Failure::Refused(
                "HTTP 422: failure writing points to database: partial write: field type conflict: input field \"value\" on measurement \"heart_rate\" is type integer, already exists as type string dropped=1".into()
            ))
        );
        assert_eq!(
            classify(
                401,
                r#"{"code":"unauthorized","message":"unauthorized access"}"#
            ),
            Some(Failure::Transient("HTTP 401: unauthorized access".into()))
        );
    }

    /// Refuses any write containing a point with `value` 999, fails the
    /// first `flaky` writes with a 503, and records what it accepted.
    #[derive(Default)]
    pub(crate) struct Fake {
        pub(crate) flaky: Mutex<u32>,
        pub(crate) accepted: Mutex<Vec<i64>>,
        pub(crate) calls: Mutex<u32>,
    }

    fn value_of(p: &DataPoint) -> i64 {
        let text = crate::point::line_protocol(std::slice::from_ref(p));
        let v = text.split("value=").nth(1).unwrap();
        v[..v.find('i').unwrap()].parse().unwrap()
    }

    impl PointWriter for Fake {
        async fn write(&self, points: Vec<DataPoint>) -> Option<Failure> {
            *self.calls.lock().unwrap() += 1;
            let mut flaky = self.flaky.lock().unwrap();
            if *flaky > 0 {
                *flaky -= 1;
                return classify(503, "unavailable");
            }
            let values: Vec<i64> = points.iter().map(value_of).collect();
            if values.contains(&999) {
                return classify(400, "bad point");
            }
            self.accepted.lock().unwrap().extend(values);
            None
        }
    }

    fn points(values: &[i64]) -> Vec<DataPoint> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                DataPoint::builder("heart_rate")
                    .tag("sensor_id", "1")
                    .field("value", v)
                    .timestamp(i as i64)
                    .build()
                    .unwrap()
            })
            .collect()
    }

    const RETRY: Retry = Retry {
        max_interval: Duration::from_millis(5),
    };

    #[tokio::test]
    async fn transient_failures_are_retried_then_written() {
        let fake = Fake {
            flaky: Mutex::new(3),
            accepted: Mutex::default(),
            calls: Mutex::default(),
        };
        let refused = write_all(&fake, &points(&[1, 2, 3]), &RETRY, &Waiting::new(3)).await;
        assert!(refused.is_empty());
        assert_eq!(*fake.accepted.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(*fake.calls.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn refused_points_are_isolated_and_the_rest_written() {
        let fake = Fake {
            flaky: Mutex::new(0),
            accepted: Mutex::default(),
            calls: Mutex::default(),
        };
        let refused = write_all(
            &fake,
            &points(&[1, 999, 3, 4, 5, 999, 7]),
            &RETRY,
            &Waiting::new(7),
        )
        .await;
        assert_eq!(
            refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 5]
        );
        assert!(refused.iter().all(|(_, m)| m == "HTTP 400: bad point"));
        let mut accepted = fake.accepted.lock().unwrap().clone();
        accepted.sort();
        assert_eq!(accepted, vec![1, 3, 4, 5, 7]);
    }
}
