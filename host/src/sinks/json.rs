//! JSON export: one file per thread (or one file), written as records arrive, plus a
//! `manifest.json`. The layout is documented in docs/json-export.md.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use super::{Rejected, Sink, check_dir_writable, safe_file_name};
use crate::config::JsonSinkConfig;
use crate::error::StoreError;
use crate::record::{Checkpoint, Origin, RawValues};
use crate::run::{RunInfo, RunStats};

/// Open file handles kept at once; threads beyond this are closed and reopened for
/// appending, so a source that interleaves many threads cannot exhaust descriptors.
const MAX_OPEN_FILES: usize = 64;
pub const FORMAT: &str = "ckpt-migrate/json-export";
pub const FORMAT_VERSION: u32 = 1;

/// The exported object of one checkpoint: the oracle's keys (`thread_id`,
/// `checkpoint_ns`, `checkpoint_id`, `parent_checkpoint_id`, `checkpoint`, `metadata`,
/// `pending_writes`) plus `ts`, `raw` (every stored value, base64), `origin` and, when
/// values were passed through undecoded, `notices`. Borrows the record: nothing is
/// copied to serialize it.
#[derive(Serialize)]
pub struct ExportObject<'a> {
    thread_id: &'a str,
    checkpoint_ns: &'a str,
    checkpoint_id: &'a str,
    parent_checkpoint_id: Option<&'a str>,
    ts: Option<&'a str>,
    checkpoint: Option<&'a Value>,
    metadata: Option<&'a Value>,
    pending_writes: Vec<ExportWrite<'a>>,
    raw: RawValues<'a>,
    origin: &'a Origin,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notices: &'a [String],
}

#[derive(Serialize)]
struct ExportWrite<'a> {
    task_id: &'a str,
    task_path: &'a str,
    idx: i64,
    channel: &'a str,
    value: Option<&'a Value>,
}

pub fn export_object(record: &Checkpoint) -> ExportObject<'_> {
    let view = record.view.as_ref();
    ExportObject {
        thread_id: &record.key.thread_id,
        checkpoint_ns: &record.key.checkpoint_ns,
        checkpoint_id: &record.key.checkpoint_id,
        parent_checkpoint_id: record.parent_checkpoint_id.as_deref(),
        ts: view.and_then(|v| v.ts.as_deref()),
        checkpoint: view.map(|v| &v.checkpoint),
        metadata: view.map(|v| &v.metadata),
        pending_writes: record
            .pending_writes
            .iter()
            .enumerate()
            .map(|(i, w)| ExportWrite {
                task_id: &w.task_id,
                task_path: &w.task_path,
                idx: w.idx,
                channel: &w.channel,
                value: view
                    .and_then(|v| v.pending_writes.get(i))
                    .map(|wv| &wv.value),
            })
            .collect(),
        raw: record.raw(),
        origin: &record.origin,
        notices: view.map_or(&[], |v| v.notices.as_slice()),
    }
}

#[derive(Debug, Clone, Serialize)]
struct FileEntry {
    /// `None` for the single file.
    thread_id: Option<String>,
    file: String,
    checkpoints: u64,
}

pub struct JsonSink {
    config: JsonSinkConfig,
    run: RunInfo,
    files: HashMap<String, FileEntry>,
    /// Order in which threads got a file (for a stable manifest).
    order: Vec<String>,
    open: Vec<(String, BufWriter<File>)>,
}

impl JsonSink {
    pub fn new(config: JsonSinkConfig, run: RunInfo) -> Self {
        Self {
            config,
            run,
            files: HashMap::new(),
            order: Vec::new(),
            open: Vec::new(),
        }
    }

    fn is_array(&self) -> bool {
        self.config.indent.is_some_and(|n| n > 0)
    }

    fn extension(&self) -> &'static str {
        if self.is_array() { "json" } else { "jsonl" }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.config.output_dir.join(file)
    }

    fn io_error(&self, path: &Path, what: &str, e: std::io::Error) -> StoreError {
        let message = format!("{what} {}: {e}", path.display());
        match e.kind() {
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => {
                StoreError::retriable(message)
            }
            _ => StoreError::fatal(message),
        }
    }

    /// The writer for `group` (a thread id, or "" for the single file), opening,
    /// creating or reopening its file.
    fn writer(&mut self, group: &str) -> Result<(&mut BufWriter<File>, bool), StoreError> {
        if let Some(pos) = self.open.iter().position(|(g, _)| g == group) {
            let first = self.files.get(group).is_none_or(|f| f.checkpoints == 0);
            let entry = self.open.remove(pos);
            self.open.push(entry);
            let last = self.open.last_mut().map(|(_, w)| w);
            return Ok((last.expect("just pushed"), first));
        }
        if self.open.len() >= MAX_OPEN_FILES {
            let (_, mut oldest) = self.open.remove(0);
            oldest
                .flush()
                .map_err(|e| StoreError::fatal(format!("flushing a JSON file: {e}")))?;
        }
        let existing = self.files.get(group).map(|f| f.file.clone());
        let (file_name, new) = match existing {
            Some(name) => (name, false),
            None => {
                // Thread files live in `threads/` so no thread id can collide with
                // `manifest.json` or `dead-letter.jsonl`.
                let stem = if self.config.single_file {
                    "checkpoints".to_owned()
                } else {
                    format!("threads/{}", safe_file_name(group))
                };
                (format!("{stem}.{}", self.extension()), true)
            }
        };
        let path = self.path(&file_name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| self.io_error(parent, "cannot create", e))?;
        }
        let file = if new {
            File::create(&path).map_err(|e| self.io_error(&path, "cannot create", e))?
        } else {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| self.io_error(&path, "cannot reopen", e))?
        };
        if new {
            self.files.insert(
                group.to_owned(),
                FileEntry {
                    thread_id: (!self.config.single_file).then(|| group.to_owned()),
                    file: file_name,
                    checkpoints: 0,
                },
            );
            self.order.push(group.to_owned());
        }
        self.open
            .push((group.to_owned(), BufWriter::with_capacity(256 * 1024, file)));
        let last = self.open.last_mut().map(|(_, w)| w);
        Ok((last.expect("just pushed"), new))
    }

    fn encode(&self, record: &Checkpoint) -> Result<Vec<u8>, String> {
        let object = export_object(record);
        match self.config.indent.filter(|n| *n > 0) {
            Some(n) => {
                let indent = vec![b' '; n];
                let mut out = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(&indent);
                let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
                object.serialize(&mut ser).map_err(|e| e.to_string())?;
                Ok(out)
            }
            None => serde_json::to_vec(&object).map_err(|e| e.to_string()),
        }
    }

    fn write_manifest(&self, stats: &RunStats) -> Result<(), StoreError> {
        let files: Vec<&FileEntry> = self
            .order
            .iter()
            .filter_map(|g| self.files.get(g))
            .collect();
        let manifest = serde_json::json!({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tool_version": self.run.tool_version,
            "run_id": self.run.run_id,
            "started_at": self.run.started_at.to_rfc3339(),
            "finished_at": chrono::Utc::now().to_rfc3339(),
            "source": { "kind": self.run.source_kind, "description": self.run.source },
            "layout": if self.config.single_file { "single-file" } else { "per-thread" },
            "encoding": if self.is_array() { "json-array" } else { "json-lines" },
            "stats": stats,
            "files": files,
        });
        let path = self.path("manifest.json");
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StoreError::fatal(format!("encoding the manifest: {e}")))?;
        std::fs::write(&path, text).map_err(|e| self.io_error(&path, "cannot write", e))
    }
}

#[async_trait]
impl Sink for JsonSink {
    fn describe(&self) -> String {
        format!("JSON files in {}", self.config.output_dir.display())
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        self.config.output_dir.join("dead-letter.jsonl")
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        check_dir_writable(&self.config.output_dir)
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        let dir = self.config.output_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| self.io_error(&dir, "cannot create", e))?;
        let mut rejected = Vec::new();
        let array = self.is_array();
        for (index, record) in records.iter().enumerate() {
            let bytes = match self.encode(record) {
                Ok(b) => b,
                Err(reason) => {
                    rejected.push(Rejected { index, reason });
                    continue;
                }
            };
            let group = if self.config.single_file {
                ""
            } else {
                record.key.thread_id.as_str()
            };
            let (writer, first) = self.writer(group)?;
            let result = (|| {
                if array {
                    writer.write_all(if first { b"[\n" } else { b",\n" })?;
                }
                writer.write_all(&bytes)?;
                if !array {
                    writer.write_all(b"\n")?;
                }
                Ok::<_, std::io::Error>(())
            })();
            result
                .map_err(|e| StoreError::fatal(format!("writing JSON for {}: {e}", record.key)))?;
            if let Some(entry) = self.files.get_mut(group) {
                entry.checkpoints += 1;
            }
        }
        for (_, w) in &mut self.open {
            w.flush()
                .map_err(|e| StoreError::fatal(format!("flushing JSON output: {e}")))?;
        }
        Ok(rejected)
    }

    async fn finish(&mut self, stats: &RunStats) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.config.output_dir)
            .map_err(|e| self.io_error(&self.config.output_dir, "cannot create", e))?;
        for (_, mut w) in self.open.drain(..) {
            w.flush()
                .map_err(|e| StoreError::fatal(format!("flushing JSON output: {e}")))?;
        }
        if self.is_array() {
            for entry in self.files.values() {
                let path = self.path(&entry.file);
                let mut f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| self.io_error(&path, "cannot reopen", e))?;
                f.write_all(b"\n]\n")
                    .map_err(|e| self.io_error(&path, "cannot write", e))?;
            }
        }
        self.write_manifest(stats)
    }
}
