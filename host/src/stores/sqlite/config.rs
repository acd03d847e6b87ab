//! Configuration of the SQLite store (SqliteSaver databases).

use serde::Deserialize;

use crate::stores::OnConflict;

/// SqliteSaver database to read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://path` or a plain path.
    pub connection_string: String,
}

/// SqliteSaver database to write (created when missing).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://path` or a plain path;
    /// the file and its tables are created when missing.
    pub connection_string: String,
    /// What to do with a checkpoint or pending write whose key the database already
    /// holds: `skip` (default: keep what is there), `overwrite`, or `fail` (stop when
    /// it differs from what would be written).
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Seconds to wait when another process holds the database's write lock.
    #[serde(default = "default_busy_timeout_seconds")]
    pub busy_timeout_seconds: u64,
}

fn default_busy_timeout_seconds() -> u64 {
    30
}
