//! Configuration of the JSON store (our own export format).

use std::path::PathBuf;

use serde::Deserialize;

/// JSON export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSinkConfig {
    /// Directory that receives the files and `manifest.json`.
    pub output_dir: PathBuf,
    /// One `checkpoints.jsonl` (or `.json`) for everything instead of one file per thread.
    #[serde(default)]
    pub single_file: bool,
    /// Pretty-print with this many spaces; files are then JSON arrays (`.json`).
    pub indent: Option<usize>,
    /// Decode values into each object's view (`ts`, `checkpoint`, `metadata`, the
    /// writes' `value`). `false` writes keys and `raw` only and decodes nothing (raw
    /// mode): a backup that restores exactly, at about the speed of reading the source.
    #[serde(default = "yes")]
    pub view: bool,
}

fn yes() -> bool {
    true
}

/// A JSON export to read back (restore from a backup).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSourceConfig {
    /// The export's directory (the `output_dir` it was written to, with its
    /// `manifest.json`).
    pub path: PathBuf,
}
