//! PostgreSQL: LangGraph `PostgresSaver` tables (`checkpoints`, `checkpoint_blobs`,
//! `checkpoint_writes`, `checkpoint_migrations`) and chat-history tables
//! (langchain-postgres `(id, session_id, message, created_at)`, langchain_community
//! `message_store(id, session_id, message)`), detected from their columns.
//!
//! The whole read happens in one `REPEATABLE READ READ ONLY` transaction, so writers
//! working during the migration cannot tear a thread; pages are keyset-paginated in key
//! order. If the connection breaks, the next page reconnects (a new snapshot) and goes
//! on after the last key read.
//!
//! This file connects, detects which kind of table it is, and answers as a `Source`;
//! [`checkpoints`] reads PostgresSaver's tables and [`sessions`] chat-history tables.

use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use super::Endpoint;
use super::config::PostgresSourceConfig;
use crate::error::StoreError;
use crate::error::{ConfigError, OpenError};
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{CheckpointKey, Origin};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, Pushdown, Source, SourceBatch, ThreadCounts};
use crate::stores::chat::SessionsAs;
use crate::stores::sql::{self, Dialect, quote_ident, where_sql};

mod blob_refs;
mod checkpoints;
mod sessions;

use checkpoints::{BatchRows, CheckpointTables, PageRequest, ReadAhead, ReadFailure};
use sessions::ChatTable;

enum Mode {
    Checkpoints(CheckpointTables),
    Chat(ChatTable),
}

pub struct PostgresSource {
    endpoint: Endpoint,
    /// The snapshot's connection; `None` while a batch is read ahead on it, or after
    /// it broke (the next query reconnects).
    conn: Option<PgConnection>,
    /// A second connection in the same snapshot (see [`PostgresSource::join_snapshot`]),
    /// on which a batch's writes are read while its blobs are read on the first. It
    /// goes with `conn`: lent with it, dropped with it, made again after a reconnect.
    second: Option<PgConnection>,
    /// The server gave no second connection once (no slot left, no snapshot export):
    /// not asked again; a batch's queries run one after the other on `conn`.
    no_second: bool,
    /// The next batch of checkpoints, being read on the connection (see [`ReadAhead`]).
    read_ahead: Option<ReadAhead>,
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
        let no_second = match config.connections {
            None | Some(2) => false,
            Some(1) => true,
            Some(n) => {
                return Err(StoreError::fatal(format!(
                    "source_config.connections: {n}: a PostgreSQL source reads on 1 or 2"
                )));
            }
        };
        let mut source = Self {
            endpoint,
            conn: None,
            second: None,
            no_second,
            read_ahead: None,
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
        source.join_snapshot().await?;
        match &mut source.mode {
            Mode::Chat(chat) => {
                chat.sessions = SessionsAs::new(config.upgrade, config.thread_id_template.clone())
                    .map_err(|e| StoreError::fatal(format!("source_config: {e}")))?;
                if chat.sessions.renames() {
                    // Thread filters are about the new thread ids: the engine applies them.
                    source.pushdown = ThreadPushdown::default();
                }
            }
            Mode::Checkpoints(_) if config.upgrade != crate::stores::chat::Upgrade::None => {
                return Err(StoreError::fatal(format!(
                    "PostgreSQL {}: `upgrade` turns chat-history tables into LangGraph threads; {} holds checkpoints already",
                    source.endpoint.url,
                    config.table_name.as_deref().unwrap_or("this database")
                )));
            }
            Mode::Checkpoints(_) => {}
        }
        Ok(source)
    }

    fn error(&self, what: &str, e: sqlx::Error) -> StoreError {
        self.endpoint.error(what, e)
    }

    /// Opens the connection and the snapshot transaction (and the second connection
    /// in it, reading checkpoints).
    async fn connect(&mut self) -> Result<(), StoreError> {
        self.second = None;
        self.conn = Some(self.begin(None).await?);
        self.join_snapshot().await
    }

    /// A new connection in a `REPEATABLE READ READ ONLY` transaction: a snapshot of
    /// its own, or the one exported as `snapshot`.
    async fn begin(&self, snapshot: Option<&str>) -> Result<PgConnection, StoreError> {
        let mut conn = self.endpoint.connect().await?;
        let import = snapshot.map(|id| format!("SET TRANSACTION SNAPSHOT '{id}'"));
        let statements = ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"]
            .into_iter()
            .chain(import.as_deref())
            .chain(["SET LOCAL TimeZone = 'UTC'"]);
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .map_err(|e| self.error("cannot start a snapshot", e))?;
        }
        Ok(conn)
    }

    /// Opens the second connection of a checkpoint read (one that has writes to
    /// read), importing the snapshot of the first (`pg_export_snapshot`), so that a
    /// batch's writes are read beside its blobs: each batch's three queries ran one
    /// after the other, and a raw export waited on them (docs/decisions.md). A server
    /// that gives none (no connection slot left, a pooler that cannot export) leaves
    /// the read as it was, said once in the log. Called before anything is read in
    /// the snapshot: an export that fails ends the first connection's transaction, so
    /// it is opened again.
    async fn join_snapshot(&mut self) -> Result<(), StoreError> {
        let wanted = matches!(&self.mode, Mode::Checkpoints(t) if t.writes.is_some());
        if !wanted || self.no_second || self.second.is_some() {
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let exported = sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()")
            .fetch_one(conn)
            .await;
        let second = match exported {
            Ok(id) => self.begin(Some(&id)).await,
            Err(e) => {
                self.conn = Some(self.begin(None).await?);
                Err(self.error("cannot export the snapshot", e))
            }
        };
        match second {
            Ok(second) => self.second = Some(second),
            Err(e) => {
                self.no_second = true;
                tracing::info!(
                    "PostgreSQL {}: one connection only, each batch's queries one after the other ({})",
                    self.endpoint.url,
                    e.message
                );
            }
        }
        Ok(())
    }

    /// The live connection, reconnecting after a failure. A batch being read ahead on
    /// it is waited for first (and dropped: only [`PostgresSource::take_batch`] takes
    /// it).
    async fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        Ok(self.conns().await?.0)
    }

    /// The live connection and the second one in its snapshot (when there is one),
    /// as [`PostgresSource::conn`].
    async fn conns(
        &mut self,
    ) -> Result<(&mut PgConnection, Option<&mut PgConnection>), StoreError> {
        self.settle_read_ahead().await;
        if self.conn.is_none() {
            tracing::warn!(
                "PostgreSQL {}: reconnecting (a new snapshot)",
                self.endpoint.url
            );
            self.connect().await?;
        }
        let conn = self.conn.as_mut().expect("connected above");
        Ok((conn, self.second.as_mut()))
    }

    /// Waits for a batch being read ahead: its connection comes back, and its rows (or
    /// its error) with the request they answer. A task that ended without giving the
    /// connection back (it panicked) gives nothing, and the next query reconnects.
    async fn settle_read_ahead(&mut self) -> Option<(PageRequest, Result<BatchRows, ReadFailure>)> {
        let mut ahead = self.read_ahead.take()?;
        match (&mut ahead.task).await {
            Ok((conn, second, rows)) => {
                self.conn = Some(conn);
                self.second = second;
                Some((ahead.request.clone(), rows))
            }
            Err(e) => {
                tracing::warn!(
                    "PostgreSQL {}: reading ahead failed: {e}",
                    self.endpoint.url
                );
                None
            }
        }
    }

    /// Runs `query` and keeps the connection only when the error left it usable.
    fn failed(&mut self, what: &str, e: sqlx::Error) -> StoreError {
        let error = self.error(what, e);
        if error.retriable {
            self.conn = None;
            self.second = None;
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
            let hint = match table_name {
                Some(_) => "",
                None if self.columns("store").await?.is_some() => {
                    " (no LangGraph PostgresSaver tables here, but a PostgresStore: move its items with --state store)"
                }
                None => {
                    " (no LangGraph PostgresSaver tables here; give table_name for a chat-history table)"
                }
            };
            return Err(StoreError::fatal(format!(
                "PostgreSQL {}: table {shown} does not exist{hint}",
                self.endpoint.url,
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
                sessions: SessionsAs::default(),
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
        // A batch read ahead from elsewhere is not asked for (`take_batch` checks where
        // it starts).
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
        if self.done {
            // End the snapshot; the connections close when dropped.
            for mut conn in [self.second.take(), self.conn.take()].into_iter().flatten() {
                let _ = sqlx::query("COMMIT").execute(&mut conn).await;
                let _ = conn.close().await;
            }
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
        SessionsAs::new(self.upgrade, self.thread_id_template.clone())
            .map_err(|e| OpenError::Config(ConfigError::Invalid(format!("source_config: {e}"))))?;
        Ok(Box::new(
            PostgresSource::open(self, filters, Pushdown::On).await?,
        ))
    }
}
