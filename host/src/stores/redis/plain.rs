//! `langgraph-checkpoint-plainredis`: `{p}:cp:{thread}:{ns}:{id}` (packed msgpack of
//! `{checkpoint, metadata, parent_id}`), `{p}:blob:{thread}:{ns}:{channel}:{version}`
//! (packed values), `{p}:wr:{thread}:{ns}:{id}` hashes (`{task}:{idx}` → msgpack
//! `[task, channel, value]`), `{p}:idx:{thread}:{ns}` zsets of checkpoint ids and the
//! `{p}:threads` registry. Keys cannot be split on `:` (namespaces and channels hold
//! colons), so everything is found through the registry, in key order.

use std::collections::HashMap;

use super::{Redis, unpack};
use crate::codec::{msgpack, pickle};
use crate::error::StoreError;
use crate::filters::ThreadPushdown;
use crate::record::{ChannelBlob, Checkpoint, CheckpointKey, PendingWrite, TypedValue};
use crate::sources::{BatchLimits, FailedRead, SourceBatch, ThreadCounts};
use crate::stores::named_once::NamedOnce;

pub struct PlainLayout {
    base: String,
    pushdown: ThreadPushdown,
    /// (thread, ns) pairs, sorted; loaded on first use.
    pairs: Option<Vec<(String, String)>>,
    /// Next pair to read, and the checkpoint ids of the current pair still to read.
    next_pair: usize,
    pending_ids: Vec<String>,
    current: Option<(String, String)>,
    after: Option<CheckpointKey>,
}

/// The walk's place: next pair, ids left in the current pair, the current pair.
#[derive(Clone)]
pub struct Position(usize, Vec<String>, Option<(String, String)>);

impl PlainLayout {
    pub fn position(&self) -> Position {
        Position(
            self.next_pair,
            self.pending_ids.clone(),
            self.current.clone(),
        )
    }

    pub fn restore(&mut self, p: Position) {
        (self.next_pair, self.pending_ids, self.current) = (p.0, p.1, p.2);
    }

    pub fn new(base: &str, pushdown: ThreadPushdown) -> Self {
        Self {
            base: base.to_owned(),
            pushdown,
            pairs: None,
            next_pair: 0,
            pending_ids: Vec::new(),
            current: None,
            after: None,
        }
    }

    pub fn resume_after(&mut self, key: CheckpointKey) {
        self.after = Some(key);
        self.pairs = None;
        self.next_pair = 0;
        self.pending_ids.clear();
        self.current = None;
    }

    pub fn pushdown_summary(&self) -> String {
        match (&self.pushdown.thread_id, &self.pushdown.include_glob) {
            (None, None) if self.pushdown.exclude_globs.is_empty() => "none".into(),
            _ => format!(
                "thread filters applied to the {}:threads registry",
                self.base
            ),
        }
    }

    fn accepts(&self, thread: &str) -> bool {
        let glob = |g: &str| {
            globset::Glob::new(g)
                .map(|g| g.compile_matcher().is_match(thread))
                .unwrap_or(true)
        };
        self.pushdown
            .thread_id
            .as_deref()
            .is_none_or(|t| t == thread)
            && self.pushdown.include_glob.as_deref().is_none_or(glob)
            && !self.pushdown.exclude_globs.iter().any(|g| glob(g))
    }

    async fn load_pairs(
        &mut self,
        redis: &mut Redis,
        filtered: bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let registry = format!("{}:threads", self.base);
        let entries: Vec<(Vec<u8>, Vec<u8>)> = redis
            .cmd("HGETALL", redis::cmd("HGETALL").arg(&registry))
            .await?;
        let mut pairs = Vec::with_capacity(entries.len());
        for (field, value) in entries {
            let v: serde_json::Value = serde_json::from_slice(&value).map_err(|e| {
                StoreError::fatal(format!(
                    "Redis {}: {registry} field {:?} is not JSON: {e}",
                    redis.url,
                    String::from_utf8_lossy(&field)
                ))
            })?;
            let (Some(thread), Some(ns)) = (v["thread"].as_str(), v["ns"].as_str()) else {
                continue;
            };
            if !filtered || self.accepts(thread) {
                pairs.push((thread.to_owned(), ns.to_owned()));
            }
        }
        pairs.sort();
        Ok(pairs)
    }

    /// The next checkpoint keys in order, at most `n`.
    async fn next_keys(
        &mut self,
        redis: &mut Redis,
        n: usize,
    ) -> Result<Vec<CheckpointKey>, StoreError> {
        if self.pairs.is_none() {
            let pairs = self.load_pairs(redis, true).await?;
            self.pairs = Some(pairs);
        }
        let mut keys = Vec::new();
        while keys.len() < n {
            if self.pending_ids.is_empty() {
                let pairs = self.pairs.as_ref().expect("loaded");
                let Some((thread, ns)) = pairs.get(self.next_pair).cloned() else {
                    break;
                };
                self.next_pair += 1;
                let idx = format!("{}:idx:{thread}:{ns}", self.base);
                let mut ids: Vec<String> = redis
                    .cmd("ZRANGE", redis::cmd("ZRANGE").arg(&idx).arg(0).arg(-1))
                    .await?;
                ids.sort();
                if let Some(after) = &self.after {
                    let here = (thread.as_str(), ns.as_str());
                    let resume = (after.thread_id.as_str(), after.checkpoint_ns.as_str());
                    if here < resume {
                        continue;
                    }
                    if here == resume {
                        ids.retain(|id| *id > after.checkpoint_id);
                    }
                }
                ids.reverse();
                self.pending_ids = ids;
                self.current = Some((thread, ns));
                continue;
            }
            let (thread, ns) = self.current.clone().expect("set with the ids");
            let id = self.pending_ids.pop().expect("not empty");
            keys.push(CheckpointKey {
                thread_id: thread,
                checkpoint_ns: ns,
                checkpoint_id: id,
            });
        }
        Ok(keys)
    }

    pub async fn next_batch(
        &mut self,
        redis: &mut Redis,
        limits: BatchLimits,
    ) -> Result<Option<SourceBatch>, StoreError> {
        let keys = self.next_keys(redis, limits.max_records).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(None);
        };
        let key_bytes = |kind: &str, k: &CheckpointKey| {
            format!(
                "{}:{kind}:{}:{}:{}",
                self.base, k.thread_id, k.checkpoint_ns, k.checkpoint_id
            )
        };
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("GET").arg(key_bytes("cp", k));
        }
        let docs: Vec<Option<Vec<u8>>> = redis.pipe("GET checkpoints", &pipe).await?;
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HGETALL").arg(key_bytes("wr", k));
        }
        let writes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = redis.pipe("HGETALL writes", &pipe).await?;

        let mut batch = SourceBatch {
            last_key: Some(last.clone()),
            ..SourceBatch::default()
        };
        // Parse documents, then fetch every blob they name in one pipeline, each
        // blob once however many checkpoints name it.
        let mut parsed = Vec::with_capacity(keys.len());
        let mut named: NamedOnce<String> = NamedOnce::default();
        let mut blob_refs: Vec<Vec<(usize, String, String)>> = Vec::with_capacity(keys.len());
        for (key, doc) in keys.iter().zip(docs) {
            let cp_key = key_bytes("cp", key);
            let origin = redis.origin(cp_key.as_bytes());
            let mut refs = Vec::new();
            let Some(doc) = doc else {
                batch.vanished += 1;
                parsed.push(None);
                blob_refs.push(refs);
                continue;
            };
            batch.bytes += doc.len();
            match split_document(&doc) {
                Ok((checkpoint, metadata, parent, versions)) => {
                    for (channel, version) in versions {
                        let blob = format!(
                            "{}:blob:{}:{}:{channel}:{version}",
                            self.base, key.thread_id, key.checkpoint_ns
                        );
                        refs.push((named.name(blob), channel, version));
                    }
                    parsed.push(Some((checkpoint, metadata, parent, origin)));
                }
                Err(error) => {
                    batch.failed.push(FailedRead {
                        key: Some(key.clone()),
                        origin,
                        error,
                    });
                    parsed.push(None);
                }
            }
            blob_refs.push(refs);
        }
        let mut pipe = redis::pipe();
        for blob in named.keys() {
            pipe.cmd("GET").arg(blob);
        }
        let blob_values: Vec<Option<Vec<u8>>> = if named.keys().is_empty() {
            Vec::new()
        } else {
            redis.pipe("GET blobs", &pipe).await?
        };
        // Each blob unpacked once; a blob that cannot be is the error of every
        // checkpoint naming it.
        let mut unpacked: Vec<Option<Result<TypedValue, String>>> = named
            .keys()
            .iter()
            .zip(blob_values)
            .map(|(blob_key, value)| {
                value.map(|v| unpack(&v).map_err(|e| format!("{blob_key}: {e}")))
            })
            .collect();
        let mut blobs: HashMap<usize, Vec<ChannelBlob>> = HashMap::new();
        let mut broken: HashMap<usize, String> = HashMap::new();
        for (i, refs) in blob_refs.into_iter().enumerate() {
            for (blob, channel, version) in refs {
                // A channel version without a blob key: the channel has no value.
                match named.hand_out(&mut unpacked, blob) {
                    None => {}
                    Some(Ok(value)) => {
                        batch.bytes += value.bytes.len();
                        blobs.entry(i).or_default().push(ChannelBlob {
                            channel,
                            version,
                            value,
                        });
                    }
                    Some(Err(e)) => {
                        broken.entry(i).or_insert(e);
                    }
                }
            }
        }
        for (i, (key, (doc, fields))) in keys
            .into_iter()
            .zip(parsed.into_iter().zip(writes))
            .enumerate()
        {
            let Some((checkpoint, metadata, parent, origin)) = doc else {
                continue;
            };
            if let Some(error) = broken.remove(&i) {
                batch.failed.push(FailedRead {
                    key: Some(key),
                    origin,
                    error,
                });
                continue;
            }
            let pending_writes = match parse_writes(fields) {
                Ok(w) => w,
                Err(error) => {
                    batch.failed.push(FailedRead {
                        key: Some(key),
                        origin,
                        error,
                    });
                    continue;
                }
            };
            batch.records.push(Checkpoint {
                key,
                parent_checkpoint_id: parent,
                checkpoint,
                channel_blobs: blobs.remove(&i).unwrap_or_default(),
                metadata,
                pending_writes,
                origin,
                view: None,
            });
        }
        Ok(Some(batch))
    }

    pub async fn count_by_thread(
        &mut self,
        redis: &mut Redis,
        pushed: bool,
    ) -> Result<ThreadCounts, StoreError> {
        let pairs = self.load_pairs(redis, pushed).await?;
        let mut counts = ThreadCounts::default();
        for (thread, ns) in pairs {
            let idx = format!("{}:idx:{thread}:{ns}", self.base);
            let n: u64 = redis.cmd("ZCARD", redis::cmd("ZCARD").arg(&idx)).await?;
            *counts.per_thread.entry(thread).or_default() += n;
        }
        Ok(counts)
    }
}

type Document = (
    TypedValue,
    TypedValue,
    Option<String>,
    Vec<(String, String)>,
);

/// The packed `{checkpoint, metadata, parent_id}` document: the checkpoint and the
/// metadata as the exact msgpack slices stored, the parent, and the channel versions
/// (to find the blobs).
fn split_document(packed: &[u8]) -> Result<Document, String> {
    let value = unpack(packed)?;
    if value.type_tag != "msgpack" {
        return Err(format!(
            "checkpoint document has type {:?}, expected msgpack",
            value.type_tag
        ));
    }
    let bytes = &value.bytes;
    let entries = msgpack::map_entry_ranges(bytes, 0).map_err(|e| e.to_string())?;
    let slice = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, r)| bytes[r.clone()].to_vec())
    };
    let checkpoint = slice("checkpoint").ok_or("checkpoint document has no \"checkpoint\"")?;
    let metadata = slice("metadata").unwrap_or_else(|| vec![0x80]);
    let parent = match slice("parent_id") {
        Some(p) => match msgpack::parse(&p).map_err(|e| e.to_string())? {
            rmpv::Value::String(s) => s.into_str(),
            _ => None,
        },
        None => None,
    };
    let versions = msgpack::map_entry_ranges(&checkpoint, 0)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|(k, _)| k == "channel_versions")
        .map(|(_, r)| {
            msgpack::map_entry_ranges(&checkpoint, r.start).map(|channels| {
                channels
                    .into_iter()
                    .map(|(channel, vr)| {
                        let version = match msgpack::parse(&checkpoint[vr]) {
                            Ok(rmpv::Value::String(s)) => s.into_str().unwrap_or_default(),
                            Ok(other) => other.to_string(),
                            Err(_) => String::new(),
                        };
                        (channel, version)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    Ok((
        TypedValue::new("msgpack", checkpoint),
        TypedValue::new("msgpack", metadata),
        parent,
        versions,
    ))
}

/// `{task}:{idx}` → packed msgpack `[task, channel, value]`, sorted by (task, idx) as
/// the saver returns them. The value is the exact msgpack slice (nil and bin included).
fn parse_writes(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<PendingWrite>, String> {
    let mut out = Vec::with_capacity(fields.len());
    for (field, packed) in fields {
        let field = String::from_utf8_lossy(&field).into_owned();
        let idx = field
            .rsplit_once(':')
            .and_then(|(_, i)| i.parse::<i64>().ok())
            .ok_or_else(|| format!("write field {field:?} does not end in :idx"))?;
        let value = unpack(&packed).map_err(|e| format!("write {field:?}: {e}"))?;
        if value.type_tag == "pickle" {
            // The saver pickled the whole (task, channel, value) tuple, as it does when
            // msgpack cannot hold the value: the value's own pickle is cut out of it.
            let split = pickle::split_write_tuple(&value.bytes).map_err(|e| {
                format!(
                    "write {field:?} is stored as \"pickle\" as a whole (task, channel and value together, {} bytes), \
                     and it cannot be taken apart without running Python ({e}); the key is left as it is",
                    value.bytes.len()
                )
            })?;
            out.push(PendingWrite {
                task_id: split.task,
                task_path: String::new(),
                idx,
                channel: split.channel,
                value: TypedValue::new("pickle", split.value),
            });
            continue;
        }
        if value.type_tag != "msgpack" {
            return Err(format!(
                "write {field:?} is stored as {:?} as a whole (task, channel and value together, {} bytes): \
                 its channel cannot be read without running Python; the key is left as it is",
                value.type_tag,
                value.bytes.len()
            ));
        }
        let items = msgpack::array_item_ranges(&value.bytes)
            .map_err(|e| format!("write {field:?}: {e}"))?;
        let [task, channel, v] = items.as_slice() else {
            return Err(format!("write {field:?}: expected [task, channel, value]"));
        };
        let text = |r: &std::ops::Range<usize>| match msgpack::parse(&value.bytes[r.clone()]) {
            Ok(rmpv::Value::String(s)) => s
                .into_str()
                .ok_or_else(|| format!("write {field:?}: not UTF-8")),
            _ => Err(format!("write {field:?}: task and channel must be strings")),
        };
        out.push(PendingWrite {
            task_id: text(task)?,
            task_path: String::new(),
            idx,
            channel: text(channel)?,
            value: TypedValue::new("msgpack", value.bytes[v.clone()].to_vec()),
        });
    }
    out.sort_by(|a, b| (&a.task_id, a.idx).cmp(&(&b.task_id, b.idx)));
    Ok(out)
}
