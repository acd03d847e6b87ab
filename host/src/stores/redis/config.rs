//! Configuration of the Redis store (langgraph-redis, plainredis, LangGraph's docs
//! layout, chat lists).

use serde::Deserialize;

use crate::stores::OnConflict;

/// Redis to read (langgraph-redis, plain hashes, chat lists).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
    /// `redis://[:password@]host:port/db`.
    pub redis_url: String,
    /// Key prefix to scan.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Accepted for compatibility; values are always read as bytes.
    #[serde(default)]
    pub decode_responses: Option<bool>,
    /// For chat-history lists: `messages_state` makes each session a LangGraph
    /// `MessagesState` thread instead of a record of the stored messages.
    #[serde(default)]
    pub upgrade: crate::stores::chat::Upgrade,
    /// With `upgrade`: the thread id each session gets, `{session_id}` replaced by the
    /// session's id (`"chat-{session_id}"`); default: the session id. Thread filters
    /// and shards then apply to these thread ids.
    pub thread_id_template: Option<String>,
}

fn default_key_prefix() -> String {
    "checkpoint:".into()
}

/// Redis to write, in langgraph-redis's layout (`RedisSaver` of
/// langgraph-checkpoint-redis 0.5): RedisJSON documents, its helper keys and its two
/// RediSearch indexes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:port/db` of a server with RedisJSON and RediSearch.
    pub redis_url: String,
    /// RedisSaver's checkpoint key prefix followed by `:` (its `checkpoint_prefix`);
    /// the writes, latest pointers and indexes are named after it as RedisSaver names
    /// them. For Store items: RedisStore's `store_prefix` (`store` when left at the
    /// checkpoint default).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// What to do with a checkpoint or pending write whose key the server already
    /// holds: `skip` (default), `overwrite`, or `fail` (stop when it differs).
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Write values RedisSaver's JSON form cannot hold exactly (NaN, integers above
    /// 2^63, bytes inside objects, numpy arrays, …) in the nearest form it has, and
    /// count them, instead of refusing their checkpoints into the dead-letter file.
    /// For Store items: keep the first embedding of an item that has several
    /// (RedisStore keeps one per item) instead of refusing the item.
    #[serde(default)]
    pub allow_lossy: bool,
    /// Expire every key written after this many minutes, as RedisSaver's
    /// `ttl={"default_ttl": …}` does. None: keys do not expire. Checkpoints only:
    /// Store items keep their own expiry.
    pub ttl_minutes: Option<f64>,
}
