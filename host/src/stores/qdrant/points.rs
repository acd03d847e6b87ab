//! What the Unified Memory source, sink and `search` need from a collection, whether it
//! lives on a Qdrant server ([`super::server`]) or embedded in a directory
//! ([`super::edge`]). Points, payloads and ids are built once, in `super`; a backend
//! only stores and finds them.

use async_trait::async_trait;
use serde_json::Value;

use super::embedding::EmbeddingConfig;
use crate::error::StoreError;

/// A point to write: id, vector, payload (a JSON object) and its size estimate.
pub struct Point {
    pub id: uuid::Uuid,
    pub vector: Vec<f32>,
    pub payload: serde_json::Map<String, Value>,
    /// Payload JSON length plus 4 bytes per vector element; 0 (not measured) for a
    /// store that does not bound requests.
    pub bytes: usize,
}

/// A point read back: its id as text, its payload, its score when searched.
#[derive(Debug)]
pub struct Found {
    pub id: String,
    pub payload: Value,
    pub score: Option<f32>,
}

/// One page of a scroll and where the next one starts.
pub struct Page {
    pub points: Vec<Found>,
    pub next: Option<String>,
}

/// Payload fields indexed for filters: keyword fields and integer fields.
pub struct Indexes {
    pub keywords: &'static [&'static str],
    pub integers: &'static [&'static str],
    /// Keyword fields whose value is one point's alone and makes its id (a lookup by
    /// one is a lookup by id): an embedded collection does not index them.
    pub unique: &'static [&'static str],
}

/// Matches points to the ids asked for, in order.
pub fn in_order(ids: &[uuid::Uuid], found: Vec<Found>) -> Vec<Option<Found>> {
    let mut by_id: std::collections::HashMap<String, Found> =
        found.into_iter().map(|f| (f.id.clone(), f)).collect();
    ids.iter().map(|id| by_id.remove(&id.to_string())).collect()
}

/// The fields checkpoints are filtered by.
pub const CHECKPOINT_INDEXES: Indexes = Indexes {
    keywords: &["thread_id", "checkpoint_ns", "checkpoint_id"],
    integers: &["created_at_ms"],
    unique: &["checkpoint_id"],
};

/// A scroll or search restricted to points whose payload field equals a text.
#[derive(Clone, Debug)]
pub struct FieldMatch {
    pub field: &'static str,
    pub value: String,
}

/// A collection of points.
#[async_trait]
pub trait PointStore: Send + Sync {
    /// Where it is, for messages (never with credentials).
    fn describe(&self) -> String;

    /// Its vector size, or `None` when the collection does not exist.
    async fn vector_size(&self) -> Result<Option<u64>, StoreError>;

    /// Creates the collection (cosine distance) with payload indexes; a collection
    /// created meanwhile with the same size is fine.
    async fn create(
        &self,
        dims: u64,
        indexes: &Indexes,
        embedding: &EmbeddingConfig,
    ) -> Result<(), StoreError>;

    /// The embedding the collection was made with, when the store keeps it (embedded
    /// collections do; `search` uses it).
    async fn embedding(&self) -> Result<Option<EmbeddingConfig>, StoreError> {
        Ok(None)
    }

    /// The largest point one write may carry, if the store bounds it.
    fn max_point_bytes(&self) -> Option<usize> {
        None
    }

    /// Upserts the points; when this returns they are durable and visible.
    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError>;

    /// Points per part when the store takes a batch in parts ([`PointStore::write_part`])
    /// so that only a part's payloads are built at a time; `None`: a batch is built
    /// whole and upserted at once.
    fn part_size(&self) -> Option<usize> {
        None
    }

    /// Applies a part of a batch: visible, durable only after [`PointStore::commit`]. A
    /// store may go on applying it after this returns (while the caller builds the
    /// next part); a failure is then returned by its next call.
    async fn write_part(&self, points: Vec<Point>) -> Result<(), StoreError> {
        self.upsert(points).await
    }

    /// Ends a batch written in parts. Not `overlapped`: every part written so far is
    /// durable when this returns. `overlapped`: every batch but the latest
    /// [`PointStore::unconfirmed_batches`] is, and those are made durable by later
    /// overlapped commits or [`PointStore::settle`].
    async fn commit(&self, _overlapped: bool) -> Result<(), StoreError> {
        Ok(())
    }

    /// How many of the latest overlapped batches ([`PointStore::upsert_overlapped`],
    /// or parts ended by an overlapped [`PointStore::commit`]) are not durable yet
    /// ([`crate::sinks::Sink::unconfirmed_batches`]).
    fn unconfirmed_batches(&self) -> usize {
        0
    }

    /// Upserts the points of one batch of a run; when this returns, the batch before
    /// it is durable and visible, and this one is when the next returns or after
    /// [`PointStore::settle`]. The default confirms each batch at once.
    async fn upsert_overlapped(&self, points: Vec<Point>) -> Result<(), StoreError> {
        self.upsert(points).await
    }

    /// Confirms the batch [`PointStore::upsert_overlapped`] left in flight.
    async fn settle(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The points with these ids, in the same order (`None`: not there), with payloads.
    async fn retrieve(&self, ids: &[uuid::Uuid]) -> Result<Vec<Option<Found>>, StoreError>;

    /// A page of points in id order from `offset` (inclusive), with the payload (only
    /// `fields` of it when given).
    async fn scroll(
        &self,
        offset: Option<&str>,
        limit: usize,
        only: Option<&FieldMatch>,
        fields: Option<&[&str]>,
    ) -> Result<Page, StoreError>;

    /// The `limit` points nearest to `vector`, best first, with payloads.
    async fn search(
        &self,
        vector: Vec<f32>,
        only: Option<&FieldMatch>,
        limit: usize,
    ) -> Result<Vec<Found>, StoreError>;
}
