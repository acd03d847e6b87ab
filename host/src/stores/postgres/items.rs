//! LangGraph `PostgresStore` schemas: Store items in `store` (value JSONB, times
//! `timestamptz`, TTL in whole minutes) and their embeddings in `store_vectors`
//! (pgvector `vector(dims)`).
//!
//! Reads are keyset-paginated on the primary key `(prefix, key)`. Writes create the
//! tables as `PostgresStore.setup()` does and record the same migration versions, so
//! LangGraph's own `setup()` finds nothing to do (an ANN index, which depends on the
//! app's index config, is left to it).

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row};

use super::Endpoint;
use super::config::{PostgresSinkConfig, PostgresSourceConfig, StoreEmbeddings};
use crate::error::{ConfigError, OpenError, StoreError};
use crate::items::{
    ItemBatch, ItemFilters, ItemKey, ItemRead, ItemSink, ItemSource, ItemVector, ItemWrite,
    NumberFidelity, StoreItem, key_position, namespace_of,
};
use crate::record::Origin;
use crate::stores::sql::quote_ident;
use crate::stores::store_items as shared;

/// `PostgresStore`'s migrations, in order (`store_migrations.v` counts from 0).
const STORE_MIGRATIONS: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS store (
    prefix text NOT NULL,
    key text NOT NULL,
    value jsonb NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key)
)",
    "CREATE INDEX IF NOT EXISTS store_prefix_idx ON store USING btree (prefix text_pattern_ops)",
    "ALTER TABLE store ADD COLUMN IF NOT EXISTS expires_at TIMESTAMP WITH TIME ZONE, \
     ADD COLUMN IF NOT EXISTS ttl_minutes INT",
    "CREATE INDEX IF NOT EXISTS idx_store_expires_at ON store (expires_at) WHERE expires_at IS NOT NULL",
];

/// The first two of `PostgresStore`'s vector migrations: the extension and the table
/// (`{dims}` is the vectors' length). The third, an ANN index, depends on the app's
/// index config and is left to its `setup()`.
const VECTOR_MIGRATIONS: [&str; 2] = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE TABLE IF NOT EXISTS store_vectors (
    prefix text NOT NULL,
    key text NOT NULL,
    field_name text NOT NULL,
    embedding vector({dims}),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key, field_name),
    FOREIGN KEY (prefix, key) REFERENCES store(prefix, key) ON DELETE CASCADE
)",
];

/// The item columns; times as RFC 3339 UTC text with microseconds (the driver is
/// built without chrono).
fn select_items(table: &str) -> String {
    let time = |c: &str| {
        format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS {c}")
    };
    format!(
        "SELECT prefix, key, value::text AS value, {}, {}, {}, ttl_minutes::float8 AS ttl_minutes FROM {table}",
        time("created_at"),
        time("updated_at"),
        time("expires_at")
    )
}

fn text(row: &PgRow, column: &str) -> String {
    row.try_get::<Option<String>, _>(column)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn key_of(row: &PgRow) -> ItemKey {
    ItemKey {
        namespace: namespace_of(&text(row, "prefix")),
        key: text(row, "key"),
    }
}

/// An item from a `store` row (vectors added by the caller).
fn item_of(row: &PgRow, origin: Origin) -> ItemRead {
    shared::ItemRow {
        key: key_of(row),
        value: row.try_get("value").unwrap_or(None),
        created_at: text(row, "created_at"),
        updated_at: text(row, "updated_at"),
        expires_at: row.try_get("expires_at").unwrap_or(None),
        ttl_minutes: row.try_get("ttl_minutes").unwrap_or(None),
    }
    .into_item(origin)
}

/// Whether the connection's `search_path` has the table.
async fn has_table(
    conn: &mut PgConnection,
    endpoint: &Endpoint,
    table: &str,
) -> Result<bool, StoreError> {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(conn)
        .await
        .map_err(|e| endpoint.error("cannot read the schema", e))
}

pub struct PostgresItemSource {
    endpoint: Endpoint,
    conn: PgConnection,
    filters: ItemFilters,
    has_vectors: bool,
    after: Option<ItemKey>,
    done: bool,
}

impl PostgresItemSource {
    pub async fn open(
        config: &PostgresSourceConfig,
        filters: &ItemFilters,
    ) -> Result<Self, OpenError> {
        if config.table_name.is_some() {
            return Err(OpenError::Config(ConfigError::Invalid(
                "source_config.table_name names a chat-history table; Store items (state: store) are read from `store`"
                    .into(),
            )));
        }
        let endpoint = Endpoint::parse(&config.connection_string)?;
        let mut conn = endpoint.connect().await?;
        if !has_table(&mut conn, &endpoint, "store").await? {
            return Err(StoreError::fatal(format!(
                "PostgreSQL {}: no `store` table in the search_path; is this a LangGraph PostgresStore database?",
                endpoint.url
            ))
            .into());
        }
        let has_vectors = has_table(&mut conn, &endpoint, "store_vectors").await?;
        Ok(Self {
            endpoint,
            conn,
            filters: filters.clone(),
            has_vectors,
            after: None,
            done: false,
        })
    }

    fn origin(&self, key: &ItemKey) -> Origin {
        Origin {
            store: "postgresql".into(),
            locator: format!("{} store {key}", self.endpoint.url),
        }
    }

    fn push_where(&self, q: &mut QueryBuilder<'_, Postgres>, after: Option<&ItemKey>) {
        shared::push_page_where(q, after, self.filters.prefix_text());
    }

    async fn vectors(
        &mut self,
        first: &ItemKey,
        last: &ItemKey,
    ) -> Result<BTreeMap<ItemKey, Result<Vec<ItemVector>, String>>, StoreError> {
        let mut found = BTreeMap::new();
        if !self.has_vectors {
            return Ok(found);
        }
        // `prefix BETWEEN` as well: PostgreSQL guesses a row comparison's share of the
        // table (a quarter) and may plan a scan of all of it for each page; a column
        // range it estimates (as the checkpoint reader's blobs query does).
        let rows = sqlx::query(
            "SELECT prefix, key, field_name, embedding::real[] AS embedding FROM store_vectors \
             WHERE (prefix, key) >= ($1, $2) AND (prefix, key) <= ($3, $4) \
               AND prefix BETWEEN $1 AND $3 \
             ORDER BY prefix, key, field_name",
        )
        .bind(first.prefix())
        .bind(&first.key)
        .bind(last.prefix())
        .bind(&last.key)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| self.endpoint.error("cannot read `store_vectors`", e))?;
        for row in rows {
            let entry = found.entry(key_of(&row)).or_insert_with(|| Ok(Vec::new()));
            if let Ok(vectors) = entry {
                vectors.push(vector_of(&row));
            }
        }
        Ok(found)
    }
}

fn vector_of(row: &PgRow) -> ItemVector {
    ItemVector {
        field_name: text(row, "field_name"),
        embedding: row
            .try_get::<Option<Vec<f32>>, _>("embedding")
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}

#[async_trait]
impl ItemSource for PostgresItemSource {
    fn describe(&self) -> String {
        format!("PostgresStore {}", self.endpoint.url)
    }

    async fn next_batch(&mut self, limit: usize) -> Result<Option<ItemBatch>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut q = QueryBuilder::<Postgres>::new(select_items("store"));
        self.push_where(&mut q, self.after.as_ref());
        q.push(" ORDER BY prefix, key LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = q
            .build()
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| self.endpoint.error("cannot read `store`", e))?;
        if rows.len() < limit {
            self.done = true;
        }
        let (Some(first), Some(last)) = (rows.first().map(key_of), rows.last().map(key_of)) else {
            return Ok(None);
        };
        let read: Vec<_> = rows
            .iter()
            .map(|row| item_of(row, self.origin(&key_of(row))))
            .collect();
        let mut vectors = self.vectors(&first, &last).await?;
        let mut batch = ItemBatch {
            position: serde_json::json!(last),
            ..ItemBatch::default()
        };
        shared::attach_vectors(read, &mut vectors, &mut batch);
        self.after = Some(last);
        Ok(Some(batch))
    }

    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError> {
        self.after = Some(key_position(position)?);
        Ok(())
    }

    async fn count_by_namespace(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT prefix, COUNT(*) AS n FROM store");
        self.push_where(&mut q, None);
        q.push(" GROUP BY prefix");
        let rows = q
            .build()
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| self.endpoint.error("cannot count `store`", e))?;
        let counted = rows
            .iter()
            .map(|r| (text(r, "prefix"), r.try_get("n").unwrap_or(0)));
        Ok(shared::namespace_counts(counted, &self.filters))
    }
}

pub struct PostgresItemSink {
    config: PostgresSinkConfig,
    endpoint: Endpoint,
    conn: Option<PgConnection>,
    /// The length of `store_vectors.embedding` when the table exists.
    dims: Option<usize>,
}

impl PostgresItemSink {
    pub fn new(config: PostgresSinkConfig) -> Result<Self, StoreError> {
        Ok(Self {
            endpoint: Endpoint::parse(&config.connection_string)?,
            config,
            conn: None,
            dims: None,
        })
    }

    /// The connection with the schema as its `search_path`, as PostgresStore's
    /// unqualified SQL expects.
    async fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            let mut conn = self.endpoint.connect().await?;
            sqlx::query(&format!(
                "SET search_path TO {}",
                quote_ident(&self.config.schema)
            ))
            .execute(&mut conn)
            .await
            .map_err(|e| self.endpoint.error("cannot set the search_path", e))?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::fatal("no connection"))
    }

    /// Applies `PostgresStore.setup()`'s migrations not yet recorded in `table`.
    async fn migrate(&mut self, table: &str, migrations: &[String]) -> Result<(), StoreError> {
        let endpoint = self.endpoint.clone();
        let conn = self.conn().await?;
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| endpoint.error("cannot begin", e))?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (v INTEGER PRIMARY KEY)"
        ))
        .execute(&mut *tx)
        .await
        .map_err(|e| endpoint.error(&format!("cannot create `{table}`"), e))?;
        let version: Option<i32> = sqlx::query_scalar(&format!("SELECT MAX(v) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| endpoint.error(&format!("cannot read `{table}`"), e))?;
        let next = version.map_or(0, |v| usize::try_from(v + 1).unwrap_or(usize::MAX));
        for (v, sql) in migrations.iter().enumerate().skip(next) {
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| endpoint.error(&format!("{table} {v}"), e))?;
            sqlx::query(&format!("INSERT INTO {table} (v) VALUES ($1)"))
                .bind(i32::try_from(v).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await
                .map_err(|e| endpoint.error(&format!("cannot record {table} {v}"), e))?;
        }
        tx.commit()
            .await
            .map_err(|e| endpoint.error("cannot commit", e))
    }

    /// The vectors' length of an existing `store_vectors` table.
    async fn vector_dims(&mut self) -> Result<Option<usize>, StoreError> {
        let endpoint = self.endpoint.clone();
        let conn = self.conn().await?;
        if !has_table(conn, &endpoint, "store_vectors").await? {
            return Ok(None);
        }
        // pgvector keeps the declared length as the column's type modifier.
        let dims: Option<i32> = sqlx::query_scalar(
            "SELECT atttypmod FROM pg_attribute \
             WHERE attrelid = to_regclass('store_vectors') AND attname = 'embedding'",
        )
        .fetch_optional(conn)
        .await
        .map_err(|e| endpoint.error("cannot read `store_vectors`", e))?;
        Ok(dims.and_then(|d| usize::try_from(d).ok()))
    }

    async fn fetch(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let endpoint = self.endpoint.clone();
        let with_vectors = self.dims.is_some();
        let conn = self.conn().await?;
        let prefixes: Vec<String> = keys.iter().map(ItemKey::prefix).collect();
        let names: Vec<String> = keys.iter().map(|k| k.key.clone()).collect();
        let rows = sqlx::query(&format!(
            "{} JOIN UNNEST($1::text[], $2::text[]) AS k(p, n) ON prefix = p AND key = n",
            select_items("store")
        ))
        .bind(&prefixes)
        .bind(&names)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| endpoint.error("cannot read `store`", e))?;
        let mut by_key: BTreeMap<ItemKey, StoreItem> = BTreeMap::new();
        for row in &rows {
            let key = key_of(row);
            let origin = Origin {
                store: "postgresql".into(),
                locator: format!("{} store {key}", endpoint.url),
            };
            let item = item_of(row, origin)
                .map_err(|f| StoreError::fatal(format!("{}: {}", f.origin.locator, f.reason)))?;
            by_key.insert(key, item);
        }
        if with_vectors {
            let rows = sqlx::query(
                "SELECT prefix, key, field_name, embedding::real[] AS embedding FROM store_vectors \
                 JOIN UNNEST($1::text[], $2::text[]) AS k(p, n) ON prefix = p AND key = n \
                 ORDER BY prefix, key, field_name",
            )
            .bind(&prefixes)
            .bind(&names)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| endpoint.error("cannot read `store_vectors`", e))?;
            for row in &rows {
                if let Some(item) = by_key.get_mut(&key_of(row)) {
                    item.vectors.push(vector_of(row));
                }
            }
        }
        Ok(keys.iter().map(|k| by_key.remove(k)).collect())
    }
}

#[async_trait]
impl ItemSink for PostgresItemSink {
    fn describe(&self) -> String {
        format!(
            "PostgresStore {} schema {}",
            self.endpoint.url, self.config.schema
        )
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if self.config.create_tables {
            let schema = format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(&self.config.schema)
            );
            let endpoint = self.endpoint.clone();
            sqlx::query(&schema)
                .execute(self.conn().await?)
                .await
                .map_err(|e| endpoint.error("cannot create the schema", e))?;
            let migrations: Vec<String> = STORE_MIGRATIONS.iter().map(|s| (*s).into()).collect();
            self.migrate("store_migrations", &migrations).await?;
        } else {
            let endpoint = self.endpoint.clone();
            if !has_table(self.conn().await?, &endpoint, "store").await? {
                return Err(StoreError::fatal(format!(
                    "{}: no `store` table and create_tables is false",
                    self.describe()
                )));
            }
        }
        self.dims = self.vector_dims().await?;
        Ok(())
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        let mut outcome = ItemWrite::default();
        let items: Vec<StoreItem> = items.iter().map(|i| self.written_form(i.clone())).collect();
        let first_dims = items
            .iter()
            .find_map(|i| i.vectors.first().map(|v| v.embedding.len()));
        if let (None, Some(dims)) = (self.dims, first_dims) {
            let migrations: Vec<String> = VECTOR_MIGRATIONS
                .iter()
                .map(|s| s.replace("{dims}", &dims.to_string()))
                .collect();
            self.migrate("vector_migrations", &migrations)
                .await
                .map_err(|mut e| {
                    e.message.push_str(
                        " (the items carry embeddings: the server needs the pgvector extension)",
                    );
                    e
                })?;
            self.dims = self.vector_dims().await?;
        }
        // Embeddings of another length cannot go into this table: those items fail
        // (dead-letter file) instead of losing their vectors.
        let mut writable = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item
                .vectors
                .iter()
                .find(|v| Some(v.embedding.len()) != self.dims)
            {
                Some(v) => outcome.rejected.push((
                    i,
                    format!(
                        "embedding `{}` has {} dimensions; the destination's store_vectors holds {}",
                        v.field_name,
                        v.embedding.len(),
                        self.dims.map_or("none".into(), |d| d.to_string())
                    ),
                )),
                None => writable.push(item.clone()),
            }
        }
        let keys: Vec<ItemKey> = writable.iter().map(|i| i.key.clone()).collect();
        let existing = self.fetch(&keys).await?;
        let plan = shared::plan_writes(
            &writable,
            &existing,
            self.config.on_conflict,
            NumberFidelity::Exact,
        )?;
        let endpoint = self.endpoint.clone();
        let with_vectors = self.dims.is_some();
        let conn = self.conn().await?;
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| endpoint.error("cannot begin", e))?;
        let rows: Vec<&StoreItem> = plan.to_write.iter().map(|&i| &writable[i]).collect();
        let column = |f: &dyn Fn(&StoreItem) -> Option<String>| -> Vec<Option<String>> {
            rows.iter().map(|i| f(i)).collect()
        };
        let rfc = |t: &chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        sqlx::query(
            "INSERT INTO store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes) \
             SELECT p, k, v::jsonb, c::timestamptz, u::timestamptz, e::timestamptz, t::int \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[]) \
             AS r(p, k, v, c, u, e, t) \
             ON CONFLICT (prefix, key) DO UPDATE SET value = EXCLUDED.value, \
             created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
             expires_at = EXCLUDED.expires_at, ttl_minutes = EXCLUDED.ttl_minutes",
        )
        .bind(column(&|i| Some(i.key.prefix())))
        .bind(column(&|i| Some(i.key.key.clone())))
        .bind(column(&|i| Some(i.value.get().to_owned())))
        .bind(column(&|i| Some(rfc(&i.created_at))))
        .bind(column(&|i| Some(rfc(&i.updated_at))))
        .bind(column(&|i| i.expires_at.as_ref().map(rfc)))
        .bind(rows.iter().map(|i| i.ttl_minutes).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(|e| endpoint.error("cannot write `store`", e))?;
        if with_vectors {
            let prefixes = column(&|i| Some(i.key.prefix()));
            let names = column(&|i| Some(i.key.key.clone()));
            sqlx::query(
                "DELETE FROM store_vectors USING UNNEST($1::text[], $2::text[]) AS k(p, n) \
                 WHERE prefix = p AND key = n",
            )
            .bind(&prefixes)
            .bind(&names)
            .execute(&mut *tx)
            .await
            .map_err(|e| endpoint.error("cannot replace `store_vectors`", e))?;
            for item in rows.iter().filter(|i| !i.vectors.is_empty()) {
                for v in &item.vectors {
                    sqlx::query(
                        "INSERT INTO store_vectors (prefix, key, field_name, embedding, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4::real[]::vector, $5::timestamptz, $6::timestamptz)",
                    )
                    .bind(item.key.prefix())
                    .bind(&item.key.key)
                    .bind(&v.field_name)
                    .bind(&v.embedding)
                    .bind(rfc(&item.created_at))
                    .bind(rfc(&item.updated_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| endpoint.error("cannot write `store_vectors`", e))?;
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| endpoint.error("cannot commit", e))?;
        outcome.written = plan.to_write.len() as u64;
        outcome.kept = plan.kept;
        Ok(outcome)
    }

    /// PostgresStore keeps the TTL in whole minutes (`ttl_minutes INT`, rounded half
    /// to even as PostgreSQL casts the float psycopg sends); with
    /// `store_embeddings: drop` the item has no vectors.
    fn written_form(&self, mut item: StoreItem) -> StoreItem {
        item.ttl_minutes = item.ttl_minutes.map(f64::round_ties_even);
        if self.config.store_embeddings == StoreEmbeddings::Drop {
            item.vectors.clear();
        }
        item
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        // `verify` may read a destination no run has prepared.
        let endpoint = self.endpoint.clone();
        if !has_table(self.conn().await?, &endpoint, "store").await? {
            return Ok(vec![None; keys.len()]);
        }
        if self.dims.is_none() {
            self.dims = self.vector_dims().await?;
        }
        self.fetch(keys).await
    }
}

pub async fn open_item_source(
    config: &PostgresSourceConfig,
    filters: &ItemFilters,
) -> Result<Box<dyn ItemSource>, OpenError> {
    Ok(Box::new(PostgresItemSource::open(config, filters).await?))
}

pub fn open_item_sink(config: &PostgresSinkConfig) -> Result<Box<dyn ItemSink>, OpenError> {
    Ok(Box::new(PostgresItemSink::new(config.clone())?))
}
