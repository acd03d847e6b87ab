//! Unified Memory destination: upserts a point per checkpoint into a collection, on a
//! server or embedded ([`super::points::PointStore`]).
//!
//! A batch is embedded and upserted; it counts as written once the store has confirmed
//! every point (a server's barrier, an embedded shard's flush), so the resume state
//! never runs ahead of the collection. Points have deterministic ids, so writing a
//! batch again (retry, resume) upserts, never duplicates.

use std::path::PathBuf;

use async_trait::async_trait;

use super::config::QdrantConfig;
use super::embedding::Embedder;
use super::points::{CHECKPOINT_INDEXES, PointStore};
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::record::Checkpoint;
use crate::retry::RetryPolicy;
use crate::run::{RunInfo, RunStats};
use crate::sinks::OpenSink;
use crate::sinks::{Rejected, Sink};
use crate::sources::Source;

pub struct QdrantSink {
    config: QdrantConfig,
    run: RunInfo,
    store: Box<dyn PointStore>,
    embedder: Embedder,
    prepared: bool,
}

/// The refusal of a collection whose vectors have another size.
pub fn size_mismatch(store: &dyn PointStore, size: u64, dims: u64) -> StoreError {
    StoreError::fatal(format!(
        "{}: has vectors of size {} but the embedding makes {dims}: nothing was written \
         (use another collection, or an embedding with {size} dimensions)",
        store.describe(),
        if size == 0 {
            "(named vectors)".into()
        } else {
            size.to_string()
        },
    ))
}

/// Creates the collection with `indexes`, or checks that the existing one takes
/// vectors of the embedder's size, before anything is written.
pub async fn prepare_collection(
    store: &dyn PointStore,
    embedder: &Embedder,
    config: &QdrantConfig,
    indexes: &super::points::Indexes,
) -> Result<(), StoreError> {
    let dims = embedder.dimensions() as u64;
    match store.vector_size().await? {
        Some(size) if size != dims => Err(size_mismatch(store, size, dims)),
        Some(_) => {
            let embedding = config.embedding_config();
            match store.embedding().await? {
                Some(made_with)
                    if made_with.provider != embedding.provider
                        || made_with.model != embedding.model =>
                {
                    Err(StoreError::fatal(format!(
                        "{}: its vectors were made by embedding {} and this run's is {}: \
                         mixing them would make search meaningless; nothing was written",
                        store.describe(),
                        describe_embedding(&made_with),
                        describe_embedding(&embedding)
                    )))
                }
                _ => Ok(()),
            }
        }
        None => {
            store
                .create(dims, indexes, &config.embedding_config())
                .await
        }
    }
}

fn describe_embedding(e: &super::embedding::EmbeddingConfig) -> String {
    match &e.model {
        Some(m) => format!("{} ({m})", e.provider),
        None => e.provider.clone(),
    }
}

impl QdrantSink {
    pub fn new(config: QdrantConfig, run: RunInfo, retry: RetryPolicy) -> Result<Self, StoreError> {
        let store = super::open_store(&config)?;
        let embedder = Embedder::new(&config.embedding_config(), retry)
            .map_err(|e| StoreError::fatal(format!("destination_config.embedding: {e}")))?;
        Ok(Self {
            config,
            run,
            store,
            embedder,
            prepared: false,
        })
    }

    async fn prepare_collection(&mut self) -> Result<(), StoreError> {
        if !self.prepared {
            prepare_collection(
                self.store.as_ref(),
                &self.embedder,
                &self.config,
                &CHECKPOINT_INDEXES,
            )
            .await?;
            self.prepared = true;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for QdrantSink {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        super::dead_letter_path(&self.config)
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
        let dims = self.embedder.dimensions() as u64;
        match self.store.vector_size().await? {
            Some(size) if size != dims => Err(size_mismatch(self.store.as_ref(), size, dims)),
            _ => Ok(()),
        }
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        self.prepare_collection().await?;
        let texts: Vec<String> = records.iter().map(super::embedding::text_for).collect();
        let vectors = self.embedder.embed(&texts).await?;
        let updated_at = self.run.started_at.to_rfc3339();
        let (_, refused) = super::write_points(
            self.store.as_ref(),
            records.iter().zip(vectors).map(|(record, vector)| {
                (
                    super::point_id(&record.key.checkpoint_id),
                    vector,
                    super::payload(record, &updated_at),
                )
            }),
            true,
        )
        .await?;
        Ok(refused
            .into_iter()
            .map(|(index, reason)| Rejected { index, reason })
            .collect())
    }

    async fn checkpoint(&mut self) -> Result<Option<serde_json::Value>, StoreError> {
        // Every batch but (on a server) the latest was confirmed in write_batch;
        // upserts are idempotent, so a resumed run simply sends the rest again.
        Ok(Some(serde_json::Value::Null))
    }

    fn unconfirmed_batches(&self) -> usize {
        self.store.unconfirmed_batches()
    }

    async fn settle(&mut self) -> Result<(), StoreError> {
        self.store.settle().await
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
            "{}: {} points written by run {}",
            self.store.describe(),
            stats.written,
            self.run.run_id
        );
        Ok(())
    }
}

/// Records per batch for an embedded collection. Its batch waits whole, as trees,
/// for the engine: 250 took 28–36 MiB off the peak of 500 (30 000 checkpoints), and
/// with a flush every other batch it ran as fast as 500 did with a flush per batch
/// (docs/unified.md; every eighth batch since). A server keeps the default: its
/// pipeline was measured at 500.
pub const EMBEDDED_BATCH_SIZE: usize = 250;

impl OpenSink for QdrantConfig {
    fn open_sink(&self, run: &RunInfo, retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        Ok(Box::new(QdrantSink::new(self.clone(), run.clone(), retry)?))
    }

    fn default_batch_size(&self) -> usize {
        match self.location() {
            Ok(super::config::Location::Embedded(_)) => EMBEDDED_BATCH_SIZE,
            _ => crate::sinks::DEFAULT_BATCH_SIZE,
        }
    }
}
