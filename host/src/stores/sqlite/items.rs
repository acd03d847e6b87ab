//! LangGraph `SqliteStore` databases: Store items in `store` (value as JSON text,
//! times as SQLite text) and their embeddings in `store_vectors` (little-endian
//! float32 blobs, as `sqlite_vec.serialize_float32` writes them).
//!
//! Reads are keyset-paginated on the primary key `(prefix, key)`. Writes create the
//! tables as `SqliteStore.setup()` does and record the same migration versions, so
//! LangGraph's own `setup()` finds nothing to do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::config::{SqliteSinkConfig, SqliteSourceConfig};
use super::{path_from_connection_string, sql_error, table_columns, table_names};
use crate::error::{OpenError, StoreError};
use crate::items::{
    ItemBatch, ItemFilters, ItemKey, ItemRead, ItemSink, ItemSource, ItemVector, ItemWrite,
    NumberFidelity, StoreItem, key_position, namespace_of, store_time_text,
};
use crate::record::Origin;
use crate::stores::store_items as shared;

/// `SqliteStore`'s migrations, in order (`store_migrations.v` counts them from 0).
const STORE_MIGRATIONS: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS store (
    prefix text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key)
)",
    "CREATE INDEX IF NOT EXISTS store_prefix_idx ON store (prefix)",
    "ALTER TABLE store ADD COLUMN expires_at TIMESTAMP",
    "ALTER TABLE store ADD COLUMN ttl_minutes REAL",
    "CREATE INDEX IF NOT EXISTS idx_store_expires_at ON store (expires_at) WHERE expires_at IS NOT NULL",
];

/// `SqliteStore`'s vector migrations (`vector_migrations.v`).
const VECTOR_MIGRATIONS: [&str; 1] = ["CREATE TABLE IF NOT EXISTS store_vectors (
    prefix text NOT NULL,
    key text NOT NULL,
    field_name text NOT NULL,
    embedding BLOB,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (prefix, key, field_name),
    FOREIGN KEY (prefix, key) REFERENCES store(prefix, key) ON DELETE CASCADE
)"];

/// The item columns, as text where SQLite may hold either type (`value` is a BLOB
/// when Python bound orjson's bytes).
const SELECT_ITEMS: &str = "SELECT prefix, key, CAST(value AS TEXT) AS value, \
     CAST(created_at AS TEXT) AS created_at, CAST(updated_at AS TEXT) AS updated_at";

pub struct SqliteItemSource {
    conn: SqliteConnection,
    path: PathBuf,
    filters: ItemFilters,
    /// Whether the TTL columns exist (SqliteStore before its third migration had none).
    has_ttl: bool,
    has_vectors: bool,
    after: Option<ItemKey>,
    done: bool,
}

impl SqliteItemSource {
    pub async fn open(
        config: &SqliteSourceConfig,
        filters: &ItemFilters,
    ) -> Result<Self, StoreError> {
        let path = path_from_connection_string(&config.connection_string);
        let mut conn = super::connect_read_only(&path).await?;
        let tables = table_names(&mut conn, &path).await?;
        if !tables.iter().any(|t| t == "store") {
            return Err(super::missing_table(
                &path,
                "store",
                &tables,
                "is this a LangGraph SqliteStore database?",
            ));
        }
        let columns = table_columns(&mut conn, &path, "store").await?;
        super::check_columns(&path, "store", &columns, &shared::ITEM_COLUMNS)?;
        Ok(Self {
            conn,
            filters: filters.clone(),
            has_ttl: columns.iter().any(|c| c == "expires_at")
                && columns.iter().any(|c| c == "ttl_minutes"),
            has_vectors: tables.iter().any(|t| t == "store_vectors"),
            path,
            after: None,
            done: false,
        })
    }

    fn locator(&self, key: &ItemKey) -> String {
        format!("{} store {}", self.path.display(), key)
    }

    fn origin(&self, key: &ItemKey) -> Origin {
        Origin {
            store: "sqlite".into(),
            locator: self.locator(key),
        }
    }

    /// The `WHERE` of a page: after `after`, within the namespace prefix.
    fn push_where(&self, q: &mut QueryBuilder<'_, Sqlite>, after: Option<&ItemKey>) {
        shared::push_page_where(q, after, self.filters.prefix_text());
    }

    /// The embeddings of the keys `first..=last`, by key, ordered by field.
    async fn vectors(
        &mut self,
        first: &ItemKey,
        last: &ItemKey,
    ) -> Result<BTreeMap<ItemKey, Result<Vec<ItemVector>, String>>, StoreError> {
        let mut found: BTreeMap<ItemKey, Result<Vec<ItemVector>, String>> = BTreeMap::new();
        if !self.has_vectors {
            return Ok(found);
        }
        let rows = sqlx::query(
            "SELECT prefix, key, field_name, embedding FROM store_vectors \
             WHERE (prefix, key) >= (?, ?) AND (prefix, key) <= (?, ?) \
             ORDER BY prefix, key, field_name",
        )
        .bind(first.prefix())
        .bind(&first.key)
        .bind(last.prefix())
        .bind(&last.key)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| sql_error(&self.path, "cannot read `store_vectors`", e))?;
        for row in rows {
            let key = ItemKey {
                namespace: namespace_of(&text(&row, "prefix")),
                key: text(&row, "key"),
            };
            let field_name = text(&row, "field_name");
            let blob: Option<Vec<u8>> = row.try_get("embedding").unwrap_or(None);
            let entry = found.entry(key).or_insert_with(|| Ok(Vec::new()));
            let Ok(vectors) = entry else { continue };
            match shared::float32_le(blob.as_deref().unwrap_or_default()) {
                Ok(embedding) => vectors.push(ItemVector {
                    field_name,
                    embedding,
                }),
                Err(e) => *entry = Err(format!("store_vectors.{field_name}: {e}")),
            }
        }
        Ok(found)
    }
}

fn text(row: &SqliteRow, column: &str) -> String {
    row.try_get::<Option<String>, _>(column)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// An item from a `store` row (vectors added by the caller).
fn item_of(row: &SqliteRow, has_ttl: bool, origin: Origin) -> ItemRead {
    shared::ItemRow {
        key: ItemKey {
            namespace: namespace_of(&text(row, "prefix")),
            key: text(row, "key"),
        },
        value: row.try_get("value").unwrap_or(None),
        created_at: text(row, "created_at"),
        updated_at: text(row, "updated_at"),
        expires_at: if has_ttl {
            row.try_get("expires_at").unwrap_or(None)
        } else {
            None
        },
        ttl_minutes: if has_ttl {
            row.try_get("ttl_minutes").unwrap_or(None)
        } else {
            None
        },
    }
    .into_item(origin)
}

#[async_trait]
impl ItemSource for SqliteItemSource {
    fn describe(&self) -> String {
        format!("SqliteStore {}", self.path.display())
    }

    async fn next_batch(&mut self, limit: usize) -> Result<Option<ItemBatch>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let ttl = if self.has_ttl {
            ", CAST(expires_at AS TEXT) AS expires_at, ttl_minutes"
        } else {
            ""
        };
        let mut q = QueryBuilder::<Sqlite>::new(format!("{SELECT_ITEMS}{ttl} FROM store"));
        self.push_where(&mut q, self.after.as_ref());
        q.push(" ORDER BY prefix, key LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = q
            .build()
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| sql_error(&self.path, "cannot read `store`", e))?;
        if rows.len() < limit {
            self.done = true;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let keys: Vec<ItemKey> = rows
            .iter()
            .map(|row| ItemKey {
                namespace: namespace_of(&text(row, "prefix")),
                key: text(row, "key"),
            })
            .collect();
        let read: Vec<ItemRead> = rows
            .iter()
            .zip(&keys)
            .map(|(row, key)| item_of(row, self.has_ttl, self.origin(key)))
            .collect();
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Ok(None);
        };
        let mut vectors = self.vectors(first, last).await?;
        let mut batch = ItemBatch {
            position: serde_json::json!(last),
            ..ItemBatch::default()
        };
        shared::attach_vectors(read, &mut vectors, &mut batch);
        self.after = Some(last.clone());
        Ok(Some(batch))
    }

    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError> {
        self.after = Some(key_position(position)?);
        Ok(())
    }

    async fn count_by_namespace(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT prefix, COUNT(*) AS n FROM store");
        self.push_where(&mut q, None);
        q.push(" GROUP BY prefix");
        let rows = q
            .build()
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| sql_error(&self.path, "cannot count `store`", e))?;
        let counted = rows
            .iter()
            .map(|r| (text(r, "prefix"), r.try_get("n").unwrap_or(0)));
        Ok(shared::namespace_counts(counted, &self.filters))
    }
}

pub struct SqliteItemSink {
    config: SqliteSinkConfig,
    path: PathBuf,
    conn: Option<SqliteConnection>,
    has_vectors: bool,
}

impl SqliteItemSink {
    pub fn new(config: SqliteSinkConfig) -> Self {
        let path = path_from_connection_string(&config.connection_string);
        Self {
            config,
            path,
            conn: None,
            has_vectors: false,
        }
    }

    fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::fatal("the SQLite store destination was not prepared"))
    }

    /// Applies the migrations `SqliteStore.setup()` would apply, recording them in its
    /// own migrations table.
    async fn migrate(&mut self, table: &str, migrations: &[&str]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let busy = self.config.busy_timeout_seconds;
        let error = |what: &str, e| super::write_error(&path, busy, what, e);
        let conn = self.conn()?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (v INTEGER PRIMARY KEY)"
        ))
        .execute(&mut *conn)
        .await
        .map_err(|e| error(&format!("cannot create `{table}`"), e))?;
        let version: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(v) FROM {table}"))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| error(&format!("cannot read `{table}`"), e))?;
        let next = version.map_or(0, |v| usize::try_from(v + 1).unwrap_or(usize::MAX));
        for (v, sql) in migrations.iter().enumerate().skip(next) {
            let mut tx = conn.begin().await.map_err(|e| error("cannot begin", e))?;
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| error(&format!("{table} {v}"), e))?;
            sqlx::query(&format!("INSERT INTO {table} (v) VALUES (?)"))
                .bind(i64::try_from(v).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await
                .map_err(|e| error(&format!("cannot record {table} {v}"), e))?;
            tx.commit().await.map_err(|e| error("cannot commit", e))?;
        }
        Ok(())
    }

    /// What the destination holds for `keys`.
    async fn fetch(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let path = self.path.clone();
        let has_vectors = self.has_vectors;
        let conn = self.conn()?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let row = sqlx::query(&format!(
                "{SELECT_ITEMS}, CAST(expires_at AS TEXT) AS expires_at, ttl_minutes \
                 FROM store WHERE prefix = ? AND key = ?"
            ))
            .bind(key.prefix())
            .bind(&key.key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| sql_error(&path, "cannot read `store`", e))?;
            let Some(row) = row else {
                found.push(None);
                continue;
            };
            let origin = Origin {
                store: "sqlite".into(),
                locator: format!("{} store {key}", path.display()),
            };
            let mut item = item_of(&row, true, origin)
                .map_err(|f| StoreError::fatal(format!("{}: {}", f.origin.locator, f.reason)))?;
            if has_vectors {
                let rows = sqlx::query(
                    "SELECT field_name, embedding FROM store_vectors \
                     WHERE prefix = ? AND key = ? ORDER BY field_name",
                )
                .bind(key.prefix())
                .bind(&key.key)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| sql_error(&path, "cannot read `store_vectors`", e))?;
                for r in rows {
                    let blob: Option<Vec<u8>> = r.try_get("embedding").unwrap_or(None);
                    item.vectors.push(ItemVector {
                        field_name: text(&r, "field_name"),
                        embedding: shared::float32_le(blob.as_deref().unwrap_or_default())
                            .map_err(StoreError::fatal)?,
                    });
                }
            }
            found.push(Some(item));
        }
        Ok(found)
    }
}

#[async_trait]
impl ItemSink for SqliteItemSink {
    fn describe(&self) -> String {
        format!("SqliteStore {}", self.path.display())
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_os_string();
        name.push(".store-dead-letter.jsonl");
        name.into()
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if self.conn.is_none() {
            self.conn = Some(super::connect_writable(&self.path, &self.config).await?);
            self.migrate("store_migrations", &STORE_MIGRATIONS).await?;
            let path = self.path.clone();
            let tables = table_names(self.conn()?, &path).await?;
            self.has_vectors = tables.iter().any(|t| t == "store_vectors");
        }
        Ok(())
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        if !self.has_vectors && items.iter().any(|i| !i.vectors.is_empty()) {
            self.migrate("vector_migrations", &VECTOR_MIGRATIONS)
                .await?;
            self.has_vectors = true;
        }
        let keys: Vec<ItemKey> = items.iter().map(|i| i.key.clone()).collect();
        let existing = self.fetch(&keys).await?;
        let plan = shared::plan_writes(
            items,
            &existing,
            self.config.on_conflict,
            NumberFidelity::Exact,
        )?;
        let path = self.path.clone();
        let busy = self.config.busy_timeout_seconds;
        let error = |what: &str, e| super::write_error(&path, busy, what, e);
        let has_vectors = self.has_vectors;
        let conn = self.conn()?;
        let mut tx = conn.begin().await.map_err(|e| error("cannot begin", e))?;
        for chunk in plan.to_write.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes) ",
            );
            q.push_values(chunk, |mut row, &i| {
                let item = &items[i];
                row.push_bind(item.key.prefix())
                    .push_bind(item.key.key.clone())
                    // As bytes, like SqliteStore's `orjson.dumps`: a BLOB in the column.
                    .push_bind(item.value.get().as_bytes().to_vec())
                    .push_bind(store_time_text(&item.created_at, false))
                    .push_bind(store_time_text(&item.updated_at, false))
                    .push_bind(item.expires_at.as_ref().map(|t| store_time_text(t, true)))
                    .push_bind(item.ttl_minutes);
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| error("cannot write `store`", e))?;
            let mut clear = QueryBuilder::<Sqlite>::new(
                "DELETE FROM store_vectors WHERE (prefix, key) IN (VALUES ",
            );
            if has_vectors {
                let mut list = clear.separated(", ");
                for &i in chunk {
                    list.push("(")
                        .push_bind_unseparated(items[i].key.prefix())
                        .push_unseparated(", ")
                        .push_bind_unseparated(items[i].key.key.clone())
                        .push_unseparated(")");
                }
                clear.push(")");
                clear
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| error("cannot replace `store_vectors`", e))?;
            }
            let vectors: Vec<(usize, &ItemVector)> = chunk
                .iter()
                .flat_map(|&i| items[i].vectors.iter().map(move |v| (i, v)))
                .collect();
            for part in vectors.chunks(500) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO store_vectors (prefix, key, field_name, embedding, created_at, updated_at) ",
                );
                q.push_values(part, |mut row, (i, v)| {
                    let item = &items[*i];
                    row.push_bind(item.key.prefix())
                        .push_bind(item.key.key.clone())
                        .push_bind(v.field_name.clone())
                        .push_bind(shared::float32_le_bytes(&v.embedding))
                        .push_bind(store_time_text(&item.created_at, false))
                        .push_bind(store_time_text(&item.updated_at, false));
                });
                q.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| error("cannot write `store_vectors`", e))?;
            }
        }
        tx.commit().await.map_err(|e| error("cannot commit", e))?;
        Ok(ItemWrite {
            written: plan.to_write.len() as u64,
            kept: plan.kept,
            rejected: Vec::new(),
        })
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        if self.conn.is_none() {
            if !self.path.exists() {
                return Ok(vec![None; keys.len()]);
            }
            let mut conn = super::connect_read_only(&self.path).await?;
            let path = self.path.clone();
            let tables = table_names(&mut conn, &path).await?;
            if !tables.iter().any(|t| t == "store") {
                return Ok(vec![None; keys.len()]);
            }
            self.has_vectors = tables.iter().any(|t| t == "store_vectors");
            self.conn = Some(conn);
        }
        self.fetch(keys).await
    }
}

/// Opens a `SqliteStore` database as an item source or destination.
pub async fn open_item_source(
    config: &SqliteSourceConfig,
    filters: &ItemFilters,
) -> Result<Box<dyn ItemSource>, OpenError> {
    Ok(Box::new(SqliteItemSource::open(config, filters).await?))
}

pub fn open_item_sink(config: &SqliteSinkConfig) -> Box<dyn ItemSink> {
    Box::new(SqliteItemSink::new(config.clone()))
}
