//! LangGraph Store items into Unified Memory: one point per item (`--state store`
//! with `--destination unified`), on a server or embedded.
//!
//! - Id: `uuid5(550e8400-…, "store_item:" + JSON [namespace, key])`, so a re-run or a
//!   resumed run upserts the same points.
//! - Payload: `type: "store_item"`, `namespace` (the labels), `namespace_path`
//!   (`a.b.c`), `key`, `value` (the stored JSON, numbers exact), `created_at`,
//!   `updated_at`, `expires_at`, `ttl_minutes` (RFC 3339 with microseconds),
//!   `updated_at_ms` for range filters. `verify` reads these back.
//! - Vector: the item's own embedding (its `$` field, else its first) when it has the
//!   collection's size; else the configured embedder's, of the item's text.

use std::path::PathBuf;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::config::QdrantConfig;
use super::embedding::Embedder;
use super::points::{Indexes, PointStore};
use crate::error::{OpenError, StoreError};
use crate::items::{ItemKey, ItemSink, ItemWrite, StoreItem, namespace_text};
use crate::record::Origin;
use crate::retry::RetryPolicy;

/// The fields Store items are filtered by.
pub const ITEM_INDEXES: Indexes = Indexes {
    keywords: &["type", "namespace", "namespace_path", "key"],
    integers: &["updated_at_ms"],
    unique: &[],
};

pub fn item_point_id(key: &ItemKey) -> uuid::Uuid {
    let name = format!("store_item:{}", json!([key.namespace, key.key]));
    uuid::Uuid::new_v5(&super::POINT_NAMESPACE, name.as_bytes())
}

/// The point payload of an item.
pub fn item_payload(item: &StoreItem) -> Value {
    let mut payload = item.to_json();
    payload["type"] = "store_item".into();
    payload["namespace_path"] = namespace_text(&item.key.namespace).into();
    payload["updated_at_ms"] = item.updated_at.timestamp_millis().into();
    if let Some(map) = payload.as_object_mut() {
        map.remove("vectors");
    }
    payload
}

/// An item from its point payload (the fields [`item_payload`] wrote).
pub fn item_from_payload(payload: &Value, origin: Origin) -> Result<StoreItem, String> {
    let mut fields = serde_json::Map::new();
    for field in [
        "namespace",
        "key",
        "value",
        "created_at",
        "updated_at",
        "expires_at",
        "ttl_minutes",
    ] {
        fields.insert(
            field.to_owned(),
            payload.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    StoreItem::from_json(&Value::Object(fields), origin)
}

/// The text embedded for an item: its namespace, key and the text of its value
/// (string leaves in order), cut to the last 4000 characters.
pub fn item_text(item: &StoreItem) -> String {
    let mut lines = vec![
        format!("namespace: {}", namespace_text(&item.key.namespace)),
        format!("key: {}", item.key.key),
    ];
    if let Ok(value) = serde_json::from_str::<Value>(item.value.get()) {
        lines.extend(super::embedding::string_leaves(&value));
    }
    super::embedding::newest_text(&lines)
}

pub struct QdrantItemSink {
    config: QdrantConfig,
    store: Box<dyn PointStore>,
    embedder: Embedder,
    prepared: bool,
}

impl QdrantItemSink {
    pub fn new(config: &QdrantConfig, retry: RetryPolicy) -> Result<Self, StoreError> {
        let config = config.for_items();
        let store = super::open_store(&config)?;
        let embedder = Embedder::new(&config.embedding_config(), retry)
            .map_err(|e| StoreError::fatal(format!("destination_config.embedding: {e}")))?;
        Ok(Self {
            config,
            store,
            embedder,
            prepared: false,
        })
    }

    /// The item's own vector when it has the collection's size.
    fn carried(&self, item: &StoreItem) -> Option<Vec<f32>> {
        let dims = self.embedder.dimensions();
        item.vectors
            .iter()
            .find(|v| v.field_name == "$")
            .or_else(|| item.vectors.first())
            .filter(|v| v.embedding.len() == dims)
            .map(|v| v.embedding.clone())
    }
}

#[async_trait]
impl ItemSink for QdrantItemSink {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        super::dead_letter_path(&self.config)
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        if !self.prepared {
            super::write::prepare_collection(
                self.store.as_ref(),
                &self.embedder,
                &self.config,
                &ITEM_INDEXES,
            )
            .await
            .map_err(|mut e| {
                e.retriable = false;
                e
            })?;
            self.prepared = true;
        }
        Ok(())
    }

    async fn write(&mut self, items: &[StoreItem]) -> Result<ItemWrite, StoreError> {
        self.prepare().await?;
        let carried: Vec<Option<Vec<f32>>> = items.iter().map(|i| self.carried(i)).collect();
        let texts: Vec<String> = items
            .iter()
            .zip(&carried)
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| item_text(i))
            .collect();
        let mut computed = self.embedder.embed(&texts).await?.into_iter();
        let (written, rejected) = super::write_points(
            self.store.as_ref(),
            items.iter().zip(carried).map(|(item, vector)| {
                let vector = vector.unwrap_or_else(|| computed.next().unwrap_or_default());
                (item_point_id(&item.key), vector, item_payload(item))
            }),
            false,
        )
        .await?;
        Ok(ItemWrite {
            written: written as u64,
            kept: 0,
            rejected,
        })
    }

    /// The point keeps one vector (normalized by the cosine distance), not the item's
    /// per-field embeddings: verify compares everything else.
    fn written_form(&self, mut item: StoreItem) -> StoreItem {
        item.vectors.clear();
        item
    }

    async fn read_back(&mut self, keys: &[ItemKey]) -> Result<Vec<Option<StoreItem>>, StoreError> {
        let ids: Vec<uuid::Uuid> = keys.iter().map(item_point_id).collect();
        let found = self.store.retrieve(&ids).await?;
        let place = self.store.describe();
        found
            .into_iter()
            .map(|point| {
                point
                    .map(|p| {
                        let origin = Origin {
                            store: "unified".into(),
                            locator: format!("{place} point {}", p.id),
                        };
                        item_from_payload(&p.payload, origin)
                            .map_err(|e| StoreError::fatal(format!("{place} point {}: {e}", p.id)))
                    })
                    .transpose()
            })
            .collect()
    }
}

pub fn open_item_sink(
    config: &QdrantConfig,
    retry: RetryPolicy,
) -> Result<Box<dyn ItemSink>, OpenError> {
    Ok(Box::new(QdrantItemSink::new(config, retry)?))
}
