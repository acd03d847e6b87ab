//! An embedded collection: a Qdrant Edge shard in a directory, Qdrant's own engine as a
//! library, no server.
//!
//! Facts of qdrant-edge 0.6 this module is built around (docs/decisions.md):
//! - every call is synchronous: they run on tokio's blocking pool;
//! - an update is in the shard's write-ahead log but durable only after `flush`, and
//!   `flush` panics when another thread is inside an update: updates and flushes are
//!   serialized here; an upsert returns only after its flush. A run's batch is
//!   written in parts, and a flush after a batch's last part makes that batch and the
//!   one before it durable: a run flushes every other batch and confirms each batch
//!   one batch late, as a server's pipeline does ([`PointStore::commit`]);
//! - the shard locks its directory: one process at a time, and within a process every
//!   user of a directory shares one open shard (the registry below), so `--verify`
//!   reading back what the run wrote does not collide with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use async_trait::async_trait;
use qdrant_edge::{
    Condition, CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeShard, EdgeVectorParams,
    FieldCondition, FieldIndexOperations, Filter, JsonPath, Match, NamedQuery, PayloadFieldSchema,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStruct,
    PointStructPersisted, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest, UpdateOperation,
    WithPayloadInterface, WithVector,
};
use serde_json::Value;

use super::embedding::EmbeddingConfig;
use super::points::{FieldMatch, Found, Indexes, Page, Point, PointStore};
use crate::error::StoreError;

/// What ckpt-migrate keeps beside the shard: the embedding its vectors were made with.
const INFO_FILE: &str = "ckpt-migrate.json";
/// The shard's own config file: present once the shard exists.
const EDGE_CONFIG_FILE: &str = "edge_config.json";

/// An open shard; updates and flushes take `writes`.
struct Opened {
    shard: EdgeShard,
    writes: Mutex<()>,
}

/// Every shard this process has open, by canonical directory.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Opened>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

pub struct EdgeStore {
    dir: PathBuf,
    collection: String,
    opened: Mutex<Option<Arc<Opened>>>,
    /// Whether the latest overlapped batch is not flushed yet: the next overlapped
    /// commit flushes it with its own, so a run flushes every other batch.
    unflushed: std::sync::atomic::AtomicBool,
}

fn engine_error(dir: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    if text.contains("WouldBlock")
        || text.contains("temporarily unavailable")
        || text.contains("failed to open WAL")
    {
        return StoreError::fatal(format!(
            "embedded collection {}: in use by another process (an embedded collection has \
             one user at a time: wait for it to finish; for parallel shards write to a \
             Qdrant server)",
            dir.display()
        ));
    }
    StoreError::fatal(format!(
        "embedded collection {}: {what}: {text}",
        dir.display()
    ))
}

/// Points per engine update, and per part of a batch ([`PointStore::part_size`]). The
/// engine serializes each update whole (into its write-ahead log): a batch of 500 in
/// one update held a second copy of all their payloads, 17 MiB at the peak of a
/// 10 000-checkpoint run (heaptrack), and the batch's payloads built at once held as
/// much again. Parts are not flushed: a batch is, after its last part (every other
/// batch of a run, see `commit`).
const POINTS_PER_UPDATE: usize = 32;

/// Runs blocking engine work on tokio's blocking pool; a panic inside the engine (its
/// flush panics on I/O errors) becomes this store's error.
async fn blocking<T: Send + 'static>(
    dir: &Path,
    what: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::fatal(format!(
            "embedded collection {}: {what}: the engine failed: {e}",
            dir.display()
        ))),
    }
}

/// The embedding as the collection records it: the key's variable name but never a
/// key, and no base URL that could carry credentials (user info or a query).
fn recorded(embedding: &EmbeddingConfig) -> EmbeddingConfig {
    let mut recorded = embedding.clone();
    recorded.base_url = recorded
        .base_url
        .filter(|url| !url.contains('@') && !url.contains('?'));
    recorded
}

/// A lock that outlives a panicking holder: the guarded state stays consistent (it is
/// only the shard handle, or nothing).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A point id from its text (a resume position); not one is an error, never a restart.
fn point_id(text: &str) -> Result<PointId, StoreError> {
    text.parse::<u64>()
        .map(PointId::NumId)
        .or_else(|_| text.parse::<uuid::Uuid>().map(PointId::Uuid))
        .map_err(|_| StoreError::fatal(format!("{text:?} is not a point id")))
}

fn filter(only: Option<&FieldMatch>) -> Option<Filter> {
    let m = only?;
    let key: JsonPath = m.field.parse().ok()?;
    Some(Filter::new_must(Condition::Field(
        FieldCondition::new_match(key, Match::from(m.value.clone())),
    )))
}

/// A point the engine returned.
fn found(id: &PointId, payload: Option<qdrant_edge::Payload>, score: Option<f32>) -> Found {
    Found {
        id: id.to_string(),
        payload: Value::Object(payload.map(|p| p.0).unwrap_or_default()),
        score,
    }
}

impl EdgeStore {
    pub fn new(dir: PathBuf, collection: String) -> Self {
        Self {
            dir,
            collection,
            opened: Mutex::new(None),
            unflushed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn exists(&self) -> bool {
        self.dir.join(EDGE_CONFIG_FILE).is_file()
    }

    /// The open shard, opening (or, given a config, creating) it on first use.
    async fn shard(&self, create: Option<EdgeConfig>) -> Result<Arc<Opened>, StoreError> {
        if let Some(open) = locked(&self.opened).clone() {
            return Ok(open);
        }
        let dir = self.dir.clone();
        let opened = blocking(&self.dir, "opening", move || {
            if create.is_some() {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| engine_error(&dir, "creating the directory", e))?;
            }
            let canonical = dir
                .canonicalize()
                .map_err(|e| engine_error(&dir, "opening", e))?;
            let mut open = locked(&OPEN);
            if let Some(shard) = open.get(&canonical).and_then(Weak::upgrade) {
                return Ok(shard);
            }
            let shard = match create {
                Some(config) if !dir.join(EDGE_CONFIG_FILE).is_file() => {
                    EdgeShard::new(&dir, config).map_err(|e| engine_error(&dir, "creating", e))?
                }
                _ => EdgeShard::load(&dir, None).map_err(|e| engine_error(&dir, "opening", e))?,
            };
            let shard = Arc::new(Opened {
                shard,
                writes: Mutex::new(()),
            });
            open.retain(|_, w| w.strong_count() > 0);
            open.insert(canonical, Arc::downgrade(&shard));
            Ok(shard)
        })
        .await?;
        *locked(&self.opened) = Some(opened.clone());
        Ok(opened)
    }

    /// The open shard of an existing collection.
    async fn existing(&self) -> Result<Arc<Opened>, StoreError> {
        if !self.exists() && locked(&self.opened).is_none() {
            return Err(StoreError::fatal(format!(
                "embedded collection {:?} does not exist: no {} in {}",
                self.collection,
                EDGE_CONFIG_FILE,
                self.dir.display()
            )));
        }
        self.shard(None).await
    }

    /// Runs updates, serialized with every other update and flush, and then flushes
    /// (makes every update so far durable) when `flush`.
    async fn apply(
        &self,
        what: &'static str,
        operations: Vec<UpdateOperation>,
        flush: bool,
    ) -> Result<(), StoreError> {
        let opened = self.existing().await?;
        let dir = self.dir.clone();
        blocking(&self.dir, what, move || {
            let _writing = locked(&opened.writes);
            for operation in operations {
                opened
                    .shard
                    .update(operation)
                    .map_err(|e| engine_error(&dir, what, e))?;
            }
            if flush {
                opened.shard.flush();
            }
            Ok(())
        })
        .await
    }
}

/// The engine updates that upsert `points`, [`POINTS_PER_UPDATE`] to an update.
fn upserts(points: Vec<Point>) -> Vec<UpdateOperation> {
    let mut persisted = points.into_iter().map(|p| -> PointStructPersisted {
        PointStruct::new(PointId::Uuid(p.id), p.vector, Value::Object(p.payload)).into()
    });
    let mut operations = Vec::new();
    loop {
        let some: Vec<PointStructPersisted> = persisted.by_ref().take(POINTS_PER_UPDATE).collect();
        if some.is_empty() {
            return operations;
        }
        operations.push(UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(PointInsertOperations::PointsList(some)),
        ));
    }
}

#[async_trait]
impl PointStore for EdgeStore {
    fn describe(&self) -> String {
        format!("embedded collection {}", self.dir.display())
    }

    async fn vector_size(&self) -> Result<Option<u64>, StoreError> {
        if !self.exists() {
            return Ok(None);
        }
        let opened = self.shard(None).await?;
        let config = opened.shard.config();
        Ok(Some(
            config
                .vectors
                .get(DEFAULT_VECTOR_NAME)
                .map_or(0, |v| v.size as u64),
        ))
    }

    async fn create(
        &self,
        dims: u64,
        indexes: &Indexes,
        embedding: &EmbeddingConfig,
    ) -> Result<(), StoreError> {
        let config = EdgeConfig {
            vectors: HashMap::from([(
                DEFAULT_VECTOR_NAME.to_owned(),
                EdgeVectorParams {
                    size: dims as usize,
                    distance: Distance::Cosine,
                    on_disk: Some(true),
                    multivector_config: None,
                    datatype: None,
                    quantization_config: None,
                    hnsw_config: None,
                },
            )]),
            ..EdgeConfig::default()
        };
        self.shard(Some(config)).await?;
        let info = serde_json::json!({"format": 1, "embedding": recorded(embedding)});
        std::fs::write(self.dir.join(INFO_FILE), format!("{info:#}\n"))
            .map_err(|e| engine_error(&self.dir, "writing its embedding", e))?;
        // A unique field's index is a map entry per point, which the engine keeps in
        // memory: `checkpoint_id`'s was a third of the process at 100 000 points
        // (33 MiB), and the point's id, made from it, finds it already.
        let fields = indexes
            .keywords
            .iter()
            .filter(|f| !indexes.unique.contains(f))
            .map(|f| (*f, PayloadSchemaType::Keyword))
            .chain(
                indexes
                    .integers
                    .iter()
                    .map(|f| (*f, PayloadSchemaType::Integer)),
            );
        let mut operations = Vec::new();
        for (field, kind) in fields {
            let field_name: JsonPath = field
                .parse()
                .map_err(|()| StoreError::fatal(format!("bad payload field {field:?}")))?;
            operations.push(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name,
                    field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                }),
            ));
        }
        self.apply("indexing payload fields", operations, true)
            .await?;
        tracing::info!(
            "created embedded collection {} ({dims} dimensions, cosine)",
            self.dir.display()
        );
        Ok(())
    }

    async fn embedding(&self) -> Result<Option<EmbeddingConfig>, StoreError> {
        let path = self.dir.join(INFO_FILE);
        // A few hundred bytes that ckpt-migrate wrote.
        #[allow(clippy::disallowed_methods)]
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(engine_error(&self.dir, "reading its embedding", e)),
        };
        let info: Value = serde_json::from_str(&text)
            .map_err(|e| StoreError::fatal(format!("{}: {e}", path.display())))?;
        serde_json::from_value(info["embedding"].clone())
            .map(Some)
            .map_err(|e| StoreError::fatal(format!("{}: embedding: {e}", path.display())))
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        self.apply("upserting points", upserts(points), true).await
    }

    fn part_size(&self) -> Option<usize> {
        Some(POINTS_PER_UPDATE)
    }

    async fn write_part(&self, points: Vec<Point>) -> Result<(), StoreError> {
        self.apply("upserting points", upserts(points), false).await
    }

    async fn commit(&self, overlapped: bool) -> Result<(), StoreError> {
        // A flush costs the same for one batch or two (on a disk, most of a small
        // batch's time): an overlapped batch waits for the next one's flush, which
        // makes both durable, or for `settle`.
        if overlapped && !self.unflushed.load(Ordering::SeqCst) {
            self.unflushed.store(true, Ordering::SeqCst);
            return Ok(());
        }
        self.apply("flushing", Vec::new(), true).await?;
        self.unflushed.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn overlaps(&self) -> bool {
        true
    }

    async fn settle(&self) -> Result<(), StoreError> {
        if self.unflushed.load(Ordering::SeqCst) {
            self.apply("flushing", Vec::new(), true).await?;
            self.unflushed.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn retrieve(&self, ids: &[uuid::Uuid]) -> Result<Vec<Option<Found>>, StoreError> {
        let opened = self.existing().await?;
        let wanted: Vec<PointId> = ids.iter().map(|id| PointId::Uuid(*id)).collect();
        let dir = self.dir.clone();
        let found = blocking(&self.dir, "reading points", move || {
            Ok(opened
                .shard
                .retrieve(
                    &wanted,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(false)),
                )
                .map_err(|e| engine_error(&dir, "reading points", e))?
                .into_iter()
                .map(|r| found(&r.id, r.payload, None))
                .collect())
        })
        .await?;
        Ok(super::points::in_order(ids, found))
    }

    async fn scroll(
        &self,
        offset: Option<&str>,
        limit: usize,
        only: Option<&FieldMatch>,
        fields: Option<&[&str]>,
    ) -> Result<Page, StoreError> {
        let opened = self.existing().await?;
        let with_payload = match fields {
            Some(f) => {
                WithPayloadInterface::Fields(f.iter().filter_map(|s| s.parse().ok()).collect())
            }
            None => WithPayloadInterface::Bool(true),
        };
        let request = ScrollRequest {
            offset: offset.map(point_id).transpose()?,
            limit: Some(limit.max(1)),
            filter: filter(only),
            with_payload: Some(with_payload),
            with_vector: WithVector::Bool(false),
            order_by: None,
        };
        let dir = self.dir.clone();
        blocking(&self.dir, "scrolling", move || {
            let (records, next) = opened
                .shard
                .scroll(request)
                .map_err(|e| engine_error(&dir, "scrolling", e))?;
            Ok(Page {
                points: records
                    .into_iter()
                    .map(|r| found(&r.id, r.payload, None))
                    .collect(),
                next: next.map(|id| id.to_string()),
            })
        })
        .await
    }

    async fn search(
        &self,
        vector: Vec<f32>,
        only: Option<&FieldMatch>,
        limit: usize,
    ) -> Result<Vec<Found>, StoreError> {
        let opened = self.existing().await?;
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(
                NamedQuery::default_dense(vector),
            ))),
            filter: filter(only),
            score_threshold: None,
            limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let dir = self.dir.clone();
        blocking(&self.dir, "searching", move || {
            Ok(opened
                .shard
                .query(request)
                .map_err(|e| engine_error(&dir, "searching", e))?
                .into_iter()
                .map(|p| found(&p.id, p.payload, Some(p.score)))
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_embedding_carries_no_credentials() {
        let mut embedding = EmbeddingConfig::from_model(Some("text-embedding-3-small"));
        embedding.base_url = Some("https://user:secret@llm.example/v1".into());
        assert_eq!(recorded(&embedding).base_url, None);
        embedding.base_url = Some("https://llm.example/v1?api-key=secret".into());
        assert_eq!(recorded(&embedding).base_url, None);
        embedding.base_url = Some("https://llm.example/v1".into());
        assert_eq!(
            recorded(&embedding).base_url.as_deref(),
            Some("https://llm.example/v1")
        );
        assert_eq!(recorded(&embedding).model, embedding.model);
    }

    #[tokio::test]
    async fn an_embedded_collection_indexes_every_field_but_the_unique_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::new(dir.path().join("c"), "c".into());
        let indexes = super::super::points::CHECKPOINT_INDEXES;
        let embedding = EmbeddingConfig::from_model(None);
        store.create(4, &indexes, &embedding).await.unwrap();
        let opened = store.existing().await.unwrap();
        let mut indexed: Vec<String> = opened
            .shard
            .info()
            .payload_schema
            .keys()
            .map(ToString::to_string)
            .collect();
        indexed.sort();
        assert_eq!(indexed, ["checkpoint_ns", "created_at_ms", "thread_id"]);
    }

    /// The embedded collection underneath, with how many payloads had been built
    /// whenever a part reached it.
    struct Watched {
        store: EdgeStore,
        built: Arc<std::sync::atomic::AtomicUsize>,
        built_at_parts: Mutex<Vec<(usize, usize)>>,
    }

    #[async_trait]
    impl PointStore for Watched {
        fn describe(&self) -> String {
            self.store.describe()
        }
        async fn vector_size(&self) -> Result<Option<u64>, StoreError> {
            self.store.vector_size().await
        }
        async fn create(
            &self,
            dims: u64,
            indexes: &Indexes,
            embedding: &EmbeddingConfig,
        ) -> Result<(), StoreError> {
            self.store.create(dims, indexes, embedding).await
        }
        async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
            self.store.upsert(points).await
        }
        fn part_size(&self) -> Option<usize> {
            self.store.part_size()
        }
        fn max_point_bytes(&self) -> Option<usize> {
            Some(200)
        }
        async fn write_part(&self, points: Vec<Point>) -> Result<(), StoreError> {
            let built = self.built.load(std::sync::atomic::Ordering::SeqCst);
            locked(&self.built_at_parts).push((points.len(), built));
            self.store.write_part(points).await
        }
        async fn commit(&self, overlapped: bool) -> Result<(), StoreError> {
            self.store.commit(overlapped).await
        }
        async fn settle(&self) -> Result<(), StoreError> {
            self.store.settle().await
        }
        async fn retrieve(&self, ids: &[uuid::Uuid]) -> Result<Vec<Option<Found>>, StoreError> {
            self.store.retrieve(ids).await
        }
        async fn scroll(
            &self,
            offset: Option<&str>,
            limit: usize,
            only: Option<&FieldMatch>,
            fields: Option<&[&str]>,
        ) -> Result<Page, StoreError> {
            self.store.scroll(offset, limit, only, fields).await
        }
        async fn search(
            &self,
            vector: Vec<f32>,
            only: Option<&FieldMatch>,
            limit: usize,
        ) -> Result<Vec<Found>, StoreError> {
            self.store.search(vector, only, limit).await
        }
    }

    #[tokio::test]
    async fn a_batch_goes_in_built_a_part_at_a_time_and_all_of_it_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Watched {
            store: EdgeStore::new(dir.path().join("c"), "c".into()),
            built: Arc::default(),
            built_at_parts: Mutex::default(),
        };
        let embedding = EmbeddingConfig::from_model(None);
        let indexes = super::super::points::CHECKPOINT_INDEXES;
        store.create(4, &indexes, &embedding).await.unwrap();
        let count = POINTS_PER_UPDATE * 2 + 5;
        let ids: Vec<uuid::Uuid> = (0..count)
            .map(|i| super::super::point_id(&format!("checkpoint-{i}")))
            .collect();
        let built = Arc::clone(&store.built);
        // One point in the second part is larger than a point may be.
        let too_large = POINTS_PER_UPDATE + 3;
        let parts = ids.iter().enumerate().map(|(i, id)| {
            built.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let pad = if i == too_large {
                "x".repeat(300)
            } else {
                String::new()
            };
            let payload = serde_json::json!({"thread_id": "t", "n": i, "pad": pad});
            (*id, vec![1.0, 0.0, 0.0, i as f32], payload)
        });
        let (written, refused) = super::super::write_points(&store, parts, true)
            .await
            .unwrap();
        assert_eq!(written, count - 1);
        // Its index is its place in the whole batch, not in its part.
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, too_large);
        // Each part is handed over as soon as it is built: never more than one part's
        // payloads exist ahead of the engine.
        let full = POINTS_PER_UPDATE;
        assert_eq!(
            *locked(&store.built_at_parts),
            [(full, full), (full - 1, 2 * full), (5, count)]
        );
        // Settled as at a run's end, a fresh open of the directory (the engine
        // reloads it once the shared handle is gone) finds every point but the
        // refused one, with its payload.
        store.settle().await.unwrap();
        drop(store);
        let reopened = EdgeStore::new(dir.path().join("c"), "c".into());
        let found = reopened.retrieve(&ids).await.unwrap();
        for (i, point) in found.iter().enumerate() {
            if i == too_large {
                assert!(point.is_none(), "the refused point was written");
                continue;
            }
            let point = point
                .as_ref()
                .unwrap_or_else(|| panic!("point {i} is missing"));
            assert_eq!(point.payload["n"], i);
        }
    }
}
