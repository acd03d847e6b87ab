//! `RedisChatMessageHistory`: one list per session, `message_store:{session}`, each
//! item a `message_to_dict` JSON string, newest first (LPUSH): read in reverse.

use super::{Redis, ScanWalk, thread_glob};
use crate::error::StoreError;
use crate::filters::ThreadPushdown;
use crate::sources::{BatchLimits, FailedRead, SourceBatch};
use crate::stores::chat::{SessionsAs, StoredMessage, session_key, session_record};

pub struct ChatLayout {
    prefix: String,
    /// What each session becomes, under which thread id.
    pub sessions: SessionsAs,
    pub scan: ScanWalk,
}

impl ChatLayout {
    pub fn new(prefix: &str, pushdown: ThreadPushdown) -> Self {
        let mut pattern = prefix.as_bytes().to_vec();
        pattern.extend(thread_glob(&pushdown));
        Self {
            prefix: prefix.to_owned(),
            sessions: SessionsAs::default(),
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
        let lists = redis
            .keys_of_type(keys, "list", "a list of chat messages", &mut batch)
            .await?;
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
            let table = format!("redis list {}", self.prefix);
            match session_record(&table, &session, stored, origin.clone(), &self.sessions) {
                Ok(chain) => batch.records.extend(chain),
                Err(error) => batch.failed.push(FailedRead {
                    key: Some(session_key(&session)),
                    origin,
                    error,
                }),
            }
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
