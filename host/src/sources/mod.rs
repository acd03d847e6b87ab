//! Sources: stores we read checkpoints from. A source only reads raw records in key
//! order; decoding, filtering, plugins and writing happen in the engine.

pub mod dead_letter;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::error::{OpenError, StoreError};
use crate::filters::Filters;
use crate::record::{Checkpoint, CheckpointKey, Origin};

/// How big one batch may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
}

/// A record the source could not even assemble (missing columns, NULL document…).
#[derive(Debug, Clone)]
pub struct FailedRead {
    pub key: Option<CheckpointKey>,
    pub origin: Origin,
    pub error: String,
}

#[derive(Debug, Default)]
pub struct SourceBatch {
    pub records: Vec<Checkpoint>,
    pub failed: Vec<FailedRead>,
    /// The last key this batch covers; reading resumes after it.
    pub last_key: Option<CheckpointKey>,
    /// Raw bytes read.
    pub bytes: usize,
    /// Where reading continues after this batch, when the last key cannot say it
    /// (a Redis SCAN cursor). `None`: after `last_key`.
    pub position: Option<serde_json::Value>,
    /// Keys that vanished between listing and reading (expired): skipped, counted.
    pub vanished: u64,
}

/// Record counts per thread, after the filters the source pushed down.
#[derive(Debug, Default, Clone)]
pub struct ThreadCounts {
    pub per_thread: BTreeMap<String, u64>,
}

impl ThreadCounts {
    pub fn total(&self) -> u64 {
        self.per_thread.values().sum()
    }
}

#[async_trait]
pub trait Source: Send {
    /// Where we read from, fit for logs (no secrets).
    fn describe(&self) -> String;

    /// The next batch in key order, or `None` at the end.
    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError>;

    /// Continue after `key` (resume). Reads from the start when never called.
    fn resume_after(&mut self, key: CheckpointKey);

    /// Continue from a position an earlier batch reported ([`SourceBatch::position`],
    /// or its `last_key` as JSON).
    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError> {
        let key: CheckpointKey = serde_json::from_value(position.clone())
            .map_err(|e| StoreError::fatal(format!("unreadable resume position: {e}")))?;
        self.resume_after(key);
        Ok(())
    }

    /// Counts per thread with the source's pushed-down filters applied; `pushed`
    /// false counts everything.
    async fn count_by_thread(&mut self, pushed: bool) -> Result<ThreadCounts, StoreError>;

    /// Whether [`Source::count_by_thread`] is cheap enough to size a progress bar.
    fn counts_cheaply(&self) -> bool {
        false
    }

    /// A short description of which filters run inside the store.
    fn pushdown_summary(&self) -> String {
        "none".into()
    }
}

/// Where a source that reads files in order resumes: at its own position (file, item),
/// or, from an older state file, after a key.
pub enum ResumePoint<P> {
    At(P),
    AfterKey(CheckpointKey),
}

/// Reads a resume position written by [`SourceBatch::position`] (or a key).
pub fn resume_point<P: serde::de::DeserializeOwned>(
    position: &serde_json::Value,
) -> Result<ResumePoint<P>, StoreError> {
    if let Ok(at) = serde_json::from_value::<P>(position.clone()) {
        return Ok(ResumePoint::At(at));
    }
    serde_json::from_value(position.clone())
        .map(ResumePoint::AfterKey)
        .map_err(|e| StoreError::fatal(format!("unreadable resume position: {e}")))
}

/// Whether a record is one to skip while resuming after `skip_through` (which is
/// cleared once that key has gone by).
pub fn skipping(skip_through: &mut Option<CheckpointKey>, key: &CheckpointKey) -> bool {
    match skip_through {
        Some(skip) => {
            if skip == key {
                *skip_through = None;
            }
            true
        }
        None => false,
    }
}

/// A store's source settings (its folder's config struct): they open the source.
#[async_trait]
pub trait OpenSource: Send + Sync {
    /// Opens the source; the run's filters that the store can evaluate are pushed down.
    async fn open_source(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError>;
}

/// Whether a source may evaluate filters itself (off only to test that pushdown
/// changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushdown {
    On,
    Off,
}
