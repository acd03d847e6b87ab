//! Redis: the layouts LangGraph users have, detected from the keys under the prefix.
//!
//! - `langgraph-redis` (RedisJSON): `checkpoint:{thread}:{ns}:{id}` documents, writes
//!   in `checkpoint_write:…` documents listed by `write_keys_zset:…` ([`json`]).
//! - `langgraph-checkpoint-plainredis`: `{p}:cp:…` packed strings, `{p}:blob:…`,
//!   `{p}:wr:…` hashes, with the `{p}:threads` registry ([`plain`]).
//! - LangGraph's docs example: `checkpoint$thread$ns$id` hashes and `writes$…` hashes
//!   ([`docs`]).
//! - `RedisChatMessageHistory`: `message_store:{session}` lists, newest first ([`chat`]).
//!
//! Keys are listed with `SCAN` (never `KEYS`) or from the layout's registry, values are
//! fetched in pipelines, keys that expire between listing and reading are skipped and
//! counted. Redis Cluster is refused with a clear message (see the README).

mod chat;
pub mod config;
mod docs;
mod items;
mod items_write;
mod json;
mod plain;
mod write;

pub use items::open_item_source;
pub use items_write::open_item_sink;
pub use write::{RedisSink, documents};

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use serde_json::Value;

use self::config::RedisSourceConfig;
use crate::error::OpenError;
use crate::error::StoreError;
use crate::filters::{Filters, ThreadPushdown};
use crate::record::{CheckpointKey, Origin};
use crate::secrets::{redact_url, scrub};
use crate::sources::OpenSource;
use crate::sources::{BatchLimits, Source, SourceBatch, ThreadCounts};
use crate::stores::chat::SessionsAs;

/// The RediSearch indexes a server holds (`FT._LIST`); a server without RediSearch is
/// named, with what `who` (RedisSaver, RedisStore) needs.
pub(super) async fn search_indexes(
    redis: &mut Redis,
    who: &str,
) -> Result<Vec<String>, StoreError> {
    let url = redis.url.clone();
    redis
        .cmd("FT._LIST", &redis::cmd("FT._LIST"))
        .await
        .map_err(|e| {
            StoreError::fatal(format!(
                "Redis {url}: no RediSearch (FT._LIST failed: {}); {who} needs the RedisJSON and RediSearch modules (Redis Stack, or Redis 8)",
                e.message
            ))
        })
}

/// Creates the index `name` over the JSON documents under `name:`, with `fields`
/// (`TEXT`, `TAG`, `NUMERIC`, `VECTOR`) declared as redisvl declares them for
/// langgraph-redis; `vector_dims` for a `VECTOR` field (flat, float32, cosine:
/// RedisStore's defaults). One created meanwhile by another run is the same index.
pub(super) async fn create_json_index(
    redis: &mut Redis,
    name: &str,
    fields: &[(&str, &str)],
    vector_dims: usize,
    who: &str,
) -> Result<(), StoreError> {
    let mut cmd = redis::cmd("FT.CREATE");
    cmd.arg(name)
        .arg("ON")
        .arg("JSON")
        .arg("PREFIX")
        .arg(1)
        .arg(format!("{name}:"))
        .arg("SCHEMA");
    for (field, kind) in fields {
        cmd.arg(format!("$.{field}"))
            .arg("AS")
            .arg(*field)
            .arg(*kind);
        match *kind {
            "TEXT" => {
                cmd.arg("WEIGHT").arg(1);
            }
            "TAG" => {
                cmd.arg("SEPARATOR").arg(",");
            }
            "VECTOR" => {
                cmd.arg("FLAT")
                    .arg(6)
                    .arg("TYPE")
                    .arg("FLOAT32")
                    .arg("DIM")
                    .arg(vector_dims)
                    .arg("DISTANCE_METRIC")
                    .arg("COSINE");
            }
            _ => {}
        }
    }
    match redis.cmd::<()>("FT.CREATE", &cmd).await {
        Ok(()) => {
            tracing::info!(
                "Redis {}: created RediSearch index {name} (as {who}'s setup() does)",
                redis.url
            );
            Ok(())
        }
        Err(e) if e.message.contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Keys asked for per SCAN call.
const SCAN_COUNT: usize = 500;

/// The connection and what every layout needs to talk about it. A clone shares the
/// multiplexed connection (its requests are pipelined with the original's).
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    url: String,
    password: Option<String>,
}

impl Redis {
    fn error(&self, what: &str, e: &redis::RedisError) -> StoreError {
        let retriable = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain
                )
            );
        let detail = if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
            || e.to_string().contains("WRONGPASS")
            || e.to_string().contains("NOAUTH")
        {
            format!("authentication failed ({e})")
        } else {
            e.to_string()
        };
        StoreError {
            message: scrub(
                &format!("Redis {}: {what}: {detail}", self.url),
                self.password.as_deref(),
            ),
            retriable,
        }
    }

    async fn conn(&mut self) -> Result<&mut MultiplexedConnection, StoreError> {
        if self.conn.is_none() {
            let conn = self
                .client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| self.error("cannot connect", &e))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs a command; a broken connection is dropped so the retry reconnects.
    pub async fn cmd<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let conn = self.conn().await?;
        let result = cmd.query_async(conn).await;
        result.map_err(|e| self.failed(what, &e))
    }

    pub async fn pipe<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let conn = self.conn().await?;
        let result = pipe.query_async(conn).await;
        result.map_err(|e| self.failed(what, &e))
    }

    fn failed(&mut self, what: &str, e: &redis::RedisError) -> StoreError {
        let error = self.error(what, e);
        if error.retriable {
            self.conn = None;
        }
        error
    }

    pub fn origin(&self, key: &[u8]) -> Origin {
        Origin {
            store: "redis".into(),
            locator: format!("{} key {:?}", self.url, String::from_utf8_lossy(key)),
        }
    }

    /// The keys that have type `expected`. Keys gone since the SCAN are counted in
    /// `batch.vanished`; keys of another type fail into `batch.failed`, named.
    pub async fn keys_of_type(
        &mut self,
        keys: Vec<Vec<u8>>,
        expected: &str,
        meaning: &str,
        batch: &mut SourceBatch,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if keys.is_empty() {
            return Ok(keys);
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("TYPE").arg(k);
        }
        let types: Vec<String> = self.pipe("TYPE", &pipe).await?;
        let mut kept = Vec::with_capacity(keys.len());
        for (k, t) in keys.into_iter().zip(types) {
            match t.as_str() {
                t if t == expected => kept.push(k),
                "none" => batch.vanished += 1,
                other => batch.failed.push(crate::sources::FailedRead {
                    key: None,
                    origin: self.origin(&k),
                    error: format!("key has type {other}, expected {meaning} ({expected})"),
                }),
            }
        }
        Ok(kept)
    }

    /// One `SCAN` page: the next cursor and the keys.
    pub async fn scan(
        &mut self,
        cursor: u64,
        pattern: &[u8],
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        self.cmd("SCAN", &cmd).await
    }
}

/// Escapes glob characters so a literal matches itself in `SCAN MATCH`.
pub fn escape_glob(literal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(literal.len());
    for &b in literal {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The `SCAN MATCH` pattern part for a thread under the pushed-down filters: the
/// exact (escaped) id, the simple glob, or `*`. It may select more than the filter
/// (the engine checks again), never less.
pub fn thread_glob(pushdown: &ThreadPushdown) -> Vec<u8> {
    match (&pushdown.thread_id, &pushdown.include_glob) {
        (Some(t), _) => escape_glob(t.as_bytes()),
        (None, Some(g)) => g.as_bytes().to_vec(),
        (None, None) => b"*".to_vec(),
    }
}

enum Layout {
    Json(json::JsonLayout),
    Plain(plain::PlainLayout),
    Docs(docs::DocsLayout),
    Chat(chat::ChatLayout),
}

pub struct RedisSource {
    redis: Redis,
    layout: Layout,
}

impl Redis {
    /// Connects to a standalone server (a Redis Cluster node is refused). A refused
    /// connection at the start is a wrong address, not a restart: not retriable.
    pub async fn connect(redis_url: &str) -> Result<Self, StoreError> {
        let url = redact_url(redis_url);
        let password = password_of(redis_url);
        let client = redis::Client::open(redis_url).map_err(|e| {
            StoreError::fatal(scrub(
                &format!("Redis URL {url} is not valid: {e}"),
                password.as_deref(),
            ))
        })?;
        let mut redis = Redis {
            client,
            conn: None,
            url,
            password,
        };
        // A refused connection at the start is a wrong address, not a restart.
        redis.conn().await.map_err(|mut e| {
            e.retriable = false;
            e
        })?;
        let info: String = redis
            .cmd("INFO", redis::cmd("INFO").arg("cluster"))
            .await
            .map_err(|mut e| {
                e.retriable = false;
                e
            })?;
        if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Err(StoreError::fatal(format!(
                "Redis {}: this is a Redis Cluster node; Redis Cluster is not supported \
                 (keys are spread over masters). Migrate from each master with its own redis_url \
                 and the same filters, or export the data to a standalone server first.",
                redis.url
            )));
        }
        Ok(redis)
    }
}

impl RedisSource {
    pub async fn open(config: &RedisSourceConfig, filters: &Filters) -> Result<Self, StoreError> {
        let mut redis = Redis::connect(&config.redis_url).await?;
        let sessions = SessionsAs::new(config.upgrade, config.thread_id_template.clone())
            .map_err(|e| StoreError::fatal(format!("source_config: {e}")))?;
        // Renamed threads: thread filters are about the new ids, the engine applies them.
        let pushdown = if sessions.renames() {
            ThreadPushdown::default()
        } else {
            filters.thread_pushdown()
        };
        let mut layout = detect(&mut redis, &config.key_prefix, pushdown).await?;
        match &mut layout {
            Layout::Chat(chat) => chat.sessions = sessions,
            _ if config.upgrade != crate::stores::chat::Upgrade::None => {
                return Err(StoreError::fatal(format!(
                    "Redis {}: `upgrade` turns chat-history lists into LangGraph threads; the keys under {:?} are {}",
                    redis.url,
                    config.key_prefix,
                    layout_name(&layout)
                )));
            }
            _ => {}
        }
        tracing::info!("Redis {}: layout {}", redis.url, layout_name(&layout));
        Ok(Self { redis, layout })
    }
}

/// Where a layout is in its walk, to undo a failed batch.
enum SavedPosition {
    Plain(plain::Position),
    Scan((u64, bool)),
}

impl RedisSource {
    fn position_state(&self) -> SavedPosition {
        match &self.layout {
            Layout::Plain(p) => SavedPosition::Plain(p.position()),
            Layout::Json(l) => SavedPosition::Scan(l.position()),
            Layout::Docs(l) => SavedPosition::Scan((l.scan.cursor, l.scan.done)),
            Layout::Chat(l) => SavedPosition::Scan((l.scan.cursor, l.scan.done)),
        }
    }

    fn restore_position(&mut self, saved: SavedPosition) {
        match (&mut self.layout, saved) {
            (Layout::Plain(p), SavedPosition::Plain(pos)) => p.restore(pos),
            (Layout::Json(l), SavedPosition::Scan(at)) => l.restore(at),
            (Layout::Docs(l), SavedPosition::Scan(at)) => (l.scan.cursor, l.scan.done) = at,
            (Layout::Chat(l), SavedPosition::Scan(at)) => (l.scan.cursor, l.scan.done) = at,
            _ => {}
        }
    }
}

fn layout_name(layout: &Layout) -> &'static str {
    match layout {
        Layout::Json(_) => "langgraph-redis (RedisJSON documents)",
        Layout::Plain(_) => "langgraph-checkpoint-plainredis (packed strings and hashes)",
        Layout::Docs(_) => "LangGraph docs example (checkpoint$… hashes)",
        Layout::Chat(_) => "RedisChatMessageHistory (message_store lists)",
    }
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = match userinfo.split_once(':') {
        Some((_, p)) => p,
        None => userinfo,
    };
    Some(password.to_owned()).filter(|p| !p.is_empty())
}

/// Picks the layout from what is stored under the prefix.
async fn detect(
    redis: &mut Redis,
    prefix: &str,
    pushdown: ThreadPushdown,
) -> Result<Layout, StoreError> {
    // plainredis: its registry hash names the layout at once.
    let base = prefix.trim_end_matches(':');
    let registry = format!("{base}:threads");
    let kind: String = redis.cmd("TYPE", redis::cmd("TYPE").arg(&registry)).await?;
    if kind == "hash" {
        return Ok(Layout::Plain(plain::PlainLayout::new(base, pushdown)));
    }
    // Otherwise look at the types of the first keys found under the prefix (and, for
    // the seed's default prefix, under the docs example's `checkpoint$`).
    let mut candidates: Vec<Vec<u8>> = vec![format!("{prefix}*").into_bytes()];
    if prefix == "checkpoint:" || prefix == "checkpoint" {
        candidates.push(b"checkpoint$*".to_vec());
    }
    for pattern in candidates {
        let mut cursor = 0;
        for _ in 0..50 {
            let (next, keys) = redis.scan(cursor, &pattern).await?;
            for key in keys.iter().take(20) {
                let kind: String = redis.cmd("TYPE", redis::cmd("TYPE").arg(key)).await?;
                match kind.as_str() {
                    "ReJSON-RL" => {
                        return Ok(Layout::Json(json::JsonLayout::new(prefix, pushdown)));
                    }
                    "list" => {
                        return Ok(Layout::Chat(chat::ChatLayout::new(prefix, pushdown)));
                    }
                    "hash" if key.contains(&b'$') => {
                        return Ok(Layout::Docs(docs::DocsLayout::new(pushdown)));
                    }
                    _ => {}
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Err(StoreError::fatal(format!(
        "Redis {}: no checkpoint data under key_prefix {prefix:?}: no {registry} registry \
         (plainredis), no RedisJSON documents (langgraph-redis), no checkpoint$… hashes \
         (LangGraph docs example), no lists (RedisChatMessageHistory)",
        redis.url
    )))
}

#[async_trait]
impl Source for RedisSource {
    fn describe(&self) -> String {
        format!("Redis {} ({})", self.redis.url, layout_name(&self.layout))
    }

    fn resume_after(&mut self, key: CheckpointKey) {
        if let Layout::Plain(p) = &mut self.layout {
            p.resume_after(key);
        }
    }

    fn resume_from(&mut self, position: &Value) -> Result<(), StoreError> {
        match &mut self.layout {
            Layout::Plain(p) => {
                let key = serde_json::from_value(position.clone())
                    .map_err(|e| StoreError::fatal(format!("unreadable resume position: {e}")))?;
                p.resume_after(key);
            }
            Layout::Json(l) => l.scan.resume_from(position)?,
            Layout::Docs(l) => l.scan.resume_from(position)?,
            Layout::Chat(l) => l.scan.resume_from(position)?,
        }
        Ok(())
    }

    fn pushdown_summary(&self) -> String {
        match &self.layout {
            Layout::Plain(p) => p.pushdown_summary(),
            Layout::Json(l) => format!("SCAN MATCH {}", String::from_utf8_lossy(&l.scan.pattern)),
            Layout::Docs(l) => format!("SCAN MATCH {}", String::from_utf8_lossy(&l.scan.pattern)),
            Layout::Chat(l) => format!("SCAN MATCH {}", String::from_utf8_lossy(&l.scan.pattern)),
        }
    }

    async fn next_batch(&mut self, limits: BatchLimits) -> Result<Option<SourceBatch>, StoreError> {
        // A batch that fails half-way must not move the position: the retry reads the
        // same keys again.
        let saved = self.position_state();
        let result = match &mut self.layout {
            Layout::Plain(p) => p.next_batch(&mut self.redis, limits).await,
            Layout::Json(l) => l.next_batch(&mut self.redis, limits).await,
            Layout::Docs(l) => l.next_batch(&mut self.redis, limits).await,
            Layout::Chat(l) => l.next_batch(&mut self.redis, limits).await,
        };
        if result.is_err() {
            self.restore_position(saved);
        }
        result
    }

    async fn count_by_thread(&mut self, pushed: bool) -> Result<ThreadCounts, StoreError> {
        match &mut self.layout {
            Layout::Plain(p) => p.count_by_thread(&mut self.redis, pushed).await,
            Layout::Json(l) => {
                l.scan
                    .count(&mut self.redis, pushed, json::thread_of_key)
                    .await
            }
            Layout::Docs(l) => {
                l.scan
                    .count(&mut self.redis, pushed, docs::thread_of_key)
                    .await
            }
            Layout::Chat(l) => {
                l.scan
                    .count(&mut self.redis, pushed, chat::thread_of_key)
                    .await
            }
        }
    }
}

/// A SCAN walk whose position (the cursor after whole pages) can be saved and
/// resumed: a batch always ends at a page boundary.
#[derive(Clone)]
pub struct ScanWalk {
    pub pattern: Vec<u8>,
    /// The same pattern without pushdown (for counting everything).
    pub all_pattern: Vec<u8>,
    cursor: u64,
    done: bool,
}

impl ScanWalk {
    pub fn new(pattern: Vec<u8>, all_pattern: Vec<u8>) -> Self {
        Self {
            pattern,
            all_pattern,
            cursor: 0,
            done: false,
        }
    }

    fn resume_from(&mut self, position: &Value) -> Result<(), StoreError> {
        let cursor = position["scan_cursor"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                StoreError::fatal(format!("unreadable Redis resume position {position}"))
            })?;
        self.cursor = cursor;
        self.done = cursor == 0;
        Ok(())
    }

    /// Keys of whole SCAN pages, at least `want` unless the walk ends; `None` at the end.
    pub async fn next_keys(
        &mut self,
        redis: &mut Redis,
        want: usize,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let mut keys = Vec::new();
        loop {
            let (next, page) = redis.scan(self.cursor, &self.pattern).await?;
            keys.extend(page);
            self.cursor = next;
            if next == 0 {
                self.done = true;
                break;
            }
            if keys.len() >= want {
                break;
            }
        }
        Ok(Some(keys))
    }

    /// The next keys and an empty batch positioned after them; `None` at the end.
    pub async fn next_page(
        &mut self,
        redis: &mut Redis,
        want: usize,
    ) -> Result<Option<(Vec<Vec<u8>>, SourceBatch)>, StoreError> {
        let Some(keys) = self.next_keys(redis, want).await? else {
            return Ok(None);
        };
        let batch = SourceBatch {
            position: Some(self.position()),
            ..SourceBatch::default()
        };
        Ok(Some((keys, batch)))
    }

    /// The position after the pages returned so far.
    pub fn position(&self) -> Value {
        serde_json::json!({ "scan_cursor": self.cursor.to_string() })
    }

    async fn count(
        &mut self,
        redis: &mut Redis,
        pushed: bool,
        thread_of: fn(&[u8]) -> Option<String>,
    ) -> Result<ThreadCounts, StoreError> {
        let pattern = if pushed {
            &self.pattern
        } else {
            &self.all_pattern
        }
        .clone();
        let mut counts = ThreadCounts::default();
        let mut cursor = 0;
        loop {
            let (next, keys) = redis.scan(cursor, &pattern).await?;
            for key in keys {
                if let Some(thread) = thread_of(&key) {
                    *counts.per_thread.entry(thread).or_default() += 1;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(counts)
    }
}

/// Splits a packed plainredis / docs value `{"t": tag, "d": base64}`.
pub fn unpack(bytes: &[u8]) -> Result<crate::record::TypedValue, String> {
    use base64::Engine as _;
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("packed value is not JSON: {e}"))?;
    let tag = v["t"].as_str().ok_or("packed value has no \"t\"")?;
    let data = v["d"].as_str().ok_or("packed value has no \"d\"")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("packed value: bad base64: {e}"))?;
    Ok(crate::record::TypedValue::new(tag, bytes))
}

#[async_trait]
impl OpenSource for RedisSourceConfig {
    async fn open_source(&self, filters: &Filters) -> Result<Box<dyn Source>, OpenError> {
        SessionsAs::new(self.upgrade, self.thread_id_template.clone()).map_err(|e| {
            OpenError::Config(crate::error::ConfigError::Invalid(format!(
                "source_config: {e}"
            )))
        })?;
        Ok(Box::new(RedisSource::open(self, filters).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_escape_and_passwords_are_found() {
        assert_eq!(escape_glob(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\".to_vec());
        assert_eq!(
            password_of("redis://:s3cret@127.0.0.1:6379/0").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_of("redis://user:pw@h/1").as_deref(), Some("pw"));
        assert_eq!(password_of("redis://127.0.0.1:6379"), None);
    }
}
