//! PostgreSQL destination: a schema LangGraph's `PostgresSaver`
//! (langgraph-checkpoint-postgres 3.x) reads as it read the source.
//!
//! Before anything is read, the schema is checked: created with PostgresSaver's own
//! migrations when absent (and `checkpoint_migrations` filled, so LangGraph's `setup()`
//! afterwards does nothing), brought up to date when older, refused when newer than
//! the migrations we know. Each batch is one transaction of a few array (`UNNEST`)
//! inserts. Checkpoints take PostgresSaver's split shape ([`layout::split`]): values
//! JSONB holds exactly stay inline, the rest are blobs whose bytes are the source's.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgArguments;
use sqlx::postgres::PgConnection;
use sqlx::{Arguments as _, Connection};

use super::Endpoint;
use super::config::PostgresSinkConfig;
use super::config::PostgresSourceConfig;
use crate::codec::redis_form::Encoder;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::Checkpoint;
use crate::retry::RetryPolicy;
use crate::run::RunInfo;
use crate::run::RunStats;
use crate::sinks::in_flight::{self, InFlight, Sent};
use crate::sinks::{Comparison, OpenSink};
use crate::sinks::{Rejected, Sink};
use crate::sources::{Pushdown, Source};
use crate::stores::layout;
use crate::stores::sql::quote_ident;
use crate::stores::{OnConflict, WriteCounts, existing_line};

/// LangGraph's PostgresSaver migrations (langgraph-checkpoint-postgres 3.x), in order:
/// the position is the version `checkpoint_migrations` records. Table names are
/// unqualified, as LangGraph runs them; the connection's `search_path` is the schema.
const MIGRATIONS: [&str; 10] = [
    "CREATE TABLE IF NOT EXISTS checkpoint_migrations (
    v INTEGER PRIMARY KEY
);",
    "CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);",
    "CREATE TABLE IF NOT EXISTS checkpoint_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);",
    "CREATE TABLE IF NOT EXISTS checkpoint_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    blob BYTEA NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);",
    "ALTER TABLE checkpoint_blobs ALTER COLUMN blob DROP not null;",
    "SELECT 1;",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoints_thread_id_idx ON checkpoints(thread_id);",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoint_blobs_thread_id_idx ON checkpoint_blobs(thread_id);",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS checkpoint_writes_thread_id_idx ON checkpoint_writes(thread_id);",
    "ALTER TABLE checkpoint_writes ADD COLUMN IF NOT EXISTS task_path TEXT NOT NULL DEFAULT '';",
];

/// The newest `checkpoint_migrations` version we write into.
const KNOWN_VERSION: i64 = MIGRATIONS.len() as i64 - 1;

pub struct PostgresSink {
    config: PostgresSinkConfig,
    endpoint: Endpoint,
    conn: Option<PgConnection>,
    prepared: bool,
    counts: WriteCounts,
    kept_as_maps: BTreeSet<String>,
    negative_zeros: u64,
    /// The batch sent last, until it committed (the sink confirms late).
    in_flight: Option<InFlight<PgConnection, ShapedBatch>>,
}

/// A connection to `endpoint` with `schema` as its `search_path` (as PostgresSaver's
/// own unqualified SQL expects).
async fn connect(endpoint: &Endpoint, schema: &str) -> Result<PgConnection, StoreError> {
    let mut conn = endpoint.connect().await?;
    let set = format!("SET search_path TO {}", quote_ident(schema));
    sqlx::query(&set)
        .execute(&mut conn)
        .await
        .map_err(|e| endpoint.error("cannot set the search_path", e))?;
    // Large values are TOAST-compressed; lz4 costs a fraction of pglz's CPU (the
    // server's biggest cost in a migration) and reads back the same for every client.
    // A server built without lz4 keeps its default.
    if sqlx::query("SET default_toast_compression = 'lz4'")
        .execute(&mut conn)
        .await
        .is_err()
    {
        tracing::debug!(
            "PostgreSQL {} schema {schema}: no lz4 TOAST compression; using the server's default",
            endpoint.url
        );
    }
    Ok(conn)
}

/// A batch in PostgresSaver's shape, with what sending it needs.
struct ShapedBatch {
    columns: Columns,
    mode: OnConflict,
    endpoint: Endpoint,
    shown: String,
}

/// Sends a batch in one transaction (see [`PostgresSink::insert`]).
fn send_batch(
    mut conn: PgConnection,
    batch: Arc<ShapedBatch>,
) -> Pin<Box<dyn Future<Output = Sent<PgConnection>> + Send>> {
    Box::pin(async move {
        match PostgresSink::insert(&mut conn, &batch.columns, batch.mode).await {
            Ok(Ok(counts)) => (Some(conn), Ok(counts)),
            Ok(Err(conflict)) => (
                Some(conn),
                Err(StoreError::fatal(format!(
                    "{}: {conflict} already exists with other content (on_conflict: fail); nothing of this batch was written",
                    batch.shown
                ))),
            ),
            // The transaction rolled back; a connection that may be broken is dropped.
            Err(e) => (
                None,
                Err(batch
                    .endpoint
                    .error("cannot write a batch (rolled back)", e)),
            ),
        }
    })
}

/// One batch in PostgresSaver's shape, column by column (for `UNNEST`).
#[derive(Default)]
struct Columns {
    /// Records whose metadata held a `-0.0` (JSONB keeps `0.0`).
    negative_zeros: u64,
    // checkpoints
    thread_id: Vec<String>,
    checkpoint_ns: Vec<String>,
    checkpoint_id: Vec<String>,
    parent: Vec<Option<String>>,
    document: Vec<String>,
    metadata: Vec<String>,
    // checkpoint_blobs
    blob_thread_id: Vec<String>,
    blob_ns: Vec<String>,
    blob_channel: Vec<String>,
    blob_version: Vec<String>,
    blob_type: Vec<String>,
    blob: Vec<Option<Vec<u8>>>,
    // checkpoint_writes
    write_thread_id: Vec<String>,
    write_ns: Vec<String>,
    write_checkpoint_id: Vec<String>,
    write_task_id: Vec<String>,
    write_task_path: Vec<String>,
    write_idx: Vec<i32>,
    write_channel: Vec<String>,
    write_type: Vec<String>,
    write_blob: Vec<Vec<u8>>,
}

impl Columns {
    /// Adds a record, or says why PostgresSaver's shape cannot hold it.
    fn push(
        &mut self,
        record: &Checkpoint,
        blobs_seen: &mut HashSet<(String, String, String, String)>,
        encoder: &mut Encoder<'_>,
    ) -> Result<(), layout::LayoutError> {
        let record = layout::native(record, encoder)?;
        let record = record.as_ref();
        let split = layout::split(record)?;
        let document =
            String::from_utf8(split.document).map_err(|e| layout::LayoutError(e.to_string()))?;
        let metadata = layout::metadata_jsonb(record)?;
        self.negative_zeros += u64::from(metadata.negative_zero);
        let metadata = metadata.text;
        let metadata = String::from_utf8(metadata)
            .map_err(|_| layout::LayoutError("metadata is not UTF-8 text".into()))?;
        let mut writes = Vec::with_capacity(record.pending_writes.len());
        for w in &record.pending_writes {
            let idx = i32::try_from(w.idx).map_err(|_| {
                layout::LayoutError(format!(
                    "pending write index {} does not fit PostgresSaver's INTEGER column",
                    w.idx
                ))
            })?;
            writes.push((w, idx));
        }
        let key = &record.key;
        self.thread_id.push(key.thread_id.clone());
        self.checkpoint_ns.push(key.checkpoint_ns.clone());
        self.checkpoint_id.push(key.checkpoint_id.clone());
        self.parent.push(record.parent_checkpoint_id.clone());
        self.document.push(document);
        self.metadata.push(metadata);
        for b in split.blobs {
            // Checkpoints of one thread share blobs: each (channel, version) once.
            let blob_key = (
                key.thread_id.clone(),
                key.checkpoint_ns.clone(),
                b.channel.clone(),
                b.version.clone(),
            );
            if !blobs_seen.insert(blob_key) {
                continue;
            }
            self.blob_thread_id.push(key.thread_id.clone());
            self.blob_ns.push(key.checkpoint_ns.clone());
            self.blob_channel.push(b.channel);
            self.blob_version.push(b.version);
            // PostgresSaver stores an `empty` channel with a NULL blob.
            self.blob
                .push((b.value.type_tag != "empty").then_some(b.value.bytes));
            self.blob_type.push(b.value.type_tag);
        }
        for (w, idx) in writes {
            self.write_thread_id.push(key.thread_id.clone());
            self.write_ns.push(key.checkpoint_ns.clone());
            self.write_checkpoint_id.push(key.checkpoint_id.clone());
            self.write_task_id.push(w.task_id.clone());
            self.write_task_path.push(w.task_path.clone());
            self.write_idx.push(idx);
            self.write_channel.push(w.channel.clone());
            self.write_type.push(w.value.type_tag.clone());
            self.write_blob.push(w.value.bytes.clone());
        }
        Ok(())
    }
}

/// Binds one array per column, in the order of the `UNNEST` it feeds.
macro_rules! array_args {
    ($($column:expr),+ $(,)?) => {{
        let mut args = PgArguments::default();
        $(args.add($column).map_err(sqlx::Error::Encode)?;)+
        Ok(args)
    }};
}

impl Columns {
    /// The arguments of [`CHECKPOINT_ROWS`].
    fn checkpoint_args(&self) -> Result<PgArguments, sqlx::Error> {
        array_args!(
            &self.thread_id,
            &self.checkpoint_ns,
            &self.checkpoint_id,
            &self.parent,
            &self.document,
            &self.metadata
        )
    }

    /// The arguments of [`CHECKPOINT_KEYS`] then [`WRITE_KEYS`].
    fn key_args(&self) -> Result<PgArguments, sqlx::Error> {
        array_args!(
            &self.thread_id,
            &self.checkpoint_ns,
            &self.checkpoint_id,
            &self.write_thread_id,
            &self.write_ns,
            &self.write_checkpoint_id,
            &self.write_task_id,
            &self.write_idx,
        )
    }

    /// The arguments of [`BLOB_ROWS`].
    fn blob_args(&self) -> Result<PgArguments, sqlx::Error> {
        array_args!(
            &self.blob_thread_id,
            &self.blob_ns,
            &self.blob_channel,
            &self.blob_version,
            &self.blob_type,
            &self.blob
        )
    }

    /// The arguments of [`WRITE_ROWS`].
    fn write_args(&self) -> Result<PgArguments, sqlx::Error> {
        array_args!(
            &self.write_thread_id,
            &self.write_ns,
            &self.write_checkpoint_id,
            &self.write_task_id,
            &self.write_task_path,
            &self.write_idx,
            &self.write_channel,
            &self.write_type,
            &self.write_blob,
        )
    }
}

const CHECKPOINT_ROWS: &str = "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]::jsonb[], $6::text[]::jsonb[]) \
     AS b(thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)";
/// The keys of [`CHECKPOINT_ROWS`] and [`WRITE_ROWS`], in one statement's parameters.
const CHECKPOINT_KEYS: &str =
    "UNNEST($1::text[], $2::text[], $3::text[]) AS b(thread_id, checkpoint_ns, checkpoint_id)";
const WRITE_KEYS: &str = "UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::int4[]) \
     AS b(thread_id, checkpoint_ns, checkpoint_id, task_id, idx)";
const BLOB_ROWS: &str = "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[]) \
     AS b(thread_id, checkpoint_ns, channel, version, type, blob)";
const WRITE_ROWS: &str = "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[], $8::text[], $9::bytea[]) \
     AS b(thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)";

impl PostgresSink {
    pub fn new(config: PostgresSinkConfig) -> Result<Self, StoreError> {
        crate::stores::sql::parse_table_name(&config.schema)
            .ok()
            .filter(|(s, _)| s.is_none())
            .ok_or_else(|| {
                StoreError::fatal(format!(
                    "destination_config.schema {:?} is not a schema name (letters, digits, _ and $)",
                    config.schema
                ))
            })?;
        Ok(Self {
            endpoint: Endpoint::parse(&config.connection_string)?,
            config,
            conn: None,
            prepared: false,
            counts: WriteCounts::default(),
            kept_as_maps: BTreeSet::new(),
            negative_zeros: 0,
            in_flight: None,
        })
    }

    fn error(&self, what: &str, e: sqlx::Error) -> StoreError {
        self.endpoint.error(what, e)
    }

    fn schema_shown(&self) -> String {
        format!(
            "PostgreSQL {} schema {}",
            self.endpoint.url, self.config.schema
        )
    }

    /// The connection, with the schema as its `search_path` (as PostgresSaver's own
    /// unqualified SQL expects), reconnecting after a failure.
    async fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.endpoint, &self.config.schema).await?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// The schema's PostgresSaver migration version; `None` when it has no
    /// `checkpoint_migrations` table. A `checkpoints` table without one is refused.
    async fn schema_version(&mut self) -> Result<Option<i64>, StoreError> {
        let schema = self.config.schema.clone();
        let conn = self.conn().await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             AND table_name IN ('checkpoint_migrations', 'checkpoints')",
        )
        .bind(&schema)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| self.error("cannot read the schema", e))?;
        if !tables.iter().any(|t| t == "checkpoint_migrations") {
            if tables.iter().any(|t| t == "checkpoints") {
                return Err(StoreError::fatal(format!(
                    "{}: has a `checkpoints` table but no `checkpoint_migrations`: not a PostgresSaver schema this tool knows; nothing was written",
                    self.schema_shown()
                )));
            }
            return Ok(None);
        }
        let conn = self.conn().await?;
        let v: Option<i64> = sqlx::query_scalar("SELECT max(v)::bigint FROM checkpoint_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.error("cannot read checkpoint_migrations", e))?;
        Ok(Some(v.unwrap_or(-1)))
    }

    /// What must happen to the schema before writing, or why it cannot be written.
    fn migration_plan(&self, version: Option<i64>) -> Result<Option<i64>, StoreError> {
        let from = version.unwrap_or(-1);
        if from > KNOWN_VERSION {
            return Err(StoreError::fatal(format!(
                "{}: PostgresSaver migration version {from} is newer than the newest this ckpt-migrate knows ({KNOWN_VERSION}, langgraph-checkpoint-postgres 3.x); nothing was written. Use a newer ckpt-migrate.",
                self.schema_shown()
            )));
        }
        if from == KNOWN_VERSION {
            return Ok(None);
        }
        if !self.config.create_tables {
            return Err(StoreError::fatal(format!(
                "{}: {} and create_tables is false; nothing was written",
                self.schema_shown(),
                match version {
                    None => "has no PostgresSaver tables".to_owned(),
                    Some(v) =>
                        format!("is at PostgresSaver migration {v}, older than {KNOWN_VERSION}"),
                }
            )));
        }
        Ok(Some(from))
    }

    /// Creates or updates the schema as LangGraph's `setup()` does, under an advisory
    /// lock so that concurrent runs do not race.
    async fn migrate(&mut self, from: i64) -> Result<(), StoreError> {
        let create_schema = format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&self.config.schema)
        );
        let lock_key = format!("ckpt-migrate setup {}", self.config.schema);
        let conn = self.conn().await?;
        let result: Result<(), sqlx::Error> = async {
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(&lock_key)
                .execute(&mut *conn)
                .await?;
            sqlx::query(&create_schema).execute(&mut *conn).await?;
            sqlx::query(MIGRATIONS[0]).execute(&mut *conn).await?;
            // Another run may have migrated while we waited for the lock.
            let now: Option<i64> =
                sqlx::query_scalar("SELECT max(v)::bigint FROM checkpoint_migrations")
                    .fetch_one(&mut *conn)
                    .await?;
            let start = now.unwrap_or(-1).max(from) + 1;
            for (v, sql) in MIGRATIONS.iter().enumerate().skip(start as usize) {
                sqlx::query(sql).execute(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO checkpoint_migrations (v) VALUES ($1) ON CONFLICT DO NOTHING",
                )
                .bind(v as i32)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(&lock_key)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        .await;
        result.map_err(|e| {
            self.conn = None;
            self.error("cannot create PostgresSaver's tables", e)
        })?;
        tracing::info!(
            "{}: PostgresSaver tables {} (migrations {}..={KNOWN_VERSION})",
            self.schema_shown(),
            if from < 0 { "created" } else { "updated" },
            from + 1
        );
        Ok(())
    }

    /// With `on_conflict: fail`: the first checkpoint or pending write of the batch
    /// that exists with other content, if any. Blobs are not compared: LangGraph
    /// re-serializes a value it read back into later checkpoints of the same channel
    /// version (a set's order, say), so one version can have several byte forms and
    /// the destination keeps the first; that is no conflict.
    async fn first_conflict(
        conn: &mut PgConnection,
        c: &Columns,
    ) -> Result<Option<String>, sqlx::Error> {
        // Keys first: into a store that holds none of the batch's keys (a first run,
        // the usual case) nothing more is asked, and the batch's documents and values
        // are sent, and its documents parsed as JSONB, once (by the insert) instead of
        // twice.
        let any_key = format!(
            "SELECT EXISTS (SELECT 1 FROM {CHECKPOINT_KEYS} JOIN checkpoints c USING (thread_id, checkpoint_ns, checkpoint_id)) \
                 OR EXISTS (SELECT 1 FROM {WRITE_KEYS} JOIN checkpoint_writes c USING (thread_id, checkpoint_ns, checkpoint_id, task_id, idx))"
        );
        let any: bool = sqlx::query_scalar_with(&any_key, c.key_args()?)
            .fetch_one(&mut *conn)
            .await?;
        if !any {
            return Ok(None);
        }
        let checkpoints = format!(
            "SELECT format('thread_id=%s checkpoint_ns=%s checkpoint_id=%s', b.thread_id, b.checkpoint_ns, b.checkpoint_id) \
             FROM {CHECKPOINT_ROWS} JOIN checkpoints c USING (thread_id, checkpoint_ns, checkpoint_id) \
             WHERE c.parent_checkpoint_id IS DISTINCT FROM b.parent_checkpoint_id \
                OR c.checkpoint <> b.checkpoint OR c.metadata <> b.metadata LIMIT 1"
        );
        let found: Option<String> = sqlx::query_scalar_with(&checkpoints, c.checkpoint_args()?)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(key) = found {
            return Ok(Some(format!("checkpoint {key}")));
        }
        let writes = format!(
            "SELECT format('thread_id=%s checkpoint_ns=%s checkpoint_id=%s task_id=%s idx=%s', b.thread_id, b.checkpoint_ns, b.checkpoint_id, b.task_id, b.idx) \
             FROM {WRITE_ROWS} JOIN checkpoint_writes c USING (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) \
             WHERE c.channel <> b.channel OR c.type IS DISTINCT FROM b.type OR c.blob <> b.blob LIMIT 1"
        );
        let found: Option<String> = sqlx::query_scalar_with(&writes, c.write_args()?)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(found.map(|key| format!("pending write {key}")))
    }

    /// Waits until the batch in flight committed (sending it again first, on a new
    /// connection, when an error stopped it) and counts it.
    async fn land(&mut self) -> Result<(), StoreError> {
        let (endpoint, schema) = (&self.endpoint, &self.config.schema);
        let connect = async || connect(endpoint, schema).await;
        in_flight::land(
            &mut self.in_flight,
            &mut self.conn,
            &mut self.counts,
            connect,
        )
        .await
    }

    /// Inserts one batch in one transaction; returns the counts.
    async fn insert(
        conn: &mut PgConnection,
        c: &Columns,
        mode: OnConflict,
    ) -> Result<Result<WriteCounts, String>, sqlx::Error> {
        let mut tx = conn.begin().await?;
        let conflict = match mode {
            OnConflict::Fail => Self::first_conflict(&mut tx, c).await?,
            OnConflict::Skip | OnConflict::Overwrite => None,
        };
        if let Some(conflict) = conflict {
            tx.rollback().await?;
            return Ok(Err(conflict));
        }
        let (on_checkpoint, on_blob, on_write) = match mode {
            OnConflict::Skip | OnConflict::Fail => ("DO NOTHING", "DO NOTHING", "DO NOTHING"),
            OnConflict::Overwrite => (
                "DO UPDATE SET parent_checkpoint_id = EXCLUDED.parent_checkpoint_id, checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata",
                "DO UPDATE SET type = EXCLUDED.type, blob = EXCLUDED.blob",
                "DO UPDATE SET task_path = EXCLUDED.task_path, channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob",
            ),
        };
        let mut counts = WriteCounts::default();
        let sql = format!(
            "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) \
             SELECT * FROM {BLOB_ROWS} ON CONFLICT (thread_id, checkpoint_ns, channel, version) {on_blob}"
        );
        counts.blobs = sqlx::query_with(&sql, c.blob_args()?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let sql = format!(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata) \
             SELECT * FROM {CHECKPOINT_ROWS} ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) {on_checkpoint}"
        );
        counts.written = sqlx::query_with(&sql, c.checkpoint_args()?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        counts.kept = c.thread_id.len() as u64 - counts.written;
        let sql = format!(
            "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob) \
             SELECT * FROM {WRITE_ROWS} ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {on_write}"
        );
        counts.writes = sqlx::query_with(&sql, c.write_args()?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Ok(counts))
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn describe(&self) -> String {
        format!(
            "{} (PostgresSaver tables, on_conflict: {})",
            self.schema_shown(),
            self.config.on_conflict.name()
        )
    }

    fn needs_view(&self) -> bool {
        false
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "postgresql-{}.dead-letter.jsonl",
            crate::sinks::safe_file_name(&self.config.schema)
        ))
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if self.prepared {
            return Ok(());
        }
        let version = self.schema_version().await?;
        if let Some(from) = self.migration_plan(version)? {
            self.migrate(from).await?;
        }
        self.prepared = true;
        Ok(())
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        let version = self.schema_version().await?;
        self.migration_plan(version).map(drop)
    }

    async fn plan(&mut self, threads: &[String]) -> Result<Vec<String>, StoreError> {
        let version = self.schema_version().await?;
        let mut plan = vec![match self.migration_plan(version)? {
            None => format!(
                "use PostgresSaver's tables in schema {} (migration {KNOWN_VERSION}, up to date)",
                self.config.schema
            ),
            Some(from) => format!(
                "{} PostgresSaver's tables in schema {} (migrations {}..={KNOWN_VERSION}, as LangGraph's setup() does)",
                if from < 0 { "create" } else { "update" },
                self.config.schema,
                from + 1
            ),
        }];
        if version.is_some() {
            let threads = threads.to_vec();
            let conn = self.conn().await?;
            let existing: i64 =
                sqlx::query_scalar("SELECT count(*) FROM checkpoints WHERE thread_id = ANY($1)")
                    .bind(&threads)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| self.error("cannot count existing checkpoints", e))?;
            plan.push(existing_line(existing, self.config.on_conflict));
        }
        Ok(plan)
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        self.prepare().await?;
        let mut rejected = Vec::new();
        let mut columns = Columns::default();
        let mut blobs_seen = HashSet::new();
        let mut encoder = Encoder::new(&self.config.allowed_json_modules);
        for (index, record) in records.iter().enumerate() {
            if let Err(e) = columns.push(record, &mut blobs_seen, &mut encoder) {
                rejected.push(Rejected {
                    index,
                    reason: format!("cannot be written as a PostgresSaver checkpoint: {e}"),
                });
            }
        }
        let mut kept_as_maps = std::mem::take(&mut encoder.kept_as_maps);
        drop(encoder);
        // The batch before must have committed before this one is sent (one
        // transaction at a time, in order); an error there fails this call, and the
        // engine's retry sends that batch again, then this one.
        self.land().await?;
        self.kept_as_maps.append(&mut kept_as_maps);
        self.negative_zeros += columns.negative_zeros;
        let batch = ShapedBatch {
            columns,
            mode: self.config.on_conflict,
            endpoint: self.endpoint.clone(),
            shown: self.schema_shown(),
        };
        let (endpoint, schema) = (&self.endpoint, &self.config.schema);
        let connect = async || connect(endpoint, schema).await;
        in_flight::send(
            &mut self.in_flight,
            &mut self.conn,
            connect,
            batch,
            send_batch,
        )
        .await?;
        Ok(rejected)
    }

    fn unconfirmed_batches(&self) -> usize {
        1
    }

    async fn settle(&mut self) -> Result<(), StoreError> {
        self.land().await
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        // A batch still in flight is left unconfirmed: its transaction is rolled back
        // with its connection, or committed (a resumed run sends it again, and finds
        // its rows identical).
        if let Some(flight) = self.in_flight.take() {
            flight.abort();
        }
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
            layout::split(n).is_ok() && layout::metadata_jsonb(n).is_ok()
        })
    }

    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        let written = PostgresSourceConfig {
            connection_string: self.config.connection_string.clone(),
            table_name: Some(format!("{}.checkpoints", self.config.schema)),
            upgrade: Default::default(),
            thread_id_template: None,
            connections: None,
        };
        let source = super::PostgresSource::open(&written, &Filters::none(), Pushdown::On).await?;
        Ok(Box::new(source))
    }

    async fn finish(&mut self, _stats: &RunStats) -> Result<(), StoreError> {
        self.counts.report(&self.schema_shown());
        if self.negative_zeros > 0 {
            tracing::warn!(
                "{}: {} checkpoint(s) had -0.0 in their metadata, which PostgreSQL's JSONB stores as 0.0 (as PostgresSaver's own writes do)",
                self.schema_shown(),
                self.negative_zeros
            );
        }
        crate::stores::report_kept_as_maps(&self.schema_shown(), &self.kept_as_maps);
        if let Some(conn) = self.conn.take() {
            conn.close()
                .await
                .map_err(|e| self.error("cannot close", e))?;
        }
        Ok(())
    }
}

impl OpenSink for PostgresSinkConfig {
    fn open_sink(&self, _run: &RunInfo, _retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        Ok(Box::new(PostgresSink::new(self.clone())?))
    }
}
