//! JSON export: one file per thread (or one file), written as records arrive, plus a
//! `manifest.json`. The layout is documented in docs/json-export.md.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IoSlice, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::JsonSinkConfig;
use super::config::JsonSourceConfig;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::record::{Checkpoint, Origin, RawValues};
use crate::retry::RetryPolicy;
use crate::run::{RunInfo, RunStats};
use crate::sinks::OpenSink;
use crate::sinks::{Rejected, Sink, check_dir_writable, partial_path, safe_file_name};
use crate::sources::Source;

/// Open file handles kept at once; threads beyond this are closed and reopened for
/// appending, so a source that interleaves many threads cannot exhaust descriptors.
const MAX_OPEN_FILES: usize = 64;
/// Records encoded together on every core before they are written: enough to keep
/// the cores busy, few enough that their encoded objects take little memory.
const ENCODE_CHUNK: usize = 128;
/// Each open file's write buffer.
const WRITE_BUFFER: usize = 256 * 1024;
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
    /// The view's fields are left out in raw mode (no view).
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
}

/// The exported object of `record`, with its view unless `with_view` is false.
pub fn export_object(record: &Checkpoint, with_view: bool) -> ExportObject<'_> {
    let view = record.view.as_ref().filter(|_| with_view);
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

/// One record's exported object as JSON, indented when `indent` is set.
fn encode(record: &Checkpoint, indent: Option<usize>, with_view: bool) -> Result<Vec<u8>, String> {
    match indent.filter(|n| *n > 0) {
        Some(n) => {
            // Indented output is serialized from the trees (the sink does not ask for
            // text views when indenting).
            debug_assert!(record.view.as_ref().is_none_or(|v| v.text.is_none()));
            let object = export_object(record, with_view);
            let indent = vec![b' '; n];
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&indent);
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            object.serialize(&mut ser).map_err(|e| e.to_string())?;
            Ok(out)
        }
        None => Ok(export_compact(record, with_view)),
    }
}

/// The compact JSON of [`export_object`], byte for byte what serde_json makes of it
/// (a test holds the two together), written straight from the record: the view from
/// its text when the engine made it, the raw values' base64 without an escape pass.
pub fn export_compact(record: &Checkpoint, with_view: bool) -> Vec<u8> {
    let mut out = String::with_capacity(record.raw_size() * 3);
    write_compact(&mut out, record, with_view);
    out.into_bytes()
}

fn write_compact(out: &mut String, record: &Checkpoint, with_view: bool) {
    use crate::json_text::{write_array, write_base64, write_str};
    use crate::record::{PendingWrite, TypedValue};
    let view = record.view.as_ref().filter(|_| with_view);
    let typed = |out: &mut String, value: &TypedValue| {
        out.push_str(r#"{"type":"#);
        write_str(out, &value.type_tag);
        out.push_str(r#","data":""#);
        write_base64(out, &value.bytes);
        out.push_str(r#""}"#);
    };
    let write_head = |out: &mut String, w: &PendingWrite| {
        out.push_str(r#"{"task_id":"#);
        write_str(out, &w.task_id);
        out.push_str(r#","task_path":"#);
        write_str(out, &w.task_path);
        out.push_str(r#","idx":"#);
        out.push_str(itoa::Buffer::new().format(w.idx));
        out.push_str(r#","channel":"#);
        write_str(out, &w.channel);
    };
    out.push_str(r#"{"thread_id":"#);
    write_str(out, &record.key.thread_id);
    out.push_str(r#","checkpoint_ns":"#);
    write_str(out, &record.key.checkpoint_ns);
    out.push_str(r#","checkpoint_id":"#);
    write_str(out, &record.key.checkpoint_id);
    out.push_str(r#","parent_checkpoint_id":"#);
    match &record.parent_checkpoint_id {
        Some(parent) => write_str(out, parent),
        None => out.push_str("null"),
    }
    if let Some(view) = view {
        if let Some(ts) = &view.ts {
            out.push_str(r#","ts":"#);
            write_str(out, ts);
        }
        // The view's text (made where the record was decoded; rendered from the
        // trees otherwise).
        out.push_str(r#","checkpoint":"#);
        out.push_str(&view.checkpoint_text());
        out.push_str(r#","metadata":"#);
        out.push_str(&view.metadata_text());
    }
    out.push_str(r#","pending_writes":"#);
    write_array(
        out,
        record.pending_writes.iter().enumerate(),
        |out, (i, w)| {
            write_head(out, w);
            if let Some(value) = view.and_then(|v| v.write_value_text(i)) {
                out.push_str(r#","value":"#);
                out.push_str(&value);
            }
            out.push('}');
        },
    );
    out.push_str(r#","raw":{"checkpoint":"#);
    typed(out, &record.checkpoint);
    out.push_str(r#","metadata":"#);
    typed(out, &record.metadata);
    out.push_str(r#","channel_blobs":"#);
    write_array(out, &record.channel_blobs, |out, blob| {
        out.push_str(r#"{"channel":"#);
        write_str(out, &blob.channel);
        out.push_str(r#","version":"#);
        write_str(out, &blob.version);
        out.push_str(r#","value":"#);
        typed(out, &blob.value);
        out.push('}');
    });
    out.push_str(r#","pending_writes":"#);
    write_array(out, &record.pending_writes, |out, w| {
        write_head(out, w);
        out.push_str(r#","value":"#);
        typed(out, &w.value);
        out.push('}');
    });
    out.push_str(r#"},"origin":{"store":"#);
    write_str(out, &record.origin.store);
    out.push_str(r#","locator":"#);
    write_str(out, &record.origin.locator);
    out.push('}');
    if let Some(view) = view.filter(|v| !v.notices.is_empty()) {
        out.push_str(r#","notices":"#);
        write_array(out, &view.notices, |out, notice| write_str(out, notice));
    }
    out.push('}');
}

/// `manifest.json` (docs/json-export.md), keys in this order.
#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    format_version: u32,
    tool_version: &'a str,
    run_id: &'a str,
    started_at: String,
    finished_at: String,
    source: ManifestSource<'a>,
    layout: &'static str,
    encoding: &'static str,
    stats: &'a RunStats,
    files: ManifestFiles<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<&'a crate::shard::Shard>,
}

#[derive(Serialize)]
struct ManifestSource<'a> {
    kind: &'a str,
    description: &'a str,
}

/// The manifest's `files`, serialized one entry at a time.
struct ManifestFiles<'a> {
    entries: &'a [FileEntry],
    /// The entries' thread ids are then `null` (one file holds every thread).
    single_file: bool,
}

impl Serialize for ManifestFiles<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ManifestFile<'a> {
            thread_id: Option<&'a str>,
            file: &'a str,
            checkpoints: u64,
        }
        serializer.collect_seq(self.entries.iter().map(|e| ManifestFile {
            thread_id: (!self.single_file).then_some(e.group.as_str()),
            file: &e.file,
            checkpoints: e.checkpoints,
        }))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileEntry {
    /// The thread id, or "" for the single file.
    group: String,
    /// Path relative to the output directory, as it is named when complete.
    file: String,
    checkpoints: u64,
    /// Bytes written so far (what a resumed run keeps of the `.partial` file).
    length: u64,
}

/// What the sink records at a checkpoint.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ResumeState {
    /// Bytes of the files log (see [`FilesLog`]) that were durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files_log: Option<u64>,
    /// Every file and its confirmed length, as the states of earlier versions hold
    /// them (read on resume, never written).
    #[serde(default, skip_serializing)]
    files: Vec<FileEntry>,
}

/// Every file's entry, one JSON line each time a batch changed it, in
/// `<manifest name>.files.partial` next to the manifest. The resume state is this
/// log's length: one number however many files the export has (a state that held
/// every entry was rewritten after every batch, and grew with the threads: quadratic
/// in all). A resumed run replays the log up to that length, the last line of a file
/// winning. Removed once the manifest is written.
struct FilesLog {
    path: PathBuf,
    writer: BufWriter<File>,
    /// Bytes written so far.
    length: u64,
}

impl FilesLog {
    fn path(dir: &Path, shard: Option<&crate::shard::Shard>) -> PathBuf {
        dir.join(format!("{}.files.partial", manifest_name(shard)))
    }

    /// A new, empty log (any earlier one is dropped).
    fn create(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| JsonSink::io_error(parent, "cannot create", e))?;
        }
        let file =
            File::create(&path).map_err(|e| JsonSink::io_error(&path, "cannot create", e))?;
        Ok(Self {
            path,
            writer: BufWriter::new(file),
            length: 0,
        })
    }

    /// The entries the log's first `length` bytes hold (in the order the files were
    /// first logged), the log cut to that length and open for what follows.
    fn replay(path: PathBuf, length: u64) -> Result<(Self, Vec<FileEntry>), StoreError> {
        use std::io::{BufRead, Read};
        let bad = |what: String| StoreError::fatal(format!("{}: {what}", path.display()));
        let failed = |e| JsonSink::io_error(&path, "cannot resume", e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(failed)?;
        let size = file.metadata().map_err(failed)?.len();
        if size < length {
            return Err(bad(format!(
                "the resume state counts {length} bytes; the file has {size}"
            )));
        }
        let mut entries: Vec<FileEntry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let lines = std::io::BufReader::new((&file).take(length)).split(b'\n');
        for (n, line) in lines.enumerate() {
            let line = line.map_err(failed)?;
            let entry: FileEntry =
                serde_json::from_slice(&line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
            match index.get(&entry.group) {
                Some(&i) => entries[i] = entry,
                None => {
                    index.insert(entry.group.clone(), entries.len());
                    entries.push(entry);
                }
            }
        }
        // What was logged after the last confirmed batch is dropped with the batch.
        file.set_len(length).map_err(failed)?;
        let mut writer = BufWriter::new(file);
        std::io::Seek::seek(&mut writer, std::io::SeekFrom::End(0)).map_err(failed)?;
        Ok((
            Self {
                path,
                writer,
                length,
            },
            entries,
        ))
    }

    fn append(&mut self, entry: &FileEntry) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| StoreError::fatal(e.to_string()))?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|e| JsonSink::io_error(&self.path, "cannot write", e))?;
        self.length += line.len() as u64;
        Ok(())
    }

    /// The log flushed, and a handle on it to sync.
    fn flushed(&mut self) -> Result<File, StoreError> {
        self.writer
            .flush()
            .and_then(|()| self.writer.get_ref().try_clone())
            .map_err(|e| JsonSink::io_error(&self.path, "cannot write", e))
    }
}

/// A batch's files being synced on a thread of their own while the next batch is
/// written (the engine records a batch once the next one is written: the sink
/// confirms late).
struct Syncing {
    thread: std::thread::JoinHandle<std::io::Result<()>>,
    /// The files log's length once this sync is done.
    log_length: u64,
}

pub struct JsonSink {
    config: JsonSinkConfig,
    run: RunInfo,
    /// Index into `entries` by group.
    index: HashMap<String, usize>,
    /// Files in the order they were created (a stable manifest).
    entries: Vec<FileEntry>,
    /// Open writers (by entry index), least recently used first.
    open: Vec<(usize, BufWriter<File>)>,
    /// Entries written since the last sync point (to log and sync).
    dirty: Vec<usize>,
    /// Opened by `resume`, else at the first sync point.
    log: Option<FilesLog>,
    /// The last batch's files, being synced.
    syncing: Option<Syncing>,
    /// The files log's length at the last batch known durable.
    confirmed: u64,
}

impl JsonSink {
    pub fn new(config: JsonSinkConfig, run: RunInfo) -> Self {
        Self {
            config,
            run,
            index: HashMap::new(),
            entries: Vec::new(),
            open: Vec::new(),
            dirty: Vec::new(),
            log: None,
            syncing: None,
            confirmed: 0,
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

    fn io_error(path: &Path, what: &str, e: std::io::Error) -> StoreError {
        let message = format!("{what} {}: {e}", path.display());
        match e.kind() {
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => {
                StoreError::retriable(message)
            }
            _ => StoreError::fatal(message),
        }
    }

    /// The entry index for `group`, creating its (empty) `.partial` file if new.
    fn entry_for(&mut self, group: &str) -> Result<usize, StoreError> {
        if let Some(&i) = self.index.get(group) {
            return Ok(i);
        }
        // Thread files live in `threads/` so no thread id can collide with
        // `manifest.json` or `dead-letter.jsonl`.
        let stem = if self.config.single_file {
            match &self.run.shard {
                Some(shard) => format!("checkpoints.{}", shard.part_name()),
                None => "checkpoints".to_owned(),
            }
        } else {
            format!("threads/{}", safe_file_name(group))
        };
        let file = format!("{stem}.{}", self.extension());
        let partial = partial_path(&self.path(&file));
        // The directory is made when the first file in it is.
        let created = File::create(&partial).or_else(|e| match partial.parent() {
            Some(parent) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Self::io_error(parent, "cannot create", e))?;
                File::create(&partial).map_err(|e| Self::io_error(&partial, "cannot create", e))
            }
            _ => Err(Self::io_error(&partial, "cannot create", e)),
        })?;
        self.entries.push(FileEntry {
            group: group.to_owned(),
            file,
            checkpoints: 0,
            length: 0,
        });
        let i = self.entries.len() - 1;
        self.index.insert(group.to_owned(), i);
        // Kept open for the writes that follow (one open per file, not two).
        self.keep_open(i, created)?;
        Ok(i)
    }

    /// Adds `file`, entry `i`'s, to the open writers (closing the least recently
    /// used one when too many are open).
    fn keep_open(&mut self, i: usize, file: File) -> Result<(), StoreError> {
        self.close_least_recent(MAX_OPEN_FILES - 1)?;
        self.open
            .push((i, BufWriter::with_capacity(WRITE_BUFFER, file)));
        Ok(())
    }

    /// Closes the least recently used open files until at most `keep` are open.
    fn close_least_recent(&mut self, keep: usize) -> Result<(), StoreError> {
        let excess = self.open.len().saturating_sub(keep);
        for (_, mut oldest) in self.open.drain(..excess) {
            oldest
                .flush()
                .map_err(|e| StoreError::fatal(format!("flushing a JSON file: {e}")))?;
        }
        Ok(())
    }

    /// The writers of `entries` (distinct, at most [`MAX_OPEN_FILES`]), taken out of
    /// the open ones, the closed files reopened for appending; the least recently used
    /// others are closed so that, once these are put back, no more than
    /// [`MAX_OPEN_FILES`] are open.
    fn take_writers(&mut self, entries: &[usize]) -> Result<Vec<BufWriter<File>>, StoreError> {
        let mut taken: Vec<Option<BufWriter<File>>> = entries
            .iter()
            .map(|i| {
                let pos = self.open.iter().position(|(e, _)| e == i)?;
                Some(self.open.remove(pos).1)
            })
            .collect();
        self.close_least_recent(MAX_OPEN_FILES.saturating_sub(entries.len()))?;
        entries
            .iter()
            .zip(&mut taken)
            .map(|(&i, writer)| match writer.take() {
                Some(writer) => Ok(writer),
                None => {
                    let partial = partial_path(&self.path(&self.entries[i].file));
                    let file = OpenOptions::new()
                        .append(true)
                        .open(&partial)
                        .map_err(|e| Self::io_error(&partial, "cannot reopen", e))?;
                    Ok(BufWriter::with_capacity(WRITE_BUFFER, file))
                }
            })
            .collect()
    }

    fn close_all(&mut self) -> Result<(), StoreError> {
        for (_, mut w) in self.open.drain(..) {
            w.flush()
                .map_err(|e| StoreError::fatal(format!("flushing JSON output: {e}")))?;
        }
        Ok(())
    }

    /// Writes the manifest straight from the entries: a run of a million checkpoints
    /// has tens of thousands of files, whose entries as JSON trees took more memory at
    /// the end of the run than any batch.
    fn write_manifest(&self, stats: &RunStats) -> Result<(), StoreError> {
        let manifest = Manifest {
            format: FORMAT,
            format_version: FORMAT_VERSION,
            tool_version: &self.run.tool_version,
            run_id: &self.run.run_id,
            started_at: self.run.started_at.to_rfc3339(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            source: ManifestSource {
                kind: &self.run.source_kind,
                description: &self.run.source,
            },
            layout: if self.config.single_file {
                "single-file"
            } else {
                "per-thread"
            },
            encoding: if self.is_array() {
                "json-array"
            } else {
                "json-lines"
            },
            stats,
            files: ManifestFiles {
                entries: &self.entries,
                single_file: self.config.single_file,
            },
            shard: self.run.shard.as_ref(),
        };
        let path = self.path(&manifest_name(self.run.shard.as_ref()));
        let file = File::create(&path).map_err(|e| Self::io_error(&path, "cannot write", e))?;
        let mut out = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, &manifest)
            .map_err(std::io::Error::from)
            .and_then(|()| out.flush())
            .map_err(|e| Self::io_error(&path, "cannot write", e))
    }

    /// Ends a batch: its files' entries go to the files log, and the files written
    /// since the last sync point (the open ones and those closed since, when more
    /// files are written than are kept open) start syncing on a thread of their own,
    /// once the last batch's sync is done. Syncing used to wait at every checkpoint;
    /// now it overlaps the next batch.
    fn sync_point(&mut self) -> Result<(), StoreError> {
        for (_, w) in &mut self.open {
            w.flush()
                .map_err(|e| StoreError::fatal(format!("flushing JSON output: {e}")))?;
        }
        let log = match &mut self.log {
            Some(log) => log,
            None => self.log.insert(FilesLog::create(FilesLog::path(
                &self.config.output_dir,
                self.run.shard.as_ref(),
            ))?),
        };
        for &i in &self.dirty {
            log.append(&self.entries[i])?;
        }
        let (log_file, log_length) = (log.flushed()?, log.length);
        let mut files = vec![log_file];
        for &i in &self.dirty {
            let partial = || partial_path(&self.path(&self.entries[i].file));
            let file = match self.open.iter().find(|(e, _)| *e == i) {
                Some((_, w)) => w.get_ref().try_clone(),
                // Opened for writing: some systems sync only a file open for it.
                None => OpenOptions::new().append(true).open(partial()),
            };
            files.push(file.map_err(|e| Self::io_error(&partial(), "cannot reopen to sync", e))?);
        }
        self.dirty.clear();
        self.wait_for_sync()?;
        let thread = std::thread::Builder::new()
            .name("json-sync".into())
            .spawn(move || super::sync::sync_files(&files))
            .map_err(|e| StoreError::fatal(format!("cannot start syncing JSON output: {e}")))?;
        self.syncing = Some(Syncing { thread, log_length });
        Ok(())
    }

    /// Waits for the last batch's sync: every batch written before is durable.
    fn wait_for_sync(&mut self) -> Result<(), StoreError> {
        if let Some(Syncing { thread, log_length }) = self.syncing.take() {
            thread
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
                .map_err(|e| StoreError::fatal(format!("syncing JSON output: {e}")))?;
            self.confirmed = log_length;
        }
        Ok(())
    }

    /// The batch's records grouped by the file they go to (each file's in batch
    /// order), the files in the order the batch first reaches them; new files are
    /// created.
    fn file_runs(
        &mut self,
        records: &[Checkpoint],
    ) -> Result<Vec<(usize, Vec<usize>)>, StoreError> {
        let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
        // Entry index → position in `runs`.
        let mut run_of: HashMap<usize, usize> = HashMap::new();
        for (n, record) in records.iter().enumerate() {
            let group = if self.config.single_file {
                ""
            } else {
                record.key.thread_id.as_str()
            };
            let i = self.entry_for(group)?;
            let at = *run_of.entry(i).or_insert_with(|| {
                runs.push((i, Vec::new()));
                runs.len() - 1
            });
            runs[at].1.push(n);
        }
        Ok(runs)
    }
}

/// One file's records of a batch, encoded and appended by one worker with the file's
/// writer, taken out of the sink's open ones while it works.
struct FileRun<'b> {
    entry: usize,
    writer: BufWriter<File>,
    /// The file holds no checkpoint yet (an array opens with this one).
    empty: bool,
    /// Indexes into the batch, in order.
    members: &'b [usize],
}

/// What a [`FileRun`] wrote.
struct FileWritten {
    entry: usize,
    writer: BufWriter<File>,
    checkpoints: u64,
    bytes: u64,
    rejected: Vec<Rejected>,
}

impl FileRun<'_> {
    /// Encodes the records a chunk at a time on every core and appends them in order
    /// (with the array's separators): only a chunk's encoded objects wait in memory.
    fn write(
        mut self,
        records: &[Checkpoint],
        indent: Option<usize>,
        array: bool,
        with_view: bool,
    ) -> Result<FileWritten, StoreError> {
        use rayon::prelude::*;
        let terminator: &[u8] = if array { b"" } else { b"\n" };
        let mut written = FileWritten {
            entry: self.entry,
            checkpoints: 0,
            bytes: 0,
            rejected: Vec::new(),
            writer: self.writer,
        };
        for chunk in self.members.chunks(ENCODE_CHUNK) {
            let encoded: Vec<Result<Vec<u8>, String>> = chunk
                .par_iter()
                .map(|&n| encode(&records[n], indent, with_view))
                .collect();
            // The chunk's objects go to the file in one vectored write, not copied
            // into the file's buffer first (a copy of every byte of the export).
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(3 * chunk.len());
            let mut first = None;
            for (&index, bytes) in chunk.iter().zip(&encoded) {
                let bytes = match bytes {
                    Ok(bytes) => bytes,
                    Err(reason) => {
                        let reason = reason.clone();
                        written.rejected.push(Rejected { index, reason });
                        continue;
                    }
                };
                let separator: &[u8] = match (array, self.empty) {
                    (true, true) => b"[\n",
                    (true, false) => b",\n",
                    (false, _) => b"",
                };
                slices.extend(
                    [separator, bytes, terminator]
                        .into_iter()
                        .filter(|piece| !piece.is_empty())
                        .map(IoSlice::new),
                );
                first.get_or_insert(index);
                self.empty = false;
                written.checkpoints += 1;
                written.bytes += (separator.len() + bytes.len() + terminator.len()) as u64;
            }
            if let Some(first) = first {
                write_all_vectored(&mut written.writer, &mut slices).map_err(|e| {
                    StoreError::fatal(format!("writing JSON from {}: {e}", records[first].key))
                })?;
            }
        }
        Ok(written)
    }
}

/// Writes every byte of `slices`, as many system calls as it takes (what the unstable
/// `Write::write_all_vectored` does).
fn write_all_vectored(out: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `manifest.json`, or per shard `manifest.part-00003-of-00008.json` (the shards of a
/// run write into one directory; their thread files never collide).
pub fn manifest_name(shard: Option<&crate::shard::Shard>) -> String {
    match shard {
        Some(shard) => format!("manifest.{}.json", shard.part_name()),
        None => "manifest.json".into(),
    }
}

#[async_trait]
impl Sink for JsonSink {
    fn needs_view(&self) -> bool {
        self.config.view
    }

    fn reads_view_text(&self) -> bool {
        // Indented output is serialized from the trees.
        self.config.indent.is_none_or(|n| n == 0)
    }

    fn describe(&self) -> String {
        format!(
            "JSON files in {}{}",
            self.config.output_dir.display(),
            crate::sinks::raw_mode_note(self.config.view)
        )
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        self.config.output_dir.join("dead-letter.jsonl")
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        check_dir_writable(&self.config.output_dir)
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        use rayon::prelude::*;
        // Encoding and the write system calls are the bulk of the work: each file's
        // records are encoded and appended by a worker of its own, files side by side
        // on every core (one file's records in order, by one worker).
        let (indent, array, with_view) = (self.config.indent, self.is_array(), self.config.view);
        let runs = self.file_runs(records)?;
        let mut rejected = Vec::new();
        for wave in runs.chunks(MAX_OPEN_FILES) {
            let entries: Vec<usize> = wave.iter().map(|(i, _)| *i).collect();
            let writers = self.take_writers(&entries)?;
            let jobs: Vec<FileRun> = wave
                .iter()
                .zip(writers)
                .map(|((entry, members), writer)| FileRun {
                    entry: *entry,
                    writer,
                    empty: self.entries[*entry].checkpoints == 0,
                    members,
                })
                .collect();
            let done: Vec<Result<FileWritten, StoreError>> = crate::sinks::on_encode_pool(|| {
                jobs.into_par_iter()
                    .map(|job| job.write(records, indent, array, with_view))
                    .collect()
            });
            for written in done {
                let written = written?;
                let entry = &mut self.entries[written.entry];
                entry.checkpoints += written.checkpoints;
                entry.length += written.bytes;
                if written.checkpoints > 0 && !self.dirty.contains(&written.entry) {
                    self.dirty.push(written.entry);
                }
                self.open.push((written.entry, written.writer));
                rejected.extend(written.rejected);
            }
        }
        // The dead-letter file gets them in batch order.
        rejected.sort_unstable_by_key(|r| r.index);
        self.sync_point()?;
        Ok(rejected)
    }

    async fn checkpoint(&mut self) -> Result<Option<Value>, StoreError> {
        let state = ResumeState {
            files_log: Some(self.confirmed),
            files: Vec::new(),
        };
        serde_json::to_value(state)
            .map(Some)
            .map_err(|e| StoreError::fatal(e.to_string()))
    }

    fn unconfirmed_batches(&self) -> usize {
        1
    }

    async fn settle(&mut self) -> Result<(), StoreError> {
        self.wait_for_sync()
    }

    async fn resume(&mut self, state: Value) -> Result<(), StoreError> {
        let state: ResumeState = if state.is_null() {
            ResumeState::default()
        } else {
            serde_json::from_value(state)
                .map_err(|e| StoreError::fatal(format!("unreadable JSON resume state: {e}")))?
        };
        let log_path = FilesLog::path(&self.config.output_dir, self.run.shard.as_ref());
        let (log, entries) = match state.files_log {
            Some(length) => FilesLog::replay(log_path, length)?,
            // A state of an earlier version: its files are logged at the next sync
            // point, so that the log alone holds them from then on.
            None => {
                self.dirty = (0..state.files.len()).collect();
                (FilesLog::create(log_path)?, state.files)
            }
        };
        self.confirmed = log.length;
        self.log = Some(log);
        for entry in entries {
            let final_path = self.path(&entry.file);
            let partial = partial_path(&final_path);
            // A crash during `finish` may have renamed some files already.
            if !partial.exists() && final_path.exists() {
                std::fs::rename(&final_path, &partial)
                    .map_err(|e| Self::io_error(&final_path, "cannot reopen", e))?;
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&partial)
                .map_err(|e| Self::io_error(&partial, "cannot resume", e))?;
            // Drop what was written after the last confirmed batch.
            file.set_len(entry.length)
                .map_err(|e| Self::io_error(&partial, "cannot resume", e))?;
            self.index.insert(entry.group.clone(), self.entries.len());
            self.entries.push(entry);
        }
        Ok(())
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        let synced = self.wait_for_sync();
        self.close_all().and(synced)
    }

    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        let written = JsonSourceConfig {
            path: self.config.output_dir.clone(),
        };
        Ok(Box::new(super::JsonSource::open(&written)?))
    }

    async fn finish(&mut self, stats: &RunStats) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.config.output_dir)
            .map_err(|e| Self::io_error(&self.config.output_dir, "cannot create", e))?;
        self.wait_for_sync()?;
        self.close_all()?;
        for entry in &self.entries {
            let final_path = self.path(&entry.file);
            let partial = partial_path(&final_path);
            if self.is_array() {
                let mut f = OpenOptions::new()
                    .append(true)
                    .open(&partial)
                    .map_err(|e| Self::io_error(&partial, "cannot reopen", e))?;
                f.write_all(b"\n]\n")
                    .and_then(|()| f.sync_data())
                    .map_err(|e| Self::io_error(&partial, "cannot write", e))?;
            }
            std::fs::rename(&partial, &final_path)
                .map_err(|e| Self::io_error(&final_path, "cannot rename into place", e))?;
        }
        self.write_manifest(stats)?;
        // The manifest lists every file now.
        if let Some(log) = self.log.take() {
            drop(log.writer);
            std::fs::remove_file(&log.path)
                .map_err(|e| Self::io_error(&log.path, "cannot remove", e))?;
        }
        Ok(())
    }
}

impl OpenSink for JsonSinkConfig {
    fn open_sink(&self, run: &RunInfo, _retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        Ok(Box::new(JsonSink::new(self.clone(), run.clone())))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test files are a few lines
mod tests {
    use super::*;
    use crate::record::TypedValue;

    /// A file that takes a few bytes per call, and is interrupted now and then.
    struct Trickle {
        written: Vec<u8>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(4) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_vectored_write_goes_on_until_every_slice_is_written() {
        let parts: [&[u8]; 5] = [b"[\n", b"{\"a\":1}", b"", b",\n", b"{\"b\":22}\n"];
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut file = Trickle {
            written: Vec::new(),
            calls: 0,
        };
        write_all_vectored(&mut file, &mut slices).unwrap();
        assert_eq!(file.written, parts.concat());
        assert!(file.calls > parts.len(), "{} calls", file.calls);
    }

    /// Checkpoint `n` of thread `t{thread}`.
    fn record(thread: usize, n: usize) -> Checkpoint {
        let mut record = Checkpoint::for_test(TypedValue::new("json", "{}"), Vec::new());
        record.key.thread_id = format!("t{thread}");
        record.key.checkpoint_id = format!("{n:04}");
        record
    }

    /// A batch interleaving more threads than files are kept open: each file gets its
    /// thread's checkpoints in order (with an array's separators), never more than
    /// `MAX_OPEN_FILES` files are open, and a file closed between batches is reopened
    /// and appended to.
    #[tokio::test]
    async fn interleaved_threads_beyond_the_open_files_keep_their_order() {
        let threads = MAX_OPEN_FILES * 2 + 7;
        for indent in [None, Some(1)] {
            let dir = tempfile::tempdir().unwrap();
            let config = JsonSinkConfig {
                output_dir: dir.path().join("out"),
                single_file: false,
                indent,
                view: false,
            };
            let mut sink = JsonSink::new(config, RunInfo::new("test", "test".into(), "json"));
            for batch in 0..3 {
                let records: Vec<Checkpoint> = (0..4)
                    .flat_map(|n| (0..threads).map(move |t| record(t, batch * 4 + n)))
                    .collect();
                let rejected = sink.write_batch(&records).await.unwrap();
                assert!(rejected.is_empty());
                assert!(
                    sink.open.len() <= MAX_OPEN_FILES,
                    "{} open",
                    sink.open.len()
                );
            }
            sink.finish(&RunStats::default()).await.unwrap();
            for t in 0..threads {
                let extension = if indent.is_some() { "json" } else { "jsonl" };
                let path = dir.path().join(format!("out/threads/t{t}.{extension}"));
                let text = std::fs::read_to_string(&path).unwrap();
                let objects: Vec<Value> = match indent {
                    Some(_) => serde_json::from_str(&text).unwrap(),
                    None => text
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect(),
                };
                let ids: Vec<&str> = objects
                    .iter()
                    .map(|o| o["checkpoint_id"].as_str().unwrap())
                    .collect();
                let expected: Vec<String> = (0..12).map(|n| format!("{n:04}")).collect();
                assert_eq!(ids, expected, "{}", path.display());
                assert!(objects.iter().all(|o| o["thread_id"] == format!("t{t}")));
            }
        }
    }
}
