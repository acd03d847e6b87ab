//! PostgreSQL: LangGraph `PostgresSaver` tables (`checkpoints`, `checkpoint_blobs`,
//! `checkpoint_writes`, `checkpoint_migrations`) and chat-history tables
//! (langchain-postgres `(id, session_id, message, created_at)`, langchain_community
//! `message_store(id, session_id, message)`), detected from their columns.
//!
//! The whole read happens in one `REPEATABLE READ READ ONLY` transaction, so writers
//! working during the migration cannot tear a thread; pages are keyset-paginated in key
//! order. If the connection breaks, the next page reconnects (a new snapshot) and goes
//! on after the last key read.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};

use super::Endpoint;
use super::config::PostgresSourceConfig;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{ChannelBlob, Checkpoint, CheckpointKey, Origin, PendingWrite, TypedValue};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, FailedRead, Pushdown, Source, SourceBatch, ThreadCounts};
use crate::stores::chat;
use crate::stores::sql::{self, Dialect, quote_ident, where_sql};

/// A `ts` text that PostgreSQL casts to the instant our parser reads.
const TS_PATTERN: &str =
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$";

enum Mode {
    Checkpoints(CheckpointTables),
    Chat(ChatTable),
}

struct CheckpointTables {
    checkpoints: String,
    blobs: Option<String>,
    writes: Option<String>,
    writes_have_task_path: bool,
    schema_version: Option<i64>,
}

struct ChatTable {
    /// Quoted, possibly schema-qualified.
    table: String,
    /// As configured, for messages and metadata.
    name: String,
    /// SQL type of `session_id`, to compare keys in their own order (uses the index).
    session_type: String,
    has_created_at: bool,
}

pub struct PostgresSource {
    endpoint: Endpoint,
    conn: Option<PgConnection>,
    mode: Mode,
    pushdown: ThreadPushdown,
    /// Pushed-down time bounds: RFC 3339 text and whether the bound is inclusive.
    time_from: Option<(String, bool)>,
    time_until: Option<(String, bool)>,
    after: Option<CheckpointKey>,
    done: bool,
}

impl PostgresSource {
    pub async fn open(
        config: &PostgresSourceConfig,
        filters: &Filters,
        pushdown: Pushdown,
    ) -> Result<Self, StoreError> {
        let endpoint = Endpoint::parse(&config.connection_string)?;
        let mut source = Self {
            endpoint,
            conn: None,
            mode: Mode::Checkpoints(CheckpointTables {
                checkpoints: String::new(),
                blobs: None,
                writes: None,
                writes_have_task_path: false,
                schema_version: None,
            }),
            pushdown: match pushdown {
                Pushdown::On => filters.thread_pushdown(),
                Pushdown::Off => ThreadPushdown::default(),
            },
            time_from: match pushdown {
                Pushdown::On => filters.time_from().map(|(t, i)| (t.to_rfc3339(), i)),
                Pushdown::Off => None,
            },
            time_until: match pushdown {
                Pushdown::On => filters.time_until().map(|(t, i)| (t.to_rfc3339(), i)),
                Pushdown::Off => None,
            },
            after: None,
            done: false,
        };
        // Connection refused at start is a misconfiguration more often than a
        // restart: say so at once instead of retrying.
        source.connect().await.map_err(|mut e| {
            e.retriable = e.retriable && !e.message.contains("refused");
            e
        })?;
        source.mode = source.detect(config.table_name.as_deref()).await?;
        Ok(source)
    }

    fn error(&self, what: &str, e: sqlx::Error) -> StoreError {
        self.endpoint.error(what, e)
    }

    /// Opens the connection and the snapshot transaction.
    async fn connect(&mut self) -> Result<(), StoreError> {
        let mut conn = self.endpoint.connect().await?;
        for statement in [
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            "SET LOCAL TimeZone = 'UTC'",
        ] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .map_err(|e| self.error("cannot start a snapshot", e))?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// The live connection, reconnecting after a failure.
    async fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            tracing::warn!(
                "PostgreSQL {}: reconnecting (a new snapshot)",
                self.endpoint.url
            );
            self.connect().await?;
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs `query` and keeps the connection only when the error left it usable.
    fn failed(&mut self, what: &str, e: sqlx::Error) -> StoreError {
        let error = self.error(what, e);
        if error.retriable {
            self.conn = None;
        }
        error
    }

    async fn columns(&mut self, quoted: &str) -> Result<Option<Vec<String>>, StoreError> {
        let conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT a.attname::text FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
        )
        .bind(quoted)
        .fetch_all(conn)
        .await;
        let rows = rows.map_err(|e| self.failed("reading the schema", e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows.iter().map(|r| r.get::<String, _>(0)).collect()))
    }

    async fn column_type(&mut self, quoted: &str, column: &str) -> Result<String, StoreError> {
        let conn = self.conn().await?;
        sqlx::query_scalar(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2",
        )
        .bind(quoted)
        .bind(column)
        .fetch_one(conn)
        .await
        .map_err(|e| self.failed("reading the schema", e))
    }

    async fn detect(&mut self, table_name: Option<&str>) -> Result<Mode, StoreError> {
        let (schema, table) = match table_name {
            Some(name) => sql::parse_table_name(name)
                .map_err(|e| StoreError::fatal(format!("PostgreSQL {}: {e}", self.endpoint.url)))?,
            None => (None, "checkpoints".to_owned()),
        };
        let qualify = |t: &str| match &schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(t)),
            None => quote_ident(t),
        };
        let shown = table_name.unwrap_or("checkpoints").to_owned();
        let Some(columns) = self.columns(&qualify(&table)).await? else {
            return Err(StoreError::fatal(format!(
                "PostgreSQL {}: table {shown} does not exist{}",
                self.endpoint.url,
                if table_name.is_none() {
                    " (no LangGraph PostgresSaver tables here; give table_name for a chat-history table)"
                } else {
                    ""
                }
            )));
        };
        let has = |c: &str| columns.iter().any(|x| x == c);
        if [
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "checkpoint",
            "metadata",
        ]
        .iter()
        .all(|c| has(c))
        {
            let blobs = qualify("checkpoint_blobs");
            let writes = qualify("checkpoint_writes");
            let blob_columns = self.columns(&blobs).await?;
            let write_columns = self.columns(&writes).await?;
            let migrations = qualify("checkpoint_migrations");
            let schema_version = if self.columns(&migrations).await?.is_some() {
                let sql = format!("SELECT max(v)::bigint FROM {migrations}");
                let conn = self.conn().await?;
                let v = sqlx::query_scalar::<_, Option<i64>>(&sql)
                    .fetch_one(conn)
                    .await;
                v.map_err(|e| self.failed("reading checkpoint_migrations", e))?
            } else {
                None
            };
            tracing::info!(
                "PostgreSQL {}: LangGraph checkpoint tables, schema version {}",
                self.endpoint.url,
                schema_version.map_or("unknown (no checkpoint_migrations)".into(), |v| v
                    .to_string())
            );
            if blob_columns.is_none() {
                tracing::warn!(
                    "PostgreSQL {}: no checkpoint_blobs table; only inline channel values",
                    self.endpoint.url
                );
            }
            return Ok(Mode::Checkpoints(CheckpointTables {
                checkpoints: qualify(&table),
                blobs: blob_columns.map(|_| blobs),
                writes_have_task_path: write_columns
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|x| x == "task_path")),
                writes: write_columns.map(|_| writes),
                schema_version,
            }));
        }
        if has("id") && has("session_id") && has("message") {
            let quoted = qualify(&table);
            let session_type = self.column_type(&quoted, "session_id").await?;
            tracing::info!(
                "PostgreSQL {}: chat-history table {shown}",
                self.endpoint.url
            );
            return Ok(Mode::Chat(ChatTable {
                table: quoted,
                name: shown,
                session_type,
                has_created_at: has("created_at"),
            }));
        }
        Err(StoreError::fatal(format!(
            "PostgreSQL {}: table {shown} is neither a LangGraph checkpoint table \
             (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata) nor a chat-history \
             table (id, session_id, message); its columns are: {}",
            self.endpoint.url,
            columns.join(", ")
        )))
    }

    fn origin(&self, locator: String) -> Origin {
        Origin {
            store: "postgresql".into(),
            locator,
        }
    }

    /// Pushed-down filters on the checkpoints table, parameters from `$first`.
    fn checkpoint_filters(&self, first: usize) -> (Vec<String>, Vec<String>) {
        let (mut clauses, mut params) =
            sql::thread_clauses(Dialect::Postgres, &self.pushdown, "thread_id", first);
        let ts = format!(
            "(CASE WHEN checkpoint->>'ts' ~ '{TS_PATTERN}' THEN (checkpoint->>'ts')::timestamptz END)"
        );
        if let Some((from, _)) = &self.time_from {
            params.push(from.clone());
            clauses.push(format!(
                "{ts} >= ${}::timestamptz",
                first + params.len() - 1
            ));
        }
        if let Some((until, inclusive)) = &self.time_until {
            params.push(until.clone());
            let op = if *inclusive { "<=" } else { "<" };
            clauses.push(format!(
                "{ts} {op} ${}::timestamptz",
                first + params.len() - 1
            ));
        }
        (clauses, params)
    }

    async fn next_checkpoints(
        &mut self,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let Mode::Checkpoints(tables) = &self.mode else {
            unreachable!("called in checkpoint mode")
        };
        let (cp, blobs, writes, task_path) = (
            tables.checkpoints.clone(),
            tables.blobs.clone(),
            tables.writes.clone(),
            tables.writes_have_task_path,
        );
        let mut params: Vec<String> = Vec::new();
        let mut clauses = Vec::new();
        if let Some(after) = &self.after {
            clauses.push("(thread_id, checkpoint_ns, checkpoint_id) > ($1, $2, $3)".to_owned());
            params.extend([
                after.thread_id.clone(),
                after.checkpoint_ns.clone(),
                after.checkpoint_id.clone(),
            ]);
        }
        let (more, more_params) = self.checkpoint_filters(params.len() + 1);
        clauses.extend(more);
        params.extend(more_params);
        let sql = format!(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, \
             checkpoint::text, metadata::text FROM {cp} {} \
             ORDER BY thread_id, checkpoint_ns, checkpoint_id LIMIT {}",
            where_sql(&clauses),
            limits.max_records
        );
        let url = self.endpoint.url.clone();
        let conn = self.conn().await?;
        let mut query = sqlx::query(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let mut rows: Vec<PgRow> = Vec::new();
        let mut bytes = 0usize;
        let mut stream = query.fetch(&mut *conn);
        let mut failure = None;
        loop {
            match stream.try_next().await {
                Ok(Some(row)) => {
                    bytes += row
                        .try_get::<Option<&str>, _>(5)
                        .ok()
                        .flatten()
                        .map_or(0, str::len);
                    rows.push(row);
                    if bytes >= limits.max_bytes {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(stream);
        if let Some(e) = failure {
            return Err(self.failed("reading checkpoints", e));
        }
        if rows.len() < limits.max_records && bytes < limits.max_bytes {
            self.done = true;
        }
        if rows.is_empty() {
            self.done = true;
            return Ok(None);
        }
        let key_of = |r: &PgRow| -> Result<CheckpointKey, sqlx::Error> {
            Ok(CheckpointKey {
                thread_id: r.try_get(0)?,
                checkpoint_ns: r.try_get(1)?,
                checkpoint_id: r.try_get(2)?,
            })
        };
        let first = key_of(&rows[0]).map_err(|e| self.error("reading a key", e))?;
        let last = key_of(&rows[rows.len() - 1]).map_err(|e| self.error("reading a key", e))?;
        let range =
            "(c.thread_id, c.checkpoint_ns, c.checkpoint_id) BETWEEN ($1, $2, $3) AND ($4, $5, $6)";
        let range_params = [
            &first.thread_id,
            &first.checkpoint_ns,
            &first.checkpoint_id,
            &last.thread_id,
            &last.checkpoint_ns,
            &last.checkpoint_id,
        ];
        let mut blob_map: HashMap<CheckpointKey, Vec<ChannelBlob>> = HashMap::new();
        if let Some(blobs) = blobs {
            // The blobs a checkpoint uses are those named by its channel_versions.
            let sql = format!(
                "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, bl.channel, bl.version, bl.type, bl.blob \
                 FROM {cp} c CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') cv \
                 JOIN {blobs} bl ON bl.thread_id = c.thread_id AND bl.checkpoint_ns = c.checkpoint_ns \
                   AND bl.channel = cv.key AND bl.version = cv.value \
                 WHERE {range} ORDER BY 1, 2, 3, bl.channel"
            );
            let mut query = sqlx::query(&sql);
            for p in range_params {
                query = query.bind(p);
            }
            let conn = self.conn().await?;
            let result = query.fetch_all(conn).await;
            let found = result.map_err(|e| self.failed("reading checkpoint_blobs", e))?;
            for r in found {
                let key = key_of(&r).map_err(|e| self.error("reading checkpoint_blobs", e))?;
                let blob = (|| {
                    Ok::<_, sqlx::Error>(ChannelBlob {
                        channel: r.try_get(3)?,
                        version: r.try_get(4)?,
                        value: TypedValue::new(
                            r.try_get::<String, _>(5)?,
                            r.try_get::<Option<Vec<u8>>, _>(6)?.unwrap_or_default(),
                        ),
                    })
                })()
                .map_err(|e| self.error("reading checkpoint_blobs", e))?;
                bytes += blob.value.bytes.len();
                blob_map.entry(key).or_default().push(blob);
            }
        }
        let mut write_map: HashMap<CheckpointKey, Vec<PendingWrite>> = HashMap::new();
        if let Some(writes) = writes {
            let task_path = if task_path { "c.task_path" } else { "''::text" };
            let sql = format!(
                "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.task_id, {task_path}, c.idx, \
                 c.channel, c.type, c.blob FROM {writes} c WHERE {range} \
                 ORDER BY c.thread_id, c.checkpoint_ns, c.checkpoint_id, {task_path}, c.task_id, c.idx"
            );
            let mut query = sqlx::query(&sql);
            for p in range_params {
                query = query.bind(p);
            }
            let conn = self.conn().await?;
            let result = query.fetch_all(conn).await;
            let found = result.map_err(|e| self.failed("reading checkpoint_writes", e))?;
            for r in found {
                let key = key_of(&r).map_err(|e| self.error("reading checkpoint_writes", e))?;
                let write = (|| {
                    Ok::<_, sqlx::Error>(PendingWrite {
                        task_id: r.try_get(3)?,
                        task_path: r.try_get(4)?,
                        idx: i64::from(r.try_get::<i32, _>(5)?),
                        channel: r.try_get(6)?,
                        value: TypedValue::new(
                            r.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                            r.try_get::<Option<Vec<u8>>, _>(8)?.unwrap_or_default(),
                        ),
                    })
                })()
                .map_err(|e| self.error("reading checkpoint_writes", e))?;
                bytes += write.value.bytes.len();
                write_map.entry(key).or_default().push(write);
            }
        }
        let mut batch = SourceBatch {
            last_key: Some(last.clone()),
            ..SourceBatch::default()
        };
        for row in rows {
            let key = key_of(&row).map_err(|e| self.error("reading a key", e))?;
            let origin = self.origin(format!("{url} {cp}[{key}]"));
            let parts = (|| {
                Ok::<_, sqlx::Error>((
                    row.try_get::<Option<String>, _>(3)?,
                    row.try_get::<Option<String>, _>(6)?,
                    row.try_get::<Option<String>, _>(5)?,
                ))
            })();
            let (parent, metadata, document) = match parts {
                Ok(p) => p,
                Err(e) => {
                    batch.failed.push(FailedRead {
                        key: Some(key),
                        origin,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            batch.records.push(Checkpoint {
                parent_checkpoint_id: parent,
                // JSONB: PostgreSQL's own text form is the most exact there is.
                checkpoint: TypedValue::new("json", document.unwrap_or_else(|| "null".into())),
                channel_blobs: blob_map.remove(&key).unwrap_or_default(),
                metadata: TypedValue::new("json", metadata.unwrap_or_else(|| "{}".into())),
                pending_writes: write_map.remove(&key).unwrap_or_default(),
                origin,
                view: None,
                key,
            });
        }
        batch.bytes = bytes;
        self.after = Some(last);
        Ok(Some(batch))
    }

    async fn next_sessions(
        &mut self,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let Mode::Chat(chat) = &self.mode else {
            unreachable!("called in chat mode")
        };
        let (table, name, session_type, has_created_at) = (
            chat.table.clone(),
            chat.name.clone(),
            chat.session_type.clone(),
            chat.has_created_at,
        );
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        if let Some(after) = &self.after {
            clauses.push(format!("session_id > CAST($1 AS {session_type})"));
            params.push(after.thread_id.clone());
        }
        let (more, more_params) = sql::thread_clauses(
            Dialect::Postgres,
            &self.pushdown,
            "session_id::text",
            params.len() + 1,
        );
        clauses.extend(more);
        params.extend(more_params);
        let sql = format!(
            "SELECT session_id::text FROM (SELECT DISTINCT session_id FROM {table} {}) s \
             ORDER BY session_id LIMIT {}",
            where_sql(&clauses),
            limits.max_records
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let conn = self.conn().await?;
        let result = query.fetch_all(conn).await;
        let sessions = result.map_err(|e| self.failed(&format!("reading {name}"), e))?;
        if sessions.len() < limits.max_records {
            self.done = true;
        }
        let Some(last) = sessions.last().cloned() else {
            self.done = true;
            return Ok(None);
        };
        let created = if has_created_at {
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        } else {
            "NULL::text"
        };
        let sql = format!(
            "SELECT session_id::text, id::bigint, message::text, {created} FROM {table} \
             WHERE session_id = ANY(CAST($1 AS {session_type}[])) ORDER BY session_id, id"
        );
        let conn = self.conn().await?;
        let result = sqlx::query(&sql).bind(&sessions).fetch_all(conn).await;
        let rows = result.map_err(|e| self.failed(&format!("reading {name}"), e))?;
        let mut by_session: HashMap<String, Vec<(i64, String, Option<String>)>> = HashMap::new();
        let mut bytes = 0;
        for r in rows {
            let session: String = r.get(0);
            let message: String = r.get(2);
            bytes += message.len();
            by_session
                .entry(session)
                .or_default()
                .push((r.get(1), message, r.get(3)));
        }
        let mut batch = SourceBatch {
            last_key: Some(chat::session_key(&last)),
            bytes,
            ..SourceBatch::default()
        };
        for session in sessions {
            let messages = by_session.remove(&session).unwrap_or_default();
            let origin = self.origin(format!(
                "{} {name}[session_id={session:?}]",
                self.endpoint.url
            ));
            batch
                .records
                .push(chat::session_record(&name, &session, messages, origin));
        }
        self.after = Some(chat::session_key(&last));
        Ok(Some(batch))
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn describe(&self) -> String {
        match &self.mode {
            Mode::Checkpoints(t) => format!(
                "PostgreSQL {} {} (schema version {})",
                self.endpoint.url,
                t.checkpoints,
                t.schema_version.map_or("unknown".into(), |v| v.to_string())
            ),
            Mode::Chat(c) => format!("PostgreSQL {} chat history {}", self.endpoint.url, c.name),
        }
    }

    fn resume_after(&mut self, key: CheckpointKey) {
        self.after = Some(key);
        self.done = false;
    }

    fn counts_cheaply(&self) -> bool {
        true
    }

    fn pushdown_summary(&self) -> String {
        let (clauses, _) = match &self.mode {
            Mode::Checkpoints(_) => self.checkpoint_filters(1),
            Mode::Chat(_) => {
                sql::thread_clauses(Dialect::Postgres, &self.pushdown, "session_id::text", 1)
            }
        };
        sql::pushdown_summary(&clauses)
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let batch = match self.mode {
            Mode::Checkpoints(_) => self.next_checkpoints(limits).await?,
            Mode::Chat(_) => self.next_sessions(limits).await?,
        };
        if self.done
            && let Some(mut conn) = self.conn.take()
        {
            // End the snapshot; the connection closes when dropped.
            let _ = sqlx::query("COMMIT").execute(&mut conn).await;
            let _ = conn.close().await;
        }
        Ok(batch)
    }

    async fn count_by_thread(&mut self, pushed: bool) -> Result<ThreadCounts, StoreError> {
        let (sql, params) = match &self.mode {
            Mode::Checkpoints(t) => {
                let (clauses, params) = if pushed {
                    self.checkpoint_filters(1)
                } else {
                    (Vec::new(), Vec::new())
                };
                (
                    format!(
                        "SELECT thread_id, count(*) FROM {} {} GROUP BY thread_id ORDER BY thread_id",
                        t.checkpoints,
                        where_sql(&clauses)
                    ),
                    params,
                )
            }
            Mode::Chat(c) => {
                let (clauses, params) = if pushed {
                    sql::thread_clauses(Dialect::Postgres, &self.pushdown, "session_id::text", 1)
                } else {
                    (Vec::new(), Vec::new())
                };
                // One record per session.
                (
                    format!(
                        "SELECT session_id::text, 1::bigint FROM {} {} GROUP BY session_id",
                        c.table,
                        where_sql(&clauses)
                    ),
                    params,
                )
            }
        };
        let mut query = sqlx::query(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let conn = self.conn().await?;
        let result = query.fetch_all(conn).await;
        let rows = result.map_err(|e| self.failed("counting", e))?;
        let mut counts = ThreadCounts::default();
        for r in rows {
            let n: i64 = r.get(1);
            counts
                .per_thread
                .insert(r.get(0), u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }
}

#[async_trait]
impl OpenSource for PostgresSourceConfig {
    async fn open_source(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        Ok(Box::new(
            PostgresSource::open(self, filters, Pushdown::On).await?,
        ))
    }
}
