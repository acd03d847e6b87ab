//! The SQLite store: LangGraph `SqliteSaver` databases (`checkpoints` with the whole
//! checkpoint as one typed value, `writes`).
//!
//! - [`config`]: what users write in `source_config` / `destination_config`.
//! - [`read`]: the source. [`write`]: the destination ([`wal`]: its WAL's checkpoints).
//! - [`items`]: `SqliteStore` databases (LangGraph Store items), both ways.
//! - [`blocking`]: rusqlite from async code: opening, the schema, errors.
//! - this file: what every side shares (connection strings, the table shape, the
//!   checks on a database's file and tables).

mod blocking;
pub mod config;
mod items;
mod read;
mod wal;
mod write;

use std::path::{Path, PathBuf};

use crate::error::StoreError;

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
