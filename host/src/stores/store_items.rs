//! What the Store-item stores share: the SQL stores' (`SqliteStore`, `PostgresStore`)
//! table shape, prefix matching and vector bytes, and for every store the conflict
//! plan of a batch.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::items::{
    FailedItem, ItemBatch, ItemFilters, ItemKey, ItemRead, ItemVector, NumberFidelity, StoreItem,
    parse_store_time,
};
use crate::record::Origin;
use crate::stores::OnConflict;

/// The `store` columns every version of LangGraph's SQL stores has.
pub const ITEM_COLUMNS: [&str; 5] = ["prefix", "key", "value", "created_at", "updated_at"];

/// A piece of a query: SQL text, or a value bound in its place.
pub enum SqlPiece {
    Sql(&'static str),
    Bind(String),
}

/// The `WHERE` of a page of `store` in key order: after `after`, and within the
/// namespace `prefix` (whole labels: `users` or `users.…`). Each driver puts the
/// pieces together ([`push_page_where`] for sqlx).
pub fn page_where(after: Option<&ItemKey>, prefix: Option<String>) -> Vec<SqlPiece> {
    use SqlPiece::{Bind, Sql};
    let mut pieces = vec![Sql(" WHERE 1 = 1")];
    if let Some(after) = after {
        pieces.extend([
            Sql(" AND (prefix, key) > ("),
            Bind(after.prefix()),
            Sql(", "),
            Bind(after.key.clone()),
            Sql(")"),
        ]);
    }
    if let Some(prefix) = prefix {
        let pattern = format!("{}.%", like_escaped(&prefix));
        pieces.extend([
            Sql(" AND (prefix = "),
            Bind(prefix),
            Sql(" OR prefix LIKE "),
            Bind(pattern),
            Sql(" ESCAPE '\\')"),
        ]);
    }
    pieces
}

/// [`page_where`] pushed onto a sqlx query.
pub fn push_page_where<'args, DB>(
    q: &mut sqlx::QueryBuilder<'args, DB>,
    after: Option<&ItemKey>,
    prefix: Option<String>,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'args, DB> + sqlx::Type<DB>,
{
    for piece in page_where(after, prefix) {
        match piece {
            SqlPiece::Sql(sql) => q.push(sql),
            SqlPiece::Bind(value) => q.push_bind(value),
        };
    }
}

/// Items per namespace from `SELECT prefix, COUNT(*)` rows, within the filters (the
/// shard is not in the query).
pub fn namespace_counts(
    rows: impl IntoIterator<Item = (String, i64)>,
    filters: &ItemFilters,
) -> BTreeMap<String, u64> {
    rows.into_iter()
        .map(|(prefix, n)| (prefix, u64::try_from(n).unwrap_or(0)))
        .filter(|(prefix, _)| filters.accepts_namespace(prefix))
        .collect()
}

/// `text` with `LIKE`'s wildcards escaped by `\`, to match it literally.
pub fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A vector from little-endian float32 bytes (`sqlite_vec.serialize_float32`).
pub fn float32_le(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "embedding of {} bytes is not a float32 vector",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The inverse of [`float32_le`].
pub fn float32_le_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The columns of one `store` row, as text (times in any form
/// [`crate::items::parse_store_time`] reads).
pub struct ItemRow {
    pub key: ItemKey,
    pub value: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
    pub ttl_minutes: Option<f64>,
}

impl ItemRow {
    /// The item (without vectors), or why the row is not one (the row kept for the
    /// dead-letter file).
    pub fn into_item(self, origin: Origin) -> ItemRead {
        let time = |column: &str, t: &str| {
            parse_store_time(t).ok_or_else(|| format!("{column} {t:?} is not a time"))
        };
        let built = (|| {
            Ok::<_, String>(StoreItem {
                key: self.key.clone(),
                value: StoreItem::value_from_text(self.value.clone().ok_or("value is NULL")?)?,
                created_at: time("created_at", &self.created_at)?,
                updated_at: time("updated_at", &self.updated_at)?,
                expires_at: self
                    .expires_at
                    .as_deref()
                    .map(|t| time("expires_at", t))
                    .transpose()?,
                ttl_minutes: self.ttl_minutes,
                vectors: Vec::new(),
                origin: origin.clone(),
            })
        })();
        built.map_err(|reason| {
            Box::new(FailedItem {
                raw: serde_json::json!({
                    "prefix": self.key.prefix(), "key": self.key.key, "value": self.value,
                    "created_at": self.created_at, "updated_at": self.updated_at,
                    "expires_at": self.expires_at, "ttl_minutes": self.ttl_minutes,
                }),
                key: self.key,
                reason,
                origin,
            })
        })
    }
}

/// Puts each read item (or its failure) into the batch with its embeddings; an item
/// whose embeddings cannot be read fails whole, so nothing is written half.
pub fn attach_vectors(
    read: Vec<ItemRead>,
    vectors: &mut BTreeMap<ItemKey, Result<Vec<ItemVector>, String>>,
    batch: &mut ItemBatch,
) {
    for entry in read {
        match entry {
            Err(failed) => batch.failed.push(*failed),
            Ok(mut item) => match vectors.remove(&item.key) {
                None => batch.items.push(item),
                Some(Ok(found)) => {
                    item.vectors = found;
                    batch.items.push(item);
                }
                Some(Err(reason)) => batch.failed.push(FailedItem {
                    key: item.key.clone(),
                    reason,
                    origin: item.origin.clone(),
                    raw: item.to_json(),
                }),
            },
        }
    }
}

/// Which items of a batch to write, given what the destination holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WritePlan {
    /// Indexes into the batch.
    pub to_write: Vec<usize>,
    /// Already there and kept.
    pub kept: u64,
}

/// Decides per item by `on_conflict`: `skip` keeps what is there, `overwrite` writes,
/// `fail` stops the batch when what is there differs (an identical item is kept, so a
/// resumed run goes on).
pub fn plan_writes(
    items: &[StoreItem],
    existing: &[Option<StoreItem>],
    mode: OnConflict,
    numbers: NumberFidelity,
) -> Result<WritePlan, StoreError> {
    let mut plan = WritePlan::default();
    for (i, (item, there)) in items.iter().zip(existing).enumerate() {
        let Some(there) = there else {
            plan.to_write.push(i);
            continue;
        };
        match mode {
            OnConflict::Skip => plan.kept += 1,
            OnConflict::Overwrite => plan.to_write.push(i),
            OnConflict::Fail => {
                let differences = item.differences(there, numbers);
                if !differences.is_empty() {
                    return Err(StoreError::fatal(format!(
                        "the destination already holds {} with a different {} (on_conflict: fail)",
                        item.key,
                        differences.join(", ")
                    )));
                }
                plan.kept += 1;
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_escaped(r"a_b%c\d"), r"a\_b\%c\\d");
    }

    #[test]
    fn float32_bytes_round_trip_and_bad_lengths_are_named() {
        let v = vec![0.1_f32, -0.0, f32::MAX, 1e-45];
        assert_eq!(float32_le(&float32_le_bytes(&v)).expect("decodes"), v);
        assert!(float32_le(&[0, 0, 0]).unwrap_err().contains("3 bytes"));
    }
}
