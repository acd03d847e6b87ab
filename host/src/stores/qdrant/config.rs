//! Configuration of the Qdrant store (the user-facing kind is `unified`: a "Unified
//! Memory" collection).

use serde::Deserialize;

use super::embedding::EmbeddingConfig;

/// Qdrant "Unified Memory" collection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// Qdrant URL, e.g. `http://localhost:6333`.
    pub qdrant_url: String,
    /// Collection name.
    pub collection: String,
    /// API key (or `${ENV_VAR}`).
    pub api_key: Option<String>,
    /// Embedding model: `none` (zero vectors, the default), `hash` (local, offline), or
    /// a model name for an OpenAI-compatible endpoint.
    pub embedding_model: Option<String>,
    /// Full embedding settings (win over `embedding_model`); see docs/unified.md.
    pub embedding: Option<EmbeddingConfig>,
    /// gRPC port when `qdrant_url` names the REST port (default: 6334 for 6333).
    pub grpc_port: Option<u16>,
    /// Upsert requests in flight at once (default 3).
    pub upsert_streams: Option<usize>,
    /// Upper bound of one upsert request in bytes (default 16 MiB; Qdrant refuses 32).
    pub max_request_bytes: Option<usize>,
    /// `false`: one `wait=true` upsert per batch, nothing in flight (the baseline the
    /// benchmark compares with). Default `true`.
    pub pipeline: Option<bool>,
}

impl QdrantConfig {
    pub fn embedding_config(&self) -> EmbeddingConfig {
        self.embedding
            .clone()
            .unwrap_or_else(|| EmbeddingConfig::from_model(self.embedding_model.as_deref()))
    }
}
