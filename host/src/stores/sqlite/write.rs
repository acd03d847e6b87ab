//! SQLite destination: a database LangGraph's `SqliteSaver` reads as it read the
//! source.
//!
//! The file is created when missing, with SqliteSaver's own tables, and left in WAL
//! mode. Each batch is one `BEGIN IMMEDIATE` transaction, synced at its commit, so a
//! batch is all there or not at all and the resume state never runs ahead of the file.
//! A database that exists is written in WAL mode (an agent may be using it), the WAL
//! copied into the database on a thread of its own ([`super::wal`]); one this run
//! creates is loaded with a rollback journal, which writes each new page once instead
//! of twice ([`blocking::Journal`]), and switched to WAL at the end. Checkpoints take
//! SqliteSaver's whole shape ([`layout::whole`]): from a PostgreSQL source the document and its blobs
//! are joined into one msgpack checkpoint, the blobs' bytes spliced in unchanged.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::blocking::{self, Journal, in_place};
use super::config::SqliteSinkConfig;
use super::config::SqliteSourceConfig;
use super::wal::{self, WalCheckpointer};
use super::{CHECKPOINT_COLUMNS, WRITE_COLUMNS, check_columns, path_from_connection_string};
use crate::codec::redis_form::Encoder;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::{Checkpoint, TypedValue};
use crate::retry::RetryPolicy;
use crate::run::RunInfo;
use crate::run::RunStats;
use crate::sinks::{Comparison, OpenSink};
use crate::sinks::{Rejected, Sink};
use crate::sources::Source;
use crate::stores::layout;
use crate::stores::{OnConflict, WriteCounts};

/// SqliteSaver's tables, as its `setup()` creates them.
const CREATE_TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
)",
    "CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
)",
];

pub struct SqliteSink {
    config: SqliteSinkConfig,
    path: PathBuf,
    db: Option<Database>,
    counts: WriteCounts,
    kept_as_maps: BTreeSet<String>,
}

/// The open database: the writer's connection, and the thread that copies its WAL.
struct Database {
    /// Declared first, so dropped first: the writer's connection, closing last, copies
    /// what is left of the WAL and removes it. `None`: the run created the database
    /// and loads it with a rollback journal ([`Journal::Rollback`]), switched to WAL
    /// when it closes.
    checkpointer: Option<WalCheckpointer>,
    conn: Connection,
    /// Whether `writes` has `task_path` (SqliteSaver before 2.0 had none).
    writes_have_task_path: bool,
}

/// A checkpoint in SqliteSaver's shape, ready to insert.
struct SaverRow<'a> {
    /// The record, its values in the form SqliteSaver's serializer reads.
    record: Cow<'a, Checkpoint>,
    /// The whole checkpoint, when it is not the record's own (joined from a document
    /// and blobs).
    joined: Option<TypedValue>,
    /// The metadata as JSON text, when it is not the record's own bytes.
    metadata_text: Option<Vec<u8>>,
}

impl<'a> SaverRow<'a> {
    fn new(record: Cow<'a, Checkpoint>) -> Result<Self, layout::LayoutError> {
        // Borrowed, they are the record's own bytes: kept there, not copied.
        let joined = match layout::whole(&record)? {
            Cow::Borrowed(_) => None,
            Cow::Owned(whole) => Some(whole),
        };
        let metadata_text = match layout::metadata_json(&record)? {
            Cow::Borrowed(_) => None,
            Cow::Owned(text) => Some(text),
        };
        Ok(Self {
            record,
            joined,
            metadata_text,
        })
    }

    fn checkpoint(&self) -> &TypedValue {
        self.joined.as_ref().unwrap_or(&self.record.checkpoint)
    }

    fn metadata(&self) -> &[u8] {
        self.metadata_text
            .as_deref()
            .unwrap_or(&self.record.metadata.bytes)
    }
}

impl SqliteSink {
    pub fn new(config: SqliteSinkConfig) -> Self {
        let path = path_from_connection_string(&config.connection_string);
        Self {
            config,
            path,
            db: None,
            counts: WriteCounts::default(),
            kept_as_maps: BTreeSet::new(),
        }
    }

    fn error(&self, what: &str, e: rusqlite::Error) -> StoreError {
        blocking::write_error(&self.path, self.config.busy_timeout_seconds, what, e)
    }

    /// Opens the database, creating SqliteSaver's tables when missing.
    fn open(&mut self) -> Result<&mut Database, StoreError> {
        if self.db.is_none() {
            let (conn, journal) = blocking::open_writable(&self.path, &self.config, true)?;
            for create in CREATE_TABLES {
                conn.execute(create, [])
                    .map_err(|e| self.error("cannot create SqliteSaver's tables", e))?;
            }
            let columns = blocking::table_columns(&conn, &self.path, "checkpoints")?;
            check_columns(&self.path, "checkpoints", &columns, &CHECKPOINT_COLUMNS)?;
            let columns = blocking::table_columns(&conn, &self.path, "writes")?;
            check_columns(&self.path, "writes", &columns, &WRITE_COLUMNS)?;
            let page_size: u64 = conn
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .map_err(|e| self.error("cannot read the page size", e))?;
            conn.pragma_update(
                None,
                "wal_autocheckpoint",
                wal::WRITER_CHECKPOINT_BYTES / page_size.max(512),
            )
            .map_err(|e| self.error("cannot set wal_autocheckpoint", e))?;
            // A batch's pages stay in memory until its commit: with SQLite's default
            // cache (2 MB) a batch's pages spilled into the WAL mid-way, and SQLite read
            // them back to rewrite their checksums at the commit (54 MB of reads on a
            // copy of 229 MB). The cache holds a batch however large (it grows with
            // `max_batch_bytes` only), and shrinks back at the commit.
            conn.pragma_update(None, "cache_spill", false)
                .map_err(|e| self.error("cannot set cache_spill", e))?;
            let checkpointer = match journal {
                Journal::Wal => Some(WalCheckpointer::start(&self.path)?),
                Journal::Rollback => None,
            };
            self.db = Some(Database {
                checkpointer,
                conn,
                writes_have_task_path: columns.iter().any(|c| c == "task_path"),
            });
        }
        Ok(self.db.as_mut().expect("opened above"))
    }

    /// Writes one batch in one transaction: all of it or, on an error, none.
    fn write_rows(&mut self, rows: &[SaverRow<'_>]) -> Result<(), StoreError> {
        let mode = self.config.on_conflict;
        let (path, busy) = (self.path.clone(), self.config.busy_timeout_seconds);
        let error = |what: &str, e| blocking::write_error(&path, busy, what, e);
        let db = self.open()?;
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot start a transaction", e))?;
        let inserted = insert(&tx, rows, mode, db.writes_have_task_path).map_err(|e| match e {
            Failure::Differs { key, what } => StoreError::fatal(format!(
                "SQLite {}: {key} already exists with a different {what} (on_conflict: fail); nothing of this batch was written",
                path.display()
            )),
            Failure::Sql { what, error: e } => error(&what, e),
        });
        let counts = match inserted {
            Ok(counts) => counts,
            Err(e) => {
                if tx.rollback().is_err() {
                    // A connection in an unknown state is reopened for the retry.
                    self.db = None;
                }
                return Err(e);
            }
        };
        tx.commit().map_err(|e| error("cannot commit", e))?;
        if let Some(checkpointer) = &db.checkpointer {
            checkpointer.wake();
        }
        self.counts.written += counts.written;
        self.counts.kept += counts.kept;
        self.counts.writes += counts.writes;
        Ok(())
    }
}

/// Why a batch was not written.
enum Failure {
    /// With `on_conflict: fail`: `key` is there with a different `what`.
    Differs { key: String, what: &'static str },
    Sql {
        what: String,
        error: rusqlite::Error,
    },
}

fn sql(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Failure {
    move |error| Failure::Sql {
        what: what.into(),
        error,
    }
}

/// Inserts the rows of one batch inside its transaction, one prepared statement per
/// table: with SQLite in the process, a statement per row costs no round trip.
fn insert(
    conn: &Connection,
    rows: &[SaverRow<'_>],
    mode: OnConflict,
    with_task_path: bool,
) -> Result<WriteCounts, Failure> {
    if mode == OnConflict::Fail {
        for row in rows {
            check_unchanged(conn, row)?;
        }
    }
    let verb = match mode {
        OnConflict::Overwrite => "INSERT OR REPLACE",
        OnConflict::Skip | OnConflict::Fail => "INSERT OR IGNORE",
    };
    let mut checkpoints = conn
        .prepare_cached(&format!(
            "{verb} INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .map_err(sql("cannot prepare the insert into `checkpoints`"))?;
    let mut writes = conn
        .prepare_cached(&if with_task_path {
            format!("{verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        } else {
            format!("{verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        })
        .map_err(sql("cannot prepare the insert into `writes`"))?;
    let mut counts = WriteCounts::default();
    for row in rows {
        let record = row.record.as_ref();
        let key = &record.key;
        let written = checkpoints
            .execute(params![
                key.thread_id,
                key.checkpoint_ns,
                key.checkpoint_id,
                record.parent_checkpoint_id,
                row.checkpoint().type_tag,
                row.checkpoint().bytes,
                row.metadata(),
            ])
            .map_err(|e| sql(format!("cannot write checkpoint {key}"))(e))?;
        counts.written += written as u64;
        counts.kept += 1 - written.min(1) as u64;
        for w in &record.pending_writes {
            let done = if with_task_path {
                writes.execute(params![
                    key.thread_id,
                    key.checkpoint_ns,
                    key.checkpoint_id,
                    w.task_id,
                    w.task_path,
                    w.idx,
                    w.channel,
                    w.value.type_tag,
                    w.value.bytes,
                ])
            } else {
                writes.execute(params![
                    key.thread_id,
                    key.checkpoint_ns,
                    key.checkpoint_id,
                    w.task_id,
                    w.idx,
                    w.channel,
                    w.value.type_tag,
                    w.value.bytes,
                ])
            };
            counts.writes += done
                .map_err(|e| sql(format!("cannot write the pending writes of {key}"))(e))?
                as u64;
        }
    }
    Ok(counts)
}

/// With `on_conflict: fail`: an existing row must equal the one we would write.
fn check_unchanged(conn: &Connection, row: &SaverRow<'_>) -> Result<(), Failure> {
    let record = row.record.as_ref();
    let key = &record.key;
    let differs = |what| Failure::Differs {
        key: key.to_string(),
        what,
    };
    let checkpoint = row.checkpoint();
    let same: Option<bool> = conn
        .prepare_cached(
            "SELECT parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
        )
        .and_then(|mut s| {
            s.query_row(
                params![key.thread_id, key.checkpoint_ns, key.checkpoint_id],
                |r| {
                    Ok(holds(r, 0, record.parent_checkpoint_id.as_deref().map(str::as_bytes))?
                        && holds(r, 1, Some(checkpoint.type_tag.as_bytes()))?
                        && holds(r, 2, Some(&checkpoint.bytes))?
                        && holds(r, 3, Some(row.metadata()))?)
                },
            )
            .optional()
        })
        .map_err(sql("cannot read an existing checkpoint"))?;
    if same == Some(false) {
        return Err(differs("checkpoint"));
    }
    let mut select = conn
        .prepare_cached(
            "SELECT type, value FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND task_id = ? AND idx = ?",
        )
        .map_err(sql("cannot read an existing pending write"))?;
    for w in &record.pending_writes {
        let same: Option<bool> = select
            .query_row(
                params![
                    key.thread_id,
                    key.checkpoint_ns,
                    key.checkpoint_id,
                    w.task_id,
                    w.idx
                ],
                |r| {
                    Ok(holds(r, 0, Some(w.value.type_tag.as_bytes()))?
                        && holds(r, 1, Some(&w.value.bytes))?)
                },
            )
            .optional()
            .map_err(sql("cannot read an existing pending write"))?;
        if same == Some(false) {
            return Err(differs("pending write"));
        }
    }
    Ok(())
}

/// Whether column `i` of `row` holds `expected` (`None`: NULL). Text and blobs compare
/// by their bytes: SqliteSaver binds Python `str` or `bytes`, and either may be there.
fn holds(row: &rusqlite::Row<'_>, i: usize, expected: Option<&[u8]>) -> rusqlite::Result<bool> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => expected.is_none(),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => expected == Some(bytes),
        ValueRef::Integer(_) | ValueRef::Real(_) => false,
    })
}

#[async_trait]
impl Sink for SqliteSink {
    fn describe(&self) -> String {
        format!(
            "SQLite {} (SqliteSaver tables, on_conflict: {})",
            self.path.display(),
            self.config.on_conflict.name()
        )
    }

    fn needs_view(&self) -> bool {
        false
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "sqlite".into());
        name.push(".dead-letter.jsonl");
        self.path.with_file_name(name)
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        in_place(|| self.open().map(drop))
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        if self.path.exists() {
            let conn = blocking::open_read_only(&self.path)?;
            let columns = blocking::table_columns(&conn, &self.path, "checkpoints")?;
            if !columns.is_empty() {
                check_columns(&self.path, "checkpoints", &columns, &CHECKPOINT_COLUMNS)?;
            }
            if std::fs::metadata(&self.path).is_ok_and(|m| m.permissions().readonly()) {
                return Err(StoreError::fatal(format!(
                    "SQLite {} is read-only",
                    self.path.display()
                )));
            }
            Ok(())
        } else {
            crate::sinks::check_dir_writable(
                self.path.parent().unwrap_or(std::path::Path::new(".")),
            )
        }
    }

    async fn plan(&mut self, threads: &[String]) -> Result<Vec<String>, StoreError> {
        let shown = self.path.display().to_string();
        if !self.path.exists() {
            return Ok(vec![format!(
                "create {shown} with SqliteSaver's tables, in WAL mode"
            )]);
        }
        let conn = blocking::open_read_only(&self.path)?;
        if blocking::table_columns(&conn, &self.path, "checkpoints")?.is_empty() {
            return Ok(vec![format!("create SqliteSaver's tables in {shown}")]);
        }
        let threads = serde_json::to_string(threads).expect("strings serialize");
        let existing: i64 = in_place(|| {
            conn.query_row(
                "SELECT count(*) FROM checkpoints WHERE thread_id IN (SELECT value FROM json_each(?))",
                [threads],
                |row| row.get(0),
            )
        })
        .map_err(|e| self.error("cannot count existing checkpoints", e))?;
        Ok(vec![
            format!("use SqliteSaver's tables in {shown}"),
            crate::stores::existing_line(existing, self.config.on_conflict),
        ])
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        let mut rejected = Vec::new();
        let mut rows = Vec::with_capacity(records.len());
        let mut encoder = Encoder::new(&self.config.allowed_json_modules);
        for (index, record) in records.iter().enumerate() {
            let row = layout::native(record, &mut encoder).and_then(SaverRow::new);
            match row {
                Ok(row) => rows.push(row),
                Err(e) => rejected.push(Rejected {
                    index,
                    reason: format!("cannot be written as a SqliteSaver checkpoint: {e}"),
                }),
            }
        }
        self.kept_as_maps.append(&mut encoder.kept_as_maps);
        in_place(|| self.write_rows(&rows))?;
        Ok(rejected)
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        in_place(|| self.db = None);
        Ok(())
    }

    fn comparison(&self) -> Comparison {
        Comparison::View
    }

    fn written_form(&self, record: Checkpoint) -> Option<Checkpoint> {
        let allowed = &self.config.allowed_json_modules;
        layout::written_native(&record, allowed, |n| {
            layout::whole(n).is_ok() && layout::metadata_json(n).is_ok()
        })
    }

    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        let written = SqliteSourceConfig {
            connection_string: self.config.connection_string.clone(),
        };
        Ok(Box::new(
            super::SqliteSource::open(&written, &Filters::none()).await?,
        ))
    }

    async fn finish(&mut self, _stats: &RunStats) -> Result<(), StoreError> {
        self.counts
            .report(&format!("SQLite {}", self.path.display()));
        crate::stores::report_kept_as_maps(
            &format!("SQLite {}", self.path.display()),
            &self.kept_as_maps,
        );
        if let Some(Database {
            checkpointer, conn, ..
        }) = self.db.take()
        {
            in_place(|| {
                match checkpointer {
                    Some(checkpointer) => drop(checkpointer),
                    // The database this run created is left as SqliteSaver makes one.
                    None => blocking::switch_to_wal(
                        &conn,
                        &self.path,
                        self.config.busy_timeout_seconds,
                    )?,
                }
                conn.close().map_err(|(_, e)| self.error("cannot close", e))
            })?;
        }
        Ok(())
    }
}

impl OpenSink for SqliteSinkConfig {
    fn open_sink(&self, _run: &RunInfo, _retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        self.checked_page_size()?;
        Ok(Box::new(SqliteSink::new(self.clone())))
    }
}
