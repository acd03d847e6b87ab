//! The SQLite store: LangGraph `SqliteSaver` databases (`checkpoints` with the whole
//! checkpoint as one typed value, `writes`).
//!
//! - [`config`]: what users write in `source_config` / `destination_config`.
//! - [`read`]: the source. [`write`]: the destination.
//! - this file: what both sides share (connection strings, errors, the table shape).

mod blocking;
pub mod config;
mod items;
mod read;
mod wal;
mod write;

use std::path::{Path, PathBuf};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

use crate::error::StoreError;
use config::SqliteSinkConfig;

pub use items::{open_item_sink, open_item_source};
pub use read::SqliteSource;
pub use write::SqliteSink;

pub(crate) const CHECKPOINT_COLUMNS: [&str; 7] = [
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "parent_checkpoint_id",
    "type",
    "checkpoint",
    "metadata",
];
pub(crate) const WRITE_COLUMNS: [&str; 8] = [
    "thread_id",
    "checkpoint_ns",
    "checkpoint_id",
    "task_id",
    "idx",
    "channel",
    "type",
    "value",
];

/// `sqlite:///rel.db` (SQLAlchemy style, relative), `sqlite:////abs.db`,
/// `sqlite://path`, `sqlite:path` or a plain path.
///
/// `sqlite:///x/y.db` is relative (`x/y.db`) as in SQLAlchemy, unless only the
/// absolute `/x/y.db` exists: people write both meanings, and one of them is there.
pub fn path_from_connection_string(s: &str) -> PathBuf {
    let without_query = |r: &'static str| -> Option<&str> {
        let rest = s.strip_prefix(r)?;
        // A query string (`?mode=ro`) is not part of the file name.
        Some(rest.split('?').next().unwrap_or(rest))
    };
    if let Some(rest) = without_query("sqlite:///") {
        let relative = PathBuf::from(rest);
        let absolute = Path::new("/").join(rest);
        if !relative.exists() && !rest.starts_with('/') && absolute.exists() {
            return absolute;
        }
        return relative;
    }
    let rest = without_query("sqlite://")
        .or_else(|| without_query("sqlite:"))
        .unwrap_or(s);
    PathBuf::from(rest)
}

pub(crate) fn sql_error(path: &Path, what: &str, e: sqlx::Error) -> StoreError {
    let message = format!("SQLite {}: {what}: {e}", path.display());
    let retriable = match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY / SQLITE_LOCKED: another process holds a write lock.
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("5" | "6" | "261" | "262"))
        }
        _ => false,
    };
    StoreError { message, retriable }
}

/// A write error; a lock held too long says which setting bounds the wait.
pub(crate) fn write_error(
    path: &Path,
    busy_timeout_seconds: u64,
    what: &str,
    e: sqlx::Error,
) -> StoreError {
    with_lock_hint(sql_error(path, what, e), busy_timeout_seconds)
}

/// A lock held too long says which setting bounds the wait.
pub(crate) fn with_lock_hint(mut error: StoreError, busy_timeout_seconds: u64) -> StoreError {
    if error.message.contains("database is locked") {
        error.message.push_str(&format!(
            " (another process held the write lock longer than busy_timeout_seconds = {busy_timeout_seconds})"
        ));
    }
    error
}

/// Creates the directory a database to write goes in, when missing.
pub(crate) fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::fatal(format!(
                "SQLite {}: cannot create {}: {e}",
                path.display(),
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Opens an existing database to read, never writing to it.
pub(crate) async fn connect_read_only(path: &Path) -> Result<SqliteConnection, StoreError> {
    check_database_file(path)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging();
    match options.clone().connect().await {
        Ok(conn) => Ok(conn),
        // A WAL database in a read-only directory cannot create its `-shm` file:
        // read it as immutable instead (nobody can be writing there anyway).
        Err(_) => options
            .immutable(true)
            .connect()
            .await
            .map_err(|e| sql_error(path, "cannot open", e)),
    }
}

/// A database to read is a file that exists (SQLite would create an empty one).
pub(crate) fn check_database_file(path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Err(StoreError::fatal(format!(
            "SQLite database {} does not exist",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(StoreError::fatal(format!(
            "SQLite database {} is not a file",
            path.display()
        )));
    }
    Ok(())
}

/// Opens a database to write, creating the file (and its directory) when missing, in
/// WAL mode, waiting for another writer's lock as long as `config` says; a database it
/// creates gets `config`'s page size. (The Store-items writer's; checkpoints are written
/// through [`blocking::open_writable`].)
pub(crate) async fn connect_writable(
    path: &Path,
    config: &SqliteSinkConfig,
) -> Result<SqliteConnection, StoreError> {
    let busy_timeout_seconds = config.busy_timeout_seconds;
    let page_size = config
        .checked_page_size()
        .map_err(|e| StoreError::fatal(e.to_string()))?;
    create_parent_dir(path)?;
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // Set before WAL mode, which fixes it; SQLite ignores it for a database that
        // has pages already.
        .page_size(page_size)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(busy_timeout_seconds))
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| write_error(path, busy_timeout_seconds, "cannot open", e))
}

/// The error for a database without `table`: the tables it has, and `question` (what
/// it may be instead).
pub(crate) fn missing_table(
    path: &Path,
    table: &str,
    tables: &[String],
    question: &str,
) -> StoreError {
    let found = if tables.is_empty() {
        "none".to_owned()
    } else {
        tables.join(", ")
    };
    StoreError::fatal(format!(
        "SQLite {}: no `{table}` table (tables found: {found}); {question}",
        path.display()
    ))
}

/// The names of the database's tables and views.
pub(crate) async fn table_names(
    conn: &mut SqliteConnection,
    path: &Path,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        .fetch_all(conn)
        .await
        .map_err(|e| sql_error(path, "cannot read the schema (is it a SQLite database?)", e))
}

pub(crate) async fn table_columns(
    conn: &mut SqliteConnection,
    path: &Path,
    table: &str,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(conn)
        .await
        .map_err(|e| sql_error(path, &format!("cannot read the columns of `{table}`"), e))
}

pub(crate) fn check_columns(
    path: &Path,
    table: &str,
    found: &[String],
    required: &[&str],
) -> Result<(), StoreError> {
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !found.iter().any(|f| f == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::fatal(format!(
        "SQLite {}: table `{table}` lacks column(s) {} (columns found: {})",
        path.display(),
        missing.join(", "),
        found.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings() {
        assert_eq!(
            path_from_connection_string("sqlite:///checkpoints.db"),
            PathBuf::from("checkpoints.db")
        );
        assert_eq!(
            path_from_connection_string("sqlite:////tmp/c.db"),
            PathBuf::from("/tmp/c.db")
        );
        assert_eq!(
            path_from_connection_string("sqlite://data/c.db"),
            PathBuf::from("data/c.db")
        );
        assert_eq!(
            path_from_connection_string("./c.db"),
            PathBuf::from("./c.db")
        );
        assert_eq!(
            path_from_connection_string("sqlite:///c.db?mode=ro"),
            PathBuf::from("c.db")
        );
    }
}
