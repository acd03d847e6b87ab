//! Redis destination in langgraph-redis's layout (`RedisSaver` of
//! langgraph-checkpoint-redis 0.5), so that `RedisSaver.list()`, `get_tuple()` and a
//! graph's `get_state_history()` work on the result:
//!
//! - `{prefix}:{thread}:{ns}:{id}`: the checkpoint document (RedisJSON), channel values
//!   inline in RedisSaver's JSON form ([`JsonFormWriter`]), metadata as a JSON string;
//! - `{prefix}_write:{thread}:{ns}:{id}:{task}:{idx}`: one document per pending write,
//!   its `(type, bytes)` as stored (RedisSaver's serializer reads every type LangGraph
//!   writes, msgpack included), listed by `write_keys_zset:{thread}:{ns}:{id}`;
//! - `{prefix}_latest:{thread}:{ns}`: the newest checkpoint's key;
//! - the two RediSearch indexes RedisSaver's `setup()` creates, when missing.
//!
//! The empty namespace is stored as `__empty__`, an empty id as the all-zero UUID, as
//! RedisSaver does. Each batch goes in one `MULTI`/`EXEC`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::Value;

use super::Redis;
use super::config::RedisSinkConfig;
use super::config::RedisSourceConfig;
use super::json::{EMPTY_ID, EMPTY_NS};
use crate::codec::msgpack;
use crate::codec::redis_form::JsonFormWriter;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::Filters;
use crate::json_text;
use crate::record::{Checkpoint, CheckpointKey, TypedValue};
use crate::retry::RetryPolicy;
use crate::run::RunInfo;
use crate::run::RunStats;
use crate::sinks::Comparison;
use crate::sinks::OpenSink;
use crate::sinks::in_flight::{self, InFlight, Sent};
use crate::sinks::{Rejected, Sink};
use crate::sources::Source;
use crate::stores::layout::{self, LayoutError};
use crate::stores::{OnConflict, WriteCounts};

/// Key names of one (prefix) layout, as RedisSaver builds them.
#[derive(Debug, Clone)]
struct Keys {
    /// `checkpoint` (RedisSaver's `checkpoint_prefix`).
    prefix: String,
}

impl Keys {
    fn new(key_prefix: &str) -> Self {
        Self {
            prefix: key_prefix.trim_end_matches(':').to_owned(),
        }
    }

    fn write_prefix(&self) -> String {
        format!("{}_write", self.prefix)
    }

    fn checkpoint(&self, k: &CheckpointKey) -> String {
        format!(
            "{}:{}:{}:{}",
            self.prefix,
            safe_id(&k.thread_id),
            safe_ns(&k.checkpoint_ns),
            safe_id(&k.checkpoint_id)
        )
    }

    fn write(&self, k: &CheckpointKey, task_id: &str, idx: i64) -> String {
        format!(
            "{}:{}:{}:{}:{task_id}:{idx}",
            self.write_prefix(),
            safe_id(&k.thread_id),
            safe_ns(&k.checkpoint_ns),
            safe_id(&k.checkpoint_id)
        )
    }

    fn latest(&self, k: &CheckpointKey) -> String {
        format!(
            "{}_latest:{}:{}",
            self.prefix,
            safe_id(&k.thread_id),
            safe_ns(&k.checkpoint_ns)
        )
    }

    fn write_zset(k: &CheckpointKey) -> String {
        format!(
            "write_keys_zset:{}:{}:{}",
            safe_id(&k.thread_id),
            safe_ns(&k.checkpoint_ns),
            safe_id(&k.checkpoint_id)
        )
    }
}

fn safe_id(id: &str) -> &str {
    if id.is_empty() { EMPTY_ID } else { id }
}

fn safe_ns(ns: &str) -> &str {
    if ns.is_empty() { EMPTY_NS } else { ns }
}

/// One checkpoint as RedisSaver stores it.
pub struct RedisDocuments {
    /// The checkpoint document's compact JSON text, as it is sent.
    checkpoint: String,
    /// Where its `checkpoint` field's text is in it.
    checkpoint_field: Range<usize>,
    /// Its `metadata` field: JSON text, stored as a string.
    metadata: String,
    /// `(key, document)` of each pending write, with its score in the write-key zset.
    writes: Vec<(String, Value, i64)>,
}

impl RedisDocuments {
    /// The record as RedisSaver's reader (and our Redis source) sees these documents.
    pub fn as_record(&self, record: &Checkpoint) -> Checkpoint {
        let mut out = record.clone();
        out.checkpoint = TypedValue::new(
            "json",
            self.checkpoint[self.checkpoint_field.clone()].to_owned(),
        );
        out.channel_blobs = Vec::new();
        out.metadata = TypedValue::new("json", self.metadata.as_str());
        out.view = None;
        out
    }
}

/// The documents for one record, or why RedisSaver's layout cannot hold it exactly.
///
/// The checkpoint document is written as text, field by field, in the order
/// RedisSaver's `put()` gives them: no tree of the document is made, and a channel
/// value is written straight from its msgpack when it can be
/// ([`JsonFormWriter::write_channel_value`]).
pub fn documents(
    record: &Checkpoint,
    writer: &mut JsonFormWriter,
    keys_prefix: &str,
) -> Result<RedisDocuments, LayoutError> {
    let keys = Keys::new(keys_prefix);
    let key = &record.key;
    let checkpoint = CheckpointSource::of(record)?;
    let metadata_text = String::from_utf8(layout::metadata_json(record)?.into_owned())
        .map_err(|_| LayoutError("metadata is not UTF-8 text".into()))?;
    if metadata_text.contains("\\u0000") && !writer.allow_lossy {
        return Err(LayoutError(
            "metadata holds U+0000, which RedisSaver removes from its JSON".into(),
        ));
    }
    let metadata_text = metadata_text.replace("\\u0000", "");
    let metadata: Value = serde_json::from_str(&metadata_text).unwrap_or(Value::Null);
    let run_id = metadata
        .get("run_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut doc =
        ObjectText::with_capacity(record.checkpoint.bytes.len() * 2 + metadata_text.len() + 512);
    doc.string("thread_id", safe_id(&key.thread_id));
    doc.string(
        "run_id",
        if run_id.is_empty() {
            ""
        } else {
            safe_id(run_id)
        },
    );
    doc.string("checkpoint_ns", safe_ns(&key.checkpoint_ns));
    doc.string("checkpoint_id", safe_id(&key.checkpoint_id));
    doc.string(
        "parent_checkpoint_id",
        record.parent_checkpoint_id.as_deref().map_or("", safe_id),
    );
    doc.value("checkpoint_ts", &checkpoint_ts(checkpoint.ts()?.as_deref()));
    doc.key("checkpoint");
    let field_start = doc.text.len();
    checkpoint.write(writer, &mut doc.text)?;
    let checkpoint_field = field_start..doc.text.len();
    doc.string("metadata", &metadata_text);
    doc.value(
        "has_writes",
        &Value::Bool(!record.pending_writes.is_empty()),
    );
    if let (Some(source), Some(step)) = (metadata.get("source"), metadata.get("step")) {
        doc.value("source", source);
        doc.value("step", step);
    }
    // Scores number each task's writes from 0, as RedisSaver's put_writes() does.
    let mut per_task: BTreeMap<&str, i64> = BTreeMap::new();
    let writes = record
        .pending_writes
        .iter()
        .map(|w| {
            let score = per_task.entry(&w.task_id).or_default();
            let doc = serde_json::json!({
                "thread_id": safe_id(&key.thread_id),
                "checkpoint_ns": safe_ns(&key.checkpoint_ns),
                "checkpoint_id": safe_id(&key.checkpoint_id),
                "task_id": w.task_id,
                "task_path": w.task_path,
                "idx": w.idx,
                "channel": w.channel,
                "type": w.value.type_tag,
                "blob": base64::engine::general_purpose::STANDARD.encode(&w.value.bytes),
            });
            let entry = (keys.write(key, &w.task_id, w.idx), doc, *score);
            *score += 1;
            entry
        })
        .collect();
    Ok(RedisDocuments {
        checkpoint: doc.finish(),
        checkpoint_field,
        metadata: metadata_text,
        writes,
    })
}

/// A JSON object's compact text, written field by field.
struct ObjectText {
    text: Vec<u8>,
}

impl ObjectText {
    fn with_capacity(capacity: usize) -> Self {
        let mut text = Vec::with_capacity(capacity);
        text.push(b'{');
        Self { text }
    }

    /// The next field's name: its value is written next.
    fn key(&mut self, name: &str) {
        if self.text.len() > 1 {
            self.text.push(b',');
        }
        json_text::write_str(&mut self.text, name);
        self.text.push(b':');
    }

    fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        json_text::write_str(&mut self.text, value);
    }

    fn value(&mut self, name: &str, value: &Value) {
        self.key(name);
        json_text::write_value(&mut self.text, value);
    }

    fn finish(mut self) -> String {
        self.text.push(b'}');
        // Made of `&str`s escaped as JSON and of JSON text: UTF-8.
        String::from_utf8(self.text).expect("JSON text is UTF-8")
    }
}

/// The checkpoint a record holds, for RedisSaver's `checkpoint` field.
enum CheckpointSource<'r> {
    /// A langgraph-redis record: its `checkpoint` document as it is.
    Document(Value),
    /// LangGraph's msgpack of the whole checkpoint, with RedisSaver's fields of it.
    Msgpack {
        whole: Cow<'r, TypedValue>,
        /// `{"type": …, **checkpoint, "pending_sends": []}` as a map keeps them: a key
        /// given twice keeps its first place and its last value, `type` first,
        /// `pending_sends` last unless it was there; `None` for the two set here.
        fields: Fields,
    },
}

impl<'r> CheckpointSource<'r> {
    fn of(record: &'r Checkpoint) -> Result<Self, LayoutError> {
        if let Some(doc) = layout::langgraph_redis_document(record) {
            return Ok(Self::Document(Value::Object(doc)));
        }
        let whole = layout::whole(record)?;
        if whole.type_tag != "msgpack" {
            return Err(LayoutError(format!(
                "the checkpoint is stored as {:?}: RedisSaver's JSON document cannot hold it",
                whole.type_tag
            )));
        }
        let mut fields: Fields = vec![("type".into(), None)];
        for (key, range) in msgpack::map_entry_ranges(&whole.bytes, 0)? {
            set_field(&mut fields, key, Some(range));
        }
        set_field(&mut fields, "pending_sends".into(), None);
        Ok(Self::Msgpack { whole, fields })
    }

    /// Its `ts`, when that is a string.
    fn ts(&self) -> Result<Option<String>, LayoutError> {
        match self {
            Self::Document(doc) => Ok(doc.get("ts").and_then(Value::as_str).map(str::to_owned)),
            Self::Msgpack { whole, fields } => {
                let range = fields.iter().find(|(key, _)| key == "ts");
                Ok(match range {
                    Some((_, Some(range))) => match msgpack::parse(&whole.bytes[range.clone()])? {
                        rmpv::Value::String(s) => s.into_str(),
                        _ => None,
                    },
                    _ => None,
                })
            }
        }
    }

    /// Writes RedisSaver's `checkpoint` field, with the channel values in its JSON
    /// form. A langgraph-redis record is already in it.
    fn write(&self, writer: &mut JsonFormWriter, out: &mut Vec<u8>) -> Result<(), LayoutError> {
        let (bytes, fields) = match self {
            Self::Document(doc) => {
                json_text::write_value(out, doc);
                return Ok(());
            }
            Self::Msgpack { whole, fields } => (&whole.bytes, fields),
        };
        write_object(out, fields, |out, key, range| {
            match (key, range) {
                ("type", None) => out.extend_from_slice(b"\"json\""),
                (_, None) => out.extend_from_slice(b"[]"),
                ("channel_values", Some(range)) => {
                    write_channel_values(bytes, range.start, writer, out)?;
                }
                (_, Some(range)) => {
                    // Versions as they are (RedisSaver's own writer makes them
                    // strings; its reader takes both).
                    let value = layout::plain_json(&msgpack::parse(&bytes[range.clone()])?)
                        .map_err(|e| LayoutError(format!("checkpoint field {key:?}: {e}")))?;
                    json_text::write_value(out, &value);
                }
            }
            Ok(())
        })
    }
}

type Fields = Vec<(String, Option<Range<usize>>)>;

/// The object of `fields` in order, each value written by `value`.
fn write_object(
    out: &mut Vec<u8>,
    fields: &Fields,
    mut value: impl FnMut(&mut Vec<u8>, &str, &Option<Range<usize>>) -> Result<(), LayoutError>,
) -> Result<(), LayoutError> {
    out.push(b'{');
    for (i, (key, range)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_text::write_str(out, key);
        out.push(b':');
        value(out, key, range)?;
    }
    out.push(b'}');
    Ok(())
}

/// Sets `key` in `fields` as a map would: in place when it is there, else last.
fn set_field(fields: &mut Fields, key: String, value: Option<Range<usize>>) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(field) => field.1 = value,
        None => fields.push((key, value)),
    }
}

/// The checkpoint's `channel_values` map (at `start` of `bytes`), each value in
/// RedisSaver's JSON form.
fn write_channel_values(
    bytes: &[u8],
    start: usize,
    writer: &mut JsonFormWriter,
    out: &mut Vec<u8>,
) -> Result<(), LayoutError> {
    let mut channels = Fields::new();
    for (channel, range) in msgpack::map_entry_ranges(bytes, start)? {
        set_field(&mut channels, channel, Some(range));
    }
    write_object(out, &channels, |out, channel, range| {
        let range = range.clone().expect("every channel has its value");
        writer
            .write_channel_value(&bytes[range], out)
            .map_err(|e| LayoutError(format!("channel {channel:?}: {} (RedisSaver's JSON form cannot hold it exactly; allow_lossy: true writes the nearest form)", e.0)))
    })
}

/// RedisSaver's `checkpoint_ts` (milliseconds): here the checkpoint's own `ts`, so the
/// field is the same on every run (RedisSaver uses the clock at `put()`).
fn checkpoint_ts(ts: Option<&str>) -> Value {
    let ms = ts
        .and_then(crate::codec::parse_timestamp)
        .map(|t| t.timestamp_micros() as f64 / 1000.0)
        .unwrap_or(0.0);
    serde_json::Number::from_f64(ms).map_or(Value::Null, Value::Number)
}

/// `value` as compact JSON text in `buf` (cleared first).
fn document_text<'b>(value: &Value, buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    json_text::write_value(buf, value);
    buf
}

/// A batch in langgraph-redis's layout, as commands ready to send.
struct ShapedBatch {
    /// With `on_conflict: fail`: each checkpoint's key, Redis key and document, to
    /// compare with what is there.
    expected: Vec<(CheckpointKey, String, String)>,
    /// Every document's `JSON.SET`, with the write-key zsets and expiries, in one
    /// transaction.
    set: redis::Pipeline,
    /// How many pending writes each checkpoint has: one `JSON.SET` reply each, after
    /// the checkpoint's own.
    writes_per_checkpoint: Vec<usize>,
    /// The newest checkpoint of the batch per latest pointer: `(id, key)`.
    newest: BTreeMap<String, (String, String)>,
    mode: OnConflict,
    ttl: Option<i64>,
}

impl ShapedBatch {
    /// An empty batch for `config`'s conflict mode and expiry.
    fn new(config: &RedisSinkConfig) -> Self {
        let mut set = redis::pipe();
        set.atomic();
        Self {
            expected: Vec::new(),
            set,
            writes_per_checkpoint: Vec::new(),
            newest: BTreeMap::new(),
            mode: config.on_conflict,
            ttl: config.ttl_minutes.map(|m| (m * 60.0) as i64),
        }
    }

    /// Adds one checkpoint's documents as commands. They are kept only as command text
    /// (and, with `on_conflict: fail`, the checkpoint document to compare), so a batch
    /// never holds more than one checkpoint's JSON trees.
    ///
    /// `text` is scratch space for the documents' JSON text, kept from one call to the
    /// next so that each document is written straight into bytes, once.
    fn push(&mut self, record: &Checkpoint, d: RedisDocuments, keys: &Keys, text: &mut Vec<u8>) {
        let (mode, ttl, set) = (self.mode, self.ttl, &mut self.set);
        let key = keys.checkpoint(&record.key);
        let mut command = redis::cmd("JSON.SET");
        command.arg(&key).arg("$").arg(d.checkpoint.as_bytes());
        self.writes_per_checkpoint.push(d.writes.len());
        if mode != OnConflict::Overwrite {
            command.arg("NX");
        }
        set.add_command(command);
        let zset = Keys::write_zset(&record.key);
        for (write_key, doc, score) in &d.writes {
            let mut command = redis::cmd("JSON.SET");
            command
                .arg(write_key)
                .arg("$")
                .arg(document_text(doc, text));
            if mode != OnConflict::Overwrite {
                command.arg("NX");
            }
            set.add_command(command);
            set.cmd("ZADD")
                .arg(&zset)
                .arg(*score)
                .arg(write_key)
                .ignore();
            if let Some(ttl) = ttl {
                set.cmd("EXPIRE").arg(write_key).arg(ttl).ignore();
            }
        }
        if let Some(ttl) = ttl {
            set.cmd("EXPIRE").arg(&key).arg(ttl).ignore();
            if !d.writes.is_empty() {
                set.cmd("EXPIRE").arg(&zset).arg(ttl).ignore();
            }
        }
        if mode == OnConflict::Fail {
            self.expected
                .push((record.key.clone(), key.clone(), d.checkpoint));
        }
        let latest = keys.latest(&record.key);
        let entry = self
            .newest
            .entry(latest)
            .or_insert_with(|| (record.key.checkpoint_id.clone(), key.clone()));
        if record.key.checkpoint_id > entry.0 {
            *entry = (record.key.checkpoint_id.clone(), key);
        }
    }

    /// Sends the batch: refuses it when a checkpoint is there with other content
    /// (`on_conflict: fail`), writes the documents, then moves the latest pointers.
    async fn send(&self, redis: &mut Redis) -> Result<WriteCounts, StoreError> {
        let mut counts = WriteCounts::default();
        if self.writes_per_checkpoint.is_empty() {
            return Ok(counts);
        }
        if !self.expected.is_empty() {
            let mut pipe = redis::pipe();
            for (_, key, _) in &self.expected {
                pipe.cmd("JSON.GET").arg(key).arg("$");
            }
            let existing: Vec<Option<String>> = redis.pipe("JSON.GET", &pipe).await?;
            for ((record_key, _, checkpoint), text) in self.expected.iter().zip(existing) {
                let Some(text) = text else { continue };
                let stored: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                // Compared as trees: the server writes its own text of the document.
                // One too deep to parse is never taken as the same.
                let ours = serde_json::from_str::<Value>(checkpoint).ok();
                // JSON.GET with a path answers an array of the one document.
                if !matches!((stored.as_array().map(Vec::as_slice), ours), (Some([only]), Some(ours)) if *only == ours)
                {
                    return Err(StoreError::fatal(format!(
                        "Redis {}: checkpoint {record_key} already exists with other content (on_conflict: fail); nothing of this batch was written",
                        redis.url
                    )));
                }
            }
        }
        let results: Vec<redis::Value> = redis.pipe("JSON.SET", &self.set).await?;
        // One reply per JSON.SET: OK when written, nil when NX found the key there.
        let mut replies = results.into_iter();
        for &writes in &self.writes_per_checkpoint {
            match replies.next() {
                Some(redis::Value::Nil) => counts.kept += 1,
                _ => counts.written += 1,
            }
            for _ in 0..writes {
                if !matches!(replies.next(), Some(redis::Value::Nil)) {
                    counts.writes += 1;
                }
            }
        }
        // Latest pointers: only ever moved forward (a resumed or merged run may
        // write older checkpoints after newer ones are there).
        let mut pipe = redis::pipe();
        for latest in self.newest.keys() {
            pipe.cmd("GET").arg(latest);
        }
        let current: Vec<Option<String>> = redis.pipe("GET latest", &pipe).await?;
        let mut pipe = redis::pipe();
        let mut moved = 0;
        for ((latest, (id, key)), current) in self.newest.iter().zip(current) {
            let current_id = current
                .as_deref()
                .and_then(|k| k.rsplit(':').next())
                .unwrap_or("");
            if current.is_none() || id.as_str() > current_id {
                pipe.cmd("SET").arg(latest).arg(key).ignore();
                moved += 1;
                if let Some(ttl) = self.ttl {
                    pipe.cmd("EXPIRE").arg(latest).arg(ttl).ignore();
                }
            }
        }
        if moved > 0 {
            let () = redis.pipe("SET latest", &pipe).await?;
        }
        Ok(counts)
    }
}

/// Sends a batch on its own task (see [`ShapedBatch::send`]); the connection stays
/// (it reconnects by itself after an error).
fn send_batch(
    mut redis: Redis,
    batch: Arc<ShapedBatch>,
) -> Pin<Box<dyn Future<Output = Sent<Redis>> + Send>> {
    Box::pin(async move {
        let result = batch.send(&mut redis).await;
        (Some(redis), result)
    })
}

pub struct RedisSink {
    config: RedisSinkConfig,
    keys: Keys,
    redis: Option<Redis>,
    counts: WriteCounts,
    losses: BTreeMap<String, u64>,
    /// The batch sent last, until it landed (the sink confirms late).
    in_flight: Option<InFlight<Redis, ShapedBatch>>,
}

impl RedisSink {
    pub fn new(config: RedisSinkConfig) -> Self {
        Self {
            keys: Keys::new(&config.key_prefix),
            config,
            redis: None,
            counts: WriteCounts::default(),
            losses: BTreeMap::new(),
            in_flight: None,
        }
    }

    /// Waits until the batch in flight landed (sending it again first when an error
    /// stopped it) and counts it.
    async fn land(&mut self) -> Result<(), StoreError> {
        let url = &self.config.redis_url;
        let connect = async || Redis::connect(url).await;
        in_flight::land(
            &mut self.in_flight,
            &mut self.redis,
            &mut self.counts,
            connect,
        )
        .await
    }

    async fn redis(&mut self) -> Result<&mut Redis, StoreError> {
        if self.redis.is_none() {
            self.redis = Some(Redis::connect(&self.config.redis_url).await?);
        }
        Ok(self.redis.as_mut().expect("connected above"))
    }

    /// The RediSearch indexes RedisSaver's `setup()` creates, when missing; a server
    /// without RedisJSON or RediSearch is named.
    async fn ensure_indexes(&mut self) -> Result<(), StoreError> {
        let (checkpoint_index, write_index) = (self.keys.prefix.clone(), self.keys.write_prefix());
        let redis = self.redis().await?;
        let existing = super::search_indexes(redis, "langgraph-redis").await?;
        for (name, fields) in [
            (&checkpoint_index, CHECKPOINT_FIELDS.as_slice()),
            (&write_index, WRITE_FIELDS.as_slice()),
        ] {
            if !existing.contains(name) {
                super::create_json_index(redis, name, fields, 0, "RedisSaver").await?;
            }
        }
        Ok(())
    }
}

const CHECKPOINT_FIELDS: [(&str, &str); 9] = [
    ("thread_id", "TAG"),
    ("run_id", "TAG"),
    ("checkpoint_ns", "TAG"),
    ("checkpoint_id", "TAG"),
    ("parent_checkpoint_id", "TAG"),
    ("checkpoint_ts", "NUMERIC"),
    ("source", "TAG"),
    ("step", "NUMERIC"),
    ("has_writes", "TAG"),
];

const WRITE_FIELDS: [(&str, &str); 7] = [
    ("thread_id", "TAG"),
    ("checkpoint_ns", "TAG"),
    ("checkpoint_id", "TAG"),
    ("task_id", "TAG"),
    ("idx", "NUMERIC"),
    ("channel", "TAG"),
    ("type", "TAG"),
];

#[async_trait]
impl Sink for RedisSink {
    fn describe(&self) -> String {
        let url = crate::secrets::redact_url(&self.config.redis_url);
        format!(
            "Redis {url} (langgraph-redis layout under {:?}, on_conflict: {})",
            self.config.key_prefix,
            self.config.on_conflict.name()
        )
    }

    fn needs_view(&self) -> bool {
        false
    }

    fn default_dead_letter_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "redis-{}.dead-letter.jsonl",
            crate::sinks::safe_file_name(&self.keys.prefix)
        ))
    }

    async fn prepare(&mut self) -> Result<(), StoreError> {
        self.ensure_indexes().await
    }

    async fn check_writable(&mut self) -> Result<(), StoreError> {
        let redis = self.redis().await?;
        let url = redis.url.clone();
        let _: Vec<String> = redis
            .cmd("FT._LIST", &redis::cmd("FT._LIST"))
            .await
            .map_err(|e| {
                StoreError::fatal(format!("Redis {url}: no RediSearch ({})", e.message))
            })?;
        Ok(())
    }

    async fn write_batch(&mut self, records: &[Checkpoint]) -> Result<Vec<Rejected>, StoreError> {
        let mut rejected = Vec::new();
        let mut writer = JsonFormWriter::new(self.config.allow_lossy);
        let mut batch = ShapedBatch::new(&self.config);
        let mut text = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match documents(record, &mut writer, &self.config.key_prefix) {
                Ok(d) => batch.push(record, d, &self.keys, &mut text),
                Err(e) => rejected.push(Rejected {
                    index,
                    reason: format!("cannot be written in langgraph-redis's layout: {e}"),
                }),
            }
        }
        // The batch before must have landed before this one is sent (in order, one at
        // a time); an error there fails this call, and the engine's retry sends that
        // batch again, then this one.
        self.land().await?;
        for (what, n) in std::mem::take(&mut writer.losses) {
            *self.losses.entry(what).or_default() += n;
        }
        let url = &self.config.redis_url;
        let connect = async || Redis::connect(url).await;
        in_flight::send(
            &mut self.in_flight,
            &mut self.redis,
            connect,
            batch,
            send_batch,
        )
        .await?;
        Ok(rejected)
    }

    fn unconfirmed_batches(&self) -> usize {
        1
    }

    async fn settle(&mut self) -> Result<(), StoreError> {
        self.land().await
    }

    async fn suspend(&mut self) -> Result<(), StoreError> {
        // A batch still in flight is left unconfirmed: a resumed run sends it again.
        if let Some(flight) = self.in_flight.take() {
            flight.abort();
        }
        self.redis = None;
        Ok(())
    }

    fn comparison(&self) -> Comparison {
        Comparison::View
    }

    fn written_form(&self, record: Checkpoint) -> Option<Checkpoint> {
        let mut writer = JsonFormWriter::new(self.config.allow_lossy);
        documents(&record, &mut writer, &self.config.key_prefix)
            .ok()
            .map(|d| d.as_record(&record))
    }

    async fn read_back(&mut self) -> Result<Box<dyn Source>, StoreError> {
        let written = RedisSourceConfig {
            redis_url: self.config.redis_url.clone(),
            key_prefix: self.config.key_prefix.clone(),
            decode_responses: None,
            upgrade: Default::default(),
            thread_id_template: None,
        };
        Ok(Box::new(
            super::RedisSource::open(&written, &Filters::none()).await?,
        ))
    }

    async fn finish(&mut self, _stats: &RunStats) -> Result<(), StoreError> {
        let shown = self.describe();
        self.counts.report(&shown);
        if !self.losses.is_empty() {
            let list: Vec<String> = self
                .losses
                .iter()
                .map(|(what, n)| format!("{what} ×{n}"))
                .collect();
            tracing::warn!(
                "{shown}: written in the nearest form (allow_lossy): {}",
                list.join("; ")
            );
        }
        self.redis = None;
        Ok(())
    }
}

impl OpenSink for RedisSinkConfig {
    fn open_sink(&self, _run: &RunInfo, _retry: RetryPolicy) -> Result<Box<dyn Sink>, OpenError> {
        Ok(Box::new(RedisSink::new(self.clone())))
    }
}
