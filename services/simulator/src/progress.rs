//! How far a `--replay` has got, so that a restarted simulator goes on where it
//! stopped instead of appending the whole file again.
//!
//! The progress is a small JSON file beside the output (`<output>.replay`):
//! which replay file, its size, and how many of its lines are in the output.
//! It is written (atomically, by rename) after every batch the sink has
//! flushed. A replay file of another path or size starts from its first line.
//! A crash between a flush and the progress write repeats at most one batch;
//! the processor does not count a repeated reading twice.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    replay: PathBuf,
    bytes: u64,
    pub lines: usize,
}

impl Progress {
    /// Where the progress of a replay into `output` is kept.
    pub fn file_for(output: &Path) -> PathBuf {
        let mut name = output.as_os_str().to_owned();
        name.push(".replay");
        PathBuf::from(name)
    }

    /// The progress of replaying `replay` (of `bytes` bytes) recorded in
    /// `file`, or none yet (no file, or one for another replay file).
    pub fn load(file: &Path, replay: &Path, bytes: u64) -> anyhow::Result<Self> {
        let fresh = Self {
            replay: replay.to_path_buf(),
            bytes,
            lines: 0,
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
        };
        let saved: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a replay progress file", file.display()))?;
        Ok(if saved.replay == fresh.replay && saved.bytes == bytes {
            saved
        } else {
            fresh
        })
    }

    /// Records that `more` lines were appended, and saves.
    pub fn advance(&mut self, more: usize, file: &Path) -> anyhow::Result<()> {
        self.lines += more;
        let tmp = file.with_extension("replay.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)
            .and_then(|()| std::fs::rename(&tmp, file))
            .with_context(|| format!("writing {}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_the_same_replay_and_restarts_another() {
        let dir = std::env::temp_dir().join(format!("pw-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = dir.join("readings.csv");
        let file = Progress::file_for(&output);
        assert_eq!(file, dir.join("readings.csv.replay"));
        let seed = Path::new("/data/seed.csv");

        let mut p = Progress::load(&file, seed, 1000).unwrap();
        assert_eq!(p.lines, 0, "nothing replayed yet");
        p.advance(25, &file).unwrap();
        p.advance(5, &file).unwrap();
        assert_eq!(Progress::load(&file, seed, 1000).unwrap().lines, 30);
        assert_eq!(
            Progress::load(&file, seed, 1001).unwrap().lines,
            0,
            "another size"
        );
        assert_eq!(
            Progress::load(&file, Path::new("/data/other.csv"), 1000)
                .unwrap()
                .lines,
            0,
            "another file"
        );
        std::fs::write(&file, "garbage").unwrap();
        assert!(
            Progress::load(&file, seed, 1000).is_err(),
            "a broken file is an error"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
