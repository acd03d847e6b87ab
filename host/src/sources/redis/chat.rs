//! `RedisChatMessageHistory`: one list per session, `message_store:{session}`, each
//! item a `message_to_dict` JSON string, newest first (LPUSH): read in reverse.

use super::{Redis, ScanWalk, escape_glob};
use crate::error::StoreError;
use crate::filters::ThreadPushdown;
use crate::sources::chat::{StoredMessage, session_record};
use crate::sources::{BatchLimits, FailedRead, SourceBatch};

pub struct ChatLayout {
    prefix: String,
    pub scan: ScanWalk,
}

impl ChatLayout {
    pub fn new(prefix: &str, pushdown: ThreadPushdown) -> Self {
        let mut pattern = prefix.as_bytes().to_vec();
        match (&pushdown.thread_id, &pushdown.include_glob) {
            (Some(t), _) => pattern.extend(escape_glob(t.as_bytes())),
            (None, Some(g)) => pattern.extend(g.as_bytes()),
            (None, None) => pattern.push(b'*'),
        }
        Self {
            prefix: prefix.to_owned(),
            scan: ScanWalk::new(pattern, format!("{prefix}*").into_bytes()),
        }
    }

    pub async fn next_batch(
        &mut self,
        redis: &mut Redis,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let Some(keys) = self.scan.next_keys(redis, limits.max_records).await? else {
            return Ok(None);
        };
        let mut batch = SourceBatch {
            position: Some(self.scan.position()),
            ..SourceBatch::default()
        };
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = redis.pipe("TYPE", &pipe).await?;
        let lists: Vec<Vec<u8>> = keys
            .into_iter()
            .zip(types)
            .filter_map(|(k, t)| match t.as_str() {
                "list" => Some(k),
                "none" => {
                    batch.vanished += 1;
                    None
                }
                other => {
                    batch.failed.push(FailedRead {
                        key: None,
                        origin: redis.origin(&k),
                        error: format!("key has type {other}, expected a list of chat messages"),
                    });
                    None
                }
            })
            .collect();
        let mut pipe = redis::pipe();
        for k in &lists {
            pipe.cmd("LRANGE").arg(k).arg(0).arg(-1);
        }
        let items: Vec<Vec<Vec<u8>>> = if lists.is_empty() {
            Vec::new()
        } else {
            redis.pipe("LRANGE", &pipe).await?
        };
        for (key, mut messages) in lists.into_iter().zip(items) {
            let origin = redis.origin(&key);
            let session = String::from_utf8_lossy(&key[self.prefix.len()..]).into_owned();
            if messages.is_empty() {
                batch.vanished += 1;
                continue;
            }
            messages.reverse();
            let mut stored: Vec<StoredMessage> = Vec::with_capacity(messages.len());
            let mut error = None;
            for (i, m) in messages.into_iter().enumerate() {
                batch.bytes += m.len();
                match String::from_utf8(m) {
                    Ok(text) => stored.push((i as i64, text, None)),
                    Err(_) => error = Some(format!("message {i} is not UTF-8 text")),
                }
            }
            if let Some(error) = error {
                batch.failed.push(FailedRead {
                    key: None,
                    origin,
                    error,
                });
                continue;
            }
            batch.records.push(session_record(
                &format!("redis list {}", self.prefix),
                &session,
                stored,
                origin,
            ));
        }
        batch.records.sort_by(|a, b| a.key.cmp(&b.key));
        batch.last_key = batch.records.last().map(|r| r.key.clone());
        Ok(Some(batch))
    }
}

pub fn thread_of_key(key: &[u8]) -> Option<String> {
    let at = key.iter().rposition(|&b| b == b':')?;
    Some(String::from_utf8_lossy(&key[at + 1..]).into_owned())
}
