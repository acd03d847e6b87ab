//! Configuration of the Qdrant store (the user-facing kind is `unified`: a "Unified
//! Memory" collection), on a Qdrant server or embedded in a directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::embedding::EmbeddingConfig;
use crate::error::StoreError;

/// The collection used when none is named.
pub const DEFAULT_COLLECTION: &str = "checkpoints";

/// Qdrant "Unified Memory" collection: on a server (`qdrant_url`) or embedded, with no
/// server, in a directory (`path`, Qdrant Edge).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// Qdrant server URL, e.g. `http://localhost:6333`. `file:./memory` means the same
    /// as `path: ./memory`.
    pub qdrant_url: Option<String>,
    /// A directory holding embedded collections (Qdrant Edge, no server): collection
    /// `C` lives in `PATH/C`. Give this or `qdrant_url`, not both.
    pub path: Option<PathBuf>,
    /// Collection name (default `checkpoints`; `store_items` for Store items).
    pub collection: Option<String>,
    /// API key (or `${ENV_VAR}`); servers only.
    pub api_key: Option<String>,
    /// Embedding model: `none` (zero vectors, the default), `hash` (local, offline), or
    /// a model name for an OpenAI-compatible endpoint.
    pub embedding_model: Option<String>,
    /// Full embedding settings (win over `embedding_model`); see docs/unified.md.
    pub embedding: Option<EmbeddingConfig>,
    /// gRPC port when `qdrant_url` names the REST port (default: 6334 for 6333).
    pub grpc_port: Option<u16>,
    /// Upsert requests in flight at once (default 3); servers only.
    pub upsert_streams: Option<usize>,
    /// Upper bound of one upsert request in bytes (default 16 MiB; Qdrant refuses 32);
    /// servers only.
    pub max_request_bytes: Option<usize>,
    /// `false`: one `wait=true` upsert per batch, nothing in flight (the baseline the
    /// benchmark compares with). Default `true`; servers only.
    pub pipeline: Option<bool>,
    /// Points the segment an embedded collection appends to holds before the engine
    /// seals it into a segment kept on disk (default 100 000). The engine holds the
    /// open segment's indexes in memory, about 0.3 KB a point, and a sealed point's in
    /// about 60 bytes, so memory grows a fifth as fast past this size; sealing costs
    /// about as much as the points' first write. `0`: never seal (the fastest run,
    /// memory growing 0.3 KB a point). Taken when the collection is created;
    /// embedded collections only.
    pub segment_points: Option<u64>,
}

/// The collection Store items go to when none is named.
pub const DEFAULT_ITEMS_COLLECTION: &str = "store_items";

/// Where a collection lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A Qdrant server, by its configured URL.
    Server(String),
    /// An embedded collection: this directory is its shard.
    Embedded(PathBuf),
}

impl QdrantConfig {
    /// A config for a collection at `location`, everything else default.
    pub fn new(qdrant_url: Option<String>, path: Option<PathBuf>, collection: String) -> Self {
        Self {
            qdrant_url,
            path,
            collection: Some(collection),
            api_key: None,
            embedding_model: None,
            embedding: None,
            grpc_port: None,
            upsert_streams: None,
            max_request_bytes: None,
            pipeline: None,
            segment_points: None,
        }
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        self.collection.as_deref().unwrap_or(DEFAULT_COLLECTION)
    }

    /// This config for Store items: their own collection unless one is named.
    pub fn for_items(&self) -> Self {
        let mut config = self.clone();
        config
            .collection
            .get_or_insert_with(|| DEFAULT_ITEMS_COLLECTION.into());
        config
    }

    pub fn embedding_config(&self) -> EmbeddingConfig {
        self.embedding
            .clone()
            .unwrap_or_else(|| EmbeddingConfig::from_model(self.embedding_model.as_deref()))
    }

    /// Whether an embedding was configured at all (else an embedded collection's own
    /// record of it is used for searching).
    pub fn embedding_given(&self) -> bool {
        self.embedding.is_some() || self.embedding_model.is_some()
    }

    /// The server or the embedded directory; exactly one of `qdrant_url` and `path`.
    pub fn location(&self) -> Result<Location, StoreError> {
        let name = self.collection();
        let embedded = |dir: &Path| -> Result<Location, StoreError> {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(StoreError::fatal(format!(
                    "collection {name:?}: an embedded collection's name is its directory's, so \
                     it may not be empty, start with a dot or contain a slash"
                )));
            }
            Ok(Location::Embedded(dir.join(name)))
        };
        match (&self.qdrant_url, &self.path) {
            (Some(_), Some(_)) => Err(StoreError::fatal(
                "give either qdrant_url (a server) or path (an embedded collection), not both",
            )),
            (None, None) => Err(StoreError::fatal(
                "say where the collection is: qdrant_url (a Qdrant server, e.g. \
                 http://localhost:6333) or path (an embedded collection directory, no server)",
            )),
            (None, Some(path)) => embedded(path),
            (Some(url), None) => match url.strip_prefix("file:") {
                Some(rest) => embedded(Path::new(rest.strip_prefix("//").unwrap_or(rest))),
                None => Ok(Location::Server(url.clone())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_is_on_a_server_or_in_a_directory() {
        let at = |url: Option<&str>, path: Option<&str>| {
            QdrantConfig::new(url.map(Into::into), path.map(Into::into), "c".into()).location()
        };
        assert_eq!(
            at(Some("http://q:6333"), None).unwrap(),
            Location::Server("http://q:6333".into())
        );
        assert_eq!(
            at(None, Some("./memory")).unwrap(),
            Location::Embedded(PathBuf::from("./memory/c"))
        );
        assert_eq!(
            at(Some("file:./memory"), None).unwrap(),
            Location::Embedded(PathBuf::from("./memory/c"))
        );
        assert_eq!(
            at(Some("file:///var/memory"), None).unwrap(),
            Location::Embedded(PathBuf::from("/var/memory/c"))
        );
        assert!(at(None, None).unwrap_err().message.contains("qdrant_url"));
        assert!(
            at(Some("http://q"), Some("m"))
                .unwrap_err()
                .message
                .contains("not both")
        );
        let mut bad = QdrantConfig::new(None, Some("m".into()), "../x".into());
        assert!(bad.location().is_err());
        bad.collection = Some("a/b".into());
        assert!(bad.location().is_err());
    }
}
