//! langgraph-redis (RedisJSON): `checkpoint:{thread}:{ns}:{id}` documents holding the
//! whole checkpoint as JSON (`lc` envelopes, `__bytes__` markers) and the metadata as
//! a JSON string; each pending write is a `checkpoint_write:…` document (value base64
//! in `blob`), listed by the `write_keys_zset:{thread}:{ns}:{id}` zset. The empty
//! namespace is stored as `__empty__`, empty ids as the all-zero UUID, no parent as "".

use base64::Engine as _;
use serde_json::Value;

use super::{Redis, ScanWalk, thread_glob};
use crate::error::StoreError;
use crate::filters::ThreadPushdown;
use crate::record::{Checkpoint, CheckpointKey, PendingWrite, TypedValue};
use crate::sources::{BatchLimits, FailedRead, SourceBatch};

pub(super) const EMPTY_NS: &str = "__empty__";
pub(super) const EMPTY_ID: &str = "00000000-0000-0000-0000-000000000000";

pub struct JsonLayout {
    pub scan: ScanWalk,
}

impl JsonLayout {
    pub fn new(prefix: &str, pushdown: ThreadPushdown) -> Self {
        let mut pattern = prefix.as_bytes().to_vec();
        pattern.extend(thread_glob(&pushdown));
        pattern.extend(b":*");
        Self {
            scan: ScanWalk::new(pattern, format!("{prefix}*").into_bytes()),
        }
    }

    pub async fn next_batch(
        &mut self,
        redis: &mut Redis,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let Some((keys, mut batch)) = self.scan.next_page(redis, limits.max_records).await? else {
            return Ok(None);
        };
        let json_keys = redis
            .keys_of_type(keys, "ReJSON-RL", "a RedisJSON document", &mut batch)
            .await?;
        let mut pipe = redis::pipe();
        for k in &json_keys {
            pipe.cmd("JSON.GET").arg(k).arg("$");
        }
        let texts: Vec<Option<String>> = if json_keys.is_empty() {
            Vec::new()
        } else {
            redis.pipe("JSON.GET", &pipe).await?
        };
        let mut docs = Vec::new();
        for (k, text) in json_keys.into_iter().zip(texts) {
            let Some(text) = text else {
                batch.vanished += 1;
                continue;
            };
            batch.bytes += text.len();
            match parse_checkpoint(&text) {
                Ok(doc) => docs.push((k, doc)),
                Err(error) => batch.failed.push(FailedRead {
                    key: None,
                    origin: redis.origin(&k),
                    error,
                }),
            }
        }
        // Writes: the zset of each checkpoint names its write documents.
        let mut pipe = redis::pipe();
        for (_, doc) in &docs {
            pipe.cmd("ZRANGE").arg(&doc.zset_key).arg(0).arg(-1);
        }
        let write_keys: Vec<Vec<Vec<u8>>> = if docs.is_empty() {
            Vec::new()
        } else {
            redis.pipe("ZRANGE", &pipe).await?
        };
        let mut pipe = redis::pipe();
        for keys in &write_keys {
            for k in keys {
                pipe.cmd("JSON.GET").arg(k).arg("$");
            }
        }
        let any_writes = write_keys.iter().any(|k| !k.is_empty());
        let write_texts: Vec<Option<String>> = if any_writes {
            redis.pipe("JSON.GET writes", &pipe).await?
        } else {
            Vec::new()
        };
        let mut write_texts = write_texts.into_iter();
        for ((k, doc), keys) in docs.into_iter().zip(write_keys) {
            let origin = redis.origin(&k);
            let mut writes = Vec::with_capacity(keys.len());
            let mut error = None;
            for wk in keys {
                let Some(text) = write_texts.next().flatten() else {
                    // Listed but gone (expired): the write is no longer there.
                    batch.vanished += 1;
                    continue;
                };
                batch.bytes += text.len();
                match parse_write(&text) {
                    Ok(w) => writes.push(w),
                    Err(e) => {
                        error = Some(format!("write {:?}: {e}", String::from_utf8_lossy(&wk)))
                    }
                }
            }
            if let Some(error) = error {
                batch.failed.push(FailedRead {
                    key: Some(doc.key),
                    origin,
                    error,
                });
                continue;
            }
            // Kept in the zset's order (score = idx, then key): the order RedisSaver's
            // own `_load_pending_writes` returns them in.
            batch.records.push(Checkpoint {
                key: doc.key,
                parent_checkpoint_id: doc.parent,
                checkpoint: doc.checkpoint,
                channel_blobs: Vec::new(),
                metadata: doc.metadata,
                pending_writes: writes,
                origin,
                view: None,
            });
        }
        batch.records.sort_by(|a, b| a.key.cmp(&b.key));
        batch.last_key = batch.records.last().map(|r| r.key.clone());
        Ok(Some(batch))
    }
}

/// The thread of a `checkpoint:` key, for counting: the text up to the next `:`
/// (thread ids with `:` are counted under their first part).
pub fn thread_of_key(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(b"checkpoint:")?;
    let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

struct Document {
    key: CheckpointKey,
    parent: Option<String>,
    checkpoint: TypedValue,
    metadata: TypedValue,
    zset_key: String,
}

/// `JSON.GET key $` gives a one-element array around the document.
fn unwrap_document(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text).map_err(|e| format!("document is not JSON: {e}"))? {
        Value::Array(mut items) if items.len() == 1 => Ok(items.remove(0)),
        other => Ok(other),
    }
}

fn field<'a>(doc: &'a Value, name: &str) -> Result<&'a str, String> {
    doc.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("document has no string field {name:?}"))
}

fn id(stored: &str) -> String {
    if stored == EMPTY_ID {
        String::new()
    } else {
        stored.to_owned()
    }
}

fn parse_checkpoint(text: &str) -> Result<Document, String> {
    let doc = unwrap_document(text)?;
    let (thread, ns, cid) = (
        field(&doc, "thread_id")?,
        field(&doc, "checkpoint_ns")?,
        field(&doc, "checkpoint_id")?,
    );
    let checkpoint = doc
        .get("checkpoint")
        .ok_or("document has no \"checkpoint\"")?;
    // The metadata is a JSON string inside the document (an object in older versions).
    let metadata = match doc.get("metadata") {
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
        None => b"{}".to_vec(),
    };
    Ok(Document {
        key: CheckpointKey {
            thread_id: id(thread),
            checkpoint_ns: if ns == EMPTY_NS {
                String::new()
            } else {
                ns.to_owned()
            },
            checkpoint_id: id(cid),
        },
        parent: doc
            .get("parent_checkpoint_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(id),
        checkpoint: TypedValue::new("json", checkpoint.to_string()),
        metadata: TypedValue::new("json", metadata),
        zset_key: format!("write_keys_zset:{thread}:{ns}:{cid}"),
    })
}

fn parse_write(text: &str) -> Result<PendingWrite, String> {
    let doc = unwrap_document(text)?;
    let blob = field(&doc, "blob")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|e| format!("blob is not base64: {e}"))?;
    Ok(PendingWrite {
        task_id: field(&doc, "task_id")?.to_owned(),
        task_path: doc
            .get("task_path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        idx: doc
            .get("idx")
            .and_then(Value::as_i64)
            .ok_or("write has no integer idx")?,
        channel: field(&doc, "channel")?.to_owned(),
        value: TypedValue::new(field(&doc, "type")?, bytes),
    })
}
