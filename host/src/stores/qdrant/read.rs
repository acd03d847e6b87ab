//! Unified Memory source: scrolls a Qdrant collection with payloads, paging by
//! `next_page_offset` (the position a resumed run continues from). Our own payloads
//! carry the raw values (lossless); the original system's are read from their
//! base64 JSON. A thread id filter is pushed down as a payload filter.

use async_trait::async_trait;
use qdrant_client::qdrant::{Condition, Filter, PointId, ScrollPointsBuilder, point_id};
use serde_json::Value;

use super::config::QdrantConfig;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{CheckpointKey, Origin};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, FailedRead, Source, SourceBatch, ThreadCounts};

pub struct QdrantSource {
    config: QdrantConfig,
    client: qdrant_client::Qdrant,
    url: String,
    key: Option<String>,
    pushdown: ThreadPushdown,
    offset: Option<PointId>,
    done: bool,
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

impl QdrantSource {
    pub async fn open(config: &QdrantConfig, filters: &Filters) -> Result<Self, StoreError> {
        let (client, url) = super::connect(config)?;
        let key = super::api_key(config);
        let exists = client
            .collection_exists(&config.collection)
            .await
            .map_err(|e| {
                let mut e = super::error(&url, "connecting", e, key.as_deref());
                e.retriable = false;
                e
            })?;
        if !exists {
            return Err(StoreError::fatal(format!(
                "Qdrant {url}: collection {:?} does not exist",
                config.collection
            )));
        }
        Ok(Self {
            config: config.clone(),
            client,
            url,
            key,
            pushdown: filters.thread_pushdown(),
            offset: None,
            done: false,
        })
    }

    fn filter(&self) -> Option<Filter> {
        let mut must = Vec::new();
        if let Some(t) = &self.pushdown.thread_id {
            must.push(Condition::matches("thread_id", t.clone()));
        }
        (!must.is_empty()).then(|| Filter::must(must))
    }

    fn error(&self, what: &str, e: qdrant_client::QdrantError) -> StoreError {
        super::error(&self.url, what, e, self.key.as_deref())
    }
}

#[async_trait]
impl Source for QdrantSource {
    fn describe(&self) -> String {
        format!(
            "Qdrant {} collection {:?}",
            self.url, self.config.collection
        )
    }

    fn resume_after(&mut self, _key: CheckpointKey) {}

    fn resume_from(&mut self, position: &Value) -> Result<(), StoreError> {
        match position.get("next_point").and_then(Value::as_str) {
            Some(id) => {
                self.offset = Some(id_from_text(id));
                self.done = false;
            }
            None => {
                self.done = position
                    .get("done")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            }
        }
        Ok(())
    }

    fn pushdown_summary(&self) -> String {
        match &self.pushdown.thread_id {
            Some(t) => format!("Qdrant filter thread_id = {t:?}"),
            None => "none".into(),
        }
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let limit = u32::try_from(limits.max_records).unwrap_or(u32::MAX);
        let mut request = ScrollPointsBuilder::new(&self.config.collection)
            .limit(limit)
            .with_payload(true);
        if let Some(offset) = &self.offset {
            request = request.offset(offset.clone());
        }
        if let Some(filter) = self.filter() {
            request = request.filter(filter);
        }
        let response = self
            .client
            .scroll(request)
            .await
            .map_err(|e| self.error("scrolling", e))?;
        let mut batch = SourceBatch::default();
        for point in response.result {
            let id = point.id.as_ref().map(id_text).unwrap_or_default();
            let payload: Value = qdrant_client::Payload::from(point.payload).into();
            let locator = format!(
                "{} collection {:?} point {id}",
                self.url, self.config.collection
            );
            batch.bytes += payload.to_string().len();
            match super::record_from_payload(&id, &payload, locator.clone()) {
                Ok(record) => batch.records.push(record),
                Err(error) => batch.failed.push(FailedRead {
                    key: None,
                    origin: Origin {
                        store: "unified".into(),
                        locator,
                    },
                    error,
                }),
            }
        }
        self.offset = response.next_page_offset;
        self.done = self.offset.is_none();
        batch.position = Some(match &self.offset {
            Some(id) => serde_json::json!({ "next_point": id_text(id) }),
            None => serde_json::json!({ "done": true }),
        });
        batch.last_key = batch.records.last().map(|r| r.key.clone());
        if batch.records.is_empty() && batch.failed.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    async fn count_by_thread(&mut self, pushed: bool) -> Result<ThreadCounts, StoreError> {
        // Points per thread need the payloads: scroll the thread ids only.
        let mut counts = ThreadCounts::default();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.config.collection)
                .limit(1000)
                .with_payload(qdrant_client::qdrant::PayloadIncludeSelector::from(vec![
                    "thread_id".to_owned(),
                ]));
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            if pushed && let Some(f) = self.filter() {
                request = request.filter(f);
            }
            let response = self
                .client
                .scroll(request)
                .await
                .map_err(|e| self.error("counting", e))?;
            for point in response.result {
                let payload: Value = qdrant_client::Payload::from(point.payload).into();
                let thread = payload["thread_id"].as_str().unwrap_or_default().to_owned();
                *counts.per_thread.entry(thread).or_default() += 1;
            }
            match response.next_page_offset {
                Some(o) => offset = Some(o),
                None => break,
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl OpenSource for QdrantConfig {
    async fn open_source(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        Ok(Box::new(QdrantSource::open(self, filters).await?))
    }
}
