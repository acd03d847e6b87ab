//! Reading LangGraph's `PostgresSaver` tables: checkpoints in key order, their blobs
//! spliced in, their pending writes, with thread and time filters in the query.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::blob_refs::BlobRefs;
use super::{Mode, PostgresSource};
use crate::error::StoreError;
use crate::record::{ChannelBlob, Checkpoint, CheckpointKey, PendingWrite, TypedValue};
use crate::sources::{BatchLimits, FailedRead, SourceBatch};
use crate::stores::sql::{self, Dialect, where_sql};

/// A `ts` text that PostgreSQL casts to the instant our parser reads.
pub(super) const TS_PATTERN: &str =
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$";

pub(super) struct CheckpointTables {
    pub(super) checkpoints: String,
    pub(super) blobs: Option<String>,
    pub(super) writes: Option<String>,
    pub(super) writes_have_task_path: bool,
    pub(super) schema_version: Option<i64>,
}

impl PostgresSource {
    /// Pushed-down filters on the checkpoints table, parameters from `$first`.
    pub(super) fn checkpoint_filters(&self, first: usize) -> (Vec<String>, Vec<String>) {
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

    /// The page after `self.after`, with these limits.
    fn page_request(&self, limits: BatchLimits) -> PageRequest {
        PageRequest {
            after: self.after.clone(),
            limits,
        }
    }

    /// The query of a page: its SQL and parameters.
    fn page_query(&self, request: &PageRequest) -> (String, Vec<String>) {
        let Mode::Checkpoints(tables) = &self.mode else {
            unreachable!("called in checkpoint mode")
        };
        let mut params: Vec<String> = Vec::new();
        let mut clauses = Vec::new();
        if let Some(after) = &request.after {
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
             checkpoint::text, metadata::text FROM {} {} \
             ORDER BY thread_id, checkpoint_ns, checkpoint_id LIMIT {}",
            tables.checkpoints,
            where_sql(&clauses),
            request.limits.max_records
        );
        (sql, params)
    }

    /// The queries of the batch `request` asks for.
    fn batch_queries(&self, request: &PageRequest) -> BatchQueries {
        let Mode::Checkpoints(tables) = &self.mode else {
            unreachable!("called in checkpoint mode")
        };
        // The thread range again as a plain column range: PostgreSQL cannot estimate a
        // row comparison and guesses a quarter of the table, so it planned some
        // batches' queries as a scan of the whole table (15 of 200 batches' blobs
        // queries at 100 000 checkpoints, when they joined `checkpoints`: 1.5 M rows
        // read), a cost that grows with the table. A column range it estimates from
        // its statistics, and reads the batch's rows through an index.
        let range = "(c.thread_id, c.checkpoint_ns, c.checkpoint_id) BETWEEN ($1, $2, $3) AND ($4, $5, $6) \
                     AND c.thread_id BETWEEN $1 AND $4";
        // The blobs a checkpoint uses are those named by its channel_versions, read
        // from the page's documents (blob_refs.rs): each asked for once, by its
        // primary key. `OFFSET 0` keeps the lookup a subquery run per key: flattened
        // into a join, PostgreSQL planned it as a merge join that read the blobs
        // table's thread index from its start to the batch's threads.
        let blobs = tables.blobs.as_ref().map(|blobs| {
            format!(
                "SELECT k.i, bl.type, bl.blob \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS k(t, n, ch, v, i) \
                 CROSS JOIN LATERAL (SELECT b.type, b.blob FROM {blobs} b \
                   WHERE b.thread_id = k.t AND b.checkpoint_ns = k.n AND b.channel = k.ch AND b.version = k.v \
                   OFFSET 0) bl"
            )
        });
        let task_path = if tables.writes_have_task_path {
            "c.task_path"
        } else {
            "''::text"
        };
        let writes = tables.writes.as_ref().map(|writes| {
            format!(
                "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.task_id, {task_path}, c.idx, \
                 c.channel, c.type, c.blob FROM {writes} c WHERE {range} \
                 ORDER BY c.thread_id, c.checkpoint_ns, c.checkpoint_id, {task_path}, c.task_id, c.idx"
            )
        });
        let (page_sql, page_params) = self.page_query(request);
        BatchQueries {
            page_sql,
            page_params,
            blobs,
            writes,
            limits: request.limits,
        }
    }

    /// The rows of the batch after `self.after`: the batch read ahead when it starts
    /// there, else read now.
    async fn take_batch(&mut self, limits: BatchLimits) -> Result<BatchRows, StoreError> {
        let request = self.page_request(limits);
        let rows = match self.settle_read_ahead().await {
            Some((read, rows)) if read == request => rows,
            _ => {
                let queries = self.batch_queries(&request);
                let (conn, second) = self.conns().await?;
                read_batch(conn, second, &queries).await
            }
        };
        rows.map_err(|e| self.failed(e.what, e.error))
    }

    /// Starts reading the batch after `self.after` (its page, blobs and writes) on a
    /// task that holds the connection, so the server works on it while the engine
    /// decodes and writes this batch.
    fn read_ahead(&mut self, limits: BatchLimits) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let mut second = self.second.take();
        let request = self.page_request(limits);
        let queries = self.batch_queries(&request);
        let task = tokio::spawn(async move {
            let rows = read_batch(&mut conn, second.as_mut(), &queries).await;
            (conn, second, rows)
        });
        self.read_ahead = Some(ReadAhead { task, request });
    }

    pub(super) async fn next_checkpoints(
        &mut self,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let rows = self.take_batch(limits).await?;
        let page = &rows.page;
        if page.rows.len() < limits.max_records && page.bytes < limits.max_bytes {
            self.done = true;
        }
        let Some(last) = rows.last.clone() else {
            self.done = true;
            return Ok(None);
        };
        // The next batch is read while this one is assembled, decoded and written.
        let before = self.after.replace(last);
        if !self.done {
            self.read_ahead(limits);
        }
        match self.assemble(rows) {
            Ok(batch) => Ok(Some(batch)),
            Err(e) => {
                // This batch is read again: the one read ahead is not its successor.
                self.settle_read_ahead().await;
                self.after = before;
                self.done = false;
                Err(e)
            }
        }
    }

    /// A batch's records from its rows: blobs and writes spliced into their
    /// checkpoints; a checkpoint whose columns cannot be read is a failed read.
    fn assemble(&self, rows: BatchRows) -> Result<SourceBatch, StoreError> {
        let Mode::Checkpoints(tables) = &self.mode else {
            unreachable!("called in checkpoint mode")
        };
        let url = &self.endpoint.url;
        let cp = &tables.checkpoints;
        let BatchRows {
            page: Page { rows, mut bytes },
            mut refs,
            blobs,
            writes,
            last,
        } = rows;
        let mut fetched = self.named_blobs(&refs, blobs)?;
        let mut write_map = self.by_checkpoint(writes, "reading checkpoint_writes", |r| {
            Ok(PendingWrite {
                task_id: r.try_get(3)?,
                task_path: r.try_get(4)?,
                idx: i64::from(r.try_get::<i32, _>(5)?),
                channel: r.try_get(6)?,
                value: TypedValue::new(
                    r.try_get::<Option<String>, _>(7)?.unwrap_or_default(),
                    r.try_get::<Option<Vec<u8>>, _>(8)?.unwrap_or_default(),
                ),
            })
        })?;
        bytes += write_map
            .values()
            .flatten()
            .map(|w| w.value.bytes.len())
            .sum::<usize>();
        let mut batch = SourceBatch {
            last_key: last,
            ..SourceBatch::default()
        };
        let by_row = std::mem::take(&mut refs.by_row);
        for (row, named) in rows.into_iter().zip(by_row) {
            let key = key_of(&row).map_err(|e| self.error("reading a key", e))?;
            let origin = self.origin(format!("{url} {cp}[{key}]"));
            let named = match named {
                Ok(named) => named,
                Err(error) => {
                    batch.failed.push(FailedRead {
                        key: Some(key),
                        origin,
                        error: format!("{cp}: {error}"),
                    });
                    continue;
                }
            };
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
            // A blob moves into the last checkpoint that names it, and is copied
            // into the others.
            let channel_blobs = named
                .into_iter()
                .filter_map(|i| {
                    let value = refs.hand_out(&mut fetched, i)?;
                    let (channel, version) = refs.channel_version(i);
                    Some(ChannelBlob {
                        channel: channel.to_owned(),
                        version: version.to_owned(),
                        value,
                    })
                })
                .collect::<Vec<_>>();
            // The bytes moved, a blob counted in each checkpoint it goes into.
            bytes += channel_blobs
                .iter()
                .map(|b| b.value.bytes.len())
                .sum::<usize>();
            batch.records.push(Checkpoint {
                parent_checkpoint_id: parent,
                // JSONB: PostgreSQL's own text form is the most exact there is.
                checkpoint: TypedValue::new("json", document.unwrap_or_else(|| "null".into())),
                channel_blobs,
                metadata: TypedValue::new("json", metadata.unwrap_or_else(|| "{}".into())),
                pending_writes: write_map.remove(&key).unwrap_or_default(),
                origin,
                view: None,
                key,
            });
        }
        batch.bytes = bytes;
        Ok(batch)
    }

    /// The blobs query's rows by their index in `refs` (`None`: a blob named but not
    /// in the table, which no checkpoint then gets, as with the server's join).
    fn named_blobs(
        &self,
        refs: &BlobRefs,
        rows: Vec<PgRow>,
    ) -> Result<Vec<Option<TypedValue>>, StoreError> {
        let what = "reading checkpoint_blobs";
        let mut fetched = vec![None; refs.len()];
        for r in rows {
            let (index, kind, bytes) = (|| {
                Ok::<_, sqlx::Error>((
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<String, _>(1)?,
                    r.try_get::<Option<Vec<u8>>, _>(2)?,
                ))
            })()
            .map_err(|e| self.error(what, e))?;
            let slot = usize::try_from(index - 1)
                .ok()
                .and_then(|i| fetched.get_mut(i))
                .ok_or_else(|| {
                    let e = format!("the server answered a blob never asked for (index {index})");
                    self.error(what, sqlx::Error::Protocol(e))
                })?;
            *slot = Some(TypedValue::new(kind, bytes.unwrap_or_default()));
        }
        Ok(fetched)
    }

    /// Rows of a checkpoint's blobs or writes (its key in the first three columns),
    /// read by `read` and grouped by checkpoint in their order; `what` names the
    /// table in an error.
    fn by_checkpoint<T>(
        &self,
        rows: Vec<PgRow>,
        what: &str,
        read: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
    ) -> Result<HashMap<CheckpointKey, Vec<T>>, StoreError> {
        let mut grouped: HashMap<CheckpointKey, Vec<T>> = HashMap::new();
        for r in rows {
            let key = key_of(&r).map_err(|e| self.error(what, e))?;
            let value = read(&r).map_err(|e| self.error(what, e))?;
            grouped.entry(key).or_default().push(value);
        }
        Ok(grouped)
    }
}

/// A checkpoint's key from the first three columns of a row.
fn key_of(r: &PgRow) -> Result<CheckpointKey, sqlx::Error> {
    Ok(CheckpointKey {
        thread_id: r.try_get(0)?,
        checkpoint_ns: r.try_get(1)?,
        checkpoint_id: r.try_get(2)?,
    })
}

/// The queries of one batch: its page of checkpoints, then the blobs and writes of the
/// page's key range (when the tables exist).
struct BatchQueries {
    page_sql: String,
    page_params: Vec<String>,
    blobs: Option<String>,
    writes: Option<String>,
    limits: BatchLimits,
}

/// A batch's rows as the server returned them, and its last key (`None`: no rows).
pub(super) struct BatchRows {
    page: Page,
    /// The blobs the page's documents name, and the rows of the blobs query: each
    /// blob's index (from 1) in `refs`, its type and bytes.
    refs: BlobRefs,
    blobs: Vec<PgRow>,
    writes: Vec<PgRow>,
    last: Option<CheckpointKey>,
}

/// A batch's query that failed, named as its error says.
pub(super) struct ReadFailure {
    what: &'static str,
    error: sqlx::Error,
}

/// Reads a batch: its page, then the blobs its documents name and the writes of its
/// key range, the writes on `second` (the same snapshot) while the blobs are read,
/// else one after the other on the snapshot's connection.
async fn read_batch(
    conn: &mut PgConnection,
    second: Option<&mut PgConnection>,
    queries: &BatchQueries,
) -> Result<BatchRows, ReadFailure> {
    let failure = |what| move |error| ReadFailure { what, error };
    let page = read_page(
        &mut *conn,
        &queries.page_sql,
        &queries.page_params,
        queries.limits,
    )
    .await
    .map_err(failure("reading checkpoints"))?;
    let mut refs = BlobRefs::default();
    if queries.blobs.is_some() {
        for row in &page.rows {
            refs.push_row((|| {
                Some((
                    row.try_get(0).ok()?,
                    row.try_get(1).ok()?,
                    row.try_get(5).ok()?,
                ))
            })());
        }
    }
    let mut rows = BatchRows {
        blobs: Vec::new(),
        writes: Vec::new(),
        last: None,
        page,
        refs,
    };
    let (Some(first), Some(last)) = (rows.page.rows.first(), rows.page.rows.last()) else {
        return Ok(rows);
    };
    let first = key_of(first).map_err(failure("reading a key"))?;
    let last = key_of(last).map_err(failure("reading a key"))?;
    let blobs = async |conn: &mut PgConnection| match &queries.blobs {
        Some(sql) if rows.refs.len() > 0 => {
            let [threads, namespaces, channels, versions] = rows.refs.columns();
            sqlx::query(sql)
                .bind(threads)
                .bind(namespaces)
                .bind(channels)
                .bind(versions)
                .fetch_all(conn)
                .await
                .map_err(failure("reading checkpoint_blobs"))
        }
        _ => Ok(Vec::new()),
    };
    let writes = async |conn: &mut PgConnection| match &queries.writes {
        Some(sql) => {
            let mut query = sqlx::query(sql);
            for p in [first.parts(), last.parts()].concat() {
                query = query.bind(p);
            }
            query
                .fetch_all(conn)
                .await
                .map_err(failure("reading checkpoint_writes"))
        }
        None => Ok(Vec::new()),
    };
    let (blob_rows, write_rows) = match second {
        Some(second) => {
            let (blob_rows, write_rows) = tokio::join!(blobs(conn), writes(second));
            (blob_rows?, write_rows?)
        }
        None => {
            let blob_rows = blobs(&mut *conn).await?;
            (blob_rows, writes(conn).await?)
        }
    };
    rows.blobs = blob_rows;
    rows.writes = write_rows;
    rows.last = Some(last);
    Ok(rows)
}

/// A page of `checkpoints` rows and the bytes of their documents.
pub(super) struct Page {
    rows: Vec<PgRow>,
    bytes: usize,
}

/// Reads one page: rows until the page's count (the query's `LIMIT`) or its bytes.
async fn read_page(
    conn: &mut PgConnection,
    sql: &str,
    params: &[String],
    limits: BatchLimits,
) -> Result<Page, sqlx::Error> {
    let mut query = sqlx::query(sql);
    for p in params {
        query = query.bind(p);
    }
    let mut page = Page {
        rows: Vec::new(),
        bytes: 0,
    };
    let mut stream = query.fetch(conn);
    while let Some(row) = stream.try_next().await? {
        page.bytes += row
            .try_get::<Option<&str>, _>(5)
            .ok()
            .flatten()
            .map_or(0, str::len);
        page.rows.push(row);
        if page.bytes >= limits.max_bytes {
            break;
        }
    }
    Ok(page)
}

/// The next batch (its page, blobs and writes), read on a task of its own that holds
/// the snapshot's connection until it is done: the server answers the next batch's
/// queries while the engine decodes and writes the batch before. It ends (the query
/// abandoned) when dropped.
pub(super) struct ReadAhead {
    pub(super) task: tokio::task::JoinHandle<ReadAheadDone>,
    pub(super) request: PageRequest,
}

/// What a read-ahead task gives back: the snapshot's connections (the second one when
/// there is one) and the batch's rows.
pub(super) type ReadAheadDone = (
    PgConnection,
    Option<PgConnection>,
    Result<BatchRows, ReadFailure>,
);

/// Which batch: where its page starts, and the limits it is read with.
#[derive(Clone, PartialEq)]
pub(super) struct PageRequest {
    after: Option<CheckpointKey>,
    limits: BatchLimits,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}
