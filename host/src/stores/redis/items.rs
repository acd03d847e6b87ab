//! The Store of langgraph-checkpoint-redis (`RedisStore`, 0.5) as a source of Store
//! items: RedisJSON documents `store:<ULID>` holding `{prefix, key, value, created_at,
//! updated_at}` — `prefix` is the namespace joined with `.` and escaped for RediSearch
//! (`users\.u\-1`), times are integer epoch microseconds — with the TTL as the key's
//! native expiry and at most one embedding per item in `store_vectors:<same ULID>`.
//!
//! Documents are listed once with `SCAN` and read in the order of their ids, so a
//! resumed run continues after the last id it confirmed. The TTL becomes `expires_at`
//! (`PEXPIRETIME`, the key's absolute expiry; now + `PTTL` on servers before Redis 7);
//! RedisStore does not keep the TTL's length, so `ttl_minutes` is unknown (none).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Redis;
use super::config::RedisSourceConfig;
use crate::error::{OpenError, StoreError};
use crate::items::{
    FailedItem, ItemBatch, ItemFilters, ItemKey, ItemSource, ItemVector, StoreItem, namespace_of,
};

/// RedisStore's key prefixes (its `store_prefix` / `vector_prefix` defaults).
const STORE_PREFIX: &str = "store";
const VECTOR_PREFIX: &str = "store_vectors";

/// Where a RedisStore keeps its documents, and how they are read: shared by the
/// source and the destination.
pub(super) struct StoreDocs {
    pub store_prefix: String,
    pub vector_prefix: String,
    /// The server has `PEXPIRETIME` (Redis 7+, Valkey): expiries are read exactly.
    pub absolute_expiry: bool,
}

pub struct RedisItemSource {
    redis: Redis,
    filters: ItemFilters,
    docs: StoreDocs,
    /// Every document id, sorted; `next` indexes the first not yet read.
    ids: Vec<String>,
    next: usize,
}

/// RedisStore's escaping of `prefix` undone: a backslash takes the next character as
/// it is.
pub(super) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn micros(value: &Value, field: &str) -> Result<DateTime<Utc>, String> {
    let n = value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f.round() as i64))
        .ok_or_else(|| format!("{field} is not a number of microseconds: {value}"))?;
    DateTime::from_timestamp_micros(n).ok_or_else(|| format!("{field} {n} is out of range"))
}

/// The item's value: RedisStore stores a JSON object as it is, and what JSON cannot
/// hold as `{"__serde_type__", "__serde_data__"}`.
fn value_of(doc: &Value) -> Result<Box<serde_json::value::RawValue>, String> {
    let value = doc.get("value").ok_or("document has no value")?;
    if let Value::Object(map) = value
        && map.len() == 2
        && let (Some(kind), Some(data)) = (map.get("__serde_type__"), map.get("__serde_data__"))
    {
        return match (kind.as_str(), data.as_str()) {
            (Some("json"), Some(text)) => StoreItem::value_from_text(text.to_owned()),
            (kind, _) => Err(format!(
                "value is a Python object stored as {} (not JSON); LangGraph's SQL stores cannot hold it",
                kind.unwrap_or("?")
            )),
        };
    }
    // Numbers keep their text (serde_json's `arbitrary_precision`).
    StoreItem::value_from_text(value.to_string())
}

impl StoreDocs {
    /// The prefixes a sink or source config names: `key_prefix` names the store's
    /// prefix, and its checkpoint default means RedisStore's.
    pub async fn open(key_prefix: &str, redis: &mut Redis) -> Result<Self, StoreError> {
        let store_prefix = match key_prefix.trim_end_matches(':') {
            "checkpoint" | "" => STORE_PREFIX.to_owned(),
            other => other.to_owned(),
        };
        let vector_prefix = if store_prefix == STORE_PREFIX {
            VECTOR_PREFIX.to_owned()
        } else {
            format!("{store_prefix}_vectors")
        };
        let absolute_expiry = redis
            .cmd::<i64>(
                "PEXPIRETIME",
                redis::cmd("PEXPIRETIME").arg(format!("{store_prefix}:")),
            )
            .await
            .is_ok();
        Ok(Self {
            store_prefix,
            vector_prefix,
            absolute_expiry,
        })
    }

    pub fn document_key(&self, id: &str) -> String {
        format!("{}:{id}", self.store_prefix)
    }

    pub fn vector_key(&self, id: &str) -> String {
        format!("{}:{id}", self.vector_prefix)
    }

    /// Every document id under the store's prefix, sorted.
    pub async fn list_ids(&self, redis: &mut Redis) -> Result<Vec<String>, StoreError> {
        let mut pattern = super::escape_glob(format!("{}:", self.store_prefix).as_bytes());
        pattern.push(b'*');
        let mut ids = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = redis.scan(cursor, &pattern).await?;
            ids.extend(
                keys.iter().map(|k| {
                    String::from_utf8_lossy(&k[self.store_prefix.len() + 1..]).into_owned()
                }),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // Another index's keys share the pattern only if they hold `:` (ULIDs do not).
        ids.retain(|id| !id.contains(':'));
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The namespace (its `prefix`, unescaped) and key of each document of `ids` that
    /// has a string `prefix`, read 500 documents per round trip.
    pub async fn prefixes_and_keys(
        &self,
        redis: &mut Redis,
        ids: &[String],
    ) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("JSON.GET")
                    .arg(self.document_key(id))
                    .arg("$.prefix")
                    .arg("$.key");
            }
            let found: Vec<Option<String>> = redis.pipe("JSON.GET prefix", &pipe).await?;
            for (id, text) in chunk.iter().zip(found) {
                let Some(fields) = text.and_then(|t| serde_json::from_str::<Value>(&t).ok()) else {
                    continue;
                };
                if let Some(prefix) = fields["$.prefix"][0].as_str() {
                    let key = fields["$.key"][0].as_str().map(str::to_owned);
                    out.push((id.clone(), unescape(prefix), key));
                }
            }
        }
        Ok(out)
    }

    /// Reads the documents, expiries and vector documents of `ids`.
    pub async fn read(
        &self,
        redis: &mut Redis,
        ids: &[String],
    ) -> Result<Vec<(Option<String>, i64, Option<String>)>, StoreError> {
        let mut pipe = redis::pipe();
        for id in ids {
            let key = self.document_key(id);
            pipe.cmd("JSON.GET").arg(&key).arg("$");
            pipe.cmd(if self.absolute_expiry {
                "PEXPIRETIME"
            } else {
                "PTTL"
            })
            .arg(&key);
            pipe.cmd("JSON.GET").arg(self.vector_key(id)).arg("$");
        }
        let replies: Vec<redis::Value> = redis.pipe("JSON.GET store", &pipe).await?;
        let text = |v: &redis::Value| -> Option<String> {
            redis::from_redis_value::<Option<String>>(v.clone())
                .ok()
                .flatten()
        };
        Ok(replies
            .chunks(3)
            .map(|r| {
                let ttl = redis::from_redis_value::<i64>(r[1].clone()).unwrap_or(-1);
                (text(&r[0]), ttl, text(&r[2]))
            })
            .collect())
    }

    /// The item a document holds, or why it is not one.
    pub fn item(
        &self,
        redis: &Redis,
        id: &str,
        document: &str,
        expiry_ms: i64,
        vector: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<StoreItem, Box<FailedItem>> {
        // Negative: no expiry (-1) or gone (-2, skipped by the caller).
        let expires_at = match (expiry_ms >= 0, self.absolute_expiry) {
            (false, _) => None,
            (true, true) => DateTime::from_timestamp_millis(expiry_ms),
            (true, false) => Some(now + chrono::Duration::milliseconds(expiry_ms)),
        };
        let origin = redis.origin(self.document_key(id).as_bytes());
        let unwrap = |text: &str| -> Result<Value, String> {
            match serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON: {e}"))? {
                Value::Array(mut items) if items.len() == 1 => Ok(items.remove(0)),
                other => Ok(other),
            }
        };
        let doc = unwrap(document);
        let key = doc.as_ref().ok().map_or_else(
            || ItemKey {
                namespace: Vec::new(),
                key: String::new(),
            },
            |d| ItemKey {
                namespace: namespace_of(&unescape(d["prefix"].as_str().unwrap_or_default())),
                key: d["key"].as_str().unwrap_or_default().to_owned(),
            },
        );
        let built = (|| {
            let doc = doc?;
            if doc["prefix"].as_str().is_none() || doc["key"].as_str().is_none() {
                return Err("document has no string prefix and key".to_owned());
            }
            let vectors = match vector.map(unwrap).transpose()? {
                None => Vec::new(),
                Some(v) => {
                    let embedding = v["embedding"]
                        .as_array()
                        .ok_or("store_vectors document has no embedding list")?
                        .iter()
                        .map(|x| x.as_f64().map(|f| f as f32))
                        .collect::<Option<Vec<f32>>>()
                        .ok_or("store_vectors embedding holds a non-number")?;
                    let field_name = v["field_name"].as_str().unwrap_or("$").to_owned();
                    vec![ItemVector {
                        field_name,
                        embedding,
                    }]
                }
            };
            Ok(StoreItem {
                key: key.clone(),
                value: value_of(&doc)?,
                created_at: micros(&doc["created_at"], "created_at")?,
                updated_at: micros(&doc["updated_at"], "updated_at")?,
                expires_at,
                ttl_minutes: None,
                vectors,
                origin: origin.clone(),
            })
        })();
        built.map_err(|reason| {
            Box::new(FailedItem {
                key: key.clone(),
                reason,
                origin,
                raw: json!({ "id": id, "document": document, "vector": vector }),
            })
        })
    }
}

impl RedisItemSource {
    pub async fn open(
        config: &RedisSourceConfig,
        filters: &ItemFilters,
    ) -> Result<Self, OpenError> {
        let mut redis = Redis::connect(&config.redis_url).await?;
        let docs = StoreDocs::open(&config.key_prefix, &mut redis).await?;
        let ids = docs.list_ids(&mut redis).await?;
        tracing::info!(
            "Redis: {} RedisStore document(s) under {}:",
            ids.len(),
            docs.store_prefix
        );
        Ok(Self {
            redis,
            filters: filters.clone(),
            docs,
            ids,
            next: 0,
        })
    }

    fn locator(&self, id: &str) -> String {
        format!("{} key {}", self.redis.url, self.docs.document_key(id))
    }
}

#[async_trait]
impl ItemSource for RedisItemSource {
    fn describe(&self) -> String {
        format!(
            "RedisStore {} ({}:*)",
            self.redis.url, self.docs.store_prefix
        )
    }

    async fn next_batch(&mut self, limit: usize) -> Result<Option<ItemBatch>, StoreError> {
        if self.next >= self.ids.len() {
            return Ok(None);
        }
        let end = (self.next + limit.max(1)).min(self.ids.len());
        let ids = self.ids[self.next..end].to_vec();
        let replies = self.docs.read(&mut self.redis, &ids).await?;
        let now = Utc::now();
        let mut batch = ItemBatch {
            position: json!({ "after_id": ids.last() }),
            ..ItemBatch::default()
        };
        for (id, (document, ttl, vector)) in ids.iter().zip(replies) {
            // Gone since the listing (expired, deleted): nothing to move.
            let Some(document) = document else { continue };
            match self
                .docs
                .item(&self.redis, id, &document, ttl, vector.as_deref(), now)
            {
                Ok(item) => batch.items.push(item),
                Err(failed) => batch.failed.push(*failed),
            }
        }
        self.next = end;
        Ok(Some(batch))
    }

    fn resume_from(&mut self, position: &Value) -> Result<(), StoreError> {
        let after = position["after_id"].as_str().ok_or_else(|| {
            StoreError::fatal(format!(
                "{}: the resume state's position {position} has no after_id",
                self.locator("")
            ))
        })?;
        self.next = self.ids.partition_point(|id| id.as_str() <= after);
        Ok(())
    }

    async fn count_by_namespace(&mut self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for (_, prefix, _) in self
            .docs
            .prefixes_and_keys(&mut self.redis, &self.ids)
            .await?
        {
            if self.filters.accepts_namespace(&prefix) {
                *counts.entry(prefix).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

pub async fn open_item_source(
    config: &RedisSourceConfig,
    filters: &ItemFilters,
) -> Result<Box<dyn ItemSource>, OpenError> {
    Ok(Box::new(RedisItemSource::open(config, filters).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unescaped_as_redisstore_reads_them() {
        assert_eq!(unescape(r"users\.u\-1\.c\ d\.Ünï"), "users.u-1.c d.Ünï");
        assert_eq!(unescape(r"a\\b"), r"a\b");
        assert_eq!(namespace_of(&unescape(r"users\.u\-1")), ["users", "u-1"]);
    }

    #[test]
    fn values_in_the_serde_wrapper_are_read_or_refused_by_name() {
        let doc = json!({"value": {"__serde_type__": "json", "__serde_data__": "{\"a\": 1}"}});
        assert_eq!(value_of(&doc).expect("json").get(), "{\"a\": 1}");
        let doc = json!({"value": {"__serde_type__": "msgpack", "__serde_data__": "81a161"}});
        assert!(value_of(&doc).unwrap_err().contains("msgpack"));
        let doc = json!({"value": {"f": 0.9949503943874963}});
        assert!(
            value_of(&doc)
                .expect("object")
                .get()
                .contains("0.9949503943874963")
        );
    }
}
