//! Parquet export: typed columns, row groups cut by size, Hive-style partitions.
//! Files are written as `*.partial` and renamed when complete, so a file with the
//! final name is always whole. The schema is documented in docs/parquet-export.md.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Int64Array, ListArray, RecordBatch, StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::HIVE_DEFAULT_PARTITION;
use super::config::ParquetSourceConfig;
use super::config::{ParquetCompression, ParquetSinkConfig};
use crate::error::OpenError;
use crate::error::{ConfigError, StoreError};
use crate::record::{Checkpoint, RecordView};
use crate::retry::RetryPolicy;
use crate::run::{RunInfo, RunStats};
use crate::sinks::OpenSink;
use crate::sinks::{Rejected, Sink, check_dir_writable, safe_file_name};
use crate::sources::Source;

/// The open row group's pages (compressed) are held in memory until it is closed: 8 MiB
/// instead of 32 took 30 MiB off a snappy export's peak RSS at the same CPU, 4 instead
/// of 8 another 5 (snappy) to 13 MiB (zstd), 2 instead of 4 another 5–9 MiB (both) at
/// the same CPU and 0.5–2 % more file, and readers get more groups to share among
/// cores (docs/decisions.md).
pub const DEFAULT_ROW_GROUP_BYTES: usize = 2 * 1024 * 1024;
/// Rows turned into Arrow arrays at once (see `write_batch`).
const ARROW_CHUNK: usize = 256;
/// Partition writers kept open at once; the least recently used is closed beyond it
/// (its partition continues in a new part file if more rows come).
const MAX_OPEN_PARTITIONS: usize = 16;
/// Partition keys that are not columns of the file.
const DERIVED_PARTITIONS: [&str; 1] = ["date"];
/// Columns that may be partition keys.
const PARTITION_COLUMNS: [&str; 2] = ["thread_id", "checkpoint_ns"];
/// Columns made from the view, left out in raw mode (`view: false`) and never read
/// back (a record is rebuilt from its raw columns).
pub(super) const VIEW_COLUMNS: [&str; 5] = [
    "ts",
    "ts_raw",
    "checkpoint_json",
    "metadata_json",
    "pending_writes_json",
];

fn blob_fields() -> Fields {
    Fields::from(vec![
        Field::new("channel", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("data", DataType::Binary, false),
    ])
}

fn write_fields() -> Fields {
    Fields::from(vec![
        Field::new("task_id", DataType::Utf8, false),
        Field::new("task_path", DataType::Utf8, false),
        Field::new("idx", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("data", DataType::Binary, false),
    ])
}

/// The full schema of an export file (before dropping partition columns).
pub fn schema() -> SchemaRef {
    let list_of = |fields: Fields| {
        DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(fields),
            false,
        )))
    };
    Arc::new(Schema::new(vec![
        Field::new("thread_id", DataType::Utf8, false),
        Field::new("checkpoint_ns", DataType::Utf8, false),
        Field::new("checkpoint_id", DataType::Utf8, false),
        Field::new("parent_checkpoint_id", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("ts_raw", DataType::Utf8, true),
        Field::new("checkpoint_json", DataType::Utf8, false),
        Field::new("metadata_json", DataType::Utf8, false),
        Field::new("pending_writes_json", DataType::Utf8, false),
        Field::new("checkpoint_type", DataType::Utf8, false),
        Field::new("checkpoint_raw", DataType::Binary, false),
        Field::new("metadata_type", DataType::Utf8, false),
        Field::new("metadata_raw", DataType::Binary, false),
        Field::new("channel_blobs", list_of(blob_fields()), false),
        Field::new("pending_writes", list_of(write_fields()), false),
        Field::new("origin", DataType::Utf8, false),
    ]))
}

/// A string column with no nulls. See [`optional_strings`].
pub(super) fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ArrayRef {
    optional_strings(values.map(Some))
}

/// A string column, its buffer allocated once: the values are measured before they
/// are copied (the iterator is walked twice). Arrow's `from_iter` grows the buffer
/// by doubling, and those copies were 3 % of a decoded Parquet export's instructions
/// (callgrind, 30 000 checkpoints).
pub(super) fn optional_strings<'a>(
    values: impl Iterator<Item = Option<&'a str>> + Clone,
) -> ArrayRef {
    let (count, bytes) = measure(values.clone().map(|v| v.map_or(0, str::len)));
    let mut column = StringBuilder::with_capacity(count, bytes);
    values.for_each(|v| column.append_option(v));
    Arc::new(column.finish())
}

/// A binary column with no nulls, allocated once (as [`optional_strings`]).
fn binaries<'a>(values: impl Iterator<Item = &'a [u8]> + Clone) -> ArrayRef {
    let (count, bytes) = measure(values.clone().map(<[u8]>::len));
    let mut column = BinaryBuilder::with_capacity(count, bytes);
    values.for_each(|v| column.append_value(v));
    Arc::new(column.finish())
}

/// How many values, and their bytes together.
fn measure(lengths: impl Iterator<Item = usize>) -> (usize, usize) {
    lengths.fold((0, 0), |(count, bytes), len| (count + 1, bytes + len))
}

fn list_array(fields: Fields, lengths: Vec<usize>, columns: Vec<ArrayRef>) -> ArrayRef {
    let item = Arc::new(Field::new("item", DataType::Struct(fields.clone()), false));
    let values = StructArray::new(fields, columns, None);
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    ))
}

/// The rows of `records` as one batch of [`schema`]; with `with_view`, every record
/// must be decoded, else the view columns are left empty (and projected away).
pub fn to_record_batch<'a>(
    records: &[&'a Checkpoint],
    with_view: bool,
) -> Result<RecordBatch, String> {
    let views: Vec<Option<&RecordView>> = records
        .iter()
        .map(|r| match (&r.view, with_view) {
            (Some(v), true) => Ok(Some(v)),
            (None, true) => Err(format!("{} was not decoded", r.key)),
            (_, false) => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    // The views' JSON text: already made where the records were decoded (the usual
    // case, see `reads_view_text`), else rendered here on every core. Text already
    // made is only borrowed and joined, on this thread: a job on the global pool
    // waited there behind the next batch's decoding, and one on the sinks' pool
    // ([`crate::sinks::on_encode_pool`]) cost 5–10 % of the run and more memory
    // (measured; docs/decisions.md).
    type Texts<'a> = (Cow<'a, str>, Cow<'a, str>, String);
    let texts_of = |v: &Option<&'a RecordView>| -> Texts<'a> {
        match v {
            Some(v) => (
                v.checkpoint_text(),
                v.metadata_text(),
                v.pending_writes_text(),
            ),
            None => Default::default(),
        }
    };
    let texts: Vec<Texts<'_>> = if views.iter().flatten().all(|v| v.text.is_some()) {
        views.iter().map(texts_of).collect()
    } else {
        use rayon::prelude::*;
        crate::sinks::on_encode_pool(|| views.par_iter().map(texts_of).collect())
    };

    let blobs: Vec<_> = records.iter().flat_map(|r| &r.channel_blobs).collect();
    let blob_list = list_array(
        blob_fields(),
        records.iter().map(|r| r.channel_blobs.len()).collect(),
        vec![
            strings(blobs.iter().map(|b| b.channel.as_str())),
            strings(blobs.iter().map(|b| b.version.as_str())),
            strings(blobs.iter().map(|b| b.value.type_tag.as_str())),
            binaries(blobs.iter().map(|b| b.value.bytes.as_slice())),
        ],
    );
    let writes: Vec<_> = records.iter().flat_map(|r| &r.pending_writes).collect();
    let write_list = list_array(
        write_fields(),
        records.iter().map(|r| r.pending_writes.len()).collect(),
        vec![
            strings(writes.iter().map(|w| w.task_id.as_str())),
            strings(writes.iter().map(|w| w.task_path.as_str())),
            Arc::new(Int64Array::from_iter_values(writes.iter().map(|w| w.idx))),
            strings(writes.iter().map(|w| w.channel.as_str())),
            strings(writes.iter().map(|w| w.value.type_tag.as_str())),
            binaries(writes.iter().map(|w| w.value.bytes.as_slice())),
        ],
    );
    let columns: Vec<ArrayRef> = vec![
        strings(records.iter().map(|r| r.key.thread_id.as_str())),
        strings(records.iter().map(|r| r.key.checkpoint_ns.as_str())),
        strings(records.iter().map(|r| r.key.checkpoint_id.as_str())),
        optional_strings(records.iter().map(|r| r.parent_checkpoint_id.as_deref())),
        Arc::new(
            TimestampMicrosecondArray::from_iter(
                views
                    .iter()
                    .map(|v| v.and_then(|v| v.ts_parsed).map(|t| t.timestamp_micros())),
            )
            .with_timezone("UTC"),
        ),
        optional_strings(views.iter().map(|v| v.and_then(|v| v.ts.as_deref()))),
        strings(texts.iter().map(|t| t.0.as_ref())),
        strings(texts.iter().map(|t| t.1.as_ref())),
        strings(texts.iter().map(|t| t.2.as_str())),
        strings(records.iter().map(|r| r.checkpoint.type_tag.as_str())),
        binaries(records.iter().map(|r| r.checkpoint.bytes.as_slice())),
        strings(records.iter().map(|r| r.metadata.type_tag.as_str())),
        binaries(records.iter().map(|r| r.metadata.bytes.as_slice())),
        blob_list,
        write_list,
        strings(records.iter().map(|r| r.origin.locator.as_str())),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| e.to_string())
}

/// A file error naming the file.
pub(super) fn io_error(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::fatal(format!("{what} {}: {e}", path.display()))
}

/// The checkpoint columns whose values never repeat (ids, documents, channel blobs,
/// origins), as column paths (a list's values sit under `list.item`). Metadata,
/// pending writes and times often repeat, and their dictionaries pay: measured on the
/// bench fixture, pending writes are 300× smaller with one.
const UNIQUE_COLUMNS: &[&[&str]] = &[
    &["checkpoint_id"],
    &["parent_checkpoint_id"],
    &["checkpoint_json"],
    &["checkpoint_raw"],
    &["channel_blobs", "list", "item", "data"],
    &["origin"],
];

/// The writer settings of every file we write: the compression asked for, row groups
/// cut by bytes by the writer's caller (not by a row count), our metadata.
///
/// Columns in `unique` are written without a dictionary: a dictionary of values that
/// never repeat only costs (the writer hashes and keeps every value until the
/// dictionary is full, then writes them plainly anyway: 12 MB of dictionary pages
/// held for the documents of a row group).
pub(super) fn writer_properties(
    compression: ParquetCompression,
    metadata: Vec<KeyValue>,
    unique: &[&[&str]],
) -> WriterProperties {
    let compression = match compression {
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
        ParquetCompression::Lz4 => Compression::LZ4_RAW,
        ParquetCompression::None => Compression::UNCOMPRESSED,
    };
    let builder = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(None)
        .set_key_value_metadata(Some(metadata));
    unique
        .iter()
        .fold(builder, |builder, path| {
            let path = ColumnPath::new(path.iter().map(|part| (*part).to_owned()).collect());
            builder.set_column_dictionary_enabled(path, false)
        })
        .build()
}

struct PartWriter {
    writer: ArrowWriter<File>,
    partial: PathBuf,
    path: PathBuf,
}

pub struct ParquetSink {
    config: ParquetSinkConfig,
    run: RunInfo,
    props: WriterProperties,
    row_group_bytes: usize,
    /// Indices of the columns written (partition columns are left out, as Hive does).
    projection: Vec<usize>,
    /// Open writers by partition directory ("" when not partitioned), LRU order.
    open: Vec<(String, PartWriter)>,
    /// Next part number per partition directory.
    next_part: HashMap<String, usize>,
    files_written: Vec<PathBuf>,
}

impl ParquetSink {
    pub fn new(config: ParquetSinkConfig, run: RunInfo) -> Result<Self, ConfigError> {
        for column in &config.partition_by {
            if !PARTITION_COLUMNS.contains(&column.as_str())
                && !DERIVED_PARTITIONS.contains(&column.as_str())
            {
                return Err(ConfigError::Invalid(format!(
                    "destination_config.partition_by: unknown column {column:?} (use {})",
                    [PARTITION_COLUMNS.as_slice(), DERIVED_PARTITIONS.as_slice()]
                        .concat()
                        .join(", ")
                )));
            }
        }
        let props = writer_properties(
            config.compression,
            vec![
                KeyValue::new("ckpt_migrate.version".into(), run.tool_version.clone()),
                KeyValue::new("ckpt_migrate.run_id".into(), run.run_id.clone()),
                KeyValue::new("ckpt_migrate.source".into(), run.source_kind.clone()),
                KeyValue::new("ckpt_migrate.source_description".into(), run.source.clone()),
                KeyValue::new(
                    "ckpt_migrate.started_at".into(),
                    run.started_at.to_rfc3339(),
                ),
            ],
            UNIQUE_COLUMNS,
        );
        if !config.view && config.partition_by.iter().any(|c| c == "date") {
            return Err(ConfigError::Invalid(
                "destination_config.partition_by: `date` needs each checkpoint's time, which raw mode (view: false) does not decode".into(),
            ));
        }
        let full = schema();
        let projection = (0..full.fields().len())
            .filter(|&i| {
                let name = full.field(i).name();
                !config.partition_by.contains(name)
                    && (config.view || !VIEW_COLUMNS.contains(&name.as_str()))
            })
            .collect();
        Ok(Self {
            row_group_bytes: config
                .row_group_bytes
                .unwrap_or(DEFAULT_ROW_GROUP_BYTES)
                .max(1),
            config,
            run,
            props,
            projection,
            open: Vec::new(),
            next_part: HashMap::new(),
            files_written: Vec::new(),
        })
    }

    fn partitioned(&self) -> bool {
        !self.config.partition_by.is_empty()
    }

    /// Whether `output_path` is a directory of files (partitioned, or one file per
    /// shard) rather than one file.
    fn is_directory(&self) -> bool {
        self.partitioned() || self.run.shard.is_some()
    }

    /// `col=value/col=value` for a record; "" when not partitioned.
    fn partition_dir(&self, record: &Checkpoint) -> String {
        self.config
            .partition_by
            .iter()
            .map(|column| {
                let value = match column.as_str() {
                    "thread_id" => record.key.thread_id.clone(),
                    "checkpoint_ns" => record.key.checkpoint_ns.clone(),
                    _ => record
                        .view
                        .as_ref()
                        .and_then(|v| v.ts_parsed)
                        .map(|t| t.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                };
                let value = if value.is_empty() {
                    HIVE_DEFAULT_PARTITION.to_owned()
                } else {
                    safe_file_name(&value)
                };
                format!("{column}={value}")
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn writer_for(&mut self, dir: &str) -> Result<&mut PartWriter, StoreError> {
        if let Some(pos) = self.open.iter().position(|(d, _)| d == dir) {
            let entry = self.open.remove(pos);
            self.open.push(entry);
        } else {
            if self.open.len() >= MAX_OPEN_PARTITIONS {
                let (_, oldest) = self.open.remove(0);
                self.close_part(oldest)?;
            }
            // The shards of a run write side by side: their files are named by shard,
            // and an unpartitioned output becomes a directory of one file per shard.
            let shard = self.run.shard.map(|s| s.part_name());
            let path = if self.partitioned() {
                let part = self.next_part.entry(dir.to_owned()).or_insert(0);
                let name = match &shard {
                    Some(shard) => format!("{shard}-{:05}.parquet", *part),
                    None => format!("part-{:05}.parquet", *part),
                };
                *part += 1;
                self.config.output_path.join(dir).join(name)
            } else if let Some(shard) = &shard {
                self.config.output_path.join(format!("{shard}.parquet"))
            } else {
                self.config.output_path.clone()
            };
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io_error(parent, "cannot create", e))?;
            }
            let partial = crate::sinks::partial_path(&path);
            let file =
                File::create(&partial).map_err(|e| io_error(&partial, "cannot create", e))?;
            let schema = Arc::new(
                schema()
                    .project(&self.projection)
                    .map_err(|e| StoreError::fatal(e.to_string()))?,
            );
            let writer = ArrowWriter::try_new(file, schema, Some(self.props.clone()))
                .map_err(|e| io_error(&partial, "cannot start Parquet file", e))?;
            self.open.push((
                dir.to_owned(),
                PartWriter {
                    writer,
                    partial,
                    path,
                },
            ));
        }
        Ok(&mut self.open.last_mut().expect("just pushed").1)
    }

    fn close_part(&mut self, part: PartWriter) -> Result<(), StoreError> {
        part.writer
            .close()
            .map_err(|e| io_error(&part.partial, "cannot finish", e))?;
        std::fs::rename(&part.partial, &part.path)
            .map_err(|e| io_error(&part.path, "cannot rename into place", e))?;
        self.files_written.push(part.path);
        Ok(())
    }
}

#[async_trait]
impl Sink for ParquetSink {
    fn needs_view(&self) -> bool {
        self.config.view
    }

    fn reads_view_text(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let place = if self.partitioned() {
            format!(
                "Parquet dataset {} partitioned by {}",
                self.config.output_path.display(),
                self.config.partition_by.join(", ")
            )
        } else if let Some(shard) = &self.run.shard {
            format!(
                "Parquet dataset {} ({}.parquet)",
                self.config.output_path.display(),
                shard.part_name()
            )
        } else {
            format!("Parquet file {}", self.config.output_path.display())
        };
        format!("{place}{}", crate::sinks::raw_mode_note(self.config.view))
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        if self.is_directory() {
            // Hive readers skip names starting with `_`.
            self.config.output_path.join("_dead_letter.jsonl")
        } else {
            crate::sinks::with_suffix(&self.config.output_path, ".dead-letter.jsonl")
        }
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        if self.is_directory() {
            if self.config.output_path.is_file() {
                return Err(StoreError::fatal(format!(
                    "{} is a file; a partitioned or sharded export is a directory",
                    self.config.output_path.display()
                )));
            }
            check_dir_writable(&self.config.output_path)
        } else {
            if self.config.output_path.is_dir() {
                return Err(StoreError::fatal(format!(
                    "{} is a directory; give a file path (or set partition_by)",
                    self.config.output_path.display()
                )));
            }
            let parent = self
                .config
                .output_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            check_dir_writable(parent)
        }
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        let mut groups: Vec<(String, Vec<&Checkpoint>)> = Vec::new();
        for record in records {
            let dir = self.partition_dir(record);
            match groups.iter_mut().find(|(d, _)| *d == dir) {
                Some((_, rows)) => rows.push(record),
                None => groups.push((dir, vec![record])),
            }
        }
        let limit = self.row_group_bytes;
        for (dir, rows) in groups {
            // Arrow arrays are a copy of the rows: made a chunk at a time, so that the
            // copy takes a chunk's memory, not a batch's.
            for chunk in rows.chunks(ARROW_CHUNK) {
                let batch = to_record_batch(chunk, self.config.view)
                    .map_err(|e| StoreError::fatal(format!("building Parquet rows: {e}")))?;
                let batch = batch
                    .project(&self.projection)
                    .map_err(|e| StoreError::fatal(e.to_string()))?;
                let part = self.writer_for(&dir)?;
                part.writer
                    .write(&batch)
                    .map_err(|e| io_error(&part.partial, "cannot write", e))?;
                if part.writer.in_progress_size() >= limit {
                    part.writer
                        .flush()
                        .map_err(|e| io_error(&part.partial, "cannot write", e))?;
                }
            }
        }
        Ok(Vec::new())
    }

    async fn checkpoint(&mut self) -> Result<Option<serde_json::Value>, StoreError> {
        // A Parquet file is readable only once its footer is written: what is in the
        // open files cannot be continued by another process, so a resumed run writes
        // this output again from the start (files keep `.partial` names meanwhile).
        Ok(None)
    }

    async fn resume(&mut self, _state: serde_json::Value) -> Result<(), StoreError> {
        Ok(())
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        // Dropping the writers leaves the `.partial` files unfinished and unmistakable.
        self.open.clear();
        Ok(())
    }

    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        let written = ParquetSourceConfig {
            path: self.config.output_path.clone(),
        };
        Ok(Box::new(super::ParquetSource::open(&written)?))
    }

    async fn finish(&mut self, stats: &RunStats) -> Result<(), StoreError> {
        if self.open.is_empty() && self.files_written.is_empty() && !self.partitioned() {
            // No record at all: still leave a valid, empty file behind.
            self.writer_for("")?;
        }
        for (_, part) in std::mem::take(&mut self.open) {
            self.close_part(part)?;
        }
        tracing::debug!(
            "Parquet: {} file(s) written for run {}, {} records",
            self.files_written.len(),
            self.run.run_id,
            stats.written
        );
        Ok(())
    }
}

impl OpenSink for ParquetSinkConfig {
    fn open_sink(&self, run: &RunInfo, _retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        Ok(Box::new(ParquetSink::new(self.clone(), run.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TypedValue;
    use arrow_array::{Array, BinaryArray, StringArray};

    /// The rows are the same whether the views come as text (joined on the writer's
    /// thread) or as trees (rendered on the sinks' pool), and a mixed batch takes the
    /// pool for all of them.
    #[test]
    fn views_as_text_and_as_trees_give_the_same_rows() {
        let records: Vec<Checkpoint> = (0..40)
            .map(|n| {
                let document = format!(
                    r#"{{"v":4,"id":"{n:04}","ts":"2026-11-23T23:33:58.367221+00:00","channel_values":{{"n":{n},"s":"é\n"}},"channel_versions":{{}},"versions_seen":{{}}}}"#
                );
                let mut record = Checkpoint::for_test(TypedValue::new("json", document), Vec::new());
                record.metadata = TypedValue::new("msgpack", vec![0x81, 0xa1, b'k', n as u8]);
                record.key.checkpoint_id = format!("{n:04}");
                crate::codec::decode_record(&mut record).unwrap();
                record
            })
            .collect();
        let as_text: Vec<Checkpoint> = records
            .iter()
            .cloned()
            .map(|mut r| {
                r.view.as_mut().unwrap().to_text();
                r
            })
            .collect();
        let mixed: Vec<Checkpoint> = records
            .iter()
            .zip(&as_text)
            .enumerate()
            .map(|(i, (tree, text))| if i % 2 == 0 { tree } else { text }.clone())
            .collect();
        let rows = |records: &[Checkpoint]| {
            let refs: Vec<&Checkpoint> = records.iter().collect();
            to_record_batch(&refs, true).unwrap()
        };
        assert!(
            records
                .iter()
                .all(|r| r.view.as_ref().unwrap().text.is_none())
        );
        let expected = rows(&as_text);
        assert_eq!(rows(&records), expected);
        assert_eq!(rows(&mixed), expected);
        let checkpoints: &StringArray =
            super::super::items::column(&expected, "checkpoint_json").unwrap();
        assert!(
            checkpoints.value(7).contains(r#""n":7"#),
            "{}",
            checkpoints.value(7)
        );
    }

    #[test]
    fn columns_sized_before_they_are_filled_hold_the_values_and_nulls_given() {
        let column = optional_strings([Some("a"), None, Some(""), Some("日本")].into_iter());
        let column = column
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        assert_eq!(column.len(), 4);
        assert_eq!(column.null_count(), 1);
        assert!(column.is_null(1));
        assert_eq!(
            (column.value(0), column.value(2), column.value(3)),
            ("a", "", "日本")
        );
        assert_eq!(column.value_data().len(), "a日本".len());

        // The values' buffer is allocated once, for the bytes given (Arrow rounds up
        // to 64 bytes): grown by doubling it would end anywhere up to twice as big.
        let value = "v".repeat(100);
        let column = strings(std::iter::repeat_n(value.as_str(), 1000));
        let column = column
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        let bytes = 100 * 1000;
        assert_eq!(column.value_data().len(), bytes);
        assert!(
            column.values().capacity() < bytes + 64,
            "capacity {} for {bytes} bytes",
            column.values().capacity()
        );

        // A column with no null has no null buffer (the schema says "not null").
        let column = strings(["x", "yz"].into_iter());
        assert!(column.nulls().is_none());
        let column = binaries([&b"\x00\xff"[..], b""].into_iter());
        let column = column
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("binaries");
        assert!(column.nulls().is_none());
        assert_eq!(
            (column.value(0), column.value(1)),
            (&b"\x00\xff"[..], &b""[..])
        );
    }
}
