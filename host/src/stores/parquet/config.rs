//! Configuration of the Parquet store (our own export format).

use std::path::PathBuf;

use serde::Deserialize;

/// Parquet export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// File to write, or root directory when `partition_by` is set.
    pub output_path: PathBuf,
    /// `snappy` (default), `zstd`, `gzip`, `lz4` or `none`.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// Hive-style partition columns: `thread_id`, `checkpoint_ns`, `date`.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// A row group is closed once its pages held in memory (compressed) reach this many
    /// bytes (default 2 MiB).
    pub row_group_bytes: Option<usize>,
    /// Decode values into the view columns (`ts`, `ts_raw`, `checkpoint_json`,
    /// `metadata_json`, `pending_writes_json`). `false` writes the raw columns only
    /// and decodes nothing (raw mode): a backup that restores exactly, at about the
    /// speed of reading the source.
    #[serde(default = "yes")]
    pub view: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    #[default]
    Snappy,
    Zstd,
    Gzip,
    Lz4,
    None,
}

/// A Parquet export to read back (restore from a backup).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// The export's file, or its root directory when it was partitioned.
    pub path: PathBuf,
}
