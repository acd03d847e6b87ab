//! An embedded collection: a Qdrant Edge shard in a directory, Qdrant's own engine as a
//! library, no server.
//!
//! Facts of qdrant-edge 0.6 this module is built around (docs/decisions.md):
//! - every call is synchronous: they run on tokio's blocking pool;
//! - an update is in the shard's write-ahead log but durable only after `flush`, and
//!   `flush` panics when another thread is inside an update: updates and flushes are
//!   serialized here; an upsert returns only after its flush. A run's batch is
//!   written in parts, and a flush after a batch's last part makes that batch and the
//!   ones before it durable: a run flushes every eighth batch ([`UNFLUSHED_BATCHES`])
//!   and the engine confirms batches once they are flushed ([`PointStore::commit`]).
//!   A part is applied while the caller builds the next one's payloads (the engine's
//!   update is the run's slowest step, on one core): its failure is returned by the
//!   next call;
//! - the engine keeps the segment it appends to in memory (its payload indexes and id
//!   tracker); a collection made here seals that segment into one the engine maps from
//!   disk once it is full (`optimize`, right after a flush). That runs under the same
//!   lock as updates and flushes: a flush beside a running `optimize` panics too;
//! - the shard locks its directory: one process at a time, and within a process every
//!   user of a directory shares one open shard (the registry below), so `--verify`
//!   reading back what the run wrote does not collide with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use async_trait::async_trait;
use qdrant_edge::{
    Condition, CreateIndex, DEFAULT_VECTOR_NAME, Distance, EdgeConfig, EdgeOptimizersConfig,
    EdgeShard, EdgeVectorParams, FieldCondition, FieldIndexOperations, Filter, HnswIndexConfig,
    IntegerIndexParams, JsonPath, KeywordIndexParams, Match, NamedQuery, PayloadFieldSchema,
    PayloadSchemaParams, PointId, PointInsertOperations, PointOperations, PointStruct,
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
/// Where the engine builds a segment it seals (qdrant-edge's `TEMP_SEGMENTS_PATH`).
const TEMP_SEGMENTS_DIR: &str = "temp_segments";

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
    /// How many of the latest overlapped batches are not flushed yet (at most
    /// [`UNFLUSHED_BATCHES`]): the overlapped commit after them flushes them with its
    /// own batch.
    unflushed: AtomicUsize,
    /// The segment size a collection this store creates gets (0: never sealed).
    segment_points: u64,
    /// The batch part handed to the engine last, while the engine applies it: the
    /// caller builds the next part's payloads meanwhile (on the other core). Every
    /// other use of the shard waits for it first ([`EdgeStore::existing`]).
    applying: Mutex<Option<tokio::task::JoinHandle<Result<(), StoreError>>>>,
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
/// much again. Parts are not flushed: a batch is, after its last part (every eighth
/// batch of a run, see `commit`).
const POINTS_PER_UPDATE: usize = 32;

/// What a part's engine work is called in its errors, whichever call returns them.
const UPSERTING: &str = "upserting points";

/// Overlapped batches a run leaves unflushed before the next one's commit flushes
/// them all: a flush costs about the same for one batch or several (the engine syncs
/// 40-odd files each time, 23 ms of waiting on this machine's disk), and it holds up
/// every update. The resume state records a batch once it was flushed, so a run that
/// stops redoes at most this many batches and one more.
const UNFLUSHED_BATCHES: usize = 7;

/// Points the segment an embedded collection appends to holds before the engine seals
/// it, unless the config says otherwise ([`super::config::QdrantConfig::segment_points`]).
/// The engine keeps that segment's payload indexes and id tracker in memory, about
/// 0.3 KB a point, and a sealed point's in about 60 bytes; a sealing copies every
/// point once more. A run of up to 100 000 points (79–83 MiB at its peak) never seals.
pub const DEFAULT_SEGMENT_POINTS: u64 = 100_000;

/// Sealed segments the engine may keep before it merges them: never, in practice.
/// Merging rewrites sealed points again (a sealing costs as much as writing them),
/// and an exact search costs the same over one segment or many.
const SEGMENTS_BEFORE_MERGING: usize = 1 << 20;

/// Whether the engine seals this collection's full segments: it was made with a
/// segment size (collections made before that, or with `segment_points: 0`, are not:
/// the engine would build an HNSW graph for theirs).
fn seals(shard: &EdgeShard) -> bool {
    let config = shard.config();
    config.hnsw_config.m == 0
        && config
            .optimizers
            .indexing_threshold
            .is_some_and(|kb| kb > 0)
}

/// The engine builds a sealed segment under `temp_segments/` and moves it into place
/// when it is done; a process killed before that leaves it there for ever (the engine
/// never looks at it again: up to a segment's size on disk). Cleared once this process
/// holds the collection (the engine's directory lock) and before it seals anything.
fn clear_unfinished_sealings(dir: &Path) {
    let temp = dir.join(TEMP_SEGMENTS_DIR);
    let Ok(entries) = std::fs::read_dir(&temp) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => tracing::info!(
                "embedded collection {}: removed {} (a sealing a killed run left unfinished)",
                dir.display(),
                path.display()
            ),
            Err(e) => tracing::warn!(
                "embedded collection {}: cannot remove {} (a sealing a killed run left \
                 unfinished): {e}",
                dir.display(),
                path.display()
            ),
        }
    }
}

/// The engine's configuration of a new collection: vectors on disk; no HNSW graph
/// (search is exact, and a sealing is then a copy, not a graph build); a segment
/// sealed once it holds more than `segment_points` points, and sealed segments never
/// merged.
fn new_collection_config(dims: u64, segment_points: u64) -> EdgeConfig {
    // Sealed once it holds more than `segment_points`: a run of that many never seals.
    let vector_bytes = usize::try_from(
        dims.saturating_mul(4)
            .saturating_mul(segment_points.saturating_add(1)),
    )
    .unwrap_or(usize::MAX);
    EdgeConfig {
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
        hnsw_config: HnswIndexConfig {
            m: 0,
            ..HnswIndexConfig::default()
        },
        optimizers: EdgeOptimizersConfig {
            default_segment_number: Some(SEGMENTS_BEFORE_MERGING),
            // The segment's vectors in KB; 0 is the engine's "never".
            indexing_threshold: Some(if segment_points == 0 {
                0
            } else {
                vector_bytes.div_ceil(1024).max(1)
            }),
            ..EdgeOptimizersConfig::default()
        },
        ..EdgeConfig::default()
    }
}

/// Runs blocking engine work on tokio's blocking pool; a panic inside the engine (its
/// flush panics on I/O errors) becomes this store's error.
async fn blocking<T: Send + 'static>(
    dir: &Path,
    what: &str,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    joined(dir, what, tokio::task::spawn_blocking(work)).await
}

/// The outcome of engine work started on the blocking pool; a panic inside it is this
/// store's error.
async fn joined<T>(
    dir: &Path,
    what: &str,
    work: tokio::task::JoinHandle<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match work.await {
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
    pub fn new(dir: PathBuf, collection: String, segment_points: u64) -> Self {
        Self {
            dir,
            collection,
            opened: Mutex::new(None),
            unflushed: AtomicUsize::new(0),
            segment_points,
            applying: Mutex::new(None),
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
                _ => {
                    let shard = EdgeShard::load(&dir, None)
                        .map_err(|e| engine_error(&dir, "opening", e))?;
                    clear_unfinished_sealings(&dir);
                    shard
                }
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

    /// The open shard of an existing collection, once the engine has applied the batch
    /// part it was applying (an error of that part is returned here).
    async fn existing(&self) -> Result<Arc<Opened>, StoreError> {
        let applying = locked(&self.applying).take();
        if let Some(part) = applying {
            joined(&self.dir, UPSERTING, part).await?;
        }
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

    /// Runs `operations` ([`update`]) once the part being applied is, flushing after
    /// them when `flush`.
    async fn apply(
        &self,
        what: &'static str,
        operations: Vec<UpdateOperation>,
        flush: bool,
    ) -> Result<(), StoreError> {
        let opened = self.existing().await?;
        let dir = self.dir.clone();
        blocking(&self.dir, what, move || {
            update(&opened, &dir, what, operations, flush)
        })
        .await
    }
}

/// Runs updates, serialized with every other update and flush, and then flushes
/// (makes every update so far durable) when `flush`; seals a full segment after a flush.
fn update(
    opened: &Opened,
    dir: &Path,
    what: &str,
    operations: Vec<UpdateOperation>,
    flush: bool,
) -> Result<(), StoreError> {
    let _writing = locked(&opened.writes);
    for operation in operations {
        opened
            .shard
            .update(operation)
            .map_err(|e| engine_error(dir, what, e))?;
    }
    if flush {
        opened.shard.flush();
        if seals(&opened.shard) {
            // Does nothing until the segment it appends to is full.
            opened
                .shard
                .optimize()
                .map_err(|e| engine_error(dir, "sealing a full segment", e))?;
        }
    }
    Ok(())
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
        let config = new_collection_config(dims, self.segment_points);
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
            .map(|f| {
                (
                    *f,
                    PayloadSchemaParams::Keyword(KeywordIndexParams {
                        on_disk: Some(true),
                        ..KeywordIndexParams::default()
                    }),
                )
            })
            .chain(indexes.integers.iter().map(|f| {
                (
                    *f,
                    PayloadSchemaParams::Integer(IntegerIndexParams {
                        lookup: Some(true),
                        range: Some(true),
                        on_disk: Some(true),
                        ..IntegerIndexParams::default()
                    }),
                )
            }));
        let mut operations = Vec::new();
        for (field, kind) in fields {
            let field_name: JsonPath = field
                .parse()
                .map_err(|()| StoreError::fatal(format!("bad payload field {field:?}")))?;
            operations.push(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name,
                    field_schema: Some(PayloadFieldSchema::FieldParams(kind)),
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
        self.apply(UPSERTING, upserts(points), true).await
    }

    fn part_size(&self) -> Option<usize> {
        Some(POINTS_PER_UPDATE)
    }

    async fn write_part(&self, points: Vec<Point>) -> Result<(), StoreError> {
        // Parts are applied in order: this one starts once the one before is applied,
        // and is applied while the caller builds the next.
        let opened = self.existing().await?;
        let dir = self.dir.clone();
        let part = tokio::task::spawn_blocking(move || {
            update(&opened, &dir, UPSERTING, upserts(points), false)
        });
        *locked(&self.applying) = Some(part);
        Ok(())
    }

    async fn commit(&self, overlapped: bool) -> Result<(), StoreError> {
        // A flush costs about the same for one batch or eight (on a disk, most of a
        // small batch's time): an overlapped batch waits for a later one's flush,
        // which makes them all durable, or for `settle`.
        if overlapped && self.unflushed.load(Ordering::SeqCst) < UNFLUSHED_BATCHES {
            self.unflushed.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        self.apply("flushing", Vec::new(), true).await?;
        self.unflushed.store(0, Ordering::SeqCst);
        Ok(())
    }

    fn unconfirmed_batches(&self) -> usize {
        self.unflushed.load(Ordering::SeqCst)
    }

    async fn settle(&self) -> Result<(), StoreError> {
        if self.unflushed.load(Ordering::SeqCst) > 0 {
            self.apply("flushing", Vec::new(), true).await?;
            self.unflushed.store(0, Ordering::SeqCst);
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
        let store = EdgeStore::new(dir.path().join("c"), "c".into(), DEFAULT_SEGMENT_POINTS);
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

    /// A new checkpoint collection of 16 dimensions in `dir`, sealed past `segment_points`.
    async fn checkpoint_collection(dir: &Path, segment_points: u64) -> EdgeStore {
        let store = EdgeStore::new(dir.join("c"), "c".into(), segment_points);
        let indexes = super::super::points::CHECKPOINT_INDEXES;
        store
            .create(16, &indexes, &EmbeddingConfig::from_model(None))
            .await
            .unwrap();
        store
    }

    /// A point of the checkpoint collection: `n` in its payload, a 16-dimension vector.
    fn numbered_point(checkpoint: &str, n: usize) -> (uuid::Uuid, Vec<f32>, Value) {
        let payload = serde_json::json!({"thread_id": "t", "checkpoint_ns": "", "n": n});
        (super::super::point_id(checkpoint), vec![1.0; 16], payload)
    }

    #[tokio::test]
    async fn a_batch_s_parts_are_applied_in_the_order_they_were_written() {
        // Parts are applied after write_part returns: the same point in every part
        // must end with the last part's payload.
        let dir = tempfile::tempdir().unwrap();
        let store = checkpoint_collection(dir.path(), DEFAULT_SEGMENT_POINTS).await;
        let parts = (0..POINTS_PER_UPDATE * 5).map(|n| numbered_point(&format!("c{}", n % 3), n));
        let (written, refused) = super::super::write_points(&store, parts, true)
            .await
            .unwrap();
        assert_eq!((written, refused.len()), (POINTS_PER_UPDATE * 5, 0));
        store.settle().await.unwrap();
        let ids: Vec<uuid::Uuid> = (0..3)
            .map(|i| super::super::point_id(&format!("c{i}")))
            .collect();
        let last = POINTS_PER_UPDATE * 5 - 1;
        let found = store.retrieve(&ids).await.unwrap();
        let ns: Vec<u64> = found
            .iter()
            .map(|p| p.as_ref().unwrap().payload["n"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (0..3)
            .map(|i| (0..=last).rev().find(|n| n % 3 == i).unwrap() as u64)
            .collect();
        assert_eq!(ns, expected);
    }

    #[tokio::test]
    async fn a_part_the_engine_refuses_after_write_part_returned_fails_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = checkpoint_collection(dir.path(), DEFAULT_SEGMENT_POINTS).await;
        // The collection has 16 dimensions: the engine refuses a vector of 3, and
        // does so while the caller is already building the next part.
        let mut parts: Vec<_> = (0..POINTS_PER_UPDATE * 2)
            .map(|n| numbered_point(&format!("c{n}"), n))
            .collect();
        parts[1].1 = vec![1.0; 3];
        let error = super::super::write_points(&store, parts.into_iter(), false)
            .await
            .unwrap_err();
        assert!(!error.retriable);
        assert!(error.to_string().contains("upserting points"), "{error}");
        // The store stays usable, and the failure is not reported twice.
        let (written, _) =
            super::super::write_points(&store, std::iter::once(numbered_point("ok", 1)), false)
                .await
                .unwrap();
        assert_eq!(written, 1);
        let found = store
            .retrieve(&[super::super::point_id("ok")])
            .await
            .unwrap();
        assert_eq!(found[0].as_ref().unwrap().payload["n"], 1);
    }

    #[tokio::test]
    async fn full_segments_are_sealed_and_every_point_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = checkpoint_collection(dir.path(), 40).await;
        let ids: Vec<uuid::Uuid> = (0..150)
            .map(|i| super::super::point_id(&format!("checkpoint-{i}")))
            .collect();
        // Each point's own direction, so a search for it finds it first.
        let vector = |i: usize| {
            let angle = i as f32 * 0.01;
            let mut v = vec![0.0; 16];
            (v[0], v[1]) = (angle.cos(), angle.sin());
            v
        };
        for (b, chunk) in ids.chunks(50).enumerate() {
            let points = chunk.iter().enumerate().map(|(j, id)| {
                let i = b * 50 + j;
                let payload = serde_json::json!({
                    "thread_id": format!("t{}", i % 2), "checkpoint_ns": "", "n": i,
                });
                (*id, vector(i), payload)
            });
            super::super::write_points(&store, points, false)
                .await
                .unwrap();
        }
        // Every batch of 50 filled the open segment past 40 (at 16 dimensions the
        // threshold, in whole KB of vectors, is 48 points): three sealed, one open.
        let opened = store.existing().await.unwrap();
        let info = opened.shard.info();
        assert_eq!((info.segments_count, info.points_count), (4, 150));
        assert!(seals(&opened.shard));
        drop(opened);

        let odd = FieldMatch {
            field: "thread_id",
            value: "t1".into(),
        };
        let page = store.scroll(None, 200, Some(&odd), None).await.unwrap();
        assert_eq!(page.points.len(), 75);
        assert!(
            page.points
                .iter()
                .all(|p| p.payload["n"].as_u64().unwrap() % 2 == 1)
        );
        let hits = store.search(vector(7), None, 3).await.unwrap();
        assert_eq!(hits[0].payload["n"], 7, "{hits:?}");
        let hits = store.search(vector(8), Some(&odd), 1).await.unwrap();
        assert_eq!(hits[0].payload["n"], 7, "{hits:?}");

        // Reopened from its directory, the collection has them all.
        drop(store);
        let reopened = EdgeStore::new(dir.path().join("c"), "c".into(), 40);
        let found = reopened.retrieve(&ids).await.unwrap();
        for (i, point) in found.iter().enumerate() {
            let point = point
                .as_ref()
                .unwrap_or_else(|| panic!("point {i} is missing"));
            assert_eq!(point.payload["n"], i);
        }
    }

    #[tokio::test]
    async fn a_sealing_a_killed_run_left_unfinished_is_cleared_when_the_collection_opens() {
        let dir = tempfile::tempdir().unwrap();
        drop(checkpoint_collection(dir.path(), 40).await);
        let unfinished = dir.path().join("c").join(TEMP_SEGMENTS_DIR).join("segment");
        std::fs::create_dir_all(&unfinished).unwrap();
        std::fs::write(unfinished.join("payload_storage"), b"half a segment").unwrap();
        let reopened = EdgeStore::new(dir.path().join("c"), "c".into(), 40);
        assert_eq!(reopened.vector_size().await.unwrap(), Some(16));
        assert!(
            !unfinished.exists(),
            "the unfinished segment is still there"
        );
    }

    #[tokio::test]
    async fn a_collection_made_with_no_segment_size_is_never_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = checkpoint_collection(dir.path(), 0).await;
        let points = (0..300).map(|i| numbered_point(&format!("checkpoint-{i}"), i));
        super::super::write_points(&store, points, false)
            .await
            .unwrap();
        let opened = store.existing().await.unwrap();
        assert!(!seals(&opened.shard));
        assert_eq!(opened.shard.info().segments_count, 1);
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
            store: EdgeStore::new(dir.path().join("c"), "c".into(), DEFAULT_SEGMENT_POINTS),
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
        let reopened = EdgeStore::new(dir.path().join("c"), "c".into(), DEFAULT_SEGMENT_POINTS);
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
