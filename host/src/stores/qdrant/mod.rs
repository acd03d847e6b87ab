//! Unified Memory: checkpoints as Qdrant points (gRPC, qdrant-client), shared by the
//! `unified` destination and source.
//!
//! Point id: `uuid5(550e8400-e29b-41d4-a716-446655440000, checkpoint_id)`, as the
//! original system, so a re-run upserts the same points. Payload: the original
//! system's fields plus `ckpt_migrate.raw` (every stored value, base64), so reading the
//! collection back is lossless. Details in docs/unified.md.

pub mod config;
pub mod embedding;
mod read;
mod write;

pub use read::QdrantSource;
pub use write::QdrantSink;

use serde_json::{Value, json};

use crate::error::StoreError;
use crate::record::Checkpoint;
use crate::secrets::scrub;
use config::QdrantConfig;

/// The original system's namespace for point ids.
pub const POINT_NAMESPACE: uuid::Uuid = uuid::uuid!("550e8400-e29b-41d4-a716-446655440000");
/// Qdrant's REST port; the seed's URLs name it, the client speaks gRPC.
const REST_PORT: u16 = 6333;
const GRPC_PORT: u16 = 6334;
pub const PAYLOAD_FORMAT: u64 = 1;

pub fn point_id(checkpoint_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&POINT_NAMESPACE, checkpoint_id.as_bytes())
}

/// The gRPC URL for a configured `qdrant_url`: the REST port 6333 becomes 6334 unless
/// `grpc_port` says otherwise; any other port is taken as a gRPC port already.
pub fn grpc_url(config: &QdrantConfig) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::fatal(format!("qdrant_url {:?}: {why}", config.qdrant_url));
    let (scheme, rest) = config
        .qdrant_url
        .split_once("://")
        .ok_or_else(|| bad("not a URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad("use http:// or https://"));
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.to_owned(),
            Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
        ),
        _ => (authority.to_owned(), None),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match (config.grpc_port, port) {
        (Some(p), _) => p,
        (None, Some(REST_PORT) | None) => GRPC_PORT,
        (None, Some(p)) => p,
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

/// The API key: the config's, else `$QDRANT_API_KEY`.
pub fn api_key(config: &QdrantConfig) -> Option<String> {
    config
        .api_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| {
            std::env::var("QDRANT_API_KEY")
                .ok()
                .filter(|k| !k.is_empty())
        })
}

pub fn connect(config: &QdrantConfig) -> Result<(qdrant_client::Qdrant, String), StoreError> {
    let url = grpc_url(config)?;
    if url != config.qdrant_url.trim_end_matches('/') {
        tracing::debug!("Qdrant {}: talking gRPC on {url}", config.qdrant_url);
    }
    let key = api_key(config);
    let client = qdrant_client::Qdrant::from_url(&url)
        .api_key(key.clone())
        .timeout(std::time::Duration::from_secs(60))
        .skip_compatibility_check()
        .build()
        .map_err(|e| StoreError::fatal(scrub(&format!("Qdrant {url}: {e}"), key.as_deref())))?;
    Ok((client, url))
}

/// A Qdrant error as a store error: unavailable, timeouts, overload and 5xx-like
/// statuses are retriable.
pub fn error(
    url: &str,
    what: &str,
    e: qdrant_client::QdrantError,
    key: Option<&str>,
) -> StoreError {
    use qdrant_client::QdrantError;
    use tonic::Code;
    let retriable = match &e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Internal
                | Code::Unknown
        ),
        QdrantError::ResourceExhaustedError { .. } => true,
        _ => false,
    };
    let detail = match &e {
        QdrantError::ResponseError { status } => {
            let message = status.message();
            match status.code() {
                Code::Unauthenticated | Code::PermissionDenied => {
                    format!("authentication failed: {message}")
                }
                Code::Unavailable => format!("unavailable: {message}"),
                code => format!("{code:?}: {message}"),
            }
        }
        other => other.to_string(),
    };
    StoreError {
        message: scrub(&format!("Qdrant {url}: {what}: {detail}"), key),
        retriable,
    }
}

/// The point payload of a decoded record.
pub fn payload(record: &Checkpoint, updated_at: &str) -> Value {
    let view = record.view.as_ref();
    let checkpoint = view.map_or(Value::Null, |v| v.checkpoint.clone());
    json!({
        "type": "checkpoint",
        "thread_id": record.key.thread_id,
        "checkpoint_ns": record.key.checkpoint_ns,
        "checkpoint_id": record.key.checkpoint_id,
        "id": record.key.checkpoint_id,
        "parent_checkpoint_id": record.parent_checkpoint_id,
        "channel_versions": checkpoint.get("channel_versions").cloned().unwrap_or(Value::Null),
        "checkpoint": checkpoint,
        "metadata": view.map_or(Value::Null, |v| v.metadata.clone()),
        "pending_writes": view.map_or(Value::Array(Vec::new()), |v| v.pending_writes_json()),
        "created_at": view.and_then(|v| v.ts.clone()),
        "created_at_ms": view.and_then(|v| v.ts_parsed).map(|t| t.timestamp_millis()),
        "updated_at": updated_at,
        "ckpt_migrate": {
            "format": PAYLOAD_FORMAT,
            "raw": record.to_raw_json(),
            "origin": record.origin,
        },
    })
}

/// A record from a point payload: ours (lossless, from the raw values) or the
/// original system's (checkpoint and metadata as base64 of LangGraph's JSON
/// serialization).
pub fn record_from_payload(
    point: &str,
    payload: &Value,
    locator: String,
) -> Result<Checkpoint, String> {
    use base64::Engine as _;
    let text = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    let key = crate::record::CheckpointKey {
        thread_id: text("thread_id").ok_or("payload has no thread_id")?,
        checkpoint_ns: text("checkpoint_ns").unwrap_or_default(),
        checkpoint_id: text("checkpoint_id")
            .or_else(|| text("id"))
            .ok_or("payload has no checkpoint_id")?,
    };
    let origin = crate::record::Origin {
        store: "unified".into(),
        locator,
    };
    if let Some(raw) = payload.get("ckpt_migrate").and_then(|m| m.get("raw")) {
        if raw.is_null() {
            return Err(format!("point {point}: empty raw record"));
        }
        let parent = raw["parent_checkpoint_id"].as_str().map(str::to_owned);
        return Checkpoint::from_raw_json(key, parent, raw, origin);
    }
    // The original Unified Memory payload.
    let b64 = |k: &str| -> Result<Vec<u8>, String> {
        match payload.get(k) {
            Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .or_else(|_| Ok::<_, String>(s.clone().into_bytes())),
            Some(Value::Null) | None => Ok(b"{}".to_vec()),
            Some(other) => Ok(other.to_string().into_bytes()),
        }
    };
    let pending_writes = match payload.get("pending_writes") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let (task, channel, value) = match w {
                    Value::Array(parts) if parts.len() >= 3 => {
                        (parts[0].clone(), parts[1].clone(), parts[2].clone())
                    }
                    Value::Object(m) => (
                        m.get("task_id").cloned().unwrap_or(Value::Null),
                        m.get("channel").cloned().unwrap_or(Value::Null),
                        m.get("value").cloned().unwrap_or(Value::Null),
                    ),
                    _ => return None,
                };
                let bytes = match &value {
                    Value::String(s) => base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .unwrap_or_else(|_| value.to_string().into_bytes()),
                    other => other.to_string().into_bytes(),
                };
                Some(crate::record::PendingWrite {
                    task_id: task.as_str().unwrap_or_default().to_owned(),
                    task_path: String::new(),
                    idx: i as i64,
                    channel: channel.as_str().unwrap_or_default().to_owned(),
                    value: crate::record::TypedValue::new("json", bytes),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Checkpoint {
        key,
        parent_checkpoint_id: text("parent_checkpoint_id").filter(|p| !p.is_empty()),
        checkpoint: crate::record::TypedValue::new("json", b64("checkpoint")?),
        channel_blobs: Vec::new(),
        metadata: crate::record::TypedValue::new("json", b64("metadata")?),
        pending_writes,
        origin,
        view: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, grpc_port: Option<u16>) -> QdrantConfig {
        QdrantConfig {
            qdrant_url: url.into(),
            collection: "c".into(),
            api_key: None,
            embedding_model: None,
            embedding: None,
            grpc_port,
            upsert_streams: None,
            max_request_bytes: None,
            pipeline: None,
        }
    }

    #[test]
    fn rest_urls_talk_grpc() {
        assert_eq!(
            grpc_url(&config("http://localhost:6333", None)).unwrap(),
            "http://localhost:6334"
        );
        assert_eq!(
            grpc_url(&config("http://localhost", None)).unwrap(),
            "http://localhost:6334"
        );
        assert_eq!(
            grpc_url(&config("https://q.example:7000/", None)).unwrap(),
            "https://q.example:7000"
        );
        assert_eq!(
            grpc_url(&config("http://localhost:6333", Some(16334))).unwrap(),
            "http://localhost:16334"
        );
        assert!(grpc_url(&config("localhost:6333", None)).is_err());
    }

    #[test]
    fn point_ids_are_the_original_systems() {
        // uuid5(NAMESPACE, id), as the original Unified Memory computed it.
        assert_eq!(
            point_id("1f1e7965-9977-6f74-bfff-036d44643f9b"),
            uuid::Uuid::new_v5(&POINT_NAMESPACE, b"1f1e7965-9977-6f74-bfff-036d44643f9b")
        );
        assert_ne!(point_id("a"), point_id("b"));
    }

    #[test]
    fn payloads_round_trip_losslessly() {
        let mut record = crate::plugins::check::sample_records().remove(1);
        record.pending_writes.push(crate::record::PendingWrite {
            task_id: "t".into(),
            task_path: "~p".into(),
            idx: -3,
            channel: "__interrupt__".into(),
            value: crate::record::TypedValue::new("msgpack", vec![0x91, 0xc0]),
        });
        crate::codec::decode_record(&mut record).unwrap();
        let p = payload(&record, "2025-01-01T00:00:00Z");
        assert_eq!(p["id"], p["checkpoint_id"]);
        assert_eq!(p["created_at"], "2025-06-01T12:00:01.250000+00:00");
        assert_eq!(
            p["channel_versions"]["messages"],
            "00000000000000000000000000000002.0.5"
        );
        let back = record_from_payload("x", &p, "here".into()).unwrap();
        assert_eq!(back.key, record.key);
        assert_eq!(back.checkpoint, record.checkpoint);
        assert_eq!(back.metadata, record.metadata);
        assert_eq!(back.pending_writes, record.pending_writes);
        assert_eq!(back.parent_checkpoint_id, record.parent_checkpoint_id);
    }

    #[test]
    fn original_payloads_are_read_from_base64_json() {
        use base64::Engine as _;
        let enc = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
        let checkpoint = json!({"v": 1, "ts": "2024-05-01T00:00:00+00:00", "id": "c1",
            "channel_values": {"messages": [{"lc": 1, "type": "constructor",
                "id": ["langchain", "schema", "messages", "HumanMessage"], "kwargs": {"content": "hi", "type": "human"}}]},
            "channel_versions": {"messages": 2}, "versions_seen": {}});
        let p = json!({"thread_id": "t1", "checkpoint_ns": "", "id": "c1", "checkpoint_id": "c1",
            "parent_checkpoint_id": null, "checkpoint": enc(&checkpoint), "metadata": enc(&json!({"step": 1})),
            "type": "checkpoint"});
        let mut r = record_from_payload("x", &p, "here".into()).unwrap();
        crate::codec::decode_record(&mut r).unwrap();
        let view = r.view.unwrap();
        assert_eq!(view.metadata["step"], 1);
        assert_eq!(
            view.checkpoint["channel_values"]["messages"][0]["kwargs"]["content"],
            "hi"
        );
    }
}
