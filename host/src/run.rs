//! What identifies a run, and what it counted.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Facts about the run that sinks record (manifests, file metadata).
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub source_kind: String,
    /// Human description of the source, without secrets.
    pub source: String,
    pub destination_kind: String,
    pub tool_version: String,
    /// Set when the run moves one shard of the threads (file outputs are named by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
}

impl RunInfo {
    pub fn new(source_kind: &str, source: String, destination_kind: &str) -> Self {
        Self {
            run_id: uuid::Uuid::new_v4().to_string(),
            // Microseconds: the precision every output (RFC 3339 text, Parquet) keeps.
            started_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .unwrap_or_else(Utc::now),
            source_kind: source_kind.into(),
            source,
            destination_kind: destination_kind.into(),
            tool_version: TOOL_VERSION.into(),
            shard: None,
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    /// Records read from the source (including those that failed to decode).
    pub read: u64,
    pub written: u64,
    pub filtered: u64,
    pub failed: u64,
    /// Raw bytes read.
    pub bytes_read: u64,
    pub batches: u64,
    /// Keys that expired between listing and reading.
    pub vanished: u64,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Values passed through undecoded, by description.
    pub undecoded: BTreeMap<String, u64>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl RunStats {
    pub fn records_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.read as f64 / secs
        } else {
            0.0
        }
    }
}

/// The process's peak resident memory (Linux `VmHWM`), for the run summary.
#[allow(clippy::disallowed_methods)] // a small kernel file
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
