//! The resume state: one small JSON file per run configuration
//! (`<state_dir>/state-<fingerprint>.json`), rewritten atomically (temporary file,
//! fsync, rename) only after the destination confirmed what it records. It holds keys
//! and counts, never a secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::CheckpointKey;
use crate::run::RunStats;

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Running, or killed while running.
    Running,
    /// Stopped by Ctrl-C / SIGTERM, after its batch or inside a plugin call (that
    /// batch is not recorded: a resume does it again).
    Interrupted,
    /// Stopped by an error (retries exhausted, too many failed records).
    Failed,
    Finished,
}

/// Counters as of the last confirmed batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub read: u64,
    pub written: u64,
    pub filtered: u64,
    pub failed: u64,
}

impl Counts {
    pub fn of(stats: &RunStats) -> Self {
        Self {
            read: stats.read,
            written: stats.written,
            filtered: stats.filtered,
            failed: stats.failed,
        }
    }

    /// Puts the counters of a resumed run back into `stats`.
    pub fn restore(&self, stats: &mut RunStats) {
        stats.read = self.read;
        stats.written = self.written;
        stats.filtered = self.filtered;
        stats.failed = self.failed;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub version: u32,
    pub fingerprint: String,
    pub run_id: String,
    pub status: Status,
    /// Everything up to and including this key is in the destination.
    pub last_key: Option<CheckpointKey>,
    /// Where the source continues (its own form; `null`: after `last_key`).
    #[serde(default)]
    pub position: Value,
    /// The destination's own resume data (open files and their lengths…).
    pub sink: Value,
    pub counts: Counts,
    /// Entries of the dead-letter file as of `last_key` (later ones are dropped on
    /// resume: those records are processed again).
    #[serde(default)]
    pub dead_letter_entries: u64,
    pub source: String,
    pub destination: String,
    pub started_at: String,
    pub updated_at: String,
}

impl RunState {
    /// The state of a new run, before its first batch.
    pub fn new(fingerprint: &str, run: &crate::run::RunInfo, destination: String) -> Self {
        let now = chrono::Utc::now().to_rfc3339();
        Self {
            version: STATE_VERSION,
            fingerprint: fingerprint.to_owned(),
            run_id: run.run_id.clone(),
            status: Status::Running,
            last_key: None,
            position: Value::Null,
            sink: Value::Null,
            counts: Counts::default(),
            dead_letter_entries: 0,
            source: run.source.clone(),
            destination,
            started_at: run.started_at.to_rfc3339(),
            updated_at: now,
        }
    }
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path, fingerprint: &str) -> Self {
        Self {
            path: dir.join(format!("state-{fingerprint}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state of an earlier run (one small JSON object), if any.
    #[allow(clippy::disallowed_methods)]
    pub fn load(&self) -> std::io::Result<Option<RunState>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, state: &RunState) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = crate::sinks::with_suffix(&self.path, ".tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec_pretty(state)?)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
