//! Store items as JSON lines: `store_items.jsonl` in the output directory, one item
//! per line in [`StoreItem::to_json`]'s form (the value embedded exactly as stored,
//! times in RFC 3339 with microseconds, embeddings as float lists). The same file is
//! read back as a source, to restore a backup into a store.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

use async_trait::async_trait;

use super::config::{JsonSinkConfig, JsonSourceConfig};
use crate::error::{OpenError, StoreError};
use crate::items::{
    FailedItem, ItemBatch, ItemFilters, ItemKey, ItemRead, ItemSink, ItemSource, ItemWrite,
    StoreItem, key_position,
};
use crate::record::Origin;

/// The file's name in the export directory.
pub const ITEMS_FILE: &str = "store_items.jsonl";

pub struct JsonItemSink {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes written and flushed: a resumed run cuts the file back to this.
    length: u64,
    resumed: bool,
}

impl JsonItemSink {
    pub fn new(config: &JsonSinkConfig) -> Self {
        Self {
            path: config.output_dir.join(ITEMS_FILE),
            file: None,
            length: 0,
            resumed: false,
        }
    }

    fn io(&self, what: &str, e: std::io::Error) -> StoreError {
        StoreError::fatal(format!("{} {}: {e}", what, self.path.display()))
    }
}

#[async_trait]
impl ItemSink for JsonItemSink {
    fn describe(&self) -> String {
        format!("JSON {}", self.path.display())
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        self.path.with_file_name("dead-letter.jsonl")
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if self.file.is_some() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io("cannot create the folder of", e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| self.io("cannot open", e))?;
        // A new run starts the file over; a resumed one cuts it back to what its last
        // confirmed batch had written.
        let keep = if self.resumed { self.length } else { 0 };
        file.set_len(keep)
            .and_then(|()| file.seek(SeekFrom::Start(keep)).map(|_| ()))
            .map_err(|e| self.io("cannot cut back", e))?;
        self.length = keep;
        self.file = Some(BufWriter::new(file));
        Ok(())
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        let mut text = Vec::new();
        for item in items {
            serde_json::to_writer(&mut text, &item.to_json())
                .map_err(|e| StoreError::fatal(format!("{}: {e}", item.key)))?;
            text.push(b'\n');
        }
        let path = self.path.clone();
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::fatal("the JSON destination was not prepared"))?;
        file.write_all(&text)
            .and_then(|()| file.flush())
            .and_then(|()| file.get_ref().sync_data())
            .map_err(|e| StoreError::fatal(format!("cannot write {}: {e}", path.display())))?;
        self.length += text.len() as u64;
        Ok(ItemWrite {
            written: items.len() as u64,
            ..ItemWrite::default()
        })
    }

    fn resume_state(&self) -> serde_json::Value {
        serde_json::json!({ "length": self.length })
    }

    fn resume(&mut self, state: &serde_json::Value) {
        self.length = state["length"].as_u64().unwrap_or(0);
        self.resumed = true;
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let mut found: BTreeMap<ItemKey, StoreItem> = BTreeMap::new();
        for item in read_lines(&self.path)?.into_iter().flatten() {
            found.insert(item.key.clone(), item);
        }
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }
}

/// Every line of an items file, each an item or why it is not one.
fn read_lines(path: &PathBuf) -> Result<Vec<ItemRead>, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StoreError::fatal(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| StoreError::fatal(format!("cannot read {}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let origin = Origin {
            store: "json".into(),
            locator: format!("{} line {}", path.display(), n + 1),
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&line)
            .map_err(|e| e.to_string())
            .and_then(|v| StoreItem::from_json(&v, origin.clone()));
        out.push(parsed.map_err(|reason| {
            Box::new(FailedItem {
                key: ItemKey {
                    namespace: Vec::new(),
                    key: String::new(),
                },
                reason,
                origin,
                raw: serde_json::Value::String(line.clone()),
            })
        }));
    }
    Ok(out)
}

/// A `store_items.jsonl` export read back, in `(prefix, key)` order.
pub struct JsonItemSource {
    path: PathBuf,
    filters: ItemFilters,
    /// Not yet returned; sorted so pages and resume points work as in the SQL stores.
    pending: std::collections::VecDeque<ItemRead>,
    after: Option<ItemKey>,
}

impl JsonItemSource {
    pub fn open(config: &JsonSourceConfig, filters: &ItemFilters) -> Result<Self, StoreError> {
        let path = config.path.join(ITEMS_FILE);
        if !path.is_file() {
            return Err(StoreError::fatal(format!(
                "{}: no Store items export here (written with state: store)",
                path.display()
            )));
        }
        let mut lines = read_lines(&path)?;
        let order = |e: &ItemRead| match e {
            Ok(item) => (item.key.prefix(), item.key.key.clone()),
            Err(f) => (f.key.prefix(), f.key.key.clone()),
        };
        lines.sort_by_key(order);
        Ok(Self {
            path,
            filters: filters.clone(),
            pending: lines.into(),
            after: None,
        })
    }
}

#[async_trait]
impl ItemSource for JsonItemSource {
    fn describe(&self) -> String {
        format!("JSON {}", self.path.display())
    }

    async fn next_batch(&mut self, limit: usize) -> Result<Option<ItemBatch>, StoreError> {
        let mut batch = ItemBatch::default();
        while batch.items.len() + batch.failed.len() < limit {
            let Some(entry) = self.pending.pop_front() else {
                break;
            };
            match entry {
                Ok(item) => {
                    let key = (item.key.prefix(), item.key.key.clone());
                    if let Some(after) = &self.after
                        && key <= (after.prefix(), after.key.clone())
                    {
                        continue;
                    }
                    if !self.filters.accepts_namespace(&item.key.prefix()) {
                        continue;
                    }
                    batch.position = serde_json::json!(item.key);
                    self.after = Some(item.key.clone());
                    batch.items.push(item);
                }
                Err(failed) => batch.failed.push(*failed),
            }
        }
        if batch.items.is_empty() && batch.failed.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError> {
        self.after = Some(key_position(position)?);
        Ok(())
    }

    async fn count_by_namespace(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for item in self.pending.iter().flatten() {
            let prefix = item.key.prefix();
            if self.filters.accepts_namespace(&prefix) {
                *counts.entry(prefix).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

pub fn open_item_source(
    config: &JsonSourceConfig,
    filters: &ItemFilters,
) -> Result<Box<dyn ItemSource>, OpenError> {
    Ok(Box::new(JsonItemSource::open(config, filters)?))
}

pub fn open_item_sink(config: &JsonSinkConfig) -> Box<dyn ItemSink> {
    Box::new(JsonItemSink::new(config))
}
