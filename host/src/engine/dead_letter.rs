//! The dead-letter file: one JSON line per record that could not be migrated, with
//! where it came from, the stage that failed, the error, and the raw record so it can
//! be inspected or replayed. The file is created on the first failure only.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use crate::items::ItemKey;
use crate::plugins::output::{MAX_ERROR_BYTES, one_line};
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
    /// One line; plugin text in it is already bounded.
    pub error: &'a str,
    /// A long message that several entries share, stored on one of them only.
    pub detail: Option<&'a str>,
    pub key: Option<&'a CheckpointKey>,
    pub origin: &'a Origin,
    /// The record, when there is one: its raw values are kept so it can be replayed.
    pub record: Option<&'a Checkpoint>,
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
        let named = entry
            .key
            .map_or_else(|| entry.origin.locator.clone(), ToString::to_string);
        let mut line = serde_json::json!({
            "key": entry.key,
            "record": entry.record.map(Checkpoint::to_raw_json),
        });
        if let Some(detail) = entry.detail {
            line["error_detail"] = detail.into();
        }
        self.append(&named, entry.stage, entry.error, entry.origin, line)
    }

    /// A LangGraph Store item that failed: its key, and what was read of it (the
    /// item's JSON form, or the raw row when it could not be made an item).
    pub fn add_item(
        &mut self,
        stage: Stage,
        error: &str,
        key: &ItemKey,
        origin: &Origin,
        record: serde_json::Value,
    ) -> std::io::Result<()> {
        let line = serde_json::json!({ "item_key": key, "item": record });
        self.append(&key.to_string(), stage, error, origin, line)
    }

    /// Logs the failure and appends its line: the run, the time, the stage, the
    /// error and where the record came from, plus `fields`.
    fn append(
        &mut self,
        named: &str,
        stage: Stage,
        error: &str,
        origin: &Origin,
        fields: serde_json::Value,
    ) -> std::io::Result<()> {
        tracing::warn!(
            "{named} failed at {}: {} ({})",
            stage.name(),
            one_line(error, MAX_ERROR_BYTES),
            origin.store
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
        let mut line = serde_json::json!({
            "run_id": self.run_id,
            "at": chrono::Utc::now().to_rfc3339(),
            "stage": stage.name(),
            "error": error,
            "origin": origin,
        });
        if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
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
    /// The file is read in pieces, never whole: it may be far larger than memory.
    pub fn resume(&mut self, entries: u64) -> std::io::Result<()> {
        self.count = entries;
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut seen = 0u64;
        let mut keep = 0u64;
        while seen < entries {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let mut used = chunk.len();
            for (i, b) in chunk.iter().enumerate() {
                if *b == b'\n' {
                    seen += 1;
                    if seen == entries {
                        used = i + 1;
                        break;
                    }
                }
            }
            keep += used as u64;
            reader.consume(used);
        }
        if seen < entries {
            // Fewer lines than the state counted (an unterminated last line is kept).
            keep = reader.get_ref().metadata()?.len();
            self.count = seen;
        }
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(keep)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test files are a few lines
mod tests {
    use super::*;

    fn file_with(lines: &[&str]) -> (tempfile::TempDir, DeadLetter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letter.jsonl");
        std::fs::write(&path, lines.concat()).unwrap();
        (dir, DeadLetter::new(path, "run".into()))
    }

    #[test]
    fn resume_cuts_after_the_confirmed_entries() {
        // Lines longer than the read buffer, so a line spans several reads.
        let long = format!("{}\n", "x".repeat(200 * 1024));
        let (_dir, mut dead) = file_with(&["a\n", &long, "b\n", "c\n"]);
        dead.resume(3).unwrap();
        assert_eq!(dead.count(), 3);
        let kept = std::fs::read_to_string(dead.path()).unwrap();
        assert_eq!(kept, format!("a\n{long}b\n"));
        dead.resume(0).unwrap();
        assert_eq!(std::fs::metadata(dead.path()).unwrap().len(), 0);
    }

    #[test]
    fn resume_keeps_a_file_shorter_than_the_state_says() {
        let (_dir, mut dead) = file_with(&["a\n", "b\n", "unterminated"]);
        dead.resume(5).unwrap();
        assert_eq!(dead.count(), 2);
        let kept = std::fs::read_to_string(dead.path()).unwrap();
        assert_eq!(kept, "a\nb\nunterminated");
        let (_dir, mut missing) = file_with(&[]);
        std::fs::remove_file(missing.path()).unwrap();
        missing.resume(4).unwrap();
    }
}
