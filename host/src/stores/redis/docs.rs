//! LangGraph's docs example (the "custom checkpointer" how-to): hashes
//! `checkpoint${thread}${ns}${id}` with fields `checkpoint`, `type`, `metadata`,
//! `parent_checkpoint_id`, and `writes${thread}${ns}${id}${task}${idx}` hashes with
//! `channel`, `type`, `value`. Ids must not contain `$` (the example's own rule).
//! Write keys are listed once with a SCAN of `writes$*` (kept in memory as key names
//! only), since the layout has no registry.

use std::collections::HashMap;

use super::{Redis, ScanWalk, thread_glob};
use crate::error::StoreError;
use crate::filters::ThreadPushdown;
use crate::record::{Checkpoint, CheckpointKey, PendingWrite, TypedValue};
use crate::sources::{BatchLimits, FailedRead, SourceBatch};

/// A write key's task id, index and the key itself.
type WriteKey = (String, i64, Vec<u8>);

pub struct DocsLayout {
    pub scan: ScanWalk,
    /// Write keys by checkpoint key, (task, idx) and key; built on first use.
    writes: Option<HashMap<CheckpointKey, Vec<WriteKey>>>,
}

impl DocsLayout {
    pub fn new(pushdown: ThreadPushdown) -> Self {
        let mut pattern = b"checkpoint$".to_vec();
        pattern.extend(thread_glob(&pushdown));
        pattern.extend(b"$*");
        Self {
            scan: ScanWalk::new(pattern, b"checkpoint$*".to_vec()),
            writes: None,
        }
    }

    async fn load_writes(&mut self, redis: &mut Redis) -> Result<(), StoreError> {
        let mut map: HashMap<CheckpointKey, Vec<WriteKey>> = HashMap::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = redis.scan(cursor, b"writes$*").await?;
            for key in keys {
                let text = String::from_utf8_lossy(&key).into_owned();
                let parts: Vec<&str> = text.split('$').collect();
                if let ["writes", thread, ns, cid, task, idx] = parts.as_slice() {
                    let idx = idx.parse().unwrap_or(0);
                    map.entry(CheckpointKey {
                        thread_id: (*thread).to_owned(),
                        checkpoint_ns: (*ns).to_owned(),
                        checkpoint_id: (*cid).to_owned(),
                    })
                    .or_default()
                    .push(((*task).to_owned(), idx, key.clone()));
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        for writes in map.values_mut() {
            writes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        }
        self.writes = Some(map);
        Ok(())
    }

    pub async fn next_batch(
        &mut self,
        redis: &mut Redis,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        if self.writes.is_none() {
            self.load_writes(redis).await?;
        }
        let Some((keys, mut batch)) = self.scan.next_page(redis, limits.max_records).await? else {
            return Ok(None);
        };
        let mut parsed = Vec::new();
        for k in keys {
            let text = String::from_utf8_lossy(&k).into_owned();
            match text.split('$').collect::<Vec<_>>().as_slice() {
                ["checkpoint", thread, ns, cid] => parsed.push((
                    k.clone(),
                    CheckpointKey {
                        thread_id: (*thread).to_owned(),
                        checkpoint_ns: (*ns).to_owned(),
                        checkpoint_id: (*cid).to_owned(),
                    },
                )),
                _ => batch.failed.push(FailedRead {
                    key: None,
                    origin: redis.origin(&k),
                    error: "key is not checkpoint$thread$ns$id (an id holds `$`?)".into(),
                }),
            }
        }
        let writes_of = self.writes.as_ref().expect("loaded");
        let mut pipe = redis::pipe();
        for (k, key) in &parsed {
            pipe.cmd("HGETALL").arg(k);
            for (_, _, wk) in writes_of.get(key).into_iter().flatten() {
                pipe.cmd("HGETALL").arg(wk);
            }
        }
        let hashes: Vec<HashMap<String, Vec<u8>>> = if parsed.is_empty() {
            Vec::new()
        } else {
            redis.pipe("HGETALL", &pipe).await?
        };
        let mut hashes = hashes.into_iter();
        for (k, key) in parsed {
            let origin = redis.origin(&k);
            let fields = hashes.next().unwrap_or_default();
            let writes: Vec<_> = writes_of.get(&key).cloned().unwrap_or_default();
            let write_fields: Vec<_> = writes
                .iter()
                .map(|_| hashes.next().unwrap_or_default())
                .collect();
            if fields.is_empty() {
                batch.vanished += 1;
                continue;
            }
            let text = |f: &HashMap<String, Vec<u8>>, name: &str| {
                f.get(name).map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let Some(document) = fields.get("checkpoint").cloned() else {
                batch.failed.push(FailedRead {
                    key: Some(key),
                    origin,
                    error: "hash has no checkpoint field".into(),
                });
                continue;
            };
            batch.bytes += document.len();
            let mut pending_writes = Vec::new();
            for ((task, idx, _), f) in writes.into_iter().zip(write_fields) {
                if f.is_empty() {
                    batch.vanished += 1;
                    continue;
                }
                pending_writes.push(PendingWrite {
                    task_id: task,
                    task_path: String::new(),
                    idx,
                    channel: text(&f, "channel").unwrap_or_default(),
                    value: TypedValue::new(
                        text(&f, "type").unwrap_or_default(),
                        f.get("value").cloned().unwrap_or_default(),
                    ),
                });
            }
            batch.records.push(Checkpoint {
                parent_checkpoint_id: text(&fields, "parent_checkpoint_id")
                    .filter(|p| !p.is_empty()),
                checkpoint: TypedValue::new(text(&fields, "type").unwrap_or_default(), document),
                channel_blobs: Vec::new(),
                metadata: TypedValue::new(
                    "json",
                    fields
                        .get("metadata")
                        .cloned()
                        .unwrap_or_else(|| b"{}".to_vec()),
                ),
                pending_writes,
                origin,
                view: None,
                key,
            });
        }
        batch.records.sort_by(|a, b| a.key.cmp(&b.key));
        batch.last_key = batch.records.last().map(|r| r.key.clone());
        Ok(Some(batch))
    }
}

pub fn thread_of_key(key: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(key);
    text.split('$').nth(1).map(str::to_owned)
}
