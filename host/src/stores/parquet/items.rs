//! LangGraph Store items as one Parquet file (`--state store --destination parquet`):
//! a row per item, for analytics and backups.
//!
//! Columns: `namespace` (list of labels), `namespace_path` (`a.b.c`), `key`,
//! `value_json` (the stored JSON text, exactly), `created_at`, `updated_at`,
//! `expires_at` (timestamps, µs, UTC), `ttl_minutes`, and the embeddings as
//! `vector_fields` (list of field names) with `vectors` (list of float32 lists). The
//! file is written as `*.partial` and renamed when complete; a Parquet file cannot be
//! continued, so a resumed run writes it again from the start.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::config::ParquetSinkConfig;
use super::write::{io_error, strings};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::items::{ItemKey, ItemSink, ItemVector, ItemWrite, StoreItem, namespace_text};
use crate::record::Origin;

pub struct ParquetItemSink {
    path: PathBuf,
    partial: PathBuf,
    props: parquet::file::properties::WriterProperties,
    row_group_bytes: usize,
    writer: Option<ArrowWriter<File>>,
}

fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// The items as one record batch (the schema is the arrays').
pub fn items_batch(items: &[StoreItem]) -> Result<RecordBatch, String> {
    let mut namespace = ListBuilder::new(StringBuilder::new());
    let mut fields = ListBuilder::new(StringBuilder::new());
    let mut vectors = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
    for item in items {
        for label in &item.key.namespace {
            namespace.values().append_value(label);
        }
        namespace.append(true);
        for v in &item.vectors {
            fields.values().append_value(&v.field_name);
            vectors.values().values().append_slice(&v.embedding);
            vectors.values().append(true);
        }
        fields.append(true);
        vectors.append(true);
    }
    let micros = |t: &DateTime<Utc>| Some(t.timestamp_micros());
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("namespace", Arc::new(namespace.finish())),
        (
            "namespace_path",
            Arc::new(StringArray::from_iter_values(
                items.iter().map(|i| namespace_text(&i.key.namespace)),
            )),
        ),
        ("key", strings(items.iter().map(|i| i.key.key.as_str()))),
        ("value_json", strings(items.iter().map(|i| i.value.get()))),
        (
            "created_at",
            times(items.iter().map(|i| micros(&i.created_at))),
        ),
        (
            "updated_at",
            times(items.iter().map(|i| micros(&i.updated_at))),
        ),
        (
            "expires_at",
            times(items.iter().map(|i| i.expires_at.as_ref().and_then(micros))),
        ),
        (
            "ttl_minutes",
            Arc::new(Float64Array::from_iter(items.iter().map(|i| i.ttl_minutes))),
        ),
        ("vector_fields", Arc::new(fields.finish())),
        ("vectors", Arc::new(vectors.finish())),
    ];
    RecordBatch::try_from_iter(columns).map_err(|e| e.to_string())
}

/// The column `name` of `batch` as the array type `T`.
pub(super) fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("no column {name} of the expected type"))
}

fn strings_at(list: &ListArray, row: usize) -> Result<Vec<String>, String> {
    let values = list.value(row);
    let strings = values
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("a list of strings was expected")?;
    Ok(strings
        .iter()
        .map(|s| s.unwrap_or_default().to_owned())
        .collect())
}

fn time_at(column: &TimestampMicrosecondArray, row: usize) -> Option<DateTime<Utc>> {
    (!column.is_null(row))
        .then(|| DateTime::from_timestamp_micros(column.value(row)))
        .flatten()
}

/// The items of a record batch written by [`items_batch`].
pub fn items_of(batch: &RecordBatch, path: &Path) -> Result<Vec<StoreItem>, String> {
    let namespace = column::<ListArray>(batch, "namespace")?;
    let key = column::<StringArray>(batch, "key")?;
    let value = column::<StringArray>(batch, "value_json")?;
    let created = column::<TimestampMicrosecondArray>(batch, "created_at")?;
    let updated = column::<TimestampMicrosecondArray>(batch, "updated_at")?;
    let expires = column::<TimestampMicrosecondArray>(batch, "expires_at")?;
    let ttl = column::<Float64Array>(batch, "ttl_minutes")?;
    let fields = column::<ListArray>(batch, "vector_fields")?;
    let vectors = column::<ListArray>(batch, "vectors")?;
    let mut items = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let at = format!("{} row {row}", path.display());
        let embeddings = vectors.value(row);
        let embeddings = embeddings
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or_else(|| format!("{at}: vectors is not a list of lists"))?;
        let vectors = strings_at(fields, row)?
            .into_iter()
            .enumerate()
            .map(|(i, field_name)| {
                let values = embeddings.value(i);
                let floats = values
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .ok_or_else(|| format!("{at}: an embedding is not float32"))?;
                Ok(ItemVector {
                    field_name,
                    embedding: floats.values().to_vec(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        items.push(StoreItem {
            key: ItemKey {
                namespace: strings_at(namespace, row)?,
                key: key.value(row).to_owned(),
            },
            value: StoreItem::value_from_text(value.value(row).to_owned())
                .map_err(|e| format!("{at}: {e}"))?,
            created_at: time_at(created, row).ok_or_else(|| format!("{at}: no created_at"))?,
            updated_at: time_at(updated, row).ok_or_else(|| format!("{at}: no updated_at"))?,
            expires_at: time_at(expires, row),
            ttl_minutes: (!ttl.is_null(row)).then(|| ttl.value(row)),
            vectors,
            origin: Origin {
                store: "parquet".into(),
                locator: at,
            },
        });
    }
    Ok(items)
}

impl ParquetItemSink {
    pub fn new(config: &ParquetSinkConfig) -> Result<Self, ConfigError> {
        if !config.partition_by.is_empty() {
            return Err(ConfigError::Invalid(
                "destination_config.partition_by: Store items are written to one file; \
                 partitions are for checkpoints"
                    .into(),
            ));
        }
        let props = super::write::writer_properties(
            config.compression,
            vec![
                KeyValue::new(
                    "ckpt_migrate.version".into(),
                    env!("CARGO_PKG_VERSION").to_owned(),
                ),
                KeyValue::new("ckpt_migrate.state".into(), "store".to_owned()),
            ],
            // Item values are small and may repeat: every column keeps its dictionary.
            &[],
        );
        Ok(Self {
            partial: crate::sinks::partial_path(&config.output_path),
            path: config.output_path.clone(),
            props,
            row_group_bytes: config
                .row_group_bytes
                .unwrap_or(super::DEFAULT_ROW_GROUP_BYTES)
                .max(1),
            writer: None,
        })
    }
}

#[async_trait]
impl ItemSink for ParquetItemSink {
    fn describe(&self) -> String {
        format!("Parquet {}", self.path.display())
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        self.path.with_extension("dead-letter.jsonl")
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, "cannot create", e))?;
        }
        Ok(())
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        let batch = items_batch(items).map_err(|e| io_error(&self.partial, "cannot write", e))?;
        if self.writer.is_none() {
            let file = File::create(&self.partial)
                .map_err(|e| io_error(&self.partial, "cannot create", e))?;
            let writer = ArrowWriter::try_new(file, batch.schema(), Some(self.props.clone()))
                .map_err(|e| io_error(&self.partial, "cannot start Parquet file", e))?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        writer
            .write(&batch)
            .map_err(|e| io_error(&self.partial, "cannot write", e))?;
        if writer.in_progress_size() >= self.row_group_bytes {
            writer
                .flush()
                .map_err(|e| io_error(&self.partial, "cannot write", e))?;
        }
        Ok(ItemWrite {
            written: items.len() as u64,
            ..ItemWrite::default()
        })
    }

    fn continues_mid_run(&self) -> bool {
        false
    }

    async fn finish(&mut self) -> Result<(), StoreError> {
        let writer = match self.writer.take() {
            Some(w) => w,
            // No item: an empty file with the schema, so readers find one.
            None => {
                let file = File::create(&self.partial)
                    .map_err(|e| io_error(&self.partial, "cannot create", e))?;
                let schema = items_batch(&[])
                    .map_err(|e| io_error(&self.partial, "cannot write", e))?
                    .schema();
                ArrowWriter::try_new(file, schema, Some(self.props.clone()))
                    .map_err(|e| io_error(&self.partial, "cannot start Parquet file", e))?
            }
        };
        writer
            .close()
            .map_err(|e| io_error(&self.partial, "cannot finish", e))?;
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| io_error(&self.path, "cannot rename into place", e))
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let mut found: HashMap<ItemKey, StoreItem> = HashMap::new();
        match File::open(&self.path) {
            Ok(file) => {
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.build())
                    .map_err(|e| io_error(&self.path, "cannot read", e))?;
                for batch in reader {
                    let batch = batch.map_err(|e| io_error(&self.path, "cannot read", e))?;
                    for item in items_of(&batch, &self.path).map_err(StoreError::fatal)? {
                        found.insert(item.key.clone(), item);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&self.path, "cannot read", e)),
        }
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }
}

pub fn open_item_sink(config: &ParquetSinkConfig) -> Result<Box<dyn ItemSink>, OpenError> {
    Ok(Box::new(
        ParquetItemSink::new(config).map_err(OpenError::Config)?,
    ))
}
