//! The dead-letter file: one JSON line per record that could not be migrated, with
//! where it came from, the stage that failed, the error, and the raw record so it can
//! be inspected or replayed. The file is created on the first failure only.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde_json::Value;

use crate::record::{Checkpoint, CheckpointKey, Origin};

/// The pipeline stage at which a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Read,
    Decode,
    /// A WASM filter or transformer rejected the record, or failed on its batch.
    Plugin,
    Write,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::Plugin => "plugin",
            Stage::Write => "write",
        }
    }
}

pub struct DeadLetter {
    path: PathBuf,
    run_id: String,
    writer: Option<BufWriter<File>>,
    count: u64,
}

pub struct Entry<'a> {
    pub stage: Stage,
    pub error: &'a str,
    pub key: Option<&'a CheckpointKey>,
    pub origin: &'a Origin,
    /// The record, when there is one: its raw values are kept so it can be replayed.
    pub record: Option<&'a Checkpoint>,
}

/// The `record` of a dead-letter line: everything needed to rebuild the record.
pub fn record_json(record: &Checkpoint) -> Value {
    let mut raw = record.raw_json();
    raw["parent_checkpoint_id"] = serde_json::json!(record.parent_checkpoint_id);
    raw
}

impl DeadLetter {
    pub fn new(path: PathBuf, run_id: String) -> Self {
        Self {
            path,
            run_id,
            writer: None,
            count: 0,
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn add(&mut self, entry: Entry<'_>) -> std::io::Result<()> {
        tracing::warn!(
            "{} failed at {}: {} ({})",
            entry
                .key
                .map_or_else(|| entry.origin.locator.clone(), ToString::to_string),
            entry.stage.name(),
            entry.error,
            entry.origin.store
        );
        if self.writer.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.writer = Some(BufWriter::new(file));
        }
        let line = serde_json::json!({
            "run_id": self.run_id,
            "at": chrono::Utc::now().to_rfc3339(),
            "stage": entry.stage.name(),
            "error": entry.error,
            "key": entry.key,
            "origin": entry.origin,
            "record": entry.record.map(record_json),
        });
        let writer = self.writer.as_mut().expect("opened above");
        serde_json::to_writer(&mut *writer, &line)?;
        writer.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and fsyncs, so the file is as durable as the state that counts it.
    pub fn sync(&mut self) -> std::io::Result<()> {
        match &mut self.writer {
            Some(w) => {
                w.flush()?;
                w.get_ref().sync_data()
            }
            None => Ok(()),
        }
    }

    /// Continues the file of an earlier run that had `entries` confirmed entries:
    /// lines after those (from records that will be processed again) are cut off.
    pub fn resume(&mut self, entries: u64) -> std::io::Result<()> {
        self.count = entries;
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut seen = 0u64;
        let mut keep = 0usize;
        for (i, b) in bytes.iter().enumerate() {
            if seen == entries {
                break;
            }
            if *b == b'\n' {
                seen += 1;
                keep = i + 1;
            }
        }
        if seen < entries {
            keep = bytes.len();
            self.count = seen;
        }
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(keep as u64)
    }
}
