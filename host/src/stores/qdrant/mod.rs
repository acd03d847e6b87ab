//! Unified Memory: checkpoints as Qdrant points, on a Qdrant server (gRPC,
//! qdrant-client) or embedded in a directory (Qdrant Edge), shared by the `unified`
//! destination and source and by `search`.
//!
//! Point id: `uuid5(550e8400-e29b-41d4-a716-446655440000, checkpoint_id)`, as the
//! original system, so a re-run upserts the same points. Payload: the original
//! system's fields plus `ckpt_migrate.raw` (every stored value, base64), so reading the
//! collection back is lossless. Details in docs/unified.md.

pub mod config;
mod edge;
pub mod embedding;
pub mod items;
pub mod points;
mod read;
pub mod search;
mod server;
mod write;

pub use items::open_item_sink;
pub use read::QdrantSource;
pub use write::{EMBEDDED_BATCH_SIZE, QdrantSink};

use serde_json::Value;

use crate::error::StoreError;
use crate::json_value::object;
use crate::record::Checkpoint;
use config::{Location, QdrantConfig};
use points::{Point, PointStore};

/// The original system's namespace for point ids.
pub const POINT_NAMESPACE: uuid::Uuid = uuid::uuid!("550e8400-e29b-41d4-a716-446655440000");
pub const PAYLOAD_FORMAT: u64 = 1;

pub fn point_id(checkpoint_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&POINT_NAMESPACE, checkpoint_id.as_bytes())
}

/// The collection the config names: on its server, or embedded in its directory.
pub fn open_store(config: &QdrantConfig) -> Result<Box<dyn PointStore>, StoreError> {
    Ok(match config.location()? {
        Location::Server(url) => Box::new(server::ServerStore::connect(config, &url)?),
        Location::Embedded(dir) => Box::new(edge::EdgeStore::new(
            dir,
            config.collection().to_owned(),
            config
                .segment_points
                .unwrap_or(edge::DEFAULT_SEGMENT_POINTS),
        )),
    })
}

/// Where failed records go unless the config says otherwise: beside the run, named
/// after the collection.
pub fn dead_letter_path(config: &QdrantConfig) -> std::path::PathBuf {
    format!(
        "{}.dead-letter.jsonl",
        crate::sinks::safe_file_name(config.collection())
    )
    .into()
}

/// Writes a batch's points from `(id, vector, payload)`, built as they are taken: in
/// the store's parts when it takes them (only a part's payloads exist at a time), else
/// whole, upserted `overlapped` ([`PointStore::upsert_overlapped`]) or confirmed at
/// once. Returns how many points were written and the refused `(index, reason)`.
pub async fn write_points(
    store: &dyn PointStore,
    mut parts: impl Iterator<Item = (uuid::Uuid, Vec<f32>, Value)> + Send,
    overlapped: bool,
) -> Result<(usize, Vec<(usize, String)>), StoreError> {
    let Some(part_size) = store.part_size() else {
        let (points, refused) = batch_points(store, parts, 0);
        let written = points.len();
        if overlapped {
            store.upsert_overlapped(points).await?;
        } else {
            store.upsert(points).await?;
        }
        return Ok((written, refused));
    };
    let mut written = 0;
    let mut refused = Vec::new();
    let mut taken = 0;
    loop {
        let (points, mut part_refused) = batch_points(store, parts.by_ref().take(part_size), taken);
        if points.is_empty() && part_refused.is_empty() {
            break;
        }
        taken += points.len() + part_refused.len();
        written += points.len();
        refused.append(&mut part_refused);
        if !points.is_empty() {
            store.write_part(points).await?;
        }
    }
    store.commit(overlapped).await?;
    Ok((written, refused))
}

/// The points from `(id, vector, payload)`, the first of them at index `first` of its
/// batch. They are measured only when the store bounds a request (serializing a
/// payload to count it is not free), and a point larger than a request may be is
/// refused: `(index, reason)`.
fn batch_points(
    store: &dyn PointStore,
    parts: impl Iterator<Item = (uuid::Uuid, Vec<f32>, Value)>,
    first: usize,
) -> (Vec<Point>, Vec<(usize, String)>) {
    let max_bytes = store.max_point_bytes();
    let mut points = Vec::new();
    let mut refused = Vec::new();
    for (index, (id, vector, payload)) in (first..).zip(parts) {
        let payload = match payload {
            Value::Object(map) => map,
            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
        };
        let bytes = match max_bytes {
            Some(_) => json_len(&payload) + vector.len() * 4,
            None => 0,
        };
        if let Some(max) = max_bytes
            && bytes > max
        {
            refused.push((
                index,
                format!("point of {bytes} bytes is larger than a request may be ({max})"),
            ));
            continue;
        }
        points.push(Point {
            id,
            vector,
            payload,
            bytes,
        });
    }
    (points, refused)
}

/// The length of a value as JSON text, without building the text.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a JSON value to a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The point payload of a decoded record.
///
/// Built with [`object`], the view's trees moved in once cloned: `json!` would turn
/// each tree into a new one through `Serialize` (`to_value`), a second deep copy that
/// was 8 % of the CPU of a run into an embedded collection (`perf record`).
pub fn payload(record: &Checkpoint, updated_at: &str) -> Value {
    let view = record.view.as_ref();
    let checkpoint = view.map_or(Value::Null, |v| v.checkpoint.clone());
    let channel_versions = checkpoint
        .get("channel_versions")
        .cloned()
        .unwrap_or(Value::Null);
    object([
        ("type", "checkpoint".into()),
        ("thread_id", record.key.thread_id.clone().into()),
        ("checkpoint_ns", record.key.checkpoint_ns.clone().into()),
        ("checkpoint_id", record.key.checkpoint_id.clone().into()),
        ("id", record.key.checkpoint_id.clone().into()),
        (
            "parent_checkpoint_id",
            record.parent_checkpoint_id.clone().into(),
        ),
        ("channel_versions", channel_versions),
        ("checkpoint", checkpoint),
        ("metadata", view.map_or(Value::Null, |v| v.metadata.clone())),
        (
            "pending_writes",
            view.map_or(Value::Array(Vec::new()), |v| v.pending_writes_json()),
        ),
        ("created_at", view.and_then(|v| v.ts.clone()).into()),
        (
            "created_at_ms",
            view.and_then(|v| v.ts_parsed)
                .map(|t| t.timestamp_millis())
                .into(),
        ),
        ("updated_at", updated_at.into()),
        (
            "ckpt_migrate",
            object([
                ("format", PAYLOAD_FORMAT.into()),
                ("raw", record.to_raw_json()),
                (
                    "origin",
                    serde_json::to_value(&record.origin).unwrap_or(Value::Null),
                ),
            ]),
        ),
    ])
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
    if text("type").as_deref() == Some("store_item") {
        return Err(format!(
            "point {point} is a LangGraph Store item, not a checkpoint (this collection \
             holds Store items)"
        ));
    }
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
    use serde_json::json;

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

    /// The payload built entry by entry is, byte for byte, the one `json!` built
    /// before: same keys in the same order, same values (collections written before
    /// keep comparing equal under `--verify`).
    #[test]
    fn payloads_are_the_text_json_gave() {
        for (n, mut record) in crate::plugins::check::sample_records()
            .into_iter()
            .enumerate()
        {
            record.pending_writes.push(crate::record::PendingWrite {
                task_id: "t".into(),
                task_path: "~p".into(),
                idx: 0,
                channel: "messages".into(),
                value: crate::record::TypedValue::new("msgpack", vec![0x92, 0x01, 0xa1, b'x']),
            });
            if n == 0 {
                record.parent_checkpoint_id = Some("p1".into());
            }
            crate::codec::decode_record(&mut record).unwrap();
            let updated_at = "2025-01-01T00:00:00Z";
            let view = record.view.as_ref();
            let checkpoint = view.map_or(Value::Null, |v| v.checkpoint.clone());
            let expected = json!({
                "type": "checkpoint",
                "thread_id": record.key.thread_id,
                "checkpoint_ns": record.key.checkpoint_ns,
                "checkpoint_id": record.key.checkpoint_id,
                "id": record.key.checkpoint_id,
                "parent_checkpoint_id": record.parent_checkpoint_id,
                "channel_versions": checkpoint.get("channel_versions").cloned().unwrap_or(Value::Null),
                "checkpoint": checkpoint,
                "metadata": view.map_or(Value::Null, |v| v.metadata.clone()),
                "pending_writes": view.map(|v| v.pending_writes.iter().map(|w| json!({
                    "task_id": w.task_id, "channel": w.channel, "value": w.value,
                })).collect::<Vec<_>>()),
                "created_at": view.and_then(|v| v.ts.clone()),
                "created_at_ms": view.and_then(|v| v.ts_parsed).map(|t| t.timestamp_millis()),
                "updated_at": updated_at,
                "ckpt_migrate": {
                    "format": PAYLOAD_FORMAT,
                    "raw": record.to_raw_json(),
                    "origin": record.origin,
                },
            });
            assert_eq!(
                payload(&record, updated_at).to_string(),
                expected.to_string(),
                "record {n}"
            );
        }
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
