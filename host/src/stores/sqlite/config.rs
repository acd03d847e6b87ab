//! Configuration of the SQLite store (SqliteSaver databases).

use serde::Deserialize;

use crate::codec::redis_form::AllowedJsonModules;
use crate::error::ConfigError;
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
    /// For a langgraph-redis source: the `lc: 2` classes its app's serializer revives
    /// (`JsonPlusRedisSerializer(allowed_json_modules=…)`): `true` for every class, or
    /// a list of `module.Class`. Envelopes of other classes are written as the plain
    /// maps RedisSaver gives back. LangGraph's safe types (messages, datetimes, …) are
    /// always revived.
    #[serde(default)]
    pub allowed_json_modules: AllowedJsonModules,
    /// Page size in bytes of a database this run creates: a power of two from 512 to
    /// 65536 (an existing database keeps its own). Checkpoints are blobs of kilobytes
    /// to megabytes; pages larger than SQLite's 4096 hold them in fewer pages, written
    /// in fewer steps: a copy of 30 000 checkpoints took 1.96 s with 4096, 1.33 s with
    /// the default 32768 (docs/performance.md).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_busy_timeout_seconds() -> u64 {
    30
}

fn default_page_size() -> u32 {
    32768
}

impl SqliteSinkConfig {
    /// The page size, checked.
    pub(crate) fn checked_page_size(&self) -> Result<u32, ConfigError> {
        let size = self.page_size;
        if size.is_power_of_two() && (512..=65536).contains(&size) {
            Ok(size)
        } else {
            Err(ConfigError::Invalid(format!(
                "SQLite destination: page_size {size} is not a power of two from 512 to 65536"
            )))
        }
    }
}
