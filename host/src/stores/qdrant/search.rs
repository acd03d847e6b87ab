//! `ckpt-migrate search`: the checkpoints of a Unified Memory collection nearest to a
//! text, embedded the way the collection was written, with the message that matches.

use serde_json::Value;

use super::config::QdrantConfig;
use super::embedding::{Embedder, EmbeddingConfig, messages, string_leaves};
use super::points::FieldMatch;
use crate::error::StoreError;
use crate::retry::RetryPolicy;

/// One search result: a checkpoint, or a Store item (`namespace` and `key` set).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub step: Option<Value>,
    pub created_at: Option<String>,
    /// The message of the checkpoint sharing most words with the query (`role:
    /// content`), or the newest one.
    pub message: Option<String>,
}

/// Which embedding to search with: the configured one, else the one the collection
/// says it was written with.
async fn embedding_for(
    config: &QdrantConfig,
    store: &dyn super::points::PointStore,
) -> Result<EmbeddingConfig, StoreError> {
    let embedding = if config.embedding_given() {
        config.embedding_config()
    } else {
        store.embedding().await?.ok_or_else(|| {
            StoreError::fatal(format!(
                "{}: say which embedding its vectors were made with (--embedding-model, or \
                 embedding in the config): only embedded collections record it",
                store.describe()
            ))
        })?
    };
    if embedding.provider == "none" {
        return Err(StoreError::fatal(format!(
            "{}: its vectors are zeros (embedding none), so there is nothing to search by; \
             write it with embedding_model: hash (offline) or an embedding model",
            store.describe()
        )));
    }
    Ok(embedding)
}

/// The `limit` checkpoints nearest to `query`, best first.
pub async fn search(
    config: &QdrantConfig,
    query: &str,
    thread: Option<&str>,
    limit: usize,
) -> Result<Vec<Hit>, StoreError> {
    let store = super::open_store(config)?;
    if store.vector_size().await?.is_none() {
        return Err(StoreError::fatal(format!(
            "{}: the collection does not exist",
            store.describe()
        )));
    }
    let embedding = embedding_for(config, store.as_ref()).await?;
    let embedder = Embedder::new(&embedding, RetryPolicy::default())
        .map_err(|e| StoreError::fatal(format!("embedding: {e}")))?;
    let vector = embedder
        .embed(&[query.to_owned()])
        .await?
        .pop()
        .unwrap_or_default();
    let only = thread.map(|t| FieldMatch {
        field: "thread_id",
        value: t.to_owned(),
    });
    let found = store.search(vector, only.as_ref(), limit.max(1)).await?;
    Ok(found
        .into_iter()
        .map(|f| hit(f.score.unwrap_or_default(), &f.payload, query))
        .collect())
}

fn hit(score: f32, payload: &Value, query: &str) -> Hit {
    let text = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    if text("type").as_deref() == Some("store_item") {
        return Hit {
            score,
            namespace: text("namespace_path"),
            key: text("key"),
            thread_id: String::new(),
            checkpoint_ns: String::new(),
            checkpoint_id: String::new(),
            step: None,
            created_at: text("updated_at"),
            message: best_text(
                string_leaves(payload.get("value").unwrap_or(&Value::Null))
                    .into_iter()
                    .map(|t| (String::new(), t)),
                query,
            ),
        };
    }
    Hit {
        score,
        namespace: None,
        key: None,
        thread_id: text("thread_id").unwrap_or_default(),
        checkpoint_ns: text("checkpoint_ns").unwrap_or_default(),
        checkpoint_id: text("checkpoint_id").unwrap_or_default(),
        step: payload.get("metadata").and_then(|m| m.get("step")).cloned(),
        created_at: text("created_at"),
        message: matching_message(payload.get("checkpoint").unwrap_or(&Value::Null), query),
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The message sharing most words with the query; on a tie, the newest.
pub fn matching_message(checkpoint: &Value, query: &str) -> Option<String> {
    best_text(messages(checkpoint).into_iter(), query)
}

/// Of `(label, text)` pairs, the text sharing most words with the query (the last on
/// a tie), as `label: text` (or the text alone without a label).
fn best_text(texts: impl Iterator<Item = (String, String)>, query: &str) -> Option<String> {
    let wanted = words(query);
    texts
        .enumerate()
        .filter(|(_, (_, content))| !content.is_empty())
        .max_by_key(|(i, (_, content))| {
            let have = words(content);
            (wanted.iter().filter(|w| have.contains(w)).count(), *i)
        })
        .map(|(_, (label, content))| {
            if label.is_empty() {
                content
            } else {
                format!("{label}: {content}")
            }
        })
}

/// Hits as text: a line per checkpoint and its matching message, indented.
pub fn render(hits: &[Hit]) -> String {
    if hits.is_empty() {
        return "no matching checkpoints\n".into();
    }
    let mut out = String::new();
    for (n, h) in hits.iter().enumerate() {
        if let (Some(namespace), Some(key)) = (&h.namespace, &h.key) {
            out.push_str(&format!(
                "{}. {:.3}  item {namespace} / {key}  updated {}\n",
                n + 1,
                h.score,
                h.created_at.as_deref().unwrap_or("(no time)"),
            ));
            push_message(&mut out, h.message.as_deref());
            continue;
        }
        let step = h
            .step
            .as_ref()
            .map_or(String::new(), |s| format!("  step {s}"));
        let ns = if h.checkpoint_ns.is_empty() {
            String::new()
        } else {
            format!("  ns {}", h.checkpoint_ns)
        };
        out.push_str(&format!(
            "{}. {:.3}  thread {}{ns}{step}  {}  checkpoint {}\n",
            n + 1,
            h.score,
            h.thread_id,
            h.created_at.as_deref().unwrap_or("(no time)"),
            h.checkpoint_id
        ));
        push_message(&mut out, h.message.as_deref());
    }
    out
}

/// A hit's text on one indented line, cut to 200 characters.
fn push_message(out: &mut String, message: Option<&str>) {
    if let Some(m) = message {
        let one_line: String = m.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown: String = one_line.chars().take(200).collect();
        let more = if one_line.chars().count() > 200 {
            "…"
        } else {
            ""
        };
        out.push_str(&format!("   {shown}{more}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_message_sharing_most_words_with_the_query_is_shown() {
        let checkpoint = json!({"channel_values": {"messages": [
            {"lc": 1, "type": "constructor", "kwargs": {"type": "human", "content": "Where is my order ORD-1?"}},
            {"kwargs": {"type": "ai", "content": [{"type": "text", "text": "It ships tomorrow."}]}},
            {"kwargs": {"type": "human", "content": "thanks"}},
        ]}});
        assert_eq!(
            matching_message(&checkpoint, "order status").as_deref(),
            Some("human: Where is my order ORD-1?")
        );
        assert_eq!(
            matching_message(&checkpoint, "ships").as_deref(),
            Some("ai: It ships tomorrow.")
        );
        // Nothing in common: the newest message.
        assert_eq!(
            matching_message(&checkpoint, "zebra").as_deref(),
            Some("human: thanks")
        );
        assert_eq!(matching_message(&json!({}), "x"), None);
    }
}
