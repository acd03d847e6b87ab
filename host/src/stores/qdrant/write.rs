//! Unified Memory destination: upserts points into a Qdrant collection.
//!
//! A batch is embedded, cut into requests under `max_request_bytes`, sent as up to
//! `upsert_streams` concurrent `wait=false` upserts, and then confirmed: the batch
//! counts as written only once Qdrant reports every one of its points (an exact count
//! by id). The resume state therefore never runs ahead of what Qdrant has. Points have
//! deterministic ids, so writing a batch again (retry, resume) upserts, never
//! duplicates.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use qdrant_client::Payload;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    Distance, FieldType, Filter, PointId, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
    vectors_config,
};

use super::config::QdrantConfig;
use super::embedding::Embedder;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::Checkpoint;
use crate::retry::RetryPolicy;
use crate::run::{RunInfo, RunStats};
use crate::sinks::OpenSink;
use crate::sinks::{Rejected, Sink};
use crate::sources::Source;

const DEFAULT_STREAMS: usize = 3;
const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// How long the confirming barrier waits for Qdrant to show a batch.
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);

pub struct QdrantSink {
    config: QdrantConfig,
    run: RunInfo,
    client: qdrant_client::Qdrant,
    url: String,
    key: Option<String>,
    embedder: Embedder,
    prepared: bool,
}

impl QdrantSink {
    pub fn new(config: QdrantConfig, run: RunInfo, retry: RetryPolicy) -> Result<Self, StoreError> {
        let (client, url) = super::connect(&config)?;
        let embedder = Embedder::new(&config.embedding_config(), retry)
            .map_err(|e| StoreError::fatal(format!("destination_config.embedding: {e}")))?;
        Ok(Self {
            key: super::api_key(&config),
            config,
            run,
            client,
            url,
            embedder,
            prepared: false,
        })
    }

    fn error(&self, what: &str, e: qdrant_client::QdrantError) -> StoreError {
        super::error(&self.url, what, e, self.key.as_deref())
    }

    /// The collection's vector size, or `None` when it does not exist.
    async fn existing_size(&self) -> Result<Option<u64>, StoreError> {
        let name = &self.config.collection;
        let exists = self
            .client
            .collection_exists(name)
            .await
            .map_err(|e| self.error("checking the collection", e))?;
        if !exists {
            return Ok(None);
        }
        let info = self
            .client
            .collection_info(name)
            .await
            .map_err(|e| self.error("reading the collection", e))?;
        let size = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                vectors_config::Config::Params(p) => Some(p.size),
                vectors_config::Config::ParamsMap(_) => None,
            });
        Ok(Some(size.unwrap_or(0)))
    }

    /// Creates the collection (and its payload indexes) or checks the existing one,
    /// before anything is written.
    async fn prepare_collection(&mut self) -> Result<(), StoreError> {
        if self.prepared {
            return Ok(());
        }
        let name = self.config.collection.clone();
        let dims = self.embedder.dimensions() as u64;
        match self.existing_size().await? {
            Some(size) if size != dims => {
                return Err(StoreError::fatal(format!(
                    "Qdrant {}: collection {name:?} has vectors of size {} but the embedding makes {dims}: \
                     nothing was written (use another collection, or an embedding with {} dimensions)",
                    self.url,
                    if size == 0 {
                        "(named vectors)".into()
                    } else {
                        size.to_string()
                    },
                    size
                )));
            }
            Some(_) => {}
            None => {
                let created = self
                    .client
                    .create_collection(
                        CreateCollectionBuilder::new(&name)
                            .vectors_config(VectorParamsBuilder::new(dims, Distance::Cosine)),
                    )
                    .await;
                match created {
                    Ok(_) => tracing::info!(
                        "Qdrant: created collection {name:?} ({dims} dimensions, cosine)"
                    ),
                    // A concurrent run (another shard) created it first: fine when it
                    // has our vector size.
                    Err(e) if self.existing_size().await? == Some(dims) => {
                        tracing::debug!("Qdrant: collection {name:?} was created meanwhile ({e})");
                    }
                    Err(e) => return Err(self.error("creating the collection", e)),
                }
            }
        }
        for (field, kind) in [
            ("thread_id", FieldType::Keyword),
            ("checkpoint_ns", FieldType::Keyword),
            ("checkpoint_id", FieldType::Keyword),
            ("created_at_ms", FieldType::Integer),
        ] {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(&name, field, kind).wait(true),
                )
                .await
                .map_err(|e| self.error(&format!("indexing {field}"), e))?;
        }
        self.prepared = true;
        Ok(())
    }

    /// Waits until Qdrant reports all `ids`: the barrier after `wait=false` upserts.
    async fn confirm(&self, ids: &[PointId]) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            let count = self
                .client
                .count(
                    CountPointsBuilder::new(&self.config.collection)
                        .filter(Filter::must([Condition::has_id(ids.to_vec())]))
                        .exact(true),
                )
                .await
                .map_err(|e| self.error("confirming the batch", e))?
                .result
                .map_or(0, |r| r.count);
            if count as usize >= ids.len() {
                return Ok(());
            }
            if started.elapsed() > CONFIRM_WITHIN {
                return Err(StoreError::retriable(format!(
                    "Qdrant {}: only {count} of {} points visible after {} s",
                    self.url,
                    ids.len(),
                    CONFIRM_WITHIN.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
}

#[async_trait]
impl Sink for QdrantSink {
    fn describe(&self) -> String {
        format!(
            "Qdrant {} collection {:?}",
            self.url, self.config.collection
        )
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "{}.dead-letter.jsonl",
            crate::sinks::safe_file_name(&self.config.collection)
        ))
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        // Unreachable at the start is a wrong address more often than a restart: say
        // so at once instead of retrying.
        self.prepare_collection().await.map_err(|mut e| {
            e.retriable = false;
            e
        })
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        // Reachable, authorized, and a compatible collection (or none yet).
        match self.existing_size().await? {
            Some(size) if size != self.embedder.dimensions() as u64 => {
                Err(StoreError::fatal(format!(
                    "collection {:?} has vectors of size {size}, the embedding makes {}",
                    self.config.collection,
                    self.embedder.dimensions()
                )))
            }
            _ => Ok(()),
        }
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        self.prepare_collection().await?;
        let texts: Vec<String> = records.iter().map(super::embedding::text_for).collect();
        let vectors = self.embedder.embed(&texts).await?;
        let max_bytes = self
            .config
            .max_request_bytes
            .unwrap_or(DEFAULT_MAX_REQUEST_BYTES)
            .max(1024);
        let updated_at = self.run.started_at.to_rfc3339();
        let mut rejected = Vec::new();
        let mut requests: Vec<Vec<PointStruct>> = vec![Vec::new()];
        let mut request_bytes = 0usize;
        let mut ids: Vec<PointId> = Vec::new();
        let mut seen = HashSet::new();
        for (index, (record, vector)) in records.iter().zip(vectors).enumerate() {
            let payload_json = super::payload(record, &updated_at);
            let size = payload_json.to_string().len() + vector.len() * 4;
            if size > max_bytes {
                rejected.push(Rejected {
                    index,
                    reason: format!(
                        "point of {size} bytes is larger than a request may be ({max_bytes})"
                    ),
                });
                continue;
            }
            let payload = match Payload::try_from(payload_json) {
                Ok(p) => p,
                Err(e) => {
                    rejected.push(Rejected {
                        index,
                        reason: format!("payload: {e}"),
                    });
                    continue;
                }
            };
            let id = super::point_id(&record.key.checkpoint_id).to_string();
            if request_bytes + size > max_bytes {
                requests.push(Vec::new());
                request_bytes = 0;
            }
            request_bytes += size;
            if seen.insert(id.clone()) {
                ids.push(PointId::from(id.clone()));
            }
            requests
                .last_mut()
                .expect("one request at least")
                .push(PointStruct::new(id, vector, payload));
        }
        let streams = self
            .config
            .upsert_streams
            .unwrap_or(DEFAULT_STREAMS)
            .clamp(1, 8);
        let collection = self.config.collection.clone();
        let client = &self.client;
        let results: Vec<_> =
            futures_util::stream::iter(requests.into_iter().filter(|r| !r.is_empty()))
                .map(|points| {
                    let collection = collection.clone();
                    async move {
                        client
                            .upsert_points(UpsertPointsBuilder::new(collection, points).wait(false))
                            .await
                    }
                })
                .buffer_unordered(streams)
                .collect()
                .await;
        for r in results {
            r.map_err(|e| self.error("upserting points", e))?;
        }
        if !ids.is_empty() {
            self.confirm(&ids).await?;
        }
        Ok(rejected)
    }

    async fn checkpoint(&mut self) -> Result<Option<serde_json::Value>, StoreError> {
        // Every batch was confirmed in write_batch; upserts are idempotent.
        Ok(Some(serde_json::Value::Null))
    }

    async fn resume(&mut self, _state: serde_json::Value) -> Result<(), StoreError> {
        Ok(())
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        let source = super::QdrantSource::open(&self.config, &Filters::none()).await?;
        Ok(Box::new(source))
    }

    async fn finish(&mut self, stats: &RunStats) -> Result<(), StoreError> {
        tracing::info!(
            "Qdrant collection {:?}: {} points written by run {}",
            self.config.collection,
            stats.written,
            self.run.run_id
        );
        Ok(())
    }
}

impl OpenSink for QdrantConfig {
    fn open_sink(&self, run: &RunInfo, retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        Ok(Box::new(QdrantSink::new(self.clone(), run.clone(), retry)?))
    }
}
