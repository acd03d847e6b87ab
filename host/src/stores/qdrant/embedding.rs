//! Vectors for Unified Memory points: none (zeros, as the original system without an
//! API key), a local deterministic text-hashing embedder (offline), or an
//! OpenAI-compatible HTTP endpoint.
//!
//! Text embedded for a checkpoint (documented in docs/unified.md): the thread id, a few
//! metadata fields (`source`, `step`, `user_id`, `tenant`, `tags`, `locale`), then the
//! last [`LAST_MESSAGES`] messages as `role: content`, cut to the last
//! [`MAX_TEXT_CHARS`] characters (the newest text is kept).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::StoreError;
use crate::record::Checkpoint;
use crate::retry::Backoff;
use crate::retry::RetryPolicy;

pub const DEFAULT_DIMENSIONS: u64 = 768;
pub const LAST_MESSAGES: usize = 6;
pub const MAX_TEXT_CHARS: usize = 4000;
const METADATA_KEYS: [&str; 6] = ["source", "step", "user_id", "tenant", "tags", "locale"];

/// The `embedding:` block of the unified config.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// `none`, `hash` or `openai` (any OpenAI-compatible `/embeddings` endpoint).
    pub provider: String,
    /// Model name sent to the endpoint.
    pub model: Option<String>,
    /// Vector size (default 768; for `openai` also sent as `dimensions`).
    pub dimensions: Option<u64>,
    /// Endpoint base, e.g. `https://api.openai.com/v1` (default `$OPENAI_BASE_URL`, else that).
    pub base_url: Option<String>,
    /// Environment variable holding the API key (default `OPENAI_API_KEY`).
    pub api_key_env: Option<String>,
    /// Texts per request (default 64).
    pub batch_size: Option<usize>,
}

impl EmbeddingConfig {
    /// From the seed's `embedding_model` string: `none`, `hash`, or a model name for an
    /// OpenAI-compatible endpoint.
    pub fn from_model(model: Option<&str>) -> Self {
        let (provider, model) = match model {
            None | Some("none" | "") => ("none", None),
            Some("hash") => ("hash", None),
            Some(m) => ("openai", Some(m.to_owned())),
        };
        Self {
            provider: provider.into(),
            model,
            dimensions: None,
            base_url: None,
            api_key_env: None,
            batch_size: None,
        }
    }

    pub fn dimensions(&self) -> u64 {
        self.dimensions.unwrap_or(DEFAULT_DIMENSIONS)
    }
}

pub enum Embedder {
    Zeros(usize),
    Hash(usize),
    OpenAi(OpenAiEmbedder),
}

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    dimensions: usize,
    api_key: Option<String>,
    batch_size: usize,
    retry: RetryPolicy,
}

impl Embedder {
    pub fn new(config: &EmbeddingConfig, retry: RetryPolicy) -> Result<Self, String> {
        let dims = usize::try_from(config.dimensions()).map_err(|_| "dimensions too large")?;
        if dims == 0 {
            return Err("embedding dimensions must be at least 1".into());
        }
        match config.provider.as_str() {
            "none" => Ok(Embedder::Zeros(dims)),
            "hash" => Ok(Embedder::Hash(dims)),
            "openai" => {
                let base = config
                    .base_url
                    .clone()
                    .or_else(|| std::env::var("OPENAI_BASE_URL").ok())
                    .unwrap_or_else(|| "https://api.openai.com/v1".into());
                let key_env = config
                    .api_key_env
                    .clone()
                    .unwrap_or_else(|| "OPENAI_API_KEY".into());
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
                Ok(Embedder::OpenAi(OpenAiEmbedder {
                    client,
                    url: format!("{}/embeddings", base.trim_end_matches('/')),
                    model: config
                        .model
                        .clone()
                        .ok_or("embedding provider openai needs a `model`")?,
                    dimensions: dims,
                    api_key: std::env::var(&key_env).ok(),
                    batch_size: config.batch_size.unwrap_or(64).max(1),
                    retry,
                }))
            }
            other => Err(format!(
                "unknown embedding provider {other:?} (none, hash, openai)"
            )),
        }
    }

    pub fn dimensions(&self) -> usize {
        match self {
            Embedder::Zeros(d) | Embedder::Hash(d) => *d,
            Embedder::OpenAi(o) => o.dimensions,
        }
    }

    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StoreError> {
        match self {
            Embedder::Zeros(d) => Ok(texts.iter().map(|_| vec![0.0; *d]).collect()),
            Embedder::Hash(d) => Ok(texts.iter().map(|t| hash_embedding(t, *d)).collect()),
            Embedder::OpenAi(o) => o.embed(texts).await,
        }
    }
}

impl OpenAiEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StoreError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch_size) {
            let mut backoff = Backoff::new(self.retry);
            let vectors = loop {
                match self.request(chunk).await {
                    Ok(v) => break v,
                    Err(e) => match backoff.retry_after("embedding", &e) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(e),
                    },
                }
            };
            out.extend(vectors);
        }
        Ok(out)
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, StoreError> {
        let body = serde_json::json!({ "model": self.model, "input": texts, "dimensions": self.dimensions });
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            let message = format!("embedding endpoint {}: {}", self.url, without_url(&e));
            StoreError {
                message,
                retriable: e.is_timeout() || e.is_connect() || e.is_request(),
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message = format!(
                "embedding endpoint {} answered {status}: {}",
                self.url,
                text.chars().take(300).collect::<String>()
            );
            let retriable = status.as_u16() == 429 || status.is_server_error();
            return Err(StoreError { message, retriable });
        }
        let parsed: Value = response.json().await.map_err(|e| {
            StoreError::retriable(format!(
                "embedding endpoint {}: bad JSON: {}",
                self.url,
                without_url(&e)
            ))
        })?;
        let data = parsed["data"].as_array().ok_or_else(|| {
            StoreError::fatal(format!("embedding endpoint {}: no `data` list", self.url))
        })?;
        let mut vectors = vec![Vec::new(); texts.len()];
        for (i, item) in data.iter().enumerate() {
            let index = item["index"].as_u64().map_or(i, |n| n as usize);
            let vector: Vec<f32> = item["embedding"]
                .as_array()
                .ok_or_else(|| StoreError::fatal("embedding item without `embedding`".to_owned()))?
                .iter()
                .map(|x| x.as_f64().unwrap_or(0.0) as f32)
                .collect();
            if vector.len() != self.dimensions {
                return Err(StoreError::fatal(format!(
                    "embedding endpoint returned {} dimensions, the collection has {}",
                    vector.len(),
                    self.dimensions
                )));
            }
            if let Some(slot) = vectors.get_mut(index) {
                *slot = vector;
            }
        }
        if vectors.iter().any(Vec::is_empty) {
            return Err(StoreError::fatal(
                "embedding endpoint returned fewer vectors than texts".to_owned(),
            ));
        }
        Ok(vectors)
    }
}

/// reqwest errors print the URL; ours has no secret, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

/// Word and word-pair features hashed into `dims` buckets with a sign, L2-normalized:
/// similar texts get similar vectors, with no model and no network.
pub fn hash_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut add = |feature: &str| {
        let h = fnv1a(feature.as_bytes());
        let index = (h % dims as u64) as usize;
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[index] += sign;
    };
    for (i, w) in words.iter().enumerate() {
        add(w);
        if let Some(next) = words.get(i + 1) {
            add(&format!("{w} {next}"));
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The messages of a checkpoint's view (`channel_values.messages`, LangChain objects
/// or plain maps) as `(role, text)`, in order; the text is empty for a message without
/// any (a tool call).
pub fn messages(checkpoint: &Value) -> Vec<(String, String)> {
    let Some(Value::Array(messages)) = checkpoint
        .get("channel_values")
        .and_then(|c| c.get("messages"))
    else {
        return Vec::new();
    };
    messages
        .iter()
        .map(|m| {
            let kwargs = m.get("kwargs").unwrap_or(m);
            let role = kwargs
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("message");
            let content = match kwargs.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| {
                        p.as_str()
                            .map(str::to_owned)
                            .or_else(|| p.get("text")?.as_str().map(str::to_owned))
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            (role.to_owned(), content)
        })
        .collect()
}

/// The strings of a JSON value, depth first.
pub fn string_leaves(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(string_leaves).collect(),
        Value::Object(map) => map.values().flat_map(string_leaves).collect(),
        _ => Vec::new(),
    }
}

/// The text embedded for a checkpoint (rule in the module docs).
pub fn text_for(record: &Checkpoint) -> String {
    let mut lines = vec![format!("thread: {}", record.key.thread_id)];
    let Some(view) = record.view.as_ref() else {
        return lines.join("\n");
    };
    let fields: Vec<String> = METADATA_KEYS
        .iter()
        .filter_map(|k| {
            let v = view.metadata.get(*k)?;
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => return None,
            };
            Some(format!("{k}={text}"))
        })
        .collect();
    if !fields.is_empty() {
        lines.push(format!("metadata: {}", fields.join(", ")));
    }
    let all = messages(&view.checkpoint);
    let start = all.len().saturating_sub(LAST_MESSAGES);
    for (role, content) in &all[start..] {
        if !content.is_empty() {
            lines.push(format!("{role}: {content}"));
        }
    }
    newest_text(&lines)
}

/// Lines joined, cut to their last [`MAX_TEXT_CHARS`] characters (the newest text is
/// kept).
pub fn newest_text(lines: &[String]) -> String {
    let text = lines.join("\n");
    let chars = text.chars().count();
    if chars <= MAX_TEXT_CHARS {
        return text;
    }
    text.chars().skip(chars - MAX_TEXT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_embeddings_are_deterministic_normalized_and_similar_for_similar_text() {
        let a = hash_embedding("Where is my order ORD-1?", 64);
        let b = hash_embedding("where is my order ord-1", 64);
        let c = hash_embedding("Quarterly revenue grew strongly", 64);
        assert_eq!(a, hash_embedding("Where is my order ORD-1?", 64));
        assert_eq!(a, b, "case and punctuation do not matter");
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&a, &b) > dot(&a, &c));
        assert!(hash_embedding("", 8).iter().all(|x| *x == 0.0));
    }

    #[test]
    fn the_seed_model_string_picks_the_provider() {
        assert_eq!(EmbeddingConfig::from_model(None).provider, "none");
        assert_eq!(EmbeddingConfig::from_model(Some("hash")).provider, "hash");
        let c = EmbeddingConfig::from_model(Some("text-embedding-3-small"));
        assert_eq!(
            (c.provider.as_str(), c.model.as_deref()),
            ("openai", Some("text-embedding-3-small"))
        );
    }
}
