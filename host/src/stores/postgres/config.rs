//! Configuration of the PostgreSQL store (PostgresSaver schemas, chat-history tables).

use serde::Deserialize;

use crate::codec::redis_form::AllowedJsonModules;
use crate::stores::OnConflict;

/// PostgresSaver database or chat-history table to read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgresql://user:password@host:port/db`.
    pub connection_string: String,
    /// A chat-history table; checkpoint tables when absent.
    pub table_name: Option<String>,
    /// For a chat-history table: `messages_state` makes each session a LangGraph
    /// `MessagesState` thread (one checkpoint LangGraph reads and continues) instead of
    /// a record of the stored messages. See docs/memory.md.
    #[serde(default)]
    pub upgrade: crate::stores::chat::Upgrade,
    /// With `upgrade`: the thread id each session gets, `{session_id}` replaced by the
    /// session's id (`"chat-{session_id}"`); default: the session id. Thread filters
    /// and shards then apply to these thread ids.
    pub thread_id_template: Option<String>,
    /// How many connections a checkpoint read holds: `2` (default) reads each batch's
    /// pending writes on a second connection, in the same snapshot, while its blobs
    /// are read on the first; `1` reads them one after the other on one connection,
    /// for a server with few connection slots. A server that refuses the second
    /// connection gets one. Chat-history tables are read on one.
    pub connections: Option<u8>,
}

/// PostgresSaver schema to write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgresql://user:password@host:port/db`.
    pub connection_string: String,
    /// The schema that holds (or will hold) PostgresSaver's tables. PostgresSaver
    /// itself uses the connection's `search_path`, `public` by default.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Create the schema, tables and indexes when absent, and bring an older
    /// PostgresSaver schema up to date, as LangGraph's `setup()` does. When false, a
    /// missing or older schema is an error.
    #[serde(default = "default_true")]
    pub create_tables: bool,
    /// What to do with a checkpoint or pending write whose key the schema already
    /// holds: `skip` (default: keep what is there), `overwrite`, or `fail` (stop when
    /// it differs from what would be written).
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// For a langgraph-redis source: the `lc: 2` classes its app's serializer revives
    /// (`JsonPlusRedisSerializer(allowed_json_modules=…)`): `true` for every class, or
    /// a list of `module.Class`. Envelopes of other classes are written as the plain
    /// maps RedisSaver gives back. LangGraph's safe types (messages, datetimes, …) are
    /// always revived.
    #[serde(default)]
    pub allowed_json_modules: AllowedJsonModules,
    /// Store items only (`state: store`): `keep` (default) writes their embeddings
    /// to `store_vectors`, which needs the pgvector extension on the server; `drop`
    /// writes the items without them.
    #[serde(default)]
    pub store_embeddings: StoreEmbeddings,
}

/// What a Store-item run does with the items' embeddings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEmbeddings {
    /// Write them to `store_vectors` (the server needs the pgvector extension).
    #[default]
    Keep,
    /// Write the items without them (an app that re-indexes, or searches without
    /// vectors).
    Drop,
}

fn default_schema() -> String {
    "public".into()
}

fn default_true() -> bool {
    true
}
