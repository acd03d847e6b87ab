//! LangGraph `SqliteSaver` databases: `checkpoints` (the whole checkpoint as one typed
//! value) and `writes`.
//!
//! Reads are keyset-paginated on the primary key `(thread_id, checkpoint_ns,
//! checkpoint_id)`, so memory is bounded by the batch, not the table, and a page costs
//! the same at the end of the table as at the start.

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use super::blocking::{self, Blocking};
use super::config::SqliteSourceConfig;
use super::{CHECKPOINT_COLUMNS, WRITE_COLUMNS, check_columns, path_from_connection_string};
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{Checkpoint, CheckpointKey, Origin, PendingWrite, TypedValue};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, FailedRead, Source, SourceBatch, ThreadCounts};
use crate::stores::sql::{self, Dialect};

pub struct SqliteSource {
    /// Reads on tokio's blocking pool, one call at a time.
    reader: Blocking<Reader>,
    path: PathBuf,
    /// The pushed-down filters, for the log.
    pushdown_summary: String,
}

/// The connection and where reading is.
struct Reader {
    conn: Connection,
    path: PathBuf,
    pushdown: ThreadPushdown,
    /// `writes` exists (SqliteSaver always creates it; hand-made databases may not).
    has_writes: bool,
    /// Older SqliteSaver versions have no `writes.task_path`.
    has_task_path: bool,
    /// The shard's thread ids are in [`SHARD_TABLE`] (a sharded run).
    shard_table: bool,
    after: Option<CheckpointKey>,
    done: bool,
}

/// A temporary table (the connection's own; the database stays read-only) holding the
/// thread ids of this run's shard: SQLite's SQL cannot hash, so the shard is listed
/// once from the primary-key index and then joined by every query.
const SHARD_TABLE: &str = "temp.ckpt_migrate_shard_threads";

/// Lists the threads of `shard` into [`SHARD_TABLE`]; returns how many.
fn fill_shard_table(
    conn: &Connection,
    path: &Path,
    shard: &crate::shard::Shard,
) -> Result<usize, StoreError> {
    let failed = |what: &'static str| move |e| blocking::error(path, what, e);
    let threads: Vec<String> = {
        let listing = failed("listing the threads of the shard");
        let mut statement = conn
            .prepare("SELECT DISTINCT thread_id FROM checkpoints")
            .map_err(listing)?;
        let mut rows = statement.query([]).map_err(listing)?;
        let mut mine = Vec::new();
        while let Some(row) = rows.next().map_err(listing)? {
            let thread: String = row.get(0).map_err(listing)?;
            if shard.contains(&thread) {
                mine.push(thread);
            }
        }
        mine
    };
    conn.execute(
        &format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} (thread_id TEXT PRIMARY KEY) WITHOUT ROWID",
            SHARD_TABLE.trim_start_matches("temp.")
        ),
        [],
    )
    .map_err(failed("creating the shard's thread list"))?;
    let filling = failed("filling the shard's thread list");
    let mut insert = conn
        .prepare(&format!(
            "INSERT OR IGNORE INTO {SHARD_TABLE} (thread_id) VALUES (?)"
        ))
        .map_err(filling)?;
    for thread in &threads {
        insert.execute([thread]).map_err(filling)?;
    }
    Ok(threads.len())
}

impl SqliteSource {
    pub async fn open(config: &SqliteSourceConfig, filters: &Filters) -> Result<Self, StoreError> {
        let path = path_from_connection_string(&config.connection_string);
        let pushdown = filters.thread_pushdown();
        let reader = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Reader::open(path, pushdown))
                .await
                .map_err(|e| StoreError::fatal(format!("SQLite: opening stopped: {e}")))??
        };
        let pushdown_summary = sql::pushdown_summary(&reader.filter_sql().0);
        Ok(Self {
            reader: Blocking::new(reader, &path),
            path,
            pushdown_summary,
        })
    }
}

impl Reader {
    fn open(path: PathBuf, pushdown: ThreadPushdown) -> Result<Self, StoreError> {
        let conn = blocking::open_read_only(&path)?;
        let tables = blocking::table_names(&conn, &path)?;
        if !tables.iter().any(|t| t == "checkpoints") {
            let hint = if tables.iter().any(|t| t == "store") {
                " It holds a LangGraph Store (long-term memory): move its items with --state store."
            } else {
                ""
            };
            return Err(super::missing_table(
                &path,
                "checkpoints",
                &tables,
                &format!("is this a LangGraph SqliteSaver database?{hint}"),
            ));
        }
        let columns = blocking::table_columns(&conn, &path, "checkpoints")?;
        check_columns(&path, "checkpoints", &columns, &CHECKPOINT_COLUMNS)?;
        let has_writes = tables.iter().any(|t| t == "writes");
        let mut has_task_path = false;
        if has_writes {
            let columns = blocking::table_columns(&conn, &path, "writes")?;
            check_columns(&path, "writes", &columns, &WRITE_COLUMNS)?;
            has_task_path = columns.iter().any(|c| c == "task_path");
        } else {
            tracing::warn!(
                "SQLite {}: no `writes` table; checkpoints are read without pending writes",
                path.display()
            );
        }
        let shard_table = match &pushdown.shard {
            Some(shard) => {
                let threads = fill_shard_table(&conn, &path, shard)?;
                tracing::debug!(
                    "SQLite {}: shard {shard} has {threads} thread(s)",
                    path.display()
                );
                true
            }
            None => false,
        };
        Ok(Self {
            conn,
            path,
            pushdown,
            has_writes,
            has_task_path,
            shard_table,
            after: None,
            done: false,
        })
    }

    /// `WHERE` fragments and their parameters for the pushed-down thread filters.
    fn filter_sql(&self) -> (Vec<String>, Vec<String>) {
        let (mut clauses, params) =
            sql::thread_clauses(Dialect::Sqlite, &self.pushdown, "thread_id", 1);
        clauses.extend(self.shard_clause());
        (clauses, params)
    }

    /// Only the threads of this run's shard, when sharded.
    fn shard_clause(&self) -> Option<String> {
        self.shard_table
            .then(|| format!("thread_id IN (SELECT thread_id FROM {SHARD_TABLE})"))
    }

    fn origin(&self, key: &CheckpointKey) -> Origin {
        Origin {
            store: "sqlite".into(),
            locator: format!("{} checkpoints[{key}]", self.path.display()),
        }
    }

    /// The pending writes of the checkpoints from `first` to `last`: one range query
    /// on `writes`' primary key.
    fn read_writes(
        &self,
        first: &CheckpointKey,
        last: &CheckpointKey,
    ) -> Result<FxHashMap<CheckpointKey, Vec<PendingWrite>>, StoreError> {
        // Keyed by our own keys, read from our own source: no need for SipHash's
        // defence against chosen keys.
        let mut by_key: FxHashMap<CheckpointKey, Vec<PendingWrite>> = FxHashMap::default();
        if !self.has_writes {
            return Ok(by_key);
        }
        let task_path = if self.has_task_path {
            "task_path"
        } else {
            "''"
        };
        let shard = self
            .shard_clause()
            .map_or(String::new(), |c| format!("AND {c} "));
        let sql = format!(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, \
             CAST(value AS BLOB) FROM writes \
             WHERE (thread_id, checkpoint_ns, checkpoint_id) >= (?, ?, ?) \
               AND (thread_id, checkpoint_ns, checkpoint_id) <= (?, ?, ?) {shard}\
             ORDER BY thread_id, checkpoint_ns, checkpoint_id, task_id, idx"
        );
        let path = &self.path;
        let reading = |e| blocking::error(path, "reading `writes`", e);
        let column = |name: &'static str| move |e| blocking::error(path, name, e);
        let mut statement = self.conn.prepare_cached(&sql).map_err(reading)?;
        let mut rows = statement
            .query(params_from_iter(
                first.parts().into_iter().chain(last.parts()),
            ))
            .map_err(reading)?;
        while let Some(row) = rows.next().map_err(reading)? {
            let key = CheckpointKey {
                thread_id: row.get(0).map_err(column("writes.thread_id"))?,
                checkpoint_ns: row.get(1).map_err(column("writes.checkpoint_ns"))?,
                checkpoint_id: row.get(2).map_err(column("writes.checkpoint_id"))?,
            };
            let write = PendingWrite {
                task_id: row.get(3).map_err(column("writes.task_id"))?,
                task_path: row.get(4).map_err(column("writes.task_path"))?,
                idx: row.get(5).map_err(column("writes.idx"))?,
                channel: row.get(6).map_err(column("writes.channel"))?,
                value: TypedValue::new(
                    row.get::<_, Option<String>>(7)
                        .map_err(column("writes.type"))?
                        .unwrap_or_default(),
                    row.get::<_, Option<Vec<u8>>>(8)
                        .map_err(column("writes.value"))?
                        .unwrap_or_default(),
                ),
            };
            by_key.entry(key).or_default().push(write);
        }
        // SqliteSaver returns a checkpoint's writes by `(task_path, task_id, idx)`.
        // The query asks for the primary key's order (`task_id, idx`), which SQLite
        // reads straight from the index; `task_path` first made it sort every batch's
        // writes, values and all, in a temporary B-tree (a third of the writes query's
        // time). A stable sort by `task_path` here gives the same order: both compare
        // text byte by byte.
        for writes in by_key.values_mut() {
            if !writes.is_sorted_by(|a, b| a.task_path <= b.task_path) {
                writes.sort_by(|a, b| a.task_path.cmp(&b.task_path));
            }
        }
        Ok(by_key)
    }

    fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        if self.done {
            return Ok(None);
        }
        blocking::map_for_next_batch(&self.conn, &self.path)?;
        let (mut clauses, mut params) = self.filter_sql();
        if let Some(after) = &self.after {
            clauses.insert(
                0,
                "(thread_id, checkpoint_ns, checkpoint_id) > (?, ?, ?)".into(),
            );
            params.splice(
                0..0,
                [
                    after.thread_id.clone(),
                    after.checkpoint_ns.clone(),
                    after.checkpoint_id.clone(),
                ],
            );
        }
        let where_sql = sql::where_sql(&clauses);
        let sql = format!(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, \
             CAST(checkpoint AS BLOB), CAST(metadata AS BLOB) FROM checkpoints {where_sql} \
             ORDER BY thread_id, checkpoint_ns, checkpoint_id LIMIT ?"
        );
        let limit = i64::try_from(limits.max_records).unwrap_or(i64::MAX);
        let values = params
            .into_iter()
            .map(Value::Text)
            .chain([Value::Integer(limit)]);

        let mut rows: Vec<RowRead> = Vec::new();
        let mut bytes = 0usize;
        let mut fetched = 0usize;
        {
            let reading = |e| blocking::error(&self.path, "reading `checkpoints`", e);
            let mut statement = self.conn.prepare_cached(&sql).map_err(reading)?;
            let mut cursor = statement.query(params_from_iter(values)).map_err(reading)?;
            while let Some(row) = cursor.next().map_err(reading)? {
                fetched += 1;
                match checkpoint_from_row(row) {
                    Ok((key, parts)) => {
                        if let Ok(p) = &parts {
                            bytes += p.checkpoint.as_ref().map_or(0, Vec::len)
                                + p.metadata.as_ref().map_or(0, Vec::len);
                        }
                        rows.push((key, parts));
                    }
                    Err(e) => {
                        // Without a key we cannot page past it: that is fatal.
                        return Err(StoreError::fatal(format!(
                            "SQLite {}: unreadable key in `checkpoints` after {}: {e}",
                            self.path.display(),
                            self.after
                                .as_ref()
                                .map_or("the start".to_owned(), ToString::to_string)
                        )));
                    }
                }
                if bytes >= limits.max_bytes {
                    break;
                }
            }
        }
        if fetched < limits.max_records && bytes < limits.max_bytes {
            self.done = true;
        }
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            self.done = true;
            return Ok(None);
        };
        let (first, last) = (first.0.clone(), last.0.clone());
        let mut writes = self.read_writes(&first, &last)?;
        let mut batch = SourceBatch {
            last_key: Some(last.clone()),
            ..SourceBatch::default()
        };
        for (key, parts) in rows {
            let origin = self.origin(&key);
            let parts = match parts {
                Ok(p) => p,
                Err(error) => {
                    batch.failed.push(FailedRead {
                        key: Some(key),
                        origin,
                        error,
                    });
                    continue;
                }
            };
            let Some(document) = parts.checkpoint else {
                batch.failed.push(FailedRead {
                    key: Some(key),
                    origin,
                    error: "column checkpoint is NULL".into(),
                });
                continue;
            };
            let pending_writes = writes.remove(&key).unwrap_or_default();
            bytes += pending_writes
                .iter()
                .map(|w| w.value.bytes.len())
                .sum::<usize>();
            batch.records.push(Checkpoint {
                parent_checkpoint_id: parts.parent,
                checkpoint: TypedValue::new(parts.type_tag.unwrap_or_default(), document),
                channel_blobs: Vec::new(),
                // SqliteSaver stores metadata as JSON text (not a serializer value).
                metadata: TypedValue::new("json", parts.metadata.unwrap_or_default()),
                pending_writes,
                origin,
                view: None,
                key,
            });
        }
        batch.bytes = bytes;
        self.after = Some(last);
        Ok(Some(batch))
    }

    fn count_by_thread(&self, pushed: bool) -> Result<ThreadCounts, StoreError> {
        let (clauses, params) = if pushed {
            self.filter_sql()
        } else {
            (Vec::new(), Vec::new())
        };
        let where_sql = sql::where_sql(&clauses);
        let sql = format!(
            "SELECT thread_id, COUNT(*) FROM checkpoints {where_sql} GROUP BY thread_id ORDER BY thread_id"
        );
        let counting = |e| blocking::error(&self.path, "counting `checkpoints`", e);
        let mut statement = self.conn.prepare(&sql).map_err(counting)?;
        let mut rows = statement
            .query(params_from_iter(params))
            .map_err(counting)?;
        let mut counts = ThreadCounts::default();
        while let Some(row) = rows.next().map_err(counting)? {
            let thread: String = row
                .get(0)
                .map_err(|e| blocking::error(&self.path, "checkpoints.thread_id", e))?;
            let n: i64 = row
                .get(1)
                .map_err(|e| blocking::error(&self.path, "count", e))?;
            counts
                .per_thread
                .insert(thread, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }
}

/// One `checkpoints` row: its key (an unreadable key is an error of the whole read),
/// then the record's parts or why it cannot be one.
type RowRead = (CheckpointKey, Result<RowParts, String>);

fn checkpoint_from_row(row: &Row<'_>) -> Result<RowRead, String> {
    let text = |i: usize, name: &str| -> Result<String, String> {
        row.get::<_, String>(i)
            .map_err(|e| format!("column {name}: {e}"))
    };
    let key = CheckpointKey {
        thread_id: text(0, "thread_id")?,
        checkpoint_ns: text(1, "checkpoint_ns")?,
        checkpoint_id: text(2, "checkpoint_id")?,
    };
    let parts = (|| {
        Ok(RowParts {
            parent: row
                .get::<_, Option<String>>(3)
                .map_err(|e| format!("column parent_checkpoint_id: {e}"))?,
            type_tag: row
                .get::<_, Option<String>>(4)
                .map_err(|e| format!("column type: {e}"))?,
            checkpoint: row
                .get::<_, Option<Vec<u8>>>(5)
                .map_err(|e| format!("column checkpoint: {e}"))?,
            metadata: row
                .get::<_, Option<Vec<u8>>>(6)
                .map_err(|e| format!("column metadata: {e}"))?,
        })
    })();
    Ok((key, parts))
}

struct RowParts {
    parent: Option<String>,
    type_tag: Option<String>,
    checkpoint: Option<Vec<u8>>,
    metadata: Option<Vec<u8>>,
}

#[async_trait]
impl Source for SqliteSource {
    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }

    fn resume_after(&mut self, key: CheckpointKey) {
        if let Some(reader) = self.reader.get_mut() {
            reader.after = Some(key);
            reader.done = false;
        }
    }

    fn counts_cheaply(&self) -> bool {
        true
    }

    fn pushdown_summary(&self) -> String {
        self.pushdown_summary.clone()
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        self.reader
            .call(move |reader| reader.next_batch(limits))
            .await
    }

    async fn count_by_thread(&mut self, pushed: bool) -> Result<ThreadCounts, StoreError> {
        self.reader
            .call(move |reader| reader.count_by_thread(pushed))
            .await
    }
}

#[async_trait]
impl OpenSource for SqliteSourceConfig {
    async fn open_source(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        Ok(Box::new(SqliteSource::open(self, filters).await?))
    }
}
