//! LangGraph `SqliteStore` databases: Store items in `store` (value as JSON text,
//! times as SQLite text) and their embeddings in `store_vectors` (little-endian
//! float32 blobs, as `sqlite_vec.serialize_float32` writes them).
//!
//! Reads are keyset-paginated on the primary key `(prefix, key)`. Writes create the
//! tables as `SqliteStore.setup()` does and record the same migration versions, so
//! LangGraph's own `setup()` finds nothing to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::blocking::{self, in_place};
use super::config::{SqliteSinkConfig, SqliteSourceConfig};
use super::path_from_connection_string;
use crate::error::{OpenError, StoreError};
use crate::items::{
    ItemBatch, ItemFilters, ItemKey, ItemRead, ItemSink, ItemSource, ItemVector, ItemWrite,
    NumberFidelity, StoreItem, key_position, namespace_of, store_time_text,
};
use crate::record::Origin;
use crate::stores::store_items::{self as shared, SqlPiece};

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
    conn: Connection,
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
        let conn = blocking::open_read_only(&path)?;
        let tables = blocking::table_names(&conn, &path)?;
        if !tables.iter().any(|t| t == "store") {
            return Err(super::missing_table(
                &path,
                "store",
                &tables,
                "is this a LangGraph SqliteStore database?",
            ));
        }
        let columns = blocking::table_columns(&conn, &path, "store")?;
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

    fn origin(&self, key: &ItemKey) -> Origin {
        origin(&self.path, key)
    }

    /// `select` with the `WHERE` of a page (after `after`, within the namespace prefix)
    /// and `tail`, and the values it binds.
    fn paged(&self, select: &str, after: Option<&ItemKey>, tail: &str) -> (String, Vec<String>) {
        let mut sql = select.to_owned();
        let mut values = Vec::new();
        for piece in shared::page_where(after, self.filters.prefix_text()) {
            match piece {
                SqlPiece::Sql(text) => sql.push_str(text),
                SqlPiece::Bind(value) => {
                    sql.push('?');
                    values.push(value);
                }
            }
        }
        sql.push_str(tail);
        (sql, values)
    }

    /// The embeddings of the keys `first..=last`, by key, ordered by field.
    fn vectors(
        &self,
        first: &ItemKey,
        last: &ItemKey,
    ) -> Result<BTreeMap<ItemKey, Result<Vec<ItemVector>, String>>, StoreError> {
        let mut found: BTreeMap<ItemKey, Result<Vec<ItemVector>, String>> = BTreeMap::new();
        if !self.has_vectors {
            return Ok(found);
        }
        let failed = |e| blocking::error(&self.path, "cannot read `store_vectors`", e);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT prefix, key, field_name, embedding FROM store_vectors \
                 WHERE (prefix, key) >= (?, ?) AND (prefix, key) <= (?, ?) \
                 ORDER BY prefix, key, field_name",
            )
            .map_err(failed)?;
        let mut rows = statement
            .query(params![first.prefix(), first.key, last.prefix(), last.key])
            .map_err(failed)?;
        while let Some(row) = rows.next().map_err(failed)? {
            let key = ItemKey {
                namespace: namespace_of(&text(row, "prefix")),
                key: text(row, "key"),
            };
            let field_name = text(row, "field_name");
            let entry = found.entry(key).or_insert_with(|| Ok(Vec::new()));
            let Ok(vectors) = entry else { continue };
            match shared::float32_le(&bytes(row, "embedding")) {
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

fn origin(path: &Path, key: &ItemKey) -> Origin {
    Origin {
        store: "sqlite".into(),
        locator: format!("{} store {key}", path.display()),
    }
}

/// A text column; NULL, a missing column or text that is not UTF-8 read as empty.
fn text(row: &Row<'_>, column: &str) -> String {
    row.get::<_, Option<String>>(column)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A blob column's bytes (text too: Python may have bound either); NULL reads as none.
fn bytes(row: &Row<'_>, column: &str) -> Vec<u8> {
    match row.get_ref(column) {
        Ok(ValueRef::Blob(b) | ValueRef::Text(b)) => b.to_vec(),
        _ => Vec::new(),
    }
}

/// An item from a `store` row (vectors added by the caller).
fn item_of(row: &Row<'_>, has_ttl: bool, origin: Origin) -> ItemRead {
    shared::ItemRow {
        key: ItemKey {
            namespace: namespace_of(&text(row, "prefix")),
            key: text(row, "key"),
        },
        value: row.get("value").unwrap_or(None),
        created_at: text(row, "created_at"),
        updated_at: text(row, "updated_at"),
        expires_at: if has_ttl {
            row.get("expires_at").unwrap_or(None)
        } else {
            None
        },
        ttl_minutes: if has_ttl {
            row.get("ttl_minutes").unwrap_or(None)
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
        let limit_sql = format!(" ORDER BY prefix, key LIMIT {limit}");
        let (sql, values) = self.paged(
            &format!("{SELECT_ITEMS}{ttl} FROM store"),
            self.after.as_ref(),
            &limit_sql,
        );
        let page = in_place(|| {
            let failed = |e| blocking::error(&self.path, "cannot read `store`", e);
            let mut statement = self.conn.prepare_cached(&sql).map_err(failed)?;
            let mut rows = statement
                .query(rusqlite::params_from_iter(&values))
                .map_err(failed)?;
            let mut page: Vec<(ItemKey, ItemRead)> = Vec::new();
            while let Some(row) = rows.next().map_err(failed)? {
                let key = ItemKey {
                    namespace: namespace_of(&text(row, "prefix")),
                    key: text(row, "key"),
                };
                let item = item_of(row, self.has_ttl, self.origin(&key));
                page.push((key, item));
            }
            let vectors = match (page.first(), page.last()) {
                (Some((first, _)), Some((last, _))) => self.vectors(first, last)?,
                _ => BTreeMap::new(),
            };
            Ok::<_, StoreError>((page, vectors))
        });
        let (page, mut vectors) = page?;
        if page.len() < limit {
            self.done = true;
        }
        let Some(last) = page.last().map(|(key, _)| key.clone()) else {
            return Ok(None);
        };
        let mut batch = ItemBatch {
            position: serde_json::json!(last),
            ..ItemBatch::default()
        };
        let read = page.into_iter().map(|(_, item)| item).collect();
        shared::attach_vectors(read, &mut vectors, &mut batch);
        self.after = Some(last);
        Ok(Some(batch))
    }

    fn resume_from(&mut self, position: &serde_json::Value) -> Result<(), StoreError> {
        self.after = Some(key_position(position)?);
        Ok(())
    }

    async fn count_by_namespace(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        let (sql, values) = self.paged(
            "SELECT prefix, COUNT(*) AS n FROM store",
            None,
            " GROUP BY prefix",
        );
        let counted = in_place(|| {
            let failed = |e| blocking::error(&self.path, "cannot count `store`", e);
            let mut statement = self.conn.prepare(&sql).map_err(failed)?;
            statement
                .query_map(rusqlite::params_from_iter(&values), |r| {
                    Ok((text(r, "prefix"), r.get("n").unwrap_or(0)))
                })
                .map_err(failed)?
                .collect::<Result<Vec<(String, i64)>, _>>()
                .map_err(failed)
        })?;
        Ok(shared::namespace_counts(counted, &self.filters))
    }
}

pub struct SqliteItemSink {
    config: SqliteSinkConfig,
    path: PathBuf,
    conn: Option<Connection>,
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

    fn error(&self, what: &str, e: rusqlite::Error) -> StoreError {
        blocking::write_error(&self.path, self.config.busy_timeout_seconds, what, e)
    }

    fn conn(&self) -> Result<&Connection, StoreError> {
        self.conn.as_ref().ok_or_else(not_prepared)
    }

    fn conn_mut(&mut self) -> Result<&mut Connection, StoreError> {
        self.conn.as_mut().ok_or_else(not_prepared)
    }

    /// Applies the migrations `SqliteStore.setup()` would apply, recording them in its
    /// own migrations table.
    fn migrate(&mut self, table: &str, migrations: &[&str]) -> Result<(), StoreError> {
        let (path, busy) = (self.path.clone(), self.config.busy_timeout_seconds);
        let error = |what: &str, e| blocking::write_error(&path, busy, what, e);
        let conn = self.conn_mut()?;
        conn.execute(
            &format!("CREATE TABLE IF NOT EXISTS {table} (v INTEGER PRIMARY KEY)"),
            [],
        )
        .map_err(|e| error(&format!("cannot create `{table}`"), e))?;
        let version: Option<i64> = conn
            .query_row(&format!("SELECT MAX(v) FROM {table}"), [], |r| r.get(0))
            .map_err(|e| error(&format!("cannot read `{table}`"), e))?;
        let next = version.map_or(0, |v| usize::try_from(v + 1).unwrap_or(usize::MAX));
        for (v, sql) in migrations.iter().enumerate().skip(next) {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| error("cannot begin", e))?;
            tx.execute(sql, [])
                .map_err(|e| error(&format!("{table} {v}"), e))?;
            tx.execute(
                &format!("INSERT INTO {table} (v) VALUES (?)"),
                [i64::try_from(v).unwrap_or(i64::MAX)],
            )
            .map_err(|e| error(&format!("cannot record {table} {v}"), e))?;
            tx.commit().map_err(|e| error("cannot commit", e))?;
        }
        Ok(())
    }

    /// What the destination holds for `keys`.
    fn fetch(&self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let conn = self.conn()?;
        let failed = |what| move |e| blocking::error(&self.path, what, e);
        let mut items = conn
            .prepare_cached(&format!(
                "{SELECT_ITEMS}, CAST(expires_at AS TEXT) AS expires_at, ttl_minutes \
                 FROM store WHERE prefix = ? AND key = ?"
            ))
            .map_err(failed("cannot read `store`"))?;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let item = items
                .query_row(params![key.prefix(), key.key], |row| {
                    Ok(item_of(row, true, origin(&self.path, key)))
                })
                .optional()
                .map_err(failed("cannot read `store`"))?;
            let Some(item) = item else {
                found.push(None);
                continue;
            };
            let mut item =
                item.map_err(|f| StoreError::fatal(format!("{}: {}", f.origin.locator, f.reason)))?;
            if self.has_vectors {
                let mut vectors = conn
                    .prepare_cached(
                        "SELECT field_name, embedding FROM store_vectors \
                         WHERE prefix = ? AND key = ? ORDER BY field_name",
                    )
                    .map_err(failed("cannot read `store_vectors`"))?;
                let rows = vectors
                    .query_map(params![key.prefix(), key.key], |r| {
                        Ok((text(r, "field_name"), bytes(r, "embedding")))
                    })
                    .map_err(failed("cannot read `store_vectors`"))?;
                for row in rows {
                    let (field_name, blob) = row.map_err(failed("cannot read `store_vectors`"))?;
                    item.vectors.push(ItemVector {
                        field_name,
                        embedding: shared::float32_le(&blob).map_err(StoreError::fatal)?,
                    });
                }
            }
            found.push(Some(item));
        }
        Ok(found)
    }

    /// Writes the items `to_write` (indices into `items`) in one transaction, their
    /// vectors replacing those the destination held.
    fn insert(&mut self, items: &[StoreItem], to_write: &[usize]) -> Result<(), StoreError> {
        let (path, busy) = (self.path.clone(), self.config.busy_timeout_seconds);
        let error = |what: &str, e| blocking::write_error(&path, busy, what, e);
        let has_vectors = self.has_vectors;
        let conn = self.conn_mut()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error("cannot begin", e))?;
        {
            let mut store = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .map_err(|e| error("cannot write `store`", e))?;
            // Only a database with `store_vectors` has vectors to replace.
            let mut clear = has_vectors
                .then(|| {
                    tx.prepare_cached("DELETE FROM store_vectors WHERE prefix = ? AND key = ?")
                })
                .transpose()
                .map_err(|e| error("cannot replace `store_vectors`", e))?;
            let mut vectors = has_vectors
                .then(|| {
                    tx.prepare_cached(
                        "INSERT INTO store_vectors (prefix, key, field_name, embedding, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    )
                })
                .transpose()
                .map_err(|e| error("cannot write `store_vectors`", e))?;
            for &i in to_write {
                let item = &items[i];
                let (prefix, created_at, updated_at) = (
                    item.key.prefix(),
                    store_time_text(&item.created_at, false),
                    store_time_text(&item.updated_at, false),
                );
                store
                    .execute(params![
                        prefix,
                        item.key.key,
                        // As bytes, like SqliteStore's `orjson.dumps`: a BLOB in the column.
                        item.value.get().as_bytes(),
                        created_at,
                        updated_at,
                        item.expires_at.as_ref().map(|t| store_time_text(t, true)),
                        item.ttl_minutes,
                    ])
                    .map_err(|e| error("cannot write `store`", e))?;
                if let Some(clear) = &mut clear {
                    clear
                        .execute(params![prefix, item.key.key])
                        .map_err(|e| error("cannot replace `store_vectors`", e))?;
                }
                for v in &item.vectors {
                    let insert = vectors.as_mut().ok_or_else(|| {
                        StoreError::fatal("`store_vectors` was not created before its vectors")
                    })?;
                    insert
                        .execute(params![
                            prefix,
                            item.key.key,
                            v.field_name,
                            shared::float32_le_bytes(&v.embedding),
                            created_at,
                            updated_at,
                        ])
                        .map_err(|e| error("cannot write `store_vectors`", e))?;
                }
            }
        }
        tx.commit().map_err(|e| error("cannot commit", e))
    }
}

#[async_trait]
impl ItemSink for SqliteItemSink {
    fn describe(&self) -> String {
        format!("SqliteStore {}", self.path.display())
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        crate::sinks::with_suffix(&self.path, ".store-dead-letter.jsonl")
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if self.conn.is_none() {
            in_place(|| {
                let (conn, _) = blocking::open_writable(&self.path, &self.config, false)?;
                // Deleting an item deletes its vectors, as in SqliteStore's schema.
                conn.pragma_update(None, "foreign_keys", true)
                    .map_err(|e| self.error("cannot enable foreign keys", e))?;
                self.conn = Some(conn);
                self.migrate("store_migrations", &STORE_MIGRATIONS)?;
                let tables = blocking::table_names(self.conn()?, &self.path)?;
                self.has_vectors = tables.iter().any(|t| t == "store_vectors");
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(())
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        in_place(|| {
            if !self.has_vectors && items.iter().any(|i| !i.vectors.is_empty()) {
                self.migrate("vector_migrations", &VECTOR_MIGRATIONS)?;
                self.has_vectors = true;
            }
            let keys: Vec<ItemKey> = items.iter().map(|i| i.key.clone()).collect();
            let existing = self.fetch(&keys)?;
            let plan = shared::plan_writes(
                items,
                &existing,
                self.config.on_conflict,
                NumberFidelity::Exact,
            )?;
            self.insert(items, &plan.to_write)?;
            Ok(ItemWrite {
                written: plan.to_write.len() as u64,
                kept: plan.kept,
                rejected: Vec::new(),
            })
        })
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        in_place(|| {
            if self.conn.is_none() {
                if !self.path.exists() {
                    return Ok(vec![None; keys.len()]);
                }
                let conn = blocking::open_read_only(&self.path)?;
                let tables = blocking::table_names(&conn, &self.path)?;
                if !tables.iter().any(|t| t == "store") {
                    return Ok(vec![None; keys.len()]);
                }
                self.has_vectors = tables.iter().any(|t| t == "store_vectors");
                self.conn = Some(conn);
            }
            self.fetch(keys)
        })
    }
}

fn not_prepared() -> StoreError {
    StoreError::fatal("the SQLite store destination was not prepared")
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
