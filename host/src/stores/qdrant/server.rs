//! A collection on a Qdrant server, over gRPC (qdrant-client).
//!
//! Upserts go out as up to `upsert_streams` concurrent `wait=false` requests under
//! `max_request_bytes`, then a confirming barrier (an exact count of the ids) holds
//! until Qdrant shows them all: what `upsert` returns is confirmed, so the resume state
//! never runs ahead of the server. A run's batches overlap: batch n + 1 is sent before
//! batch n's barrier, so the server applies one while the next is built and sent; the
//! engine records a batch only once its barrier passed.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use qdrant_client::Payload;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    Distance, FieldType, Filter, GetPointsBuilder, PayloadIncludeSelector, PointId, PointStruct,
    QueryPointsBuilder, ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder, point_id,
    vectors_config,
};

use super::config::QdrantConfig;
use super::embedding::EmbeddingConfig;
use super::points::{FieldMatch, Found, Indexes, Page, Point, PointStore};
use crate::error::StoreError;
use crate::secrets::scrub;

/// Qdrant's REST port; the seed's URLs name it, the client speaks gRPC.
const REST_PORT: u16 = 6333;
const GRPC_PORT: u16 = 6334;
const DEFAULT_STREAMS: usize = 3;
const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// How long the confirming barrier waits for Qdrant to show a batch.
const CONFIRM_WITHIN: Duration = Duration::from_secs(60);

pub struct ServerStore {
    client: qdrant_client::Qdrant,
    url: String,
    key: Option<String>,
    collection: String,
    streams: usize,
    max_request_bytes: usize,
    pipeline: bool,
    /// The ids of the batch `upsert_overlapped` left in flight.
    in_flight: tokio::sync::Mutex<Vec<PointId>>,
}

/// The gRPC URL for a configured `qdrant_url`: the REST port 6333 becomes 6334 unless
/// `grpc_port` says otherwise; any other port is taken as a gRPC port already.
pub fn grpc_url(qdrant_url: &str, grpc_port: Option<u16>) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::fatal(format!("qdrant_url {qdrant_url:?}: {why}"));
    let (scheme, rest) = qdrant_url
        .split_once("://")
        .ok_or_else(|| bad("not a URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad(
            "use http:// or https:// (or path: for an embedded collection)",
        ));
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.to_owned(),
            Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
        ),
        _ => (authority.to_owned(), None),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match (grpc_port, port) {
        (Some(p), _) => p,
        (None, Some(REST_PORT) | None) => GRPC_PORT,
        (None, Some(p)) => p,
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

/// The API key: the config's, else `$QDRANT_API_KEY`.
fn api_key(config: &QdrantConfig) -> Option<String> {
    config
        .api_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| {
            std::env::var("QDRANT_API_KEY")
                .ok()
                .filter(|k| !k.is_empty())
        })
}

fn id_text(id: &PointId) -> String {
    match &id.point_id_options {
        Some(point_id::PointIdOptions::Uuid(u)) => u.clone(),
        Some(point_id::PointIdOptions::Num(n)) => n.to_string(),
        None => String::new(),
    }
}

fn id_from_text(text: &str) -> PointId {
    match text.parse::<u64>() {
        Ok(n) => PointId::from(n),
        Err(_) => PointId::from(text.to_owned()),
    }
}

/// A point the server returned.
fn found(
    id: Option<&PointId>,
    payload: std::collections::HashMap<String, qdrant_client::qdrant::Value>,
    score: Option<f32>,
) -> Found {
    Found {
        id: id.map(id_text).unwrap_or_default(),
        payload: Payload::from(payload).into(),
        score,
    }
}

fn filter(only: Option<&FieldMatch>) -> Option<Filter> {
    only.map(|m| Filter::must([Condition::matches(m.field, m.value.clone())]))
}

impl ServerStore {
    pub fn connect(config: &QdrantConfig, qdrant_url: &str) -> Result<Self, StoreError> {
        let url = grpc_url(qdrant_url, config.grpc_port)?;
        if url != qdrant_url.trim_end_matches('/') {
            tracing::debug!("Qdrant {qdrant_url}: talking gRPC on {url}");
        }
        let key = api_key(config);
        let client = qdrant_client::Qdrant::from_url(&url)
            .api_key(key.clone())
            .timeout(Duration::from_secs(60))
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::fatal(scrub(&format!("Qdrant {url}: {e}"), key.as_deref())))?;
        Ok(Self {
            client,
            url,
            key,
            collection: config.collection().to_owned(),
            streams: config.upsert_streams.unwrap_or(DEFAULT_STREAMS).clamp(1, 8),
            max_request_bytes: config
                .max_request_bytes
                .unwrap_or(DEFAULT_MAX_REQUEST_BYTES)
                .max(1024),
            pipeline: config.pipeline.unwrap_or(true),
            in_flight: tokio::sync::Mutex::new(Vec::new()),
        })
    }

    /// A Qdrant error as a store error: unavailable, timeouts, overload and 5xx-like
    /// statuses are retriable.
    fn error(&self, what: &str, e: qdrant_client::QdrantError) -> StoreError {
        use qdrant_client::QdrantError;
        use tonic::Code;
        let retriable = match &e {
            QdrantError::ResponseError { status } => matches!(
                status.code(),
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Internal
                    | Code::Unknown
            ),
            QdrantError::ResourceExhaustedError { .. } => true,
            _ => false,
        };
        let detail = match &e {
            QdrantError::ResponseError { status } => {
                let message = status.message();
                match status.code() {
                    Code::Unauthenticated | Code::PermissionDenied => {
                        format!("authentication failed: {message}")
                    }
                    Code::Unavailable => format!("unavailable: {message}"),
                    code => format!("{code:?}: {message}"),
                }
            }
            other => other.to_string(),
        };
        StoreError {
            message: scrub(
                &format!("Qdrant {}: {what}: {detail}", self.url),
                self.key.as_deref(),
            ),
            retriable,
        }
    }

    /// Sends the points (`wait=false` on up to `upsert_streams` requests at once when
    /// pipelining, else `wait=true` one at a time); the ids sent, once each.
    async fn send(&self, points: Vec<Point>) -> Result<Vec<PointId>, StoreError> {
        let mut requests: Vec<Vec<PointStruct>> = vec![Vec::new()];
        let mut request_bytes = 0usize;
        let mut ids: Vec<PointId> = Vec::new();
        let mut seen = HashSet::new();
        for point in points {
            let id = point.id.to_string();
            if request_bytes + point.bytes > self.max_request_bytes {
                requests.push(Vec::new());
                request_bytes = 0;
            }
            request_bytes += point.bytes;
            if seen.insert(id.clone()) {
                ids.push(PointId::from(id.clone()));
            }
            let payload = Payload::from(point.payload);
            requests
                .last_mut()
                .expect("one request at least")
                .push(PointStruct::new(id, point.vector, payload));
        }
        let wait = !self.pipeline;
        let streams = if self.pipeline { self.streams } else { 1 };
        let results: Vec<_> =
            futures_util::stream::iter(requests.into_iter().filter(|r| !r.is_empty()))
                .map(|points| async move {
                    self.client
                        .upsert_points(
                            UpsertPointsBuilder::new(self.collection.clone(), points).wait(wait),
                        )
                        .await
                })
                .buffer_unordered(streams)
                .collect()
                .await;
        for r in results {
            r.map_err(|e| self.error("upserting points", e))?;
        }
        Ok(ids)
    }

    /// Waits until Qdrant reports all `ids`: the barrier after `wait=false` upserts.
    async fn confirm(&self, ids: &[PointId]) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            let count = self
                .client
                .count(
                    CountPointsBuilder::new(&self.collection)
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
impl PointStore for ServerStore {
    fn describe(&self) -> String {
        format!("Qdrant {} collection {:?}", self.url, self.collection)
    }

    async fn vector_size(&self) -> Result<Option<u64>, StoreError> {
        let exists = self
            .client
            .collection_exists(&self.collection)
            .await
            .map_err(|e| self.error("checking the collection", e))?;
        if !exists {
            return Ok(None);
        }
        let info = self
            .client
            .collection_info(&self.collection)
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

    async fn create(
        &self,
        dims: u64,
        indexes: &Indexes,
        _embedding: &EmbeddingConfig,
    ) -> Result<(), StoreError> {
        let name = &self.collection;
        let created = self
            .client
            .create_collection(
                CreateCollectionBuilder::new(name)
                    .vectors_config(VectorParamsBuilder::new(dims, Distance::Cosine)),
            )
            .await;
        match created {
            Ok(_) => {
                tracing::info!("Qdrant: created collection {name:?} ({dims} dimensions, cosine)")
            }
            // A concurrent run (another shard) created it first: fine when it has our
            // vector size.
            Err(e) if self.vector_size().await? == Some(dims) => {
                tracing::debug!("Qdrant: collection {name:?} was created meanwhile ({e})");
            }
            Err(e) => return Err(self.error("creating the collection", e)),
        }
        let fields = indexes
            .keywords
            .iter()
            .map(|f| (*f, FieldType::Keyword))
            .chain(indexes.integers.iter().map(|f| (*f, FieldType::Integer)));
        for (field, kind) in fields {
            self.client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(name, field, kind).wait(true),
                )
                .await
                .map_err(|e| self.error(&format!("indexing {field}"), e))?;
        }
        Ok(())
    }

    fn max_point_bytes(&self) -> Option<usize> {
        Some(self.max_request_bytes)
    }

    async fn upsert(&self, points: Vec<Point>) -> Result<(), StoreError> {
        let ids = self.send(points).await?;
        if !ids.is_empty() && self.pipeline {
            self.confirm(&ids).await?;
        }
        Ok(())
    }

    fn unconfirmed_batches(&self) -> usize {
        usize::from(self.pipeline)
    }

    async fn upsert_overlapped(&self, points: Vec<Point>) -> Result<(), StoreError> {
        if !self.pipeline {
            return self.upsert(points).await;
        }
        let ids = self.send(points).await?;
        let mut in_flight = self.in_flight.lock().await;
        // The batch before this one; kept until its barrier passes, so a retry of
        // this batch confirms it again.
        if !in_flight.is_empty() {
            self.confirm(&in_flight).await?;
        }
        *in_flight = ids;
        Ok(())
    }

    async fn settle(&self) -> Result<(), StoreError> {
        let mut in_flight = self.in_flight.lock().await;
        if !in_flight.is_empty() {
            self.confirm(&in_flight).await?;
            in_flight.clear();
        }
        Ok(())
    }

    async fn retrieve(&self, ids: &[uuid::Uuid]) -> Result<Vec<Option<Found>>, StoreError> {
        let request = GetPointsBuilder::new(
            &self.collection,
            ids.iter()
                .map(|id| PointId::from(id.to_string()))
                .collect::<Vec<_>>(),
        )
        .with_payload(true);
        let response = self
            .client
            .get_points(request)
            .await
            .map_err(|e| self.error("reading points", e))?;
        let found = response
            .result
            .into_iter()
            .map(|p| found(p.id.as_ref(), p.payload, None))
            .collect();
        Ok(super::points::in_order(ids, found))
    }

    async fn scroll(
        &self,
        offset: Option<&str>,
        limit: usize,
        only: Option<&FieldMatch>,
        fields: Option<&[&str]>,
    ) -> Result<Page, StoreError> {
        let mut request = ScrollPointsBuilder::new(&self.collection)
            .limit(u32::try_from(limit).unwrap_or(u32::MAX));
        request = match fields {
            Some(f) => request.with_payload(PayloadIncludeSelector::from(
                f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )),
            None => request.with_payload(true),
        };
        if let Some(offset) = offset {
            request = request.offset(id_from_text(offset));
        }
        if let Some(f) = filter(only) {
            request = request.filter(f);
        }
        let response = self
            .client
            .scroll(request)
            .await
            .map_err(|e| self.error("scrolling", e))?;
        Ok(Page {
            points: response
                .result
                .into_iter()
                .map(|p| found(p.id.as_ref(), p.payload, None))
                .collect(),
            next: response.next_page_offset.as_ref().map(id_text),
        })
    }

    async fn search(
        &self,
        vector: Vec<f32>,
        only: Option<&FieldMatch>,
        limit: usize,
    ) -> Result<Vec<Found>, StoreError> {
        let mut request = QueryPointsBuilder::new(&self.collection)
            .query(vector)
            .limit(limit as u64)
            .with_payload(true);
        if let Some(f) = filter(only) {
            request = request.filter(f);
        }
        let response = self
            .client
            .query(request)
            .await
            .map_err(|e| self.error("searching", e))?;
        Ok(response
            .result
            .into_iter()
            .map(|p| found(p.id.as_ref(), p.payload, Some(p.score)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_urls_talk_grpc() {
        assert_eq!(
            grpc_url("http://localhost:6333", None).unwrap(),
            "http://localhost:6334"
        );
        assert_eq!(
            grpc_url("http://localhost", None).unwrap(),
            "http://localhost:6334"
        );
        assert_eq!(
            grpc_url("https://q.example:7000/", None).unwrap(),
            "https://q.example:7000"
        );
        assert_eq!(
            grpc_url("http://localhost:6333", Some(16334)).unwrap(),
            "http://localhost:16334"
        );
        assert!(grpc_url("localhost:6333", None).is_err());
    }
}
