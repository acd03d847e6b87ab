//! The record that flows through the pipeline: one checkpoint with everything that
//! belongs to it.
//!
//! Two representations live side by side and are never confused:
//! - **raw**: the exact `(type, bytes)` pairs the store held ([`TypedValue`]). Sinks that
//!   must be lossless write these untouched.
//! - **view**: plain JSON for people, filters, plugins and analytics ([`RecordView`]),
//!   computed once by [`crate::codec::decode_record`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A value as LangGraph's serializer stored it: a type tag (`msgpack`, `json`, `bytes`,
/// `bytearray`, `null`, `empty`, `pickle`, …) and the exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedValue {
    pub type_tag: String,
    pub bytes: Vec<u8>,
}

impl TypedValue {
    pub fn new(type_tag: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            type_tag: type_tag.into(),
            bytes: bytes.into(),
        }
    }

    /// The JSON form used in exports and the dead-letter file: `{"type", "data"}` with
    /// the bytes in padded base64, so nothing is lost.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "type": self.type_tag, "data": B64.encode(&self.bytes) })
    }

    /// Reads back what [`TypedValue::to_json`] (or its `Serialize`) wrote.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let type_tag = value.get("type")?.as_str()?;
        let data = value.get("data")?.as_str()?;
        Some(Self::new(type_tag, B64.decode(data).ok()?))
    }
}

impl Serialize for TypedValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("type", &self.type_tag)?;
        map.serialize_entry("data", &B64.encode(&self.bytes))?;
        map.end()
    }
}

/// A channel value that its store keeps apart from the checkpoint document
/// (PostgreSQL `checkpoint_blobs`, Redis blob keys). SQLite has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelBlob {
    pub channel: String,
    pub version: String,
    pub value: TypedValue,
}

/// One pending write (`writes` / `checkpoint_writes` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingWrite {
    pub task_id: String,
    pub task_path: String,
    pub idx: i64,
    pub channel: String,
    pub value: TypedValue,
}

/// Where a record came from, for errors and the dead-letter file. Never holds secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Source kind: `sqlite`, `postgresql`, `redis`, `unified`.
    pub store: String,
    /// Store-specific place: file and table, key, point id.
    pub locator: String,
}

/// The primary key of a checkpoint in every store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointKey {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
}

impl CheckpointKey {
    /// Thread, namespace and id, in key order (the parameters of a range query).
    pub fn parts(&self) -> [&str; 3] {
        [&self.thread_id, &self.checkpoint_ns, &self.checkpoint_id]
    }
}

impl std::fmt::Display for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "thread_id={} checkpoint_ns={} checkpoint_id={}",
            Quoted(&self.thread_id),
            Quoted(&self.checkpoint_ns),
            Quoted(&self.checkpoint_id)
        )
    }
}

/// A string as `{:?}` writes it. Ids are printable ASCII, written as they are between
/// quotes without `Debug`'s check of every character (which was 1 % of a decoded
/// export: every record's origin names its key); anything else goes through `Debug`.
pub struct Quoted<'a>(pub &'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let as_is = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
        if self.0.as_bytes().iter().all(as_is) {
            use std::fmt::Write;
            f.write_char('"')?;
            f.write_str(self.0)?;
            f.write_char('"')
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// One checkpoint, raw as stored plus (after decoding) its view.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub key: CheckpointKey,
    pub parent_checkpoint_id: Option<String>,
    /// The checkpoint document as its store serialized it. SQLite: the whole checkpoint
    /// (channel values included) as msgpack; PostgreSQL: the JSONB text without the
    /// values kept in `channel_blobs`.
    pub checkpoint: TypedValue,
    /// Channel values stored apart from the document.
    pub channel_blobs: Vec<ChannelBlob>,
    /// The metadata as stored (SQLite: JSON text, tag `json`).
    pub metadata: TypedValue,
    /// Pending writes in the order the store's saver returns them.
    pub pending_writes: Vec<PendingWrite>,
    pub origin: Origin,
    /// Filled by [`crate::codec::decode_record`].
    pub view: Option<RecordView>,
}

impl Checkpoint {
    /// A record of thread `t`, checkpoint `1`, with this document and these blobs,
    /// metadata `{}` (JSON), no pending writes: for unit tests.
    #[cfg(test)]
    pub fn for_test(checkpoint: TypedValue, channel_blobs: Vec<ChannelBlob>) -> Self {
        Checkpoint {
            key: CheckpointKey {
                thread_id: "t".into(),
                checkpoint_ns: String::new(),
                checkpoint_id: "1".into(),
            },
            parent_checkpoint_id: None,
            checkpoint,
            channel_blobs,
            metadata: TypedValue::new("json", "{}"),
            pending_writes: Vec::new(),
            origin: Origin {
                store: "test".into(),
                locator: "test".into(),
            },
            view: None,
        }
    }

    /// Total size of the raw values, used to bound batches by bytes.
    pub fn raw_size(&self) -> usize {
        self.checkpoint.bytes.len()
            + self.metadata.bytes.len()
            + self
                .channel_blobs
                .iter()
                .map(|b| b.value.bytes.len() + b.channel.len() + b.version.len())
                .sum::<usize>()
            + self
                .pending_writes
                .iter()
                .map(|w| w.value.bytes.len() + w.task_id.len() + w.channel.len())
                .sum::<usize>()
            + self.key.thread_id.len()
            + self.key.checkpoint_ns.len()
            + self.key.checkpoint_id.len()
    }

    /// The raw values, serializable (base64), enough to rebuild the record exactly.
    pub fn raw(&self) -> RawValues<'_> {
        RawValues {
            checkpoint: &self.checkpoint,
            metadata: &self.metadata,
            channel_blobs: &self.channel_blobs,
            pending_writes: &self.pending_writes,
        }
    }

    /// [`Checkpoint::raw`] as a JSON value.
    pub fn raw_json(&self) -> serde_json::Value {
        serde_json::to_value(self.raw()).unwrap_or(serde_json::Value::Null)
    }
}

impl Checkpoint {
    /// The record's one raw JSON form: its raw values ([`Checkpoint::raw_json`]) plus
    /// `parent_checkpoint_id`, everything needed to rebuild it exactly with
    /// [`Checkpoint::from_raw_json`] (the dead-letter file and the Qdrant payload keep
    /// this).
    pub fn to_raw_json(&self) -> serde_json::Value {
        let mut raw = self.raw_json();
        raw["parent_checkpoint_id"] = serde_json::json!(self.parent_checkpoint_id);
        raw
    }

    /// Rebuilds a record from its key, parent and the JSON form of its raw values
    /// ([`Checkpoint::raw_json`]): what the dead-letter file, the JSON and Parquet exports
    /// and the Qdrant payload keep. The view is computed later, as for any source.
    pub fn from_raw_json(
        key: CheckpointKey,
        parent_checkpoint_id: Option<String>,
        raw: &serde_json::Value,
        origin: Origin,
    ) -> Result<Self, String> {
        use serde_json::Value;
        let typed = |v: &Value, what: &str| {
            TypedValue::from_json(v).ok_or_else(|| format!("{what}: not a {{type, data}} value"))
        };
        let text = |v: &Value, what: &str| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{what}: not a string"))
        };
        let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let channel_blobs = list(&raw["channel_blobs"])
            .iter()
            .map(|b| {
                Ok(ChannelBlob {
                    channel: text(&b["channel"], "channel_blobs.channel")?,
                    version: text(&b["version"], "channel_blobs.version")?,
                    value: typed(&b["value"], "channel_blobs.value")?,
                })
            })
            .collect::<Result<_, String>>()?;
        let pending_writes = list(&raw["pending_writes"])
            .iter()
            .map(|w| {
                Ok(PendingWrite {
                    task_id: text(&w["task_id"], "pending_writes.task_id")?,
                    task_path: text(&w["task_path"], "pending_writes.task_path")?,
                    idx: w["idx"]
                        .as_i64()
                        .ok_or("pending_writes.idx: not an integer")?,
                    channel: text(&w["channel"], "pending_writes.channel")?,
                    value: typed(&w["value"], "pending_writes.value")?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Checkpoint {
            key,
            parent_checkpoint_id,
            checkpoint: typed(&raw["checkpoint"], "checkpoint")?,
            channel_blobs,
            metadata: typed(&raw["metadata"], "metadata")?,
            pending_writes,
            origin,
            view: None,
        })
    }
}

/// Every raw value of a record: `{checkpoint, metadata, channel_blobs, pending_writes}`
/// with each value as `{"type", "data": base64}`.
#[derive(Debug, Serialize)]
pub struct RawValues<'a> {
    pub checkpoint: &'a TypedValue,
    pub metadata: &'a TypedValue,
    pub channel_blobs: &'a [ChannelBlob],
    pub pending_writes: &'a [PendingWrite],
}

/// The plain-JSON view of a checkpoint, in the form of LangGraph's own read-back.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    /// The checkpoint document with `channel_values` decoded.
    pub checkpoint: serde_json::Value,
    pub metadata: serde_json::Value,
    /// `[{task_id, channel, value}]`.
    pub pending_writes: Vec<WriteView>,
    /// The checkpoint's `ts` as found.
    pub ts: Option<String>,
    /// `ts` parsed; `None` when absent or unparseable.
    pub ts_parsed: Option<DateTime<Utc>>,
    /// Values that were passed through without decoding (pickle, unknown types).
    pub notices: Vec<String>,
    /// The values as JSON text, once [`RecordView::to_text`] made it; the trees above
    /// are then emptied (`null`), so only a destination that reads the text
    /// ([`crate::sinks::Sink::reads_view_text`]) gets such a view.
    pub text: Option<ViewText>,
}

/// A view's values as compact JSON text ([`crate::json_text`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewText {
    pub checkpoint: String,
    pub metadata: String,
    /// One per pending write, in the record's order.
    pub write_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WriteView {
    pub task_id: String,
    pub channel: String,
    pub value: serde_json::Value,
}

impl RecordView {
    /// Renders the values as JSON text and frees the trees: done where records are
    /// decoded (on every core), when nothing after needs the trees, so a batch waits
    /// for its destination as text (a fraction of the trees' memory).
    pub fn to_text(&mut self) {
        use crate::json_text::to_string;
        let text = ViewText {
            checkpoint: to_string(&self.checkpoint),
            metadata: to_string(&self.metadata),
            write_values: self
                .pending_writes
                .iter()
                .map(|w| to_string(&w.value))
                .collect(),
        };
        self.checkpoint = serde_json::Value::Null;
        self.metadata = serde_json::Value::Null;
        for w in &mut self.pending_writes {
            w.value = serde_json::Value::Null;
        }
        self.text = Some(text);
    }

    /// The checkpoint document as JSON text.
    pub fn checkpoint_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.text {
            Some(t) => t.checkpoint.as_str().into(),
            None => crate::json_text::to_string(&self.checkpoint).into(),
        }
    }

    /// The metadata as JSON text.
    pub fn metadata_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.text {
            Some(t) => t.metadata.as_str().into(),
            None => crate::json_text::to_string(&self.metadata).into(),
        }
    }

    /// Pending write `index`'s value as JSON text.
    pub fn write_value_text(&self, index: usize) -> Option<std::borrow::Cow<'_, str>> {
        match &self.text {
            Some(t) => t.write_values.get(index).map(|v| v.as_str().into()),
            None => self
                .pending_writes
                .get(index)
                .map(|w| crate::json_text::to_string(&w.value).into()),
        }
    }

    /// [`RecordView::pending_writes_json`] as JSON text, from the view's text or its
    /// trees (no copy of the values).
    pub fn pending_writes_text(&self) -> String {
        use crate::json_text::{write_array, write_str};
        // Room for it all at once (values are most of it): growing by doubling copied
        // the text again several times over.
        let values: usize = match &self.text {
            Some(t) => t.write_values.iter().map(String::len).sum(),
            None => 0,
        };
        let names: usize = self
            .pending_writes
            .iter()
            .map(|w| w.task_id.len() + w.channel.len() + 40)
            .sum();
        let mut out = String::with_capacity(2 + values + names);
        write_array(
            &mut out,
            self.pending_writes.iter().enumerate(),
            |out, (i, w)| {
                out.push_str("{\"task_id\":");
                write_str(out, &w.task_id);
                out.push_str(",\"channel\":");
                write_str(out, &w.channel);
                out.push_str(",\"value\":");
                out.push_str(&self.write_value_text(i).unwrap_or("null".into()));
                out.push('}');
            },
        );
        out
    }

    pub fn pending_writes_json(&self) -> serde_json::Value {
        debug_assert!(self.text.is_none(), "the trees were made text");
        serde_json::Value::Array(
            self.pending_writes
                .iter()
                .map(|w| {
                    crate::json_value::object([
                        ("task_id", w.task_id.clone().into()),
                        ("channel", w.channel.clone().into()),
                        ("value", w.value.clone()),
                    ])
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Quoted;

    #[test]
    fn quoted_writes_what_debug_writes() {
        for text in [
            "",
            "thread-1",
            "1ef4f797-8335-6428-8001-8a1503f9b875",
            "it's",
            "a \"quoted\" id",
            "back\\slash",
            "tab\there",
            "line\nbreak",
            "\u{7f}",
            "\u{0}",
            "naïve",
            "\u{301}accent first",
            "zero\u{200b}width",
            "emoji 🦀",
        ] {
            assert_eq!(Quoted(text).to_string(), format!("{text:?}"), "{text:?}");
        }
    }
}
