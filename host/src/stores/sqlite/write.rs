//! SQLite destination: a database LangGraph's `SqliteSaver` reads as it read the
//! source.
//!
//! The file is created when missing, with SqliteSaver's own tables and WAL mode. Each
//! batch is one `BEGIN IMMEDIATE` transaction, so a batch is all there or not at all
//! and the resume state never runs ahead of the file. Checkpoints take SqliteSaver's
//! whole shape ([`layout::whole`]): from a PostgreSQL source the document and its blobs
//! are joined into one msgpack checkpoint, the blobs' bytes spliced in unchanged.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use super::config::SqliteSinkConfig;
use super::config::SqliteSourceConfig;
use super::{
    CHECKPOINT_COLUMNS, WRITE_COLUMNS, check_columns, path_from_connection_string, table_columns,
};
use crate::codec::redis_form::Encoder;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::{Checkpoint, CheckpointKey, PendingWrite};
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
    conn: Option<SqliteConnection>,
    /// Whether `writes` has `task_path` (SqliteSaver before 2.0 had none).
    writes_have_task_path: bool,
    counts: WriteCounts,
    kept_as_maps: BTreeSet<String>,
}

/// A checkpoint in SqliteSaver's shape, ready to insert.
struct SaverRow<'a> {
    /// The record, its values in the form SqliteSaver's serializer reads.
    record: Cow<'a, Checkpoint>,
    checkpoint: crate::record::TypedValue,
    metadata: Vec<u8>,
}

impl SqliteSink {
    pub fn new(config: SqliteSinkConfig) -> Self {
        let path = path_from_connection_string(&config.connection_string);
        Self {
            config,
            path,
            conn: None,
            writes_have_task_path: true,
            counts: WriteCounts::default(),
            kept_as_maps: BTreeSet::new(),
        }
    }

    fn error(&self, what: &str, e: sqlx::Error) -> StoreError {
        super::write_error(&self.path, self.config.busy_timeout_seconds, what, e)
    }

    async fn open(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        if self.conn.is_none() {
            let mut conn = super::connect_writable(&self.path, &self.config).await?;
            for create in CREATE_TABLES {
                sqlx::query(create)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| self.error("cannot create SqliteSaver's tables", e))?;
            }
            let columns = table_columns(&mut conn, &self.path, "checkpoints").await?;
            check_columns(&self.path, "checkpoints", &columns, &CHECKPOINT_COLUMNS)?;
            let columns = table_columns(&mut conn, &self.path, "writes").await?;
            check_columns(&self.path, "writes", &columns, &WRITE_COLUMNS)?;
            self.writes_have_task_path = columns.iter().any(|c| c == "task_path");
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// The existing database, read-only: a dry run leaves the file as it is.
    async fn open_read_only(&self) -> Result<SqliteConnection, StoreError> {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .read_only(true)
            .disable_statement_logging()
            .connect()
            .await
            .map_err(|e| self.error("cannot open", e))
    }

    /// Inserts one batch inside an open transaction.
    async fn insert(&mut self, rows: &[SaverRow<'_>]) -> Result<(), StoreError> {
        let mode = self.config.on_conflict;
        let verb = match mode {
            OnConflict::Overwrite => "INSERT OR REPLACE",
            OnConflict::Skip | OnConflict::Fail => "INSERT OR IGNORE",
        };
        let write_columns = if self.writes_have_task_path {
            "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value"
        } else {
            "thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, value"
        };
        let with_task_path = self.writes_have_task_path;
        let path = self.path.clone();
        let err = |what: &str, e: sqlx::Error| super::sql_error(&path, what, e);
        let conn = self.conn.as_mut().expect("opened before writing");
        let mut counts = WriteCounts::default();
        if mode == OnConflict::Fail {
            for row in rows {
                let record = row.record.as_ref();
                let key = &record.key;
                check_unchanged(conn, record, row).await.map_err(|e| match e {
                    Conflict::Differs(what) => StoreError::fatal(format!(
                        "SQLite {}: {key} already exists with a different {what} (on_conflict: fail); nothing of this batch was written",
                        path.display()
                    )),
                    Conflict::Sql(e) => err("cannot read an existing checkpoint", e),
                })?;
            }
        }
        // Many rows per statement: each statement is a round trip to the thread that
        // runs the connection, which cost more than SQLite's work one row at a time.
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{verb} INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) VALUES {}",
                placeholders(chunk.len(), 7)
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                let record = row.record.as_ref();
                query = query
                    .bind(&record.key.thread_id)
                    .bind(&record.key.checkpoint_ns)
                    .bind(&record.key.checkpoint_id)
                    .bind(&record.parent_checkpoint_id)
                    .bind(&row.checkpoint.type_tag)
                    .bind(&row.checkpoint.bytes)
                    .bind(&row.metadata);
            }
            let done = query.execute(&mut *conn).await.map_err(|e| {
                let first = &chunk[0].record.key;
                err(&format!("cannot write checkpoints from {first} on"), e)
            })?;
            counts.written += done.rows_affected();
            counts.kept += chunk.len() as u64 - done.rows_affected();
        }
        let writes: Vec<(&CheckpointKey, &PendingWrite)> = rows
            .iter()
            .flat_map(|row| {
                let record = row.record.as_ref();
                record.pending_writes.iter().map(move |w| (&record.key, w))
            })
            .collect();
        let per_write = if with_task_path { 9 } else { 8 };
        for chunk in writes.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{verb} INTO writes ({write_columns}) VALUES {}",
                placeholders(chunk.len(), per_write)
            );
            let mut query = sqlx::query(&sql);
            for (key, w) in chunk {
                query = query
                    .bind(&key.thread_id)
                    .bind(&key.checkpoint_ns)
                    .bind(&key.checkpoint_id)
                    .bind(&w.task_id);
                if with_task_path {
                    query = query.bind(&w.task_path);
                }
                query = query
                    .bind(w.idx)
                    .bind(&w.channel)
                    .bind(&w.value.type_tag)
                    .bind(&w.value.bytes);
            }
            let done = query.execute(&mut *conn).await.map_err(|e| {
                let key = chunk[0].0;
                err(&format!("cannot write pending writes from {key} on"), e)
            })?;
            counts.writes += done.rows_affected();
        }
        self.counts.written += counts.written;
        self.counts.kept += counts.kept;
        self.counts.writes += counts.writes;
        Ok(())
    }
}

/// Rows per `INSERT` statement (9 parameters each at most: far below SQLite's limit
/// of 32766).
const ROWS_PER_STATEMENT: usize = 200;

/// `(?, …), (?, …)`: `rows` groups of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    vec![group; rows].join(", ")
}

enum Conflict {
    Differs(&'static str),
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for Conflict {
    fn from(e: sqlx::Error) -> Self {
        Conflict::Sql(e)
    }
}

/// With `on_conflict: fail`: an existing row must equal the one we would write.
async fn check_unchanged(
    conn: &mut SqliteConnection,
    record: &Checkpoint,
    row: &SaverRow<'_>,
) -> Result<(), Conflict> {
    let key = &record.key;
    let existing = sqlx::query(
        "SELECT parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
    )
    .bind(&key.thread_id)
    .bind(&key.checkpoint_ns)
    .bind(&key.checkpoint_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(existing) = existing {
        let same = existing.try_get::<Option<String>, _>(0)? == record.parent_checkpoint_id
            && existing.try_get::<Option<String>, _>(1)?.as_deref()
                == Some(row.checkpoint.type_tag.as_str())
            && existing.try_get::<Option<Vec<u8>>, _>(2)?.as_deref()
                == Some(row.checkpoint.bytes.as_slice())
            && existing.try_get::<Option<Vec<u8>>, _>(3)?.as_deref()
                == Some(row.metadata.as_slice());
        if !same {
            return Err(Conflict::Differs("checkpoint"));
        }
    }
    for w in &record.pending_writes {
        let existing = sqlx::query(
            "SELECT type, value FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND task_id = ? AND idx = ?",
        )
        .bind(&key.thread_id)
        .bind(&key.checkpoint_ns)
        .bind(&key.checkpoint_id)
        .bind(&w.task_id)
        .bind(w.idx)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(existing) = existing {
            let same = existing.try_get::<Option<String>, _>(0)?.as_deref()
                == Some(w.value.type_tag.as_str())
                && existing.try_get::<Option<Vec<u8>>, _>(1)?.as_deref()
                    == Some(w.value.bytes.as_slice());
            if !same {
                return Err(Conflict::Differs("pending write"));
            }
        }
    }
    Ok(())
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
        self.open().await.map(drop)
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        if self.path.exists() {
            let mut conn = self.open_read_only().await?;
            let columns = table_columns(&mut conn, &self.path, "checkpoints").await?;
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
        let mut conn = self.open_read_only().await?;
        if table_columns(&mut conn, &self.path, "checkpoints")
            .await?
            .is_empty()
        {
            return Ok(vec![format!("create SqliteSaver's tables in {shown}")]);
        }
        let threads = serde_json::to_string(threads).expect("strings serialize");
        let existing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM checkpoints WHERE thread_id IN (SELECT value FROM json_each(?))",
        )
        .bind(threads)
        .fetch_one(&mut conn)
        .await
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
            let row = layout::native(record, &mut encoder).and_then(|record| {
                Ok(SaverRow {
                    checkpoint: layout::whole(&record)?,
                    metadata: layout::metadata_json(&record)?,
                    record,
                })
            });
            match row {
                Ok(row) => rows.push(row),
                Err(e) => rejected.push(Rejected {
                    index,
                    reason: format!("cannot be written as a SqliteSaver checkpoint: {e}"),
                }),
            }
        }
        self.kept_as_maps.append(&mut encoder.kept_as_maps);
        self.open().await?;
        let conn = self.conn.as_mut().expect("opened above");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(|e| super::sql_error(&self.path, "cannot start a transaction", e))?;
        let result = self.insert(&rows).await;
        let conn = self.conn.as_mut().expect("opened above");
        match result {
            Ok(()) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| super::sql_error(&self.path, "cannot commit", e))?;
                Ok(rejected)
            }
            Err(e) => {
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    // A connection in an unknown state is reopened for the retry.
                    self.conn = None;
                }
                Err(e)
            }
        }
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
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
        if let Some(conn) = self.conn.take() {
            conn.close()
                .await
                .map_err(|e| self.error("cannot close", e))?;
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
