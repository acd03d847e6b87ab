//! JSON exports as a source: a backup restores. Records are rebuilt from each object's
//! raw values (`raw`), never from its view, so they are what the original store held.
//!
//! Files are read in the manifest's order, line by line (a `.json` array file is read
//! whole). The position is (file, item), so a resumed run continues exactly where the
//! last confirmed batch ended, whatever the order of keys in the export.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::JsonSourceConfig;
use super::{FORMAT, FORMAT_VERSION};
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::{Checkpoint, CheckpointKey, Origin};
use crate::sources::OpenSource;
use crate::sources::{
    BatchLimits, FailedRead, ResumePoint, Source, SourceBatch, ThreadCounts, resume_point, skipping,
};

pub struct JsonSource {
    dir: PathBuf,
    /// The export's files, relative to `dir`, in manifest order.
    files: Vec<String>,
    /// Files are JSON arrays (`indent` was set) rather than JSON lines.
    array: bool,
    at: Position,
    open: Option<OpenFile>,
    /// Skip records up to and including this key (resume by key).
    skip_through: Option<CheckpointKey>,
}

/// The manifests of the export in `dir`: `manifest.json`, else those of its shards in
/// shard order.
fn manifest_paths(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let single = dir.join("manifest.json");
    if single.exists() {
        return Ok(vec![single]);
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| StoreError::fatal(format!("{}: {e}", dir.display())))?;
    let mut shards = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| StoreError::fatal(format!("{}: {e}", dir.display())))?
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("manifest.part-") && name.ends_with(".json") {
            shards.push(path);
        }
    }
    if shards.is_empty() {
        return Err(StoreError::fatal(format!(
            "{}: no manifest.json (the directory of a ckpt-migrate JSON export has one, or one per shard; an export without it did not finish)",
            single.display()
        )));
    }
    shards.sort();
    Ok(shards)
}

/// Reads and checks one manifest.
fn read_manifest(path: &Path) -> Result<Value, StoreError> {
    // A manifest lists files and counts: small, whatever the export's size.
    #[allow(clippy::disallowed_methods)]
    let manifest: Value = std::fs::read(path)
        .map_err(|e| StoreError::fatal(format!("{}: {e}", path.display())))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| StoreError::fatal(format!("{}: {e}", path.display())))
        })?;
    if manifest["format"] != FORMAT {
        return Err(StoreError::fatal(format!(
            "{}: not a ckpt-migrate JSON export (format {})",
            path.display(),
            manifest["format"]
        )));
    }
    let version = manifest["format_version"].as_u64().unwrap_or(0);
    if version > u64::from(FORMAT_VERSION) {
        return Err(StoreError::fatal(format!(
            "{}: export format version {version} is newer than this ckpt-migrate reads ({FORMAT_VERSION})",
            path.display()
        )));
    }
    Ok(manifest)
}

/// The next item to read.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Position {
    file: usize,
    item: usize,
}

enum OpenFile {
    Lines(std::io::Lines<BufReader<File>>),
    Array(VecDeque<ExportedObject>),
}

/// What a record is restored from in an exported object: its keys and `raw`. The
/// view's fields (the largest part of a decoded export's object) and `origin` are
/// skipped while the text is parsed, never built into a tree.
///
/// It reads whatever JSON it is given as indexing a tree of it did: a field of another
/// type than expected, or an item that is no object at all, reads as missing (the item
/// then goes to the dead-letter file under its place, and an array file's other items
/// are still read), and a field given twice keeps its last value.
#[derive(Debug, Default)]
pub struct ExportedObject {
    thread_id: Value,
    checkpoint_ns: Value,
    checkpoint_id: Value,
    parent_checkpoint_id: Value,
    raw: Value,
}

impl<'de> Deserialize<'de> for ExportedObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            parent_checkpoint_id,
            raw,
        ] = deserializer.deserialize_any(crate::json_text::ObjectFields::<Value, 5>::new([
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "parent_checkpoint_id",
            "raw",
        ]))?;
        Ok(ExportedObject {
            thread_id: thread_id.unwrap_or_default(),
            checkpoint_ns: checkpoint_ns.unwrap_or_default(),
            checkpoint_id: checkpoint_id.unwrap_or_default(),
            parent_checkpoint_id: parent_checkpoint_id.unwrap_or_default(),
            raw: raw.unwrap_or_default(),
        })
    }
}

impl JsonSource {
    /// Opens an export: its `manifest.json`, or the manifests of all the shards
    /// that wrote into the directory (`manifest.part-*.json`), read as one export.
    pub fn open(config: &JsonSourceConfig) -> Result<Self, StoreError> {
        let dir = config.path.clone();
        let mut files = Vec::new();
        let mut encodings = Vec::new();
        for manifest_path in manifest_paths(&dir)? {
            let manifest = read_manifest(&manifest_path)?;
            encodings.push((manifest["encoding"] == "json-array", manifest_path));
            files.extend(
                manifest["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["file"].as_str().map(str::to_owned)),
            );
        }
        let array = encodings.first().is_some_and(|(array, _)| *array);
        if let Some((_, other)) = encodings.iter().find(|(a, _)| *a != array) {
            return Err(StoreError::fatal(format!(
                "{}: written with another encoding than {} (JSON lines and JSON arrays cannot be read as one export)",
                other.display(),
                encodings[0].1.display()
            )));
        }
        Ok(Self {
            dir,
            files,
            array,
            at: Position::default(),
            open: None,
            skip_through: None,
        })
    }

    fn locator(&self) -> String {
        let file = self.files.get(self.at.file).map_or("", String::as_str);
        format!(
            "{} item {}",
            self.dir.join(file).display(),
            self.at.item + 1
        )
    }

    /// Opens the current file, skipping the items a resumed run already has.
    fn open_current(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(&self.files[self.at.file]);
        let err = |e: &dyn std::fmt::Display| StoreError::fatal(format!("{}: {e}", path.display()));
        let file = File::open(&path).map_err(|e| err(&e))?;
        let mut open = if self.array {
            let items: Vec<ExportedObject> =
                serde_json::from_reader(BufReader::new(file)).map_err(|e| err(&e))?;
            OpenFile::Array(items.into())
        } else {
            OpenFile::Lines(BufReader::new(file).lines())
        };
        for _ in 0..self.at.item {
            let gone = match &mut open {
                OpenFile::Lines(lines) => lines.next().is_none(),
                OpenFile::Array(items) => items.pop_front().is_none(),
            };
            if gone {
                return Err(err(&format!(
                    "has fewer than {} items: it changed since the run started",
                    self.at.item
                )));
            }
        }
        self.open = Some(open);
        Ok(())
    }

    /// The next object, `None` at the end of the export.
    fn next_object(&mut self) -> Result<Option<Result<ExportedObject, String>>, StoreError> {
        loop {
            if self.at.file >= self.files.len() {
                return Ok(None);
            }
            if self.open.is_none() {
                self.open_current()?;
            }
            let next = match self.open.as_mut().expect("opened above") {
                OpenFile::Lines(lines) => lines.next().map(|line| {
                    line.map_err(|e| StoreError::fatal(format!("{}: {e}", self.locator())))
                        .map(|l| {
                            serde_json::from_str::<ExportedObject>(&l)
                                .map_err(|e| format!("not JSON: {e}"))
                        })
                }),
                OpenFile::Array(items) => items.pop_front().map(|v| Ok(Ok(v))),
            };
            match next {
                Some(item) => return item.map(Some),
                None => {
                    self.open = None;
                    self.at = Position {
                        file: self.at.file + 1,
                        item: 0,
                    };
                }
            }
        }
    }
}

/// A record from one exported object (a line of a JSON export): its key and its raw
/// values; the error names the key when there is one.
pub fn record_of(
    object: &ExportedObject,
    origin: Origin,
) -> Result<Checkpoint, (Option<CheckpointKey>, String)> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let key = match (text(&object.thread_id), text(&object.checkpoint_id)) {
        (Some(thread_id), Some(checkpoint_id)) => CheckpointKey {
            thread_id,
            checkpoint_ns: text(&object.checkpoint_ns).unwrap_or_default(),
            checkpoint_id,
        },
        _ => return Err((None, "the object has no thread_id and checkpoint_id".into())),
    };
    if object.raw.is_null() {
        return Err((
            Some(key),
            "the object has no raw values (`raw`), so it cannot be restored exactly".into(),
        ));
    }
    Checkpoint::from_raw_json(
        key.clone(),
        text(&object.parent_checkpoint_id),
        &object.raw,
        origin,
    )
    .map_err(|e| (Some(key), format!("raw values: {e}")))
}

#[async_trait]
impl Source for JsonSource {
    fn describe(&self) -> String {
        format!("JSON export {}", self.dir.display())
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        let mut batch = SourceBatch::default();
        let mut seen = 0;
        while seen < limits.max_records && batch.bytes < limits.max_bytes {
            let Some(object) = self.next_object()? else {
                break;
            };
            let origin = Origin {
                store: "json".into(),
                locator: self.locator(),
            };
            self.at.item += 1;
            seen += 1;
            match object
                .map_err(|e| (None, e))
                .and_then(|o| record_of(&o, origin.clone()))
            {
                Ok(record) => {
                    if skipping(&mut self.skip_through, &record.key) {
                        continue;
                    }
                    batch.bytes += record.raw_size();
                    batch.last_key = Some(record.key.clone());
                    batch.records.push(record);
                }
                Err((key, error)) => batch.failed.push(FailedRead { key, origin, error }),
            }
        }
        if seen == 0 {
            return Ok(None);
        }
        batch.position = Some(serde_json::to_value(self.at).expect("a position serializes"));
        Ok(Some(batch))
    }

    fn resume_after(&mut self, key: CheckpointKey) {
        self.skip_through = Some(key);
    }

    fn resume_from(&mut self, position: &Value) -> Result<(), StoreError> {
        match resume_point::<Position>(position)? {
            ResumePoint::At(at) => {
                self.at = at;
                self.open = None;
            }
            ResumePoint::AfterKey(key) => self.resume_after(key),
        }
        Ok(())
    }

    async fn count_by_thread(&mut self, _pushed: bool) -> Result<ThreadCounts, StoreError> {
        let mut counter = Self {
            dir: self.dir.clone(),
            files: self.files.clone(),
            array: self.array,
            at: Position::default(),
            open: None,
            skip_through: None,
        };
        let mut counts = ThreadCounts::default();
        while let Some(object) = counter.next_object()? {
            counter.at.item += 1;
            if let Some(thread) = object.ok().as_ref().and_then(|o| o.thread_id.as_str()) {
                *counts.per_thread.entry(thread.to_owned()).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl OpenSource for JsonSourceConfig {
    async fn open_source(&self, _filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        Ok(Box::new(JsonSource::open(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            store: "json".into(),
            locator: "export item 1".into(),
        }
    }

    /// An exported object is restored from its keys and `raw` alone; the view's
    /// fields, `origin` and `notices` are skipped whatever they hold.
    #[test]
    fn an_exported_object_is_restored_from_its_keys_and_raw_values_only() {
        let line = r#"{"thread_id":"t-1","checkpoint_ns":"inner","checkpoint_id":"c-2","parent_checkpoint_id":"c-1",
            "ts":"2026-11-23T23:33:58.367221+00:00",
            "checkpoint":{"v":4,"channel_values":{"messages":[{"type":"human","content":"hi"}]}},
            "metadata":{"step":2},"pending_writes":[{"task_id":"x","channel":"c","value":[1,{"a":null}]}],
            "raw":{"checkpoint":{"type":"json","data":"e30="},"metadata":{"type":"msgpack","data":"gA=="},
                   "channel_blobs":[{"channel":"messages","version":"00001","value":{"type":"json","data":"W10="}}],
                   "pending_writes":[]},
            "origin":{"store":"sqlite","locator":"checkpoints.db"},"notices":["a notice"]}"#;
        let object: ExportedObject = serde_json::from_str(line).unwrap();
        let record = record_of(&object, origin()).unwrap();
        assert_eq!(
            record.key,
            CheckpointKey {
                thread_id: "t-1".into(),
                checkpoint_ns: "inner".into(),
                checkpoint_id: "c-2".into(),
            }
        );
        assert_eq!(record.parent_checkpoint_id.as_deref(), Some("c-1"));
        assert_eq!(
            (
                record.checkpoint.type_tag.as_str(),
                record.checkpoint.bytes.as_slice()
            ),
            ("json", b"{}".as_slice())
        );
        assert_eq!(record.metadata.bytes, [0x80]);
        assert_eq!(record.channel_blobs.len(), 1);
        assert_eq!(record.channel_blobs[0].value.bytes, b"[]");
        assert!(record.view.is_none());
        assert_eq!(record.origin, origin());
    }

    /// An array file with an item that is no object still gives its other items; the
    /// odd one goes to the dead-letter file under its place.
    #[tokio::test]
    async fn an_array_file_reads_past_an_item_that_is_no_object() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = serde_json::json!({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "encoding": "json-array",
            "files": [{ "file": "checkpoints.json" }],
        });
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        let good = r#"{"thread_id":"t","checkpoint_ns":"","checkpoint_id":"c","checkpoint":{"v":4},
            "raw":{"checkpoint":{"type":"json","data":"e30="},"metadata":{"type":"json","data":"e30="}}}"#;
        std::fs::write(dir.path().join("checkpoints.json"), format!("[42, {good}]")).unwrap();
        let config = JsonSourceConfig {
            path: dir.path().to_owned(),
        };
        let mut source = JsonSource::open(&config).unwrap();
        let limits = BatchLimits {
            max_records: 10,
            max_bytes: usize::MAX,
        };
        let batch = source.next_batch(limits).await.unwrap().unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].key.checkpoint_id, "c");
        assert_eq!(batch.failed.len(), 1);
        assert!(batch.failed[0].origin.locator.ends_with("item 1"));
        assert!(batch.failed[0].error.contains("no thread_id"));
    }

    /// A key of another type than text, or an item that is no object, reads as missing
    /// (as indexing a tree did); a field given twice keeps its last value; an object
    /// without `raw` is refused under its key.
    #[test]
    fn odd_keys_read_as_missing_and_an_object_without_raw_is_named() {
        for item in [
            r#"{"thread_id":7,"checkpoint_id":"c","raw":{}}"#,
            "42",
            "null",
            r#""text""#,
            "[1, {\"thread_id\": \"t\"}]",
        ] {
            let odd: ExportedObject = serde_json::from_str(item).unwrap();
            let (key, error) = record_of(&odd, origin()).unwrap_err();
            assert!(key.is_none(), "{item}");
            assert!(error.contains("no thread_id"), "{item}: {error}");
        }

        let twice: ExportedObject = serde_json::from_str(
            r#"{"thread_id":"first","thread_id":"t","checkpoint_id":"c","raw":{"checkpoint":{"type":"json","data":"e30="},"metadata":{"type":"json","data":"e30="}}}"#,
        )
        .unwrap();
        assert_eq!(record_of(&twice, origin()).unwrap().key.thread_id, "t");

        let bare: ExportedObject =
            serde_json::from_str(r#"{"thread_id":"t","checkpoint_id":"c","checkpoint":{}}"#)
                .unwrap();
        let (key, error) = record_of(&bare, origin()).unwrap_err();
        assert_eq!(key.map(|k| k.checkpoint_id).as_deref(), Some("c"));
        assert!(error.contains("no raw values"), "{error}");
    }
}
