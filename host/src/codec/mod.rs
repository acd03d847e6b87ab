//! Decoding LangGraph's typed values (`JsonPlusSerializer.dumps_typed`) into the
//! plain-JSON view. Raw values are never modified here.

mod json;
mod langchain;
pub mod msgpack;
mod numpy;
pub mod pickle;
pub mod python;
pub mod redis_form;

/// JSON documents that stores keep as JSON (RedisJSON) are written compact as the
/// tree of them is, without the tree where the text allows.
pub use json::compact_text;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::record::{Checkpoint, RecordView, TypedValue, ViewText, WriteView};

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
        "msgpack" => msgpack::view_of_bytes(&value.bytes, notices),
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
            // LangGraph's EncryptedSerializer tags values `<type>+<cipher>` (`msgpack+aes`).
            let what = if other.contains('+') {
                "encrypted value"
            } else {
                "value"
            };
            notices.push(format!(
                "{what} of type {other:?} ({} bytes) passed through undecoded",
                value.bytes.len()
            ));
            Ok(serde_json::json!({ "__undecoded__": other, "size": value.bytes.len() }))
        }
    }
}

/// The view of one typed value as compact JSON text: msgpack straight to text, other
/// forms through their tree.
fn decode_typed_text(value: &TypedValue, notices: &mut Vec<String>) -> Result<String, DecodeError> {
    match value.type_tag.as_str() {
        "msgpack" => msgpack::view_text_of_bytes(&value.bytes, notices),
        "json" => match json::view_text(&value.bytes, notices) {
            Some(text) => Ok(text),
            None => decode_typed(value, notices).map(|v| crate::json_text::to_string(&v)),
        },
        _ => decode_typed(value, notices).map(|v| crate::json_text::to_string(&v)),
    }
}

/// Computes `checkpoint.view` as text ([`RecordView::text`], the trees left `null`),
/// for destinations that only write the view out. The same view as
/// [`decode_record`] followed by [`RecordView::to_text`], byte for byte; msgpack is
/// read straight into text where it can be.
pub fn decode_record_text(checkpoint: &mut Checkpoint) -> Result<(), DecodeError> {
    if let Some(view) = view_as_text(checkpoint) {
        checkpoint.view = Some(view);
        return Ok(());
    }
    decode_record(checkpoint)?;
    if let Some(view) = &mut checkpoint.view {
        view.to_text();
    }
    Ok(())
}

/// The view made as text, msgpack read straight into text; `None` when the record
/// takes the tree path: a document neither msgpack nor JSON, a channel stored both in
/// the document and apart, and any value that does not decode (the tree path's error
/// names it).
fn view_as_text(checkpoint: &Checkpoint) -> Option<RecordView> {
    msgpack::ext_cache::enter_thread(&checkpoint.key.thread_id);
    // Channel values stored apart are decoded first, their notices kept for after
    // the document's, where the tree path has them.
    let mut channel_notices = Vec::new();
    let channel_values = if checkpoint.channel_blobs.is_empty() {
        None
    } else {
        let mut texts = Vec::with_capacity(checkpoint.channel_blobs.len());
        // `empty` marks a channel with a version but no value: not in the state.
        for blob in checkpoint
            .channel_blobs
            .iter()
            .filter(|b| b.value.type_tag != "empty")
        {
            let text = decode_typed_text(&blob.value, &mut channel_notices).ok()?;
            texts.push((blob.channel.clone(), text));
        }
        Some(texts)
    };
    let mut notices = Vec::new();
    let bytes = &checkpoint.checkpoint.bytes;
    let (document, ts) = match checkpoint.checkpoint.type_tag.as_str() {
        "msgpack" => msgpack::document_text(bytes, channel_values, &mut notices).ok()??,
        // PostgreSQL's JSONB and langgraph-redis' documents: written from their text
        // where that is plain, else their tree written out, the blobs' text merged in.
        "json" => {
            if !channel_values.as_deref().is_none_or(distinct_channels) {
                return None;
            }
            match json::document_view_text(bytes, channel_values.as_deref(), &mut notices) {
                Some(found) => found,
                None => {
                    let doc = json::document_to_view(json::parse(bytes).ok()?, &mut notices);
                    document_tree_text(&doc, channel_values)?
                }
            }
        }
        _ => return None,
    };
    notices.append(&mut channel_notices);
    let metadata = match decode_typed_text(&checkpoint.metadata, &mut notices).ok()? {
        null if null == "null" => "{}".to_owned(),
        map if map.starts_with('{') => map,
        _ => return None,
    };
    let mut pending_writes = Vec::with_capacity(checkpoint.pending_writes.len());
    let mut write_values = Vec::with_capacity(checkpoint.pending_writes.len());
    for w in &checkpoint.pending_writes {
        write_values.push(decode_typed_text(&w.value, &mut notices).ok()?);
        pending_writes.push(WriteView {
            task_id: w.task_id.clone(),
            channel: w.channel.clone(),
            value: Value::Null,
        });
    }
    let ts_parsed = ts.as_deref().and_then(parse_timestamp);
    Some(RecordView {
        checkpoint: Value::Null,
        metadata: Value::Null,
        pending_writes,
        ts,
        ts_parsed,
        notices,
        text: Some(ViewText {
            checkpoint: document,
            metadata,
            write_values,
        }),
    })
}

/// Whether no channel is given twice (the tree path sets the last one; the text paths
/// leave that to it).
fn distinct_channels(channels: &[(String, String)]) -> bool {
    let mut names = std::collections::HashSet::with_capacity(channels.len());
    channels.iter().all(|(name, _)| names.insert(name.as_str()))
}

/// A checkpoint document's tree as text, with its `ts`, and the channel values stored
/// apart (each channel once) set in its `channel_values` map as [`decode_record`]
/// sets them; `None` when that is not a map, or a channel is stored in it too (the
/// tree path replaces in place).
pub(super) fn document_tree_text(
    doc: &Value,
    channel_values: Option<msgpack::ChannelTexts>,
) -> Option<(String, Option<String>)> {
    use crate::json_text::{write_str, write_value};
    let Value::Object(map) = doc else {
        return None;
    };
    let ts = map.get("ts").and_then(Value::as_str).map(str::to_owned);
    let Some(channels) = channel_values else {
        return Some((crate::json_text::to_string(doc), ts));
    };
    let write_values = |out: &mut String, stored: &Map<String, Value>| {
        out.push('{');
        let mut first = true;
        let mut key = |out: &mut String, key: &str| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            write_str(out, key);
            out.push(':');
        };
        for (name, value) in stored {
            key(out, name);
            write_value(out, value);
        }
        for (name, text) in &channels {
            key(out, name);
            out.push_str(text);
        }
        out.push('}');
    };
    let mut out = String::with_capacity(channels.iter().map(|(_, t)| t.len()).sum::<usize>() + 256);
    out.push('{');
    let mut merged = false;
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, key);
        out.push(':');
        if key == "channel_values" {
            let Value::Object(stored) = value else {
                return None;
            };
            if channels.iter().any(|(name, _)| stored.contains_key(name)) {
                return None;
            }
            write_values(&mut out, stored);
            merged = true;
        } else {
            write_value(&mut out, value);
        }
    }
    if !merged {
        // No `channel_values` in the document: the tree path adds the map last.
        if !map.is_empty() {
            out.push(',');
        }
        out.push_str("\"channel_values\":");
        write_values(&mut out, &Map::new());
    }
    out.push('}');
    Some((out, ts))
}

/// Computes `checkpoint.view` from the raw values.
pub fn decode_record(checkpoint: &mut Checkpoint) -> Result<(), DecodeError> {
    let mut notices = Vec::new();
    let mut doc = match checkpoint.checkpoint.type_tag.as_str() {
        "json" => json::parse(&checkpoint.checkpoint.bytes)
            .map(|v| json::document_to_view(v, &mut notices)),
        _ => decode_typed(&checkpoint.checkpoint, &mut notices),
    }
    .map_err(|e| e.within("checkpoint"))?;
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
        text: None,
    });
    Ok(())
}

/// `value` (a plain-JSON map) encoded like `like` was: JSON text for `json`, msgpack
/// for `msgpack`. Used when a plugin changes the metadata.
pub fn encode_like(like: &TypedValue, value: &Value) -> Result<TypedValue, String> {
    match like.type_tag.as_str() {
        "json" => Ok(TypedValue::new("json", crate::json_text::to_string(value))),
        "msgpack" => {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &json_to_msgpack(value))
                .map_err(|e| format!("encoding msgpack: {e}"))?;
            Ok(TypedValue::new("msgpack", out))
        }
        other => Err(format!("cannot rewrite a value stored as {other:?}")),
    }
}

fn json_to_msgpack(value: &Value) -> rmpv::Value {
    match value {
        Value::Null => rmpv::Value::Nil,
        Value::Bool(b) => rmpv::Value::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => rmpv::Value::from(u),
            (_, Some(i), _) => rmpv::Value::from(i),
            (_, _, Some(f)) => rmpv::Value::F64(f),
            _ => rmpv::Value::Nil,
        },
        Value::String(s) => rmpv::Value::from(s.as_str()),
        Value::Array(items) => rmpv::Value::Array(items.iter().map(json_to_msgpack).collect()),
        Value::Object(map) => rmpv::Value::Map(
            map.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

/// The checkpoint document with its `ts` replaced, every other byte of it kept: msgpack
/// documents are re-encoded entry by entry, JSON documents keep their key order.
pub fn set_document_ts(doc: &TypedValue, ts: &str) -> Result<TypedValue, String> {
    match doc.type_tag.as_str() {
        "msgpack" => {
            let entries = msgpack::map_entry_ranges(&doc.bytes, 0).map_err(|e| e.to_string())?;
            let mut value = msgpack::parse(&doc.bytes).map_err(|e| e.to_string())?;
            let rmpv::Value::Map(map) = &mut value else {
                return Err("checkpoint is not a map".into());
            };
            match map.iter_mut().find(|(k, _)| k.as_str() == Some("ts")) {
                Some((_, v)) => *v = rmpv::Value::from(ts),
                None => map.push((rmpv::Value::from("ts"), rmpv::Value::from(ts))),
            }
            let _ = entries;
            let mut out = Vec::with_capacity(doc.bytes.len());
            rmpv::encode::write_value(&mut out, &value)
                .map_err(|e| format!("encoding msgpack: {e}"))?;
            Ok(TypedValue::new("msgpack", out))
        }
        "json" => {
            let mut value: Value = serde_json::from_slice(&doc.bytes).map_err(|e| e.to_string())?;
            let Value::Object(map) = &mut value else {
                return Err("checkpoint is not a map".into());
            };
            map.insert("ts".into(), Value::String(ts.to_owned()));
            Ok(TypedValue::new("json", crate::json_text::to_string(&value)))
        }
        other => Err(format!("cannot rewrite a checkpoint stored as {other:?}")),
    }
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
        let v = decode_typed(&TypedValue::new("msgpack+aes", vec![1; 40]), &mut notices).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"__undecoded__": "msgpack+aes", "size": 40})
        );
        assert!(notices[1].starts_with("encrypted value"), "{notices:?}");
    }

    #[test]
    fn timestamps_parse_with_and_without_offset() {
        assert!(parse_timestamp("2026-11-23T23:33:58.367221+00:00").is_some());
        assert!(parse_timestamp("2026-11-23T23:33:58.367221").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }

    /// A record with a JSON document (PostgreSQL's layout) and these channel blobs.
    fn json_record(document: &str, blobs: &[(&str, TypedValue)]) -> Checkpoint {
        use crate::record::ChannelBlob;
        let blobs = blobs
            .iter()
            .map(|(channel, value)| ChannelBlob {
                channel: (*channel).into(),
                version: "1".into(),
                value: value.clone(),
            })
            .collect();
        let mut record = Checkpoint::for_test(TypedValue::new("json", document), blobs);
        record.metadata = TypedValue::new("msgpack", vec![0xc0]);
        record
    }

    /// The text path's view of `record`, checked against the tree path's.
    fn text_view_as_trees_give_it(record: &Checkpoint) -> Option<String> {
        let (mut trees, mut text) = (record.clone(), record.clone());
        let tree_result = decode_record(&mut trees);
        let text_result = decode_record_text(&mut text);
        assert_eq!(text_result, tree_result);
        if let Some(view) = &mut trees.view {
            view.to_text();
        }
        assert_eq!(text.view, trees.view);
        text.view.and_then(|v| v.text).map(|t| t.checkpoint)
    }

    #[test]
    fn json_documents_get_their_blobs_where_the_tree_puts_them() {
        let message = TypedValue::new(
            "msgpack",
            msgpack::encode(&rmpv::Value::Array(vec![
                "hi".into(),
                rmpv::Value::Ext(9, vec![1]),
            ])),
        );
        let blobs = [
            ("messages", message),
            ("gone", TypedValue::new("empty", Vec::new())),
            ("raw", TypedValue::new("pickle", vec![0x80])),
            ("b\"q", TypedValue::new("bytes", vec![0, 1])),
        ];
        let doc = |d: &str| text_view_as_trees_give_it(&json_record(d, &blobs));
        assert_eq!(
            doc(r#"{"v":4,"ts":"2025-01-01T00:00:00+00:00","channel_values":{"n":1},"x":[]}"#)
                .unwrap(),
            r#"{"v":4,"ts":"2025-01-01T00:00:00+00:00","channel_values":{"n":1,"messages":["hi",{"__ext__":9,"data":"AQ=="}],"raw":{"__undecoded__":"pickle","size":1},"b\"q":{"__bytes__":"AAE="}},"x":[]}"#
        );
        assert!(
            doc(r#"{"v":4}"#)
                .unwrap()
                .starts_with(r#"{"v":4,"channel_values":{"messages":["#)
        );
        assert!(
            doc("{}")
                .unwrap()
                .starts_with(r#"{"channel_values":{"messages""#)
        );
        // Taken by the tree path, with the same outcome: a channel in both places, a
        // channel stored twice, values that are not a map, a document that is not one.
        doc(r#"{"channel_values":{"messages":1}}"#);
        text_view_as_trees_give_it(&json_record(
            "{}",
            &[
                ("a", TypedValue::new("null", Vec::new())),
                ("a", TypedValue::new("null", Vec::new())),
            ],
        ));
        doc(r#"{"channel_values":[]}"#);
        doc("[]");
    }
}
