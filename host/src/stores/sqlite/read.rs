//! LangGraph `SqliteSaver` databases: `checkpoints` (the whole checkpoint as one typed
//! value) and `writes`.
//!
//! Reads are keyset-paginated on the primary key `(thread_id, checkpoint_ns,
//! checkpoint_id)`, so memory is bounded by the batch, not the table, and a page costs
//! the same at the end of the table as at the start.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::config::SqliteSourceConfig;
use super::{
    CHECKPOINT_COLUMNS, WRITE_COLUMNS, check_columns, path_from_connection_string, sql_error,
    table_columns,
};
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{Checkpoint, CheckpointKey, Origin, PendingWrite, TypedValue};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, FailedRead, Source, SourceBatch, ThreadCounts};
use crate::stores::sql::{self, Dialect};

pub struct SqliteSource {
    conn: SqliteConnection,
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
async fn fill_shard_table(
    conn: &mut SqliteConnection,
    path: &std::path::Path,
    shard: &crate::shard::Shard,
) -> Result<usize, StoreError> {
    let failed = |what: &str, e| sql_error(path, what, e);
    let threads: Vec<String> = {
        let mut stream =
            sqlx::query_scalar::<_, String>("SELECT DISTINCT thread_id FROM checkpoints")
                .fetch(&mut *conn);
        let mut mine = Vec::new();
        while let Some(thread) = stream
            .try_next()
            .await
            .map_err(|e| failed("listing the threads of the shard", e))?
        {
            if shard.contains(&thread) {
                mine.push(thread);
            }
        }
        mine
    };
    sqlx::query(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} (thread_id TEXT PRIMARY KEY) WITHOUT ROWID",
        SHARD_TABLE.trim_start_matches("temp.")
    ))
    .execute(&mut *conn)
    .await
    .map_err(|e| failed("creating the shard's thread list", e))?;
    for chunk in threads.chunks(500) {
        let values = vec!["(?)"; chunk.len()].join(", ");
        let sql = format!("INSERT OR IGNORE INTO {SHARD_TABLE} (thread_id) VALUES {values}");
        let mut query = sqlx::query(&sql);
        for thread in chunk {
            query = query.bind(thread);
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(|e| failed("filling the shard's thread list", e))?;
    }
    Ok(threads.len())
}

impl SqliteSource {
    pub async fn open(config: &SqliteSourceConfig, filters: &Filters) -> Result<Self, StoreError> {
        let path = path_from_connection_string(&config.connection_string);
        let mut conn = super::connect_read_only(&path).await?;
        let tables = super::table_names(&mut conn, &path).await?;
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
        let columns = table_columns(&mut conn, &path, "checkpoints").await?;
        check_columns(&path, "checkpoints", &columns, &CHECKPOINT_COLUMNS)?;
        let has_writes = tables.iter().any(|t| t == "writes");
        let mut has_task_path = false;
        if has_writes {
            let columns = table_columns(&mut conn, &path, "writes").await?;
            check_columns(&path, "writes", &columns, &WRITE_COLUMNS)?;
            has_task_path = columns.iter().any(|c| c == "task_path");
        } else {
            tracing::warn!(
                "SQLite {}: no `writes` table; checkpoints are read without pending writes",
                path.display()
            );
        }
        let pushdown = filters.thread_pushdown();
        let shard_table = match &pushdown.shard {
            Some(shard) => {
                let threads = fill_shard_table(&mut conn, &path, shard).await?;
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

    async fn read_writes(
        &mut self,
        first: &CheckpointKey,
        last: &CheckpointKey,
    ) -> Result<HashMap<CheckpointKey, Vec<PendingWrite>>, StoreError> {
        let mut by_key: HashMap<CheckpointKey, Vec<PendingWrite>> = HashMap::new();
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
             ORDER BY thread_id, checkpoint_ns, checkpoint_id, {task_path}, task_id, idx"
        );
        let rows = sqlx::query(&sql)
            .bind(&first.thread_id)
            .bind(&first.checkpoint_ns)
            .bind(&first.checkpoint_id)
            .bind(&last.thread_id)
            .bind(&last.checkpoint_ns)
            .bind(&last.checkpoint_id)
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| sql_error(&self.path, "reading `writes`", e))?;
        for row in rows {
            let key = CheckpointKey {
                thread_id: row
                    .try_get(0)
                    .map_err(|e| sql_error(&self.path, "writes.thread_id", e))?,
                checkpoint_ns: row
                    .try_get(1)
                    .map_err(|e| sql_error(&self.path, "writes.checkpoint_ns", e))?,
                checkpoint_id: row
                    .try_get(2)
                    .map_err(|e| sql_error(&self.path, "writes.checkpoint_id", e))?,
            };
            let write = PendingWrite {
                task_id: row
                    .try_get(3)
                    .map_err(|e| sql_error(&self.path, "writes.task_id", e))?,
                task_path: row
                    .try_get(4)
                    .map_err(|e| sql_error(&self.path, "writes.task_path", e))?,
                idx: row
                    .try_get(5)
                    .map_err(|e| sql_error(&self.path, "writes.idx", e))?,
                channel: row
                    .try_get(6)
                    .map_err(|e| sql_error(&self.path, "writes.channel", e))?,
                value: TypedValue::new(
                    row.try_get::<Option<String>, _>(7)
                        .map_err(|e| sql_error(&self.path, "writes.type", e))?
                        .unwrap_or_default(),
                    row.try_get::<Option<Vec<u8>>, _>(8)
                        .map_err(|e| sql_error(&self.path, "writes.value", e))?
                        .unwrap_or_default(),
                ),
            };
            by_key.entry(key).or_default().push(write);
        }
        Ok(by_key)
    }
}

/// One `checkpoints` row: its key (an unreadable key is an error of the whole read),
/// then the record's parts or why it cannot be one.
type RowRead = (CheckpointKey, Result<RowParts, String>);

fn checkpoint_from_row(row: &SqliteRow) -> Result<RowRead, String> {
    let text = |i: usize, name: &str| -> Result<String, String> {
        row.try_get::<String, _>(i)
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
                .try_get::<Option<String>, _>(3)
                .map_err(|e| format!("column parent_checkpoint_id: {e}"))?,
            type_tag: row
                .try_get::<Option<String>, _>(4)
                .map_err(|e| format!("column type: {e}"))?,
            checkpoint: row
                .try_get::<Option<Vec<u8>>, _>(5)
                .map_err(|e| format!("column checkpoint: {e}"))?,
            metadata: row
                .try_get::<Option<Vec<u8>>, _>(6)
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
        self.after = Some(key);
        self.done = false;
    }

    fn counts_cheaply(&self) -> bool {
        true
    }

    fn pushdown_summary(&self) -> String {
        sql::pushdown_summary(&self.filter_sql().0)
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        if self.done {
            return Ok(None);
        }
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
        let mut query = sqlx::query(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let limit = i64::try_from(limits.max_records).unwrap_or(i64::MAX);
        query = query.bind(limit);

        let mut rows: Vec<(CheckpointKey, Result<RowParts, String>)> = Vec::new();
        let mut bytes = 0usize;
        let mut fetched = 0usize;
        {
            let mut stream = query.fetch(&mut self.conn);
            while let Some(row) = stream
                .try_next()
                .await
                .map_err(|e| sql_error(&self.path, "reading `checkpoints`", e))?
            {
                fetched += 1;
                match checkpoint_from_row(&row) {
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
        let mut writes = self.read_writes(&first, &last).await?;
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

    async fn count_by_thread(&mut self, pushed: bool) -> Result<ThreadCounts, StoreError> {
        let (clauses, params) = if pushed {
            self.filter_sql()
        } else {
            (Vec::new(), Vec::new())
        };
        let where_sql = sql::where_sql(&clauses);
        let sql = format!(
            "SELECT thread_id, COUNT(*) FROM checkpoints {where_sql} GROUP BY thread_id ORDER BY thread_id"
        );
        let mut query = sqlx::query(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let rows = query
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| sql_error(&self.path, "counting `checkpoints`", e))?;
        let mut counts = ThreadCounts::default();
        for row in rows {
            let thread: String = row
                .try_get(0)
                .map_err(|e| sql_error(&self.path, "checkpoints.thread_id", e))?;
            let n: i64 = row
                .try_get(1)
                .map_err(|e| sql_error(&self.path, "count", e))?;
            counts
                .per_thread
                .insert(thread, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }
}

#[async_trait]
impl OpenSource for SqliteSourceConfig {
    async fn open_source(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        Ok(Box::new(SqliteSource::open(self, filters).await?))
    }
}
