//! Unified Memory source: scrolls a collection (server or embedded) with payloads,
//! paging by the next point id (the position a resumed run continues from). Our own
//! payloads carry the raw values (lossless); the original system's are read from their
//! base64 JSON. A thread id filter is pushed down as a payload filter.

use async_trait::async_trait;
use serde_json::Value;

use super::config::QdrantConfig;
use super::points::{FieldMatch, PointStore};
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{CheckpointKey, Origin};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, FailedRead, Source, SourceBatch, ThreadCounts};

pub struct QdrantSource {
    store: Box<dyn PointStore>,
    pushdown: ThreadPushdown,
    offset: Option<String>,
    done: bool,
}

impl QdrantSource {
    pub async fn open(config: &QdrantConfig, filters: &Filters) -> Result<Self, StoreError> {
        let store = super::open_store(config)?;
        let exists = store.vector_size().await.map_err(|mut e| {
            e.retriable = false;
            e
        })?;
        if exists.is_none() {
            return Err(StoreError::fatal(format!(
                "{}: the collection does not exist",
                store.describe()
            )));
        }
        Ok(Self {
            store,
            pushdown: filters.thread_pushdown(),
            offset: None,
            done: false,
        })
    }

    fn only(&self) -> Option<FieldMatch> {
        self.pushdown.thread_id.as_ref().map(|t| FieldMatch {
            field: "thread_id",
            value: t.clone(),
        })
    }
}

#[async_trait]
impl Source for QdrantSource {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn resume_after(&mut self, _key: CheckpointKey) {}

    fn resume_from(&mut self, position: &Value) -> Result<(), StoreError> {
        match position.get("next_point").and_then(Value::as_str) {
            Some(id) => {
                self.offset = Some(id.to_owned());
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
        let only = self.only();
        let page = self
            .store
            .scroll(
                self.offset.as_deref(),
                limits.max_records,
                only.as_ref(),
                None,
            )
            .await?;
        let mut batch = SourceBatch::default();
        let place = self.store.describe();
        for point in page.points {
            let locator = format!("{place} point {}", point.id);
            batch.bytes += super::json_len(&point.payload);
            match super::record_from_payload(&point.id, &point.payload, locator.clone()) {
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
        self.offset = page.next;
        self.done = self.offset.is_none();
        batch.position = Some(match &self.offset {
            Some(id) => serde_json::json!({ "next_point": id }),
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
        let mut offset: Option<String> = None;
        let only = if pushed { self.only() } else { None };
        loop {
            let page = self
                .store
                .scroll(offset.as_deref(), 1000, only.as_ref(), Some(&["thread_id"]))
                .await?;
            for point in page.points {
                let thread = point.payload["thread_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                *counts.per_thread.entry(thread).or_default() += 1;
            }
            match page.next {
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
