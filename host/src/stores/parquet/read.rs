//! Parquet exports as a source: a backup restores. Records are rebuilt from the raw
//! columns (`checkpoint_type`/`checkpoint_raw`, `metadata_*`, `channel_blobs`,
//! `pending_writes`), never from the view columns; keys that a partitioned export keeps
//! only in its directory names (`thread_id=…/`) come from there.
//!
//! Files are read in name order, record batch by record batch. The position is
//! (file, row), so a resumed run continues exactly after the last confirmed batch.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{
    Array as _, BinaryArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use async_trait::async_trait;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};

use super::HIVE_DEFAULT_PARTITION;
use super::config::ParquetSourceConfig;
use super::write::VIEW_COLUMNS;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::{ChannelBlob, Checkpoint, CheckpointKey, Origin, PendingWrite, TypedValue};
use crate::sources::OpenSource;
use crate::sources::{
    BatchLimits, ResumePoint, Source, SourceBatch, ThreadCounts, resume_point, skipping,
};

/// The finished Parquet files of an export (a file, or every `*.parquet` under a
/// dataset directory), in name order.
fn finished_files(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    if root.is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| StoreError::fatal(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let path = entry
                .map_err(|e| StoreError::fatal(format!("{}: {e}", dir.display())))?
                .path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Undoes [`safe_file_name`] for a partition value.
fn unescape(value: &str) -> String {
    if value == HIVE_DEFAULT_PARTITION {
        return String::new();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct ParquetSource {
    root: PathBuf,
    files: Vec<PathBuf>,
    at: Position,
    reader: Option<ParquetRecordBatchReader>,
    /// Rows of the current record batch not handed out yet.
    pending: VecDeque<Checkpoint>,
    skip_through: Option<CheckpointKey>,
}

/// The next row to read.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Position {
    file: usize,
    row: usize,
}

impl ParquetSource {
    pub fn open(config: &ParquetSourceConfig) -> Result<Self, StoreError> {
        let files = finished_files(&config.path)?;
        if files.is_empty() {
            return Err(StoreError::fatal(format!(
                "{}: no finished Parquet file (an export's files end in .parquet once complete)",
                config.path.display()
            )));
        }
        Ok(Self {
            root: config.path.clone(),
            files,
            at: Position::default(),
            reader: None,
            pending: VecDeque::new(),
            skip_through: None,
        })
    }

    /// Refills `pending` from the next record batch; false at the end of the export.
    fn refill(&mut self) -> Result<bool, StoreError> {
        while self.pending.is_empty() {
            let Some(path) = self.files.get(self.at.file).cloned() else {
                return Ok(false);
            };
            let err =
                |e: &dyn std::fmt::Display| StoreError::fatal(format!("{}: {e}", path.display()));
            if self.reader.is_none() {
                let file = File::open(&path).map_err(|e| err(&e))?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| {
                        let columns = raw_columns(&b);
                        b.with_projection(columns)
                            .with_batch_size(READ_BATCH_ROWS)
                            .with_offset(self.at.row)
                            .build()
                    })
                    .map_err(|e| err(&e))?;
                self.reader = Some(reader);
            }
            match self.reader.as_mut().expect("opened above").next() {
                Some(batch) => {
                    let batch = batch.map_err(|e| err(&e))?;
                    let partitions = partitions(&self.root, &path);
                    self.pending = records_of(&batch, &partitions, &path)?.into();
                }
                None => {
                    self.reader = None;
                    self.at = Position {
                        file: self.at.file + 1,
                        row: 0,
                    };
                }
            }
        }
        Ok(true)
    }
}

/// Rows decoded from a file at once. The crate's default, 1 024, is twice a source
/// batch (500 records), and its Arrow arrays are held while their records are copied
/// out: reading 128 at a time restored 100 000 checkpoints to JSON in 1.88–1.92 s at
/// 85–86 MiB peak RSS instead of 2.17–2.29 s at 113–117 MiB (32 and 64 measured the
/// same as 128).
const READ_BATCH_ROWS: usize = 128;

/// The columns a record is rebuilt from: all but the view's (made from these, and the
/// largest columns of a decoded export) and `origin` (a record read back names this
/// file). Reading only these restored 100 000 checkpoints to JSON in 2.37–2.57 s at
/// 109–115 MiB peak RSS instead of 3.13–3.20 s at 126–129 MiB (docs/performance.md).
fn raw_columns(builder: &ParquetRecordBatchReaderBuilder<File>) -> ProjectionMask {
    let schema = builder.parquet_schema();
    let roots = schema.root_schema().get_fields().iter().enumerate();
    let raw = roots
        .filter(|(_, f)| f.name() != "origin" && !VIEW_COLUMNS.contains(&f.name()))
        .map(|(i, _)| i);
    ProjectionMask::roots(schema, raw)
}

/// Partition values from the directories between the root and the file.
fn partitions(root: &Path, path: &Path) -> HashMap<String, String> {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .filter_map(|c| {
            c.as_os_str()
                .to_str()?
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), unescape(v)))
        })
        .collect()
}

/// The records of one record batch, from its raw columns.
fn records_of(
    batch: &RecordBatch,
    partitions: &HashMap<String, String>,
    path: &Path,
) -> Result<Vec<Checkpoint>, StoreError> {
    let err = |e: &dyn std::fmt::Display| StoreError::fatal(format!("{}: {e}", path.display()));
    let mut out = Vec::with_capacity(batch.num_rows());
    let text = |name: &str| -> Option<&StringArray> {
        batch
            .column_by_name(name)?
            .as_any()
            .downcast_ref::<StringArray>()
    };
    let binary = |name: &str| -> Result<&BinaryArray, StoreError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or_else(|| err(&format!("no binary column {name}")))
    };
    let required = |name: &str| text(name).ok_or_else(|| err(&format!("no column {name}")));
    let key_column = |name: &str, i: usize| -> Result<String, StoreError> {
        match text(name) {
            Some(c) => Ok(c.value(i).to_owned()),
            None => partitions
                .get(name)
                .cloned()
                .ok_or_else(|| err(&format!("no column or partition {name}"))),
        }
    };
    let lists = |name: &str| -> Result<&ListArray, StoreError> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<ListArray>())
            .ok_or_else(|| err(&format!("no list column {name}")))
    };
    let (parents, cp_types, md_types) = (
        required("parent_checkpoint_id")?,
        required("checkpoint_type")?,
        required("metadata_type")?,
    );
    let (cp_raw, md_raw) = (binary("checkpoint_raw")?, binary("metadata_raw")?);
    let (blob_lists, write_lists) = (lists("channel_blobs")?, lists("pending_writes")?);
    for i in 0..batch.num_rows() {
        let blobs = blob_lists.value(i);
        let blobs = blobs
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| err(&"channel_blobs is not a list of structs"))?;
        let writes = write_lists.value(i);
        let writes = writes
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| err(&"pending_writes is not a list of structs"))?;
        let field_text = |s: &StructArray, name: &str, j: usize| -> String {
            s.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .map(|c| c.value(j).to_owned())
                .unwrap_or_default()
        };
        let field_bytes = |s: &StructArray, j: usize| -> Vec<u8> {
            s.column_by_name("data")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .map(|c| c.value(j).to_vec())
                .unwrap_or_default()
        };
        let idx = writes
            .column_by_name("idx")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
        out.push(Checkpoint {
            key: CheckpointKey {
                thread_id: key_column("thread_id", i)?,
                checkpoint_ns: key_column("checkpoint_ns", i)?,
                checkpoint_id: key_column("checkpoint_id", i)?,
            },
            parent_checkpoint_id: (!parents.is_null(i)).then(|| parents.value(i).to_owned()),
            checkpoint: TypedValue::new(cp_types.value(i), cp_raw.value(i)),
            channel_blobs: (0..blobs.len())
                .map(|j| ChannelBlob {
                    channel: field_text(blobs, "channel", j),
                    version: field_text(blobs, "version", j),
                    value: TypedValue::new(field_text(blobs, "type", j), field_bytes(blobs, j)),
                })
                .collect(),
            metadata: TypedValue::new(md_types.value(i), md_raw.value(i)),
            pending_writes: (0..writes.len())
                .map(|j| PendingWrite {
                    task_id: field_text(writes, "task_id", j),
                    task_path: field_text(writes, "task_path", j),
                    idx: idx.as_ref().map_or(0, |c| c.value(j)),
                    channel: field_text(writes, "channel", j),
                    value: TypedValue::new(field_text(writes, "type", j), field_bytes(writes, j)),
                })
                .collect(),
            origin: Origin {
                store: "parquet".into(),
                locator: path.display().to_string(),
            },
            view: None,
        });
    }
    Ok(out)
}

#[async_trait]
impl Source for ParquetSource {
    fn describe(&self) -> String {
        format!("Parquet export {}", self.root.display())
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        let mut batch = SourceBatch::default();
        let mut seen = 0;
        while seen < limits.max_records && batch.bytes < limits.max_bytes && self.refill()? {
            let record = self.pending.pop_front().expect("refilled");
            self.at.row += 1;
            seen += 1;
            if skipping(&mut self.skip_through, &record.key) {
                continue;
            }
            batch.bytes += record.raw_size();
            batch.last_key = Some(record.key.clone());
            batch.records.push(record);
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

    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError> {
        match resume_point::<Position>(position)? {
            ResumePoint::At(at) => {
                self.at = at;
                self.reader = None;
                self.pending.clear();
            }
            ResumePoint::AfterKey(key) => self.resume_after(key),
        }
        Ok(())
    }

    async fn count_by_thread(&mut self, _pushed: bool) -> Result<ThreadCounts, StoreError> {
        let mut counter = Self {
            root: self.root.clone(),
            files: self.files.clone(),
            at: Position::default(),
            reader: None,
            pending: VecDeque::new(),
            skip_through: None,
        };
        let mut counts = ThreadCounts::default();
        while counter.refill()? {
            for record in counter.pending.drain(..) {
                *counts.per_thread.entry(record.key.thread_id).or_default() += 1;
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl OpenSource for ParquetSourceConfig {
    async fn open_source(&self, _filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        Ok(Box::new(ParquetSource::open(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::parquet::config::ParquetCompression;
    use crate::stores::parquet::write::{to_record_batch, writer_properties};
    use parquet::arrow::ArrowWriter;

    /// Decoded checkpoints, each with a blob and a pending write, so every column of
    /// an export (view columns included) has values.
    fn decoded_checkpoints(count: usize) -> Vec<Checkpoint> {
        (0..count)
            .map(|n| {
                let document = format!(
                    r#"{{"v":4,"id":"{n:04}","ts":"2026-11-23T23:33:58.367221+00:00","channel_values":{{"n":{n}}},"channel_versions":{{}},"versions_seen":{{}}}}"#
                );
                let blob = ChannelBlob {
                    channel: "messages".into(),
                    version: format!("{n:032}"),
                    value: TypedValue::new("json", format!("[{n}]")),
                };
                let mut record = Checkpoint::for_test(TypedValue::new("json", document), vec![blob]);
                record.key.checkpoint_id = format!("{n:04}");
                record.parent_checkpoint_id = n.checked_sub(1).map(|p| format!("{p:04}"));
                record.pending_writes = vec![PendingWrite {
                    task_id: format!("task-{n}"),
                    task_path: "~__pregel_pull".into(),
                    idx: i64::try_from(n).unwrap(),
                    channel: "next".into(),
                    value: TypedValue::new("json", format!(r#""step {n}""#)),
                }];
                crate::codec::decode_record(&mut record).unwrap();
                record
            })
            .collect()
    }

    fn export(records: &[Checkpoint], path: &Path) {
        let refs: Vec<&Checkpoint> = records.iter().collect();
        let batch = to_record_batch(&refs, true).unwrap();
        let props = writer_properties(ParquetCompression::Zstd, Vec::new(), &[]);
        let mut writer =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// Everything of a record but its view, as text to compare.
    fn raw_parts(records: &[Checkpoint]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                assert!(r.view.is_none(), "{} came back with a view", r.key);
                format!(
                    "{:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                    r.key,
                    r.parent_checkpoint_id,
                    r.checkpoint,
                    r.metadata,
                    r.channel_blobs,
                    r.pending_writes,
                    r.origin
                )
            })
            .collect()
    }

    fn read_all(source: &mut ParquetSource) -> Vec<String> {
        let mut out = Vec::new();
        while source.refill().unwrap() {
            out.extend(source.pending.drain(..));
        }
        raw_parts(&out)
    }

    /// A decoded export is read back from its raw columns only, over several of the
    /// reader's record batches, and a resumed read starts at the row it was told.
    #[test]
    fn a_decoded_export_reads_back_from_its_raw_columns_across_record_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.parquet");
        let records = decoded_checkpoints(READ_BATCH_ROWS * 2 + 44);
        export(&records, &path);
        let expected = raw_parts(
            &records
                .iter()
                .map(|r| Checkpoint {
                    view: None,
                    origin: Origin {
                        store: "parquet".into(),
                        locator: path.display().to_string(),
                    },
                    ..r.clone()
                })
                .collect::<Vec<_>>(),
        );

        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let columns = raw_columns(&builder);
        let mut reader = builder.with_projection(columns).build().unwrap();
        let read = reader.next().unwrap().unwrap();
        let names: Vec<&str> = read
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "thread_id",
                "checkpoint_ns",
                "checkpoint_id",
                "parent_checkpoint_id",
                "checkpoint_type",
                "checkpoint_raw",
                "metadata_type",
                "metadata_raw",
                "channel_blobs",
                "pending_writes",
            ]
        );

        let config = ParquetSourceConfig { path: path.clone() };
        let mut source = ParquetSource::open(&config).unwrap();
        assert_eq!(read_all(&mut source), expected);

        let mut resumed = ParquetSource::open(&config).unwrap();
        resumed
            .resume_from(&serde_json::json!({ "file": 0, "row": READ_BATCH_ROWS + 2 }))
            .unwrap();
        assert_eq!(read_all(&mut resumed), expected[READ_BATCH_ROWS + 2..]);
    }
}
