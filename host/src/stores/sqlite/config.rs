//! Configuration of the SQLite store (SqliteSaver databases).

use serde::Deserialize;

use crate::codec::redis_form::AllowedJsonModules;
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
}

fn default_busy_timeout_seconds() -> u64 {
    30
}
