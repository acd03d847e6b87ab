//! The Store of langgraph-checkpoint-redis (`RedisStore`, 0.5) as a destination of
//! Store items, written as `RedisStore.put` writes them (see [`super::items`] for the
//! layout): one RedisJSON document per item under `store:<id>`, its embedding in
//! `store_vectors:<id>`, the expiry as the keys' own, and the two RediSearch indexes
//! `setup()` creates when they are missing.
//!
//! RedisStore names documents by a random ULID and finds an item by searching its
//! index. A re-run must find what it wrote, and items RedisStore wrote itself, so the
//! destination lists its documents once (namespace and key of each) and keeps that
//! map; a new item gets a ULID made from its creation time and a hash of its
//! namespace and key, so the same item always lands on the same key. Each batch goes
//! in one `MULTI`/`EXEC`.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::Utc;
use serde::Serialize;

use super::Redis;
use super::config::RedisSinkConfig;
use super::items::StoreDocs;
use crate::error::{ConfigError, OpenError, StoreError};
use crate::items::{
    ItemKey, ItemSink, ItemVector, ItemWrite, NumberFidelity, StoreItem, namespace_of,
};
use crate::stores::OnConflict;
use crate::stores::store_items as shared;

pub struct RedisItemSink {
    config: RedisSinkConfig,
    redis: Option<Redis>,
    docs: Option<StoreDocs>,
    /// Every item the destination holds: its document ids (RedisStore itself may leave
    /// more than one per key).
    held: HashMap<ItemKey, Vec<String>>,
    /// The vector index's dimensions, once it exists.
    vector_dims: Option<usize>,
}

/// RediSearch's query escaping as RedisStore applies it to a namespace (redisvl's
/// `TokenEscaper`): a backslash before each of these characters.
fn escape(text: &str) -> String {
    const SPECIAL: &str = ",.<>{}[]\\\"':;!@#$%^&*()-+=~/ ?";
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if SPECIAL.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A ULID (Crockford base32, as `python-ulid` prints it) from the item's creation
/// time and a hash of its namespace and key.
fn document_id(item: &StoreItem) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let name = serde_json::json!(["redis_store_item", item.key.namespace, item.key.key]);
    let hash = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.to_string().as_bytes());
    let millis = u128::try_from(item.created_at.timestamp_millis().max(0)).unwrap_or(0);
    let bits = ((millis & ((1 << 48) - 1)) << 80) | (hash.as_u128() & ((1 << 80) - 1));
    (0..26)
        .map(|i| ALPHABET[((bits >> (125 - 5 * i)) & 31) as usize] as char)
        .collect()
}

#[derive(Serialize)]
struct Document<'a> {
    prefix: String,
    key: &'a str,
    value: &'a serde_json::value::RawValue,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize)]
struct VectorDocument<'a> {
    prefix: String,
    key: &'a str,
    field_name: &'a str,
    embedding: Vec<f64>,
    /// RedisStore writes these two as float seconds in the vector document.
    created_at: f64,
    updated_at: f64,
}

fn seconds(t: &chrono::DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// The store index `RedisStore.setup()` creates (its `SCHEMAS`, on JSON).
const STORE_FIELDS: [(&str, &str); 6] = [
    ("prefix", "TEXT"),
    ("key", "TAG"),
    ("created_at", "NUMERIC"),
    ("updated_at", "NUMERIC"),
    ("ttl_minutes", "NUMERIC"),
    ("expires_at", "NUMERIC"),
];

const VECTOR_FIELDS: [(&str, &str); 8] = [
    ("prefix", "TEXT"),
    ("key", "TAG"),
    ("field_name", "TAG"),
    ("embedding", "VECTOR"),
    ("created_at", "NUMERIC"),
    ("updated_at", "NUMERIC"),
    ("ttl_minutes", "NUMERIC"),
    ("expires_at", "NUMERIC"),
];

/// The `dim` of an `FT.INFO` reply's vector attribute, in the forms RediSearch and
/// valkey-search give it.
fn info_dims(info: &redis::Value) -> Option<usize> {
    fn text(v: &redis::Value) -> Option<String> {
        redis::from_redis_value::<String>(v.clone()).ok()
    }
    match info {
        redis::Value::Array(items) => {
            for pair in items.windows(2) {
                if text(&pair[0]).is_some_and(|k| k.eq_ignore_ascii_case("dim")) {
                    return redis::from_redis_value::<usize>(pair[1].clone()).ok();
                }
            }
            items.iter().find_map(info_dims)
        }
        redis::Value::Map(entries) => entries.iter().find_map(|(k, v)| {
            if text(k).is_some_and(|k| k.eq_ignore_ascii_case("dim")) {
                redis::from_redis_value::<usize>(v.clone()).ok()
            } else {
                info_dims(v)
            }
        }),
        _ => None,
    }
}

/// The connection and layout of a prepared destination (fields, so that the caller
/// may borrow the others at the same time).
fn prepared<'a>(
    redis: &'a mut Option<Redis>,
    docs: &'a Option<StoreDocs>,
) -> Result<(&'a mut Redis, &'a StoreDocs), StoreError> {
    match (redis.as_mut(), docs.as_ref()) {
        (Some(redis), Some(docs)) => Ok((redis, docs)),
        _ => Err(StoreError::fatal(
            "the RedisStore destination was not prepared",
        )),
    }
}

impl RedisItemSink {
    pub fn new(config: RedisSinkConfig) -> Self {
        Self {
            config,
            redis: None,
            docs: None,
            held: HashMap::new(),
            vector_dims: None,
        }
    }

    /// Connects and lists what the destination holds, once.
    async fn connect(&mut self) -> Result<(), StoreError> {
        if self.redis.is_some() {
            return Ok(());
        }
        let mut redis = Redis::connect(&self.config.redis_url).await?;
        let docs = StoreDocs::open(&self.config.key_prefix, &mut redis).await?;
        let ids = docs.list_ids(&mut redis).await?;
        for (id, prefix, key) in docs.prefixes_and_keys(&mut redis, &ids).await? {
            if let Some(key) = key {
                let key = ItemKey {
                    namespace: namespace_of(&prefix),
                    key,
                };
                self.held.entry(key).or_default().push(id);
            }
        }
        tracing::info!(
            "Redis {}: the store {}:* holds {} item(s)",
            redis.url,
            docs.store_prefix,
            self.held.len()
        );
        self.redis = Some(redis);
        self.docs = Some(docs);
        Ok(())
    }

    fn parts(&mut self) -> Result<(&mut Redis, &StoreDocs), StoreError> {
        prepared(&mut self.redis, &self.docs)
    }

    /// The indexes RedisStore's `setup()` creates, when missing: the store's always,
    /// the vector index once an item carries an embedding (`dims`).
    async fn ensure_indexes(&mut self, dims: Option<usize>) -> Result<(), StoreError> {
        let (redis, docs) = self.parts()?;
        let existing = super::search_indexes(redis, "RedisStore").await?;
        let (store, vectors) = (docs.store_prefix.clone(), docs.vector_prefix.clone());
        if !existing.contains(&store) {
            super::create_json_index(redis, &store, &STORE_FIELDS, 0, "RedisStore").await?;
        }
        if existing.contains(&vectors) {
            let info: redis::Value = redis
                .cmd("FT.INFO", redis::cmd("FT.INFO").arg(&vectors))
                .await?;
            self.vector_dims = info_dims(&info);
        } else if let Some(dims) = dims {
            super::create_json_index(redis, &vectors, &VECTOR_FIELDS, dims, "RedisStore").await?;
            self.vector_dims = Some(dims);
        }
        Ok(())
    }

    /// What the destination holds for `keys`, read as the source reads RedisStore.
    async fn fetch(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let ids: Vec<Option<String>> = keys
            .iter()
            .map(|k| self.held.get(k).and_then(|ids| ids.first().cloned()))
            .collect();
        let wanted: Vec<String> = ids.iter().flatten().cloned().collect();
        let (redis, docs) = self.parts()?;
        let mut read = docs.read(redis, &wanted).await?.into_iter();
        let now = Utc::now();
        let mut found = Vec::with_capacity(keys.len());
        for id in ids {
            let Some(id) = id else {
                found.push(None);
                continue;
            };
            let (document, expiry, vector) = read.next().expect("one reply per id");
            let Some(document) = document else {
                found.push(None);
                continue;
            };
            let item = docs
                .item(redis, &id, &document, expiry, vector.as_deref(), now)
                .map_err(|f| StoreError::fatal(format!("{}: {}", f.origin.locator, f.reason)))?;
            found.push(Some(item));
        }
        Ok(found)
    }

    /// Why RedisStore cannot hold `item` as it is, if it cannot.
    fn refusal(&self, item: &StoreItem, now: chrono::DateTime<Utc>) -> Option<String> {
        if let Some(t) = item.expires_at
            && t <= now
        {
            return Some(format!(
                "expired at {t} before it was written: Redis would delete it at once and RedisStore would never return it"
            ));
        }
        if item.vectors.len() > 1 && !self.config.allow_lossy {
            let fields: Vec<&str> = item.vectors.iter().map(|v| v.field_name.as_str()).collect();
            return Some(format!(
                "has {} embeddings ({}); RedisStore keeps one per item (store_vectors:<id>): set allow_lossy: true to keep only the first",
                fields.len(),
                fields.join(", ")
            ));
        }
        let dims = item.vectors.first().map(|v| v.embedding.len());
        match (dims, self.vector_dims) {
            (Some(d), Some(index)) if d != index => Some(format!(
                "its embedding has {d} dimensions; the destination's vector index holds {index}"
            )),
            _ => None,
        }
    }
}

#[async_trait]
impl ItemSink for RedisItemSink {
    fn describe(&self) -> String {
        let url = crate::secrets::redact_url(&self.config.redis_url);
        let prefix = self
            .docs
            .as_ref()
            .map_or_else(|| "store".to_owned(), |d| d.store_prefix.clone());
        format!(
            "RedisStore {url} ({prefix}:*, on_conflict: {})",
            self.config.on_conflict.name()
        )
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        "redis-store.dead-letter.jsonl".into()
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        self.connect().await?;
        self.ensure_indexes(None).await
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        let mut outcome = ItemWrite::default();
        if self.vector_dims.is_none()
            && let Some(dims) = items
                .iter()
                .find_map(|i| i.vectors.first().map(|v| v.embedding.len()))
        {
            self.ensure_indexes(Some(dims)).await?;
        }
        let now = Utc::now();
        let mut writable = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.refusal(item, now) {
                Some(reason) => outcome.rejected.push((i, reason)),
                None => writable.push(self.written_form(item.clone())),
            }
        }
        let keys: Vec<ItemKey> = writable.iter().map(|i| i.key.clone()).collect();
        let existing = match self.config.on_conflict {
            OnConflict::Fail => self.fetch(&keys).await?,
            // Only whether the key is there matters.
            _ => writable
                .iter()
                .map(|i| self.held.contains_key(&i.key).then(|| i.clone()))
                .collect(),
        };
        let plan = shared::plan_writes(
            &writable,
            &existing,
            self.config.on_conflict,
            self.number_fidelity(),
        )?;
        let mut placed = Vec::with_capacity(plan.to_write.len());
        let mut pipe = redis::pipe();
        pipe.atomic();
        let (redis, docs) = prepared(&mut self.redis, &self.docs)?;
        for &i in &plan.to_write {
            let item = &writable[i];
            let held = self.held.get(&item.key).cloned().unwrap_or_default();
            let id = held.first().cloned().unwrap_or_else(|| document_id(item));
            // RedisStore may have left more than one document for a key: one stays.
            for extra in held.iter().skip(1) {
                pipe.del(docs.document_key(extra))
                    .ignore()
                    .del(docs.vector_key(extra))
                    .ignore();
            }
            let prefix = escape(&item.key.prefix());
            let document = serde_json::to_string(&Document {
                prefix: prefix.clone(),
                key: &item.key.key,
                value: &item.value,
                created_at: item.created_at.timestamp_micros(),
                updated_at: item.updated_at.timestamp_micros(),
            })
            .map_err(|e| StoreError::fatal(format!("{}: {e}", item.key)))?;
            let (key, vector_key) = (docs.document_key(&id), docs.vector_key(&id));
            pipe.cmd("JSON.SET")
                .arg(&key)
                .arg("$")
                .arg(document)
                .ignore();
            match item.vectors.first() {
                Some(ItemVector {
                    field_name,
                    embedding,
                }) => {
                    let vector = serde_json::to_string(&VectorDocument {
                        prefix,
                        key: &item.key.key,
                        field_name,
                        embedding: embedding.iter().map(|&x| f64::from(x)).collect(),
                        created_at: seconds(&item.created_at),
                        updated_at: seconds(&item.updated_at),
                    })
                    .map_err(|e| StoreError::fatal(format!("{}: {e}", item.key)))?;
                    pipe.cmd("JSON.SET")
                        .arg(&vector_key)
                        .arg("$")
                        .arg(vector)
                        .ignore();
                }
                None => {
                    pipe.del(&vector_key).ignore();
                }
            }
            for k in [&key, &vector_key] {
                match item.expires_at {
                    Some(t) => pipe.cmd("PEXPIREAT").arg(k).arg(t.timestamp_millis()),
                    None => pipe.cmd("PERSIST").arg(k),
                }
                .ignore();
            }
            placed.push((item.key.clone(), id));
        }
        if !placed.is_empty() {
            let () = redis.pipe("MULTI/EXEC store items", &pipe).await?;
        }
        for (key, id) in placed {
            self.held.insert(key, vec![id]);
        }
        outcome.written = plan.to_write.len() as u64;
        outcome.kept = plan.kept;
        Ok(outcome)
    }

    /// RedisStore keeps no TTL length, its expiry to the millisecond, and one
    /// embedding per item.
    fn written_form(&self, mut item: StoreItem) -> StoreItem {
        item.ttl_minutes = None;
        item.expires_at = item
            .expires_at
            .and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis()));
        item.vectors.truncate(1);
        item
    }

    /// RedisJSON parses floats approximately (a neighbouring double, whoever writes
    /// them: `RedisStore.put` as well).
    fn number_fidelity(&self) -> NumberFidelity {
        NumberFidelity::NeighbourFloat
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        self.connect().await?;
        self.fetch(keys).await
    }
}

pub fn open_item_sink(config: &RedisSinkConfig) -> Result<Box<dyn ItemSink>, OpenError> {
    if config.ttl_minutes.is_some() {
        return Err(OpenError::Config(ConfigError::Invalid(
            "state: store: ttl_minutes applies to checkpoints; Store items keep their own expiry"
                .into(),
        )));
    }
    Ok(Box::new(RedisItemSink::new(config.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    fn item(namespace: &[&str], key: &str) -> StoreItem {
        StoreItem {
            key: ItemKey {
                namespace: namespace.iter().map(|s| (*s).to_owned()).collect(),
                key: key.into(),
            },
            value: StoreItem::value_from_text("{}".into()).expect("object"),
            created_at: chrono::DateTime::from_timestamp_millis(1_764_669_600_123).expect("time"),
            updated_at: chrono::DateTime::from_timestamp_millis(1_764_669_600_123).expect("time"),
            expires_at: None,
            ttl_minutes: None,
            vectors: Vec::new(),
            origin: Origin {
                store: "test".into(),
                locator: "x".into(),
            },
        }
    }

    #[test]
    fn namespaces_are_escaped_as_redisstore_escapes_them() {
        assert_eq!(
            escape("users.u-1.café au lait"),
            r"users\.u\-1\.café\ au\ lait"
        );
        assert_eq!(escape("a,b?c*"), r"a\,b\?c\*");
        assert_eq!(super::super::items::unescape(&escape("x.y\\z")), "x.y\\z");
    }

    #[test]
    fn document_ids_are_ulids_fixed_by_time_namespace_and_key() {
        let a = document_id(&item(&["users", "u-1"], "k"));
        assert_eq!(a.len(), 26);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() && !c.is_ascii_lowercase())
        );
        assert_eq!(a, document_id(&item(&["users", "u-1"], "k")));
        assert_ne!(a, document_id(&item(&["users", "u-1"], "k2")));
        assert_ne!(a, document_id(&item(&["users.u-1"], "k")));
        // The time part sorts as RedisStore's ULIDs do (milliseconds first).
        let mut later = item(&["users", "u-1"], "k");
        later.created_at += chrono::Duration::milliseconds(1);
        assert!(document_id(&later) > a);
    }
}
