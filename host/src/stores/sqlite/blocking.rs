//! SQLite through rusqlite, from async code.
//!
//! sqlx runs a SQLite connection on a thread of its own, copies every value of a row
//! into the row it sends across, and the caller copies it again; on a checkpoint
//! export that was a fifth of the run (docs/decisions.md). Here a reader's connection
//! and whatever reads with it ([`Blocking`]) move onto a thread of the reader's own (a
//! [`Lane`]) for one call and come back: rows are read where SQLite hands them out,
//! and a blob is copied once, into the record. A writer runs its statements
//! [`in_place`], on the thread that holds the batch, binding the batch's bytes where
//! they are.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::config::SqliteSinkConfig;
use crate::error::StoreError;
use crate::lane::Lane;
use crate::sinks::with_suffix;

/// `state` (a reader holding its connection), lent to a thread of its own one call at
/// a time: the same thread for every call, so that each batch's memory comes from the
/// arena the batch before it freed (see [`crate::lane`]). Calls take `&mut self`, so
/// the state is always here between them.
pub(crate) struct Blocking<S> {
    state: Option<S>,
    lane: Lane,
    path: PathBuf,
}

impl<S: Send + 'static> Blocking<S> {
    pub(crate) fn new(state: S, path: &Path) -> Self {
        Self {
            state: Some(state),
            lane: Lane::new("sqlite-read"),
            path: path.to_owned(),
        }
    }

    /// Runs `f` on the state on the reader's thread.
    pub(crate) async fn call<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut S) -> Result<T, StoreError> + Send + 'static,
    {
        let mut state = self.take()?;
        // A call that panics loses the state: the next one says the connection is lost.
        let (state, out) = self
            .lane
            .run(move || {
                let out = f(&mut state);
                (state, out)
            })
            .await
            .map_err(|e| {
                StoreError::fatal(format!(
                    "SQLite {}: reading stopped: {e}",
                    self.path.display()
                ))
            })?;
        self.state = Some(state);
        out
    }

    /// The state between calls.
    pub(crate) fn get_mut(&mut self) -> Option<&mut S> {
        self.state.as_mut()
    }

    fn take(&mut self) -> Result<S, StoreError> {
        self.state.take().ok_or_else(|| {
            // Only a call that panicked keeps it.
            StoreError::fatal(format!(
                "SQLite {}: the connection was lost in an earlier failure",
                self.path.display()
            ))
        })
    }
}

/// Runs `f`, which blocks on SQLite, where it is called: on a multi-threaded runtime
/// the thread's other tasks move elsewhere meanwhile ([`tokio::task::block_in_place`]);
/// a single-threaded runtime has nothing else to run.
pub(crate) fn in_place<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// How a database opened to write journals its commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Journal {
    /// WAL, as SqliteSaver and SqliteStore set it: other processes may read (and an
    /// agent write) while the run writes.
    Wal,
    /// A rollback journal (`TRUNCATE`), on a database this run has just created
    /// (nobody else can be using it yet): appended pages are written once, to the
    /// database, where WAL writes each page into the WAL and again into the database
    /// at a checkpoint (and checksums it). Commits are as durable; the caller switches
    /// the database to WAL ([`switch_to_wal`]) when it is done with it.
    Rollback,
}

/// Opens a database to write, creating the file (and its directory) when missing,
/// with every commit synced, waiting for another writer's lock as long as `config`
/// says; a database it creates gets `config`'s page size. An existing database is
/// put in WAL mode; a new one, with `bulk_when_new`, starts with a rollback journal
/// ([`Journal::Rollback`]).
pub(crate) fn open_writable(
    path: &Path,
    config: &SqliteSinkConfig,
    bulk_when_new: bool,
) -> Result<(Connection, Journal), StoreError> {
    let busy = config.busy_timeout_seconds;
    let page_size = config
        .checked_page_size()
        .map_err(|e| StoreError::fatal(e.to_string()))?;
    super::create_parent_dir(path)?;
    // An empty file is what SQLite itself leaves when it creates a database and
    // writes nothing; its WAL or journal would be beside it.
    let new = std::fs::metadata(path).map_or(true, |m| m.len() == 0)
        && !with_suffix(path, "-wal").exists()
        && !with_suffix(path, "-journal").exists();
    let journal = if bulk_when_new && new {
        Journal::Rollback
    } else {
        Journal::Wal
    };
    let failed = |e| write_error(path, busy, "cannot open", e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(failed)?;
    conn.busy_timeout(std::time::Duration::from_secs(busy))
        .map_err(failed)?;
    // Set before WAL mode, which fixes it; SQLite ignores it for a database that has
    // pages already.
    conn.pragma_update(None, "page_size", page_size)
        .map_err(failed)?;
    match journal {
        Journal::Wal => switch_to_wal(&conn, path, busy)?,
        Journal::Rollback => {
            conn.pragma_update(None, "journal_mode", "TRUNCATE")
                .map_err(failed)?;
        }
    }
    // A commit is on disk when it returns: the resume state follows it.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(failed)?;
    Ok((conn, journal))
}

/// Puts the database in WAL mode (kept in the file: every later connection finds it).
pub(crate) fn switch_to_wal(conn: &Connection, path: &Path, busy: u64) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| write_error(path, busy, "cannot switch to WAL mode", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::fatal(format!(
            "SQLite {}: cannot switch to WAL mode (the journal mode stays {mode})",
            path.display()
        )));
    }
    Ok(())
}

/// A write error; a lock held too long says which setting bounds the wait.
pub(crate) fn write_error(
    path: &Path,
    busy_timeout_seconds: u64,
    what: &str,
    e: rusqlite::Error,
) -> StoreError {
    let mut error = error(path, what, e);
    if error.message.contains("database is locked") {
        error.message.push_str(&format!(
            " (another process held the write lock longer than busy_timeout_seconds = {busy_timeout_seconds})"
        ));
    }
    error
}

/// An error of `what` on the database at `path`; busy and locked databases (another
/// process writing) are worth retrying.
pub(crate) fn error(path: &Path, what: &str, e: rusqlite::Error) -> StoreError {
    let retriable = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    StoreError {
        message: format!("SQLite {}: {what}: {e}", path.display()),
        retriable,
    }
}

/// How much of a source database a batch may read through a memory map instead of a
/// `pread` per page (SQLite caps it at its own maximum, 2 GB; pages beyond are read as
/// before).
const READ_MMAP_BYTES: i64 = 1 << 40;

/// Maps the database afresh for the next batch: its pages are then read from the page
/// cache with no system call (a checkpoint's blob is a chain of overflow pages: 77 000
/// `pread`s for 30 000 checkpoints), and the pages the last batch touched leave the
/// process, so what the map holds resident is one batch's pages, not the file
/// (docs/decisions.md). Call it between read transactions: SQLite only remaps a file
/// none of whose pages are in use.
pub(crate) fn map_for_next_batch(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let set = |bytes: i64| {
        conn.pragma_update(None, "mmap_size", bytes)
            .map_err(|e| error(path, "cannot map the database", e))
    };
    set(0)?;
    set(READ_MMAP_BYTES)
}

/// Opens an existing database to read, never writing to it.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    super::check_database_file(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Opening is lazy: the first read finds a file that is not a database, or a WAL
    // database whose `-shm` file cannot be created.
    let checked = |conn: Connection| {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(conn)
    };
    match Connection::open_with_flags(path, flags).and_then(checked) {
        Ok(conn) => Ok(conn),
        // A WAL database in a read-only directory cannot create its `-shm` file:
        // read it as immutable instead (nobody can be writing there anyway). The
        // error told is the first one (a file that is no database fails both ways).
        Err(first) => {
            Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
                .and_then(checked)
                .map_err(|_| error(path, "cannot open", first))
        }
    }
}

/// `file:` URI of `path` with `immutable=1`; `%`, `?` and `#` in the path are escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// The names of the database's tables and views.
pub(crate) fn table_names(conn: &Connection, path: &Path) -> Result<Vec<String>, StoreError> {
    let failed = |e| error(path, "cannot read the schema (is it a SQLite database?)", e);
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        .map_err(failed)?;
    statement
        .query_map([], |row| row.get(0))
        .map_err(failed)?
        .collect::<Result<_, _>>()
        .map_err(failed)
}

/// The column names of `table`.
pub(crate) fn table_columns(
    conn: &Connection,
    path: &Path,
    table: &str,
) -> Result<Vec<String>, StoreError> {
    let failed = |e| error(path, &format!("cannot read the columns of `{table}`"), e);
    let mut statement = conn
        .prepare("SELECT name FROM pragma_table_info(?)")
        .map_err(failed)?;
    statement
        .query_map([table], |row| row.get(0))
        .map_err(failed)?
        .collect::<Result<_, _>>()
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_uri_escapes_what_uris_reserve() {
        assert_eq!(
            immutable_uri(Path::new("/data/a?b#c%d.db")),
            "file:/data/a%3fb%23c%25d.db?immutable=1"
        );
    }

    fn journal_mode(conn: &Connection) -> String {
        conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap()
    }

    /// A database the run creates is loaded with a rollback journal; one that exists
    /// (with pages, a WAL or a journal beside it) is written in WAL mode, as is any
    /// database opened without `bulk_when_new`.
    #[test]
    fn only_a_new_database_is_loaded_with_a_rollback_journal() {
        let dir = tempfile::tempdir().unwrap();
        let config: SqliteSinkConfig =
            serde_json::from_value(serde_json::json!({ "connection_string": "unused.db" }))
                .unwrap();
        let path = dir.path().join("new.db");
        let (conn, journal) = open_writable(&path, &config, true).unwrap();
        assert_eq!(journal, Journal::Rollback);
        assert_eq!(journal_mode(&conn), "truncate");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        switch_to_wal(&conn, &path, 1).unwrap();
        drop(conn);
        // Reopened (a resumed run): it has pages now.
        let (conn, journal) = open_writable(&path, &config, true).unwrap();
        assert_eq!(journal, Journal::Wal);
        assert_eq!(journal_mode(&conn), "wal");
        drop(conn);

        let other = dir.path().join("other.db");
        let (conn, journal) = open_writable(&other, &config, false).unwrap();
        assert_eq!(
            (journal, journal_mode(&conn).as_str()),
            (Journal::Wal, "wal")
        );
        drop(conn);

        // An empty file with a journal beside it is a database a crash left behind.
        let crashed = dir.path().join("crashed.db");
        std::fs::write(&crashed, b"").unwrap();
        std::fs::write(dir.path().join("crashed.db-journal"), b"").unwrap();
        let (_, journal) = open_writable(&crashed, &config, true).unwrap();
        assert_eq!(journal, Journal::Wal);
    }

    /// The map is set up, and a remap between reads keeps reading right.
    #[test]
    fn batches_are_read_through_a_fresh_memory_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (x BLOB); \
             INSERT INTO t VALUES (randomblob(20000)), (randomblob(30000));",
        )
        .unwrap();
        let expected = blobs(&conn);
        drop(conn);
        let reader = open_read_only(&path).unwrap();
        for _ in 0..3 {
            map_for_next_batch(&reader, &path).unwrap();
            let mapped: i64 = reader
                .query_row("PRAGMA mmap_size", [], |row| row.get(0))
                .unwrap();
            assert!(mapped >= 1 << 30, "mmap_size is {mapped}");
            assert_eq!(blobs(&reader), expected);
        }
    }

    fn blobs(conn: &Connection) -> Vec<Vec<u8>> {
        conn.prepare_cached("SELECT x FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}
