//! Stores that are both a source and a destination, one folder each: its `config.rs`
//! (what users write), `read.rs` (the source), `write.rs` (the destination) and, in
//! `mod.rs`, what both sides share. What several stores share lives here:
//! [`sql`] (SQL helpers) and [`layout`] (LangGraph's checkpoint shapes).

pub mod chat;
pub mod json;
pub mod layout;
pub(crate) mod named_once;
pub mod parquet;
pub mod postgres;
pub mod qdrant;
pub mod redis;
mod registry;
pub mod sql;
pub mod sqlite;
pub mod store_items;

pub use registry::{DestinationKind, SinkConfig, SourceKind, StoreSourceConfig};
use serde::Deserialize;

/// What a store destination does with a row whose key it already holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Keep what the destination holds (a re-run or resume writes nothing twice).
    #[default]
    Skip,
    /// Replace it with the migrated row.
    Overwrite,
    /// Stop the run, writing nothing of the batch, when the row differs from the one
    /// that would be written (an identical row is not a conflict, so resume works).
    Fail,
}

impl OnConflict {
    pub fn name(self) -> &'static str {
        match self {
            OnConflict::Skip => "skip",
            OnConflict::Overwrite => "overwrite",
            OnConflict::Fail => "fail",
        }
    }
}

/// Says, once at the end of a run, which langgraph-redis envelopes were written as
/// plain maps because `allowed_json_modules` does not name their classes.
pub fn report_kept_as_maps(destination: &str, classes: &std::collections::BTreeSet<String>) {
    if classes.is_empty() {
        return;
    }
    let list: Vec<&str> = classes.iter().map(String::as_str).collect();
    tracing::warn!(
        "{destination}: lc:2 envelopes of {} were written as plain maps, as RedisSaver reads them when its serializer does not allow these classes; if your app allows them (JsonPlusRedisSerializer(allowed_json_modules=…)), set destination_config.allowed_json_modules to the same list and run again with on_conflict: overwrite",
        list.join(", ")
    );
}

/// The dry run's line about checkpoints of the migrated threads that a store
/// destination already holds.
pub fn existing_line(existing: i64, mode: OnConflict) -> String {
    if existing == 0 {
        return "find no checkpoint of these threads in the destination: every one is new".into();
    }
    let then = match mode {
        OnConflict::Skip => "those with the same ids are kept, not written again",
        OnConflict::Overwrite => "those with the same ids are replaced",
        OnConflict::Fail => "the run stops at the first one with the same id and other content",
    };
    format!(
        "find {existing} checkpoint(s) of these threads already in the destination (on_conflict: {}): {then}; the others are merged in by checkpoint id",
        mode.name()
    )
}

/// Counts a store destination reports at the end of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteCounts {
    /// Checkpoints inserted (or replaced, with `overwrite`).
    pub written: u64,
    /// Checkpoints the destination already held and kept (`skip`, or identical).
    pub kept: u64,
    /// Pending writes inserted.
    pub writes: u64,
    /// Channel blobs inserted (PostgreSQL).
    pub blobs: u64,
}

impl std::ops::AddAssign for WriteCounts {
    fn add_assign(&mut self, other: Self) {
        self.written += other.written;
        self.kept += other.kept;
        self.writes += other.writes;
        self.blobs += other.blobs;
    }
}

impl WriteCounts {
    /// Logs the counts of a finished run (tests and users read this line).
    pub fn report(&self, destination: &str) {
        let blobs = if self.blobs > 0 {
            format!("{} blob(s) and ", self.blobs)
        } else {
            String::new()
        };
        tracing::info!(
            "{destination}: {} checkpoint(s) written, {} already there and kept, {blobs}{} pending write(s) written",
            self.written,
            self.kept,
            self.writes
        );
    }
}
