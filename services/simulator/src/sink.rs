//! Where the simulator's lines go: the append-only file Kafka Connect tails,
//! or straight to the raw topic (load tests).
//!
//! # The file policy
//!
//! The file is opened in append mode and is never truncated, rotated or
//! rewritten. Kafka Connect's `FileStreamSourceConnector` remembers how far
//! it has read as a byte position in the file; with
//! `exactly.once.source.support=enabled` that position is committed together
//! with the records it produced. Truncating or replacing the file would make
//! that position point into different data, so lines would be lost or sent
//! twice. That is why the appliance does not rotate it (no logrotate, no
//! tmpfiles age rule).
//!
//! The file therefore only grows: about 45 bytes per reading, 10 readings a
//! second by default, ~39 MB a day. `--max-file-bytes` (default 1 GiB, about
//! 27 days at the default rate) bounds it: a simulator that would grow the
//! file past the limit refuses to write (at start, or when it gets there),
//! logs why, and idles. To go on, an operator either raises the limit, or
//! stops the simulator, points it and a new connector at a new file, and
//! deletes the old file once Connect has read it to the end.
//!
//! A write cut short (a full disk, a crash) can leave the file ending in part
//! of a line. The next append would join the next line onto it, silently
//! corrupting a reading; so a file that does not end in a newline gets one
//! first, and the torn part becomes a line of its own, which the aggregator
//! sends to the DLQ with its reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::io::AsyncWriteExt as _;

/// Appending to the file would pass `--max-file-bytes`.
#[derive(Debug, thiserror::Error)]
#[error("{path} is {size} bytes; {more} more would pass --max-file-bytes {max}")]
pub struct Full {
    pub path: PathBuf,
    pub size: u64,
    pub more: u64,
    pub max: u64,
}

/// Where the simulator appends its lines: the file Connect reads, or the
/// raw topic directly.
pub enum LineWriter {
    File {
        file: tokio::io::BufWriter<tokio::fs::File>,
        path: PathBuf,
        size: u64,
        /// 0: no limit.
        max: u64,
        /// The file ends in part of a line: end it before appending.
        torn: bool,
    },
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
}

impl LineWriter {
    /// Opens `path` for appending (creating it), checking the size limit.
    pub async fn file(path: &Path, max: u64) -> anyhow::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .await
            .with_context(|| format!("cannot open --output {} for appending", path.display()))?;
        let size = file
            .metadata()
            .await
            .with_context(|| format!("stat {}", path.display()))?
            .len();
        let torn = size > 0 && last_byte(path).await? != b'\n';
        if torn {
            tracing::warn!(
                file = %path.display(),
                "the file ends in part of a line (a cut-short write); it is ended with a \
                 newline before the next line, and goes to the DLQ as a line of its own"
            );
        }
        Ok(Self::File {
            file: tokio::io::BufWriter::with_capacity(256 * 1024, file),
            path: path.to_path_buf(),
            size,
            max,
            torn,
        })
    }

    /// Writes the lines (each ending in `\n`) and makes them visible to the
    /// reader: flushed to the file, or acknowledged by the brokers.
    pub async fn write_batch(&mut self, lines: &[String]) -> anyhow::Result<()> {
        match self {
            Self::File {
                file,
                path,
                size,
                max,
                torn,
            } => {
                let bytes: u64 =
                    lines.iter().map(|l| l.len() as u64).sum::<u64>() + u64::from(*torn);
                if would_pass(*size, bytes, *max) {
                    return Err(Full {
                        path: path.clone(),
                        size: *size,
                        more: bytes,
                        max: *max,
                    }
                    .into());
                }
                if *torn {
                    file.write_all(b"\n").await?;
                }
                for line in lines {
                    file.write_all(line.as_bytes()).await?;
                }
                file.flush()
                    .await
                    .with_context(|| format!("writing {}", path.display()))?;
                *size += bytes;
                *torn = false;
                Ok(())
            }
            Self::Kafka { producer, topic } => {
                let sends = lines.iter().map(|line| {
                    let record = FutureRecord::<(), _>::to(topic.as_str())
                        .payload(line.trim_end_matches('\n'));
                    producer.send(record, Duration::from_secs(30))
                });
                for result in futures::future::join_all(sends).await {
                    result
                        .map_err(|(err, _)| err)
                        .context("producing to the raw topic")?;
                }
                Ok(())
            }
        }
    }
}

/// The last byte of a non-empty file.
async fn last_byte(path: &Path) -> anyhow::Result<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    file.seek(std::io::SeekFrom::End(-1)).await?;
    let mut byte = [0u8];
    file.read_exact(&mut byte).await?;
    Ok(byte[0])
}

/// Whether appending `more` bytes to a file of `size` passes `max` (0 = no limit).
pub fn would_pass(size: u64, more: u64, max: u64) -> bool {
    max != 0 && size.saturating_add(more) > max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_accounting() {
        assert!(!would_pass(0, 100, 0), "0 means no limit");
        assert!(!would_pass(900, 100, 1000));
        assert!(would_pass(901, 100, 1000));
        assert!(would_pass(2000, 1, 1000), "an oversized file refuses more");
    }

    #[tokio::test]
    async fn appends_and_refuses_past_the_limit() {
        let path = std::env::temp_dir().join(format!("pw-sim-{}.csv", std::process::id()));
        std::fs::write(&path, "old\n").unwrap();
        let mut sink = LineWriter::file(&path, 12).await.unwrap();
        sink.write_batch(&["abc\n".into()]).await.unwrap();
        let err = sink.write_batch(&["defgh\n".into()]).await.unwrap_err();
        assert!(err.to_string().contains("--max-file-bytes 12"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "old\nabc\n",
            "appended, never truncated"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ended_not_joined() {
        let path = std::env::temp_dir().join(format!("pw-sim-torn-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "1,heart_rate,2024-06-19 13:58:37,80\n2,heart_rate,2024-06",
        )
        .unwrap();
        let mut sink = LineWriter::file(&path, 0).await.unwrap();
        sink.write_batch(&["3,heart_rate,2024-06-19 13:58:38,70\n".into()])
            .await
            .unwrap();
        sink.write_batch(&["4,heart_rate,2024-06-19 13:58:39,71\n".into()])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "1,heart_rate,2024-06-19 13:58:37,80\n2,heart_rate,2024-06\n\
             3,heart_rate,2024-06-19 13:58:38,70\n4,heart_rate,2024-06-19 13:58:39,71\n"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
