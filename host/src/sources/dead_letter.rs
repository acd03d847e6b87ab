//! Replaying a dead-letter file (`--replay-dead-letter FILE`): its records, rebuilt
//! from the raw values each line keeps, go through the pipeline again. Lines without
//! a record (the source could not read one) fail again with their original error.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::Value;

use super::{BatchLimits, FailedRead, Source, SourceBatch, ThreadCounts};
use crate::error::StoreError;
use crate::record::{Checkpoint, CheckpointKey, Origin};

pub struct DeadLetterSource {
    path: PathBuf,
    lines: std::io::Lines<BufReader<std::fs::File>>,
    line_no: usize,
    /// Skip entries up to and including this key (resume).
    skip_through: Option<CheckpointKey>,
}

impl DeadLetterSource {
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let file = std::fs::File::open(path).map_err(|e| {
            StoreError::fatal(format!(
                "cannot open dead-letter file {}: {e}",
                path.display()
            ))
        })?;
        Ok(Self {
            path: path.to_owned(),
            lines: BufReader::new(file).lines(),
            line_no: 0,
            skip_through: None,
        })
    }
}

/// Rebuilds a record from a dead-letter line (`key` + `record`).
pub fn record_from_entry(entry: &Value) -> Result<Option<Checkpoint>, String> {
    let record = &entry["record"];
    if record.is_null() {
        return Ok(None);
    }
    let key: CheckpointKey =
        serde_json::from_value(entry["key"].clone()).map_err(|e| format!("key: {e}"))?;
    let origin: Origin =
        serde_json::from_value(entry["origin"].clone()).map_err(|e| format!("origin: {e}"))?;
    let parent = record["parent_checkpoint_id"].as_str().map(str::to_owned);
    Checkpoint::from_raw_json(key, parent, record, origin).map(Some)
}

#[async_trait]
impl Source for DeadLetterSource {
    fn describe(&self) -> String {
        format!("dead-letter file {}", self.path.display())
    }

    fn resume_after(&mut self, key: CheckpointKey) {
        self.skip_through = Some(key);
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        let mut batch = SourceBatch::default();
        while batch.records.len() + batch.failed.len() < limits.max_records {
            let Some(line) = self.lines.next() else { break };
            self.line_no += 1;
            let line = line
                .map_err(|e| StoreError::fatal(format!("reading {}: {e}", self.path.display())))?;
            if line.trim().is_empty() {
                continue;
            }
            let origin = Origin {
                store: "dead-letter".into(),
                locator: format!("{} line {}", self.path.display(), self.line_no),
            };
            let entry: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    batch.failed.push(FailedRead {
                        key: None,
                        origin,
                        error: format!("not JSON: {e}"),
                    });
                    continue;
                }
            };
            match record_from_entry(&entry) {
                Ok(Some(record)) => {
                    if let Some(skip) = &self.skip_through {
                        if *skip == record.key {
                            self.skip_through = None;
                        }
                        continue;
                    }
                    batch.bytes += record.raw_size();
                    batch.last_key = Some(record.key.clone());
                    batch.records.push(record);
                }
                Ok(None) => batch.failed.push(FailedRead {
                    key: serde_json::from_value(entry["key"].clone()).ok(),
                    origin: serde_json::from_value(entry["origin"].clone()).unwrap_or(origin),
                    error: format!(
                        "no record to replay (first failure: {})",
                        entry["error"].as_str().unwrap_or("unknown")
                    ),
                }),
                Err(e) => batch.failed.push(FailedRead {
                    key: None,
                    origin,
                    error: e,
                }),
            }
            if batch.bytes >= limits.max_bytes {
                break;
            }
        }
        if batch.records.is_empty() && batch.failed.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    async fn count_by_thread(&mut self, _pushed: bool) -> Result<ThreadCounts, StoreError> {
        let mut counts = ThreadCounts::default();
        let file = std::fs::File::open(&self.path)
            .map_err(|e| StoreError::fatal(format!("reading {}: {e}", self.path.display())))?;
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<Value>(&line)
                && let Some(thread) = entry["key"]["thread_id"].as_str()
            {
                *counts.per_thread.entry(thread.to_owned()).or_default() += 1;
            }
        }
        Ok(counts)
    }
}
