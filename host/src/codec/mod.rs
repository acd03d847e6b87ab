//! Decoding LangGraph's typed values (`JsonPlusSerializer.dumps_typed`) into the
//! plain-JSON view. Raw values are never modified here.

mod json;
mod langchain;
pub mod msgpack;
pub mod python;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::record::{Checkpoint, RecordView, TypedValue, WriteView};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid msgpack: {0}")]
    Msgpack(String),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("{part}: {source}")]
    In {
        part: String,
        #[source]
        source: Box<DecodeError>,
    },
    #[error("{0}")]
    Shape(String),
}

impl DecodeError {
    fn within(self, part: impl Into<String>) -> Self {
        DecodeError::In {
            part: part.into(),
            source: Box::new(self),
        }
    }
}

/// Type tag of a chat session's messages: a JSON array of LangChain
/// `message_to_dict` objects (`{"type": "human", "data": {...}}`), as chat-history
/// tables store them one per row.
pub const CHAT_MESSAGES: &str = "chat_messages";

/// The view of one typed value. Values we do not decode (`pickle`, unknown tags) become
/// `{"__undecoded__": tag, "size": n}` and a notice; their raw bytes stay in the record.
pub fn decode_typed(value: &TypedValue, notices: &mut Vec<String>) -> Result<Value, DecodeError> {
    match value.type_tag.as_str() {
        "msgpack" => msgpack::to_view(msgpack::parse(&value.bytes)?, notices),
        "json" => Ok(json::to_view(json::parse(&value.bytes)?, notices)),
        CHAT_MESSAGES => match json::parse(&value.bytes)? {
            Value::Array(items) => Ok(Value::Array(
                items
                    .into_iter()
                    .map(|m| langchain::message_from_dict(m, notices))
                    .collect(),
            )),
            _ => Err(DecodeError::Shape("chat messages: expected a list".into())),
        },
        "bytes" | "bytearray" => Ok(python::bytes_view(&value.bytes)),
        "null" | "empty" => Ok(Value::Null),
        other => {
            notices.push(format!(
                "value of type {other:?} ({} bytes) passed through undecoded",
                value.bytes.len()
            ));
            Ok(serde_json::json!({ "__undecoded__": other, "size": value.bytes.len() }))
        }
    }
}

/// Computes `checkpoint.view` from the raw values.
pub fn decode_record(checkpoint: &mut Checkpoint) -> Result<(), DecodeError> {
    let mut notices = Vec::new();
    let mut doc =
        decode_typed(&checkpoint.checkpoint, &mut notices).map_err(|e| e.within("checkpoint"))?;
    let Value::Object(doc_map) = &mut doc else {
        return Err(DecodeError::Shape(format!(
            "checkpoint: expected a map, found {}",
            json_kind(&doc)
        )));
    };
    if !checkpoint.channel_blobs.is_empty() {
        let values = doc_map
            .entry("channel_values")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(values) = values else {
            return Err(DecodeError::Shape(
                "checkpoint: channel_values is not a map".into(),
            ));
        };
        for blob in &checkpoint.channel_blobs {
            // `empty` marks a channel with a version but no value: not in the state.
            if blob.value.type_tag == "empty" {
                continue;
            }
            let v = decode_typed(&blob.value, &mut notices)
                .map_err(|e| e.within(format!("channel {:?}", blob.channel)))?;
            values.insert(blob.channel.clone(), v);
        }
    }
    let metadata =
        match decode_typed(&checkpoint.metadata, &mut notices).map_err(|e| e.within("metadata"))? {
            Value::Null => Value::Object(Map::new()),
            m @ Value::Object(_) => m,
            other => {
                return Err(DecodeError::Shape(format!(
                    "metadata: expected a map, found {}",
                    json_kind(&other)
                )));
            }
        };
    let mut pending_writes = Vec::with_capacity(checkpoint.pending_writes.len());
    for (i, w) in checkpoint.pending_writes.iter().enumerate() {
        let value = decode_typed(&w.value, &mut notices).map_err(|e| {
            e.within(format!(
                "pending write #{i} (task {:?}, channel {:?})",
                w.task_id, w.channel
            ))
        })?;
        pending_writes.push(WriteView {
            task_id: w.task_id.clone(),
            channel: w.channel.clone(),
            value,
        });
    }
    let ts = doc.get("ts").and_then(Value::as_str).map(str::to_owned);
    let ts_parsed = ts.as_deref().and_then(parse_timestamp);
    checkpoint.view = Some(RecordView {
        checkpoint: doc,
        metadata,
        pending_writes,
        ts,
        ts_parsed,
        notices,
    });
    Ok(())
}

/// Parses the timestamps LangGraph writes (`datetime.isoformat()`, RFC 3339).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            // A naive timestamp (no offset) is taken as UTC.
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickle_and_unknown_tags_pass_through_with_a_notice() {
        let mut notices = Vec::new();
        let v = decode_typed(&TypedValue::new("pickle", vec![0x80, 4]), &mut notices).unwrap();
        assert_eq!(v, serde_json::json!({"__undecoded__": "pickle", "size": 2}));
        assert_eq!(notices.len(), 1);
    }

    #[test]
    fn timestamps_parse_with_and_without_offset() {
        assert!(parse_timestamp("2026-11-23T23:33:58.367221+00:00").is_some());
        assert!(parse_timestamp("2026-11-23T23:33:58.367221").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }
}
