//! The two shapes LangGraph's SQL savers give a checkpoint, and exact conversions
//! between them.
//!
//! - **whole** (SqliteSaver, plainredis): the checkpoint, channel values included, is
//!   one typed value (`msgpack` as LangGraph writes it today).
//! - **split** (PostgresSaver): a JSON document whose `channel_values` keep only the
//!   values JSONB holds exactly, and one typed blob per other channel, keyed by the
//!   channel's version.
//!
//! Values move as bytes: splitting slices each channel value out of the msgpack map
//! (a msgpack map's values are self-contained msgpack objects) and joining splices the
//! blobs back in. Nothing a user stored is decoded and encoded again, so LangGraph
//! reads the destination as it read the source. Only the document's own fields
//! (`v`, `id`, `ts`, `channel_versions`, `versions_seen`, …) change form, between
//! msgpack and JSON, and those are plain strings, numbers, lists and maps.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use crate::codec::msgpack::{self, EXT_DELTA_SNAPSHOT};
use crate::codec::redis_form::{AllowedJsonModules, Encoder, Walk};
use crate::record::{ChannelBlob, Checkpoint, TypedValue};

/// Why a record cannot take the destination's shape; becomes the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

impl From<crate::codec::DecodeError> for LayoutError {
    fn from(e: crate::codec::DecodeError) -> Self {
        LayoutError(e.to_string())
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, LayoutError> {
    Err(LayoutError(message.into()))
}

/// What a LangGraph SQL store holds for `record` once written: its values in
/// LangGraph's msgpack ([`native`]), when the store's shape takes it (`fits`); `None`
/// when the store would refuse it. What `verify` compares against.
pub fn written_native(
    record: &Checkpoint,
    allowed: &AllowedJsonModules,
    fits: impl Fn(&Checkpoint) -> bool,
) -> Option<Checkpoint> {
    let native = native(record, &mut Encoder::new(allowed))
        .ok()?
        .into_owned();
    fits(&native).then_some(native)
}

/// The record with its values in the form `JsonPlusSerializer` (SqliteSaver,
/// PostgresSaver) reads as RedisSaver did: a langgraph-redis record (a JSON checkpoint
/// document carrying RedisSaver's `type` field, values in its JSON form) is re-encoded
/// as LangGraph's msgpack ([`crate::codec::redis_form`]); any other record is returned
/// as it is.
pub fn native<'a>(
    cp: &'a Checkpoint,
    encoder: &mut Encoder<'_>,
) -> Result<Cow<'a, Checkpoint>, LayoutError> {
    let Some(doc) = langgraph_redis_document(cp) else {
        return Ok(Cow::Borrowed(cp));
    };
    let mut top: Vec<(String, Vec<u8>)> = Vec::with_capacity(doc.len());
    for (key, value) in &doc {
        let bytes = if key == "channel_values" {
            let Value::Object(channels) = value else {
                return fail("checkpoint: channel_values is not a map");
            };
            let mut entries = Vec::with_capacity(channels.len());
            for (channel, v) in channels {
                let mp = encoder
                    .to_msgpack(v, Walk::ChannelValues)
                    .map_err(|e| LayoutError(format!("channel {channel:?}: {e}")))?;
                entries.push((channel.clone(), msgpack::encode(&mp)));
            }
            write_map(&entries)
        } else {
            encode_json(value).map_err(|e| LayoutError(format!("checkpoint field {key:?}: {e}")))?
        };
        top.push((key.clone(), bytes));
    }
    let mut native = cp.clone();
    native.checkpoint = TypedValue::new("msgpack", write_map(&top));
    for (i, w) in native.pending_writes.iter_mut().enumerate() {
        if w.value.type_tag != "json" {
            continue;
        }
        let value: Value = serde_json::from_slice(&w.value.bytes).map_err(|e| {
            LayoutError(format!(
                "pending write #{i} (channel {:?}): not JSON: {e}",
                w.channel
            ))
        })?;
        let mp = encoder.to_msgpack(&value, Walk::Serialized).map_err(|e| {
            LayoutError(format!("pending write #{i} (channel {:?}): {e}", w.channel))
        })?;
        w.value = TypedValue::new("msgpack", msgpack::encode(&mp));
    }
    native.view = None;
    Ok(Cow::Owned(native))
}

/// The checkpoint document of a langgraph-redis record: JSON carrying RedisSaver's
/// `type` field, channel values inline in its JSON form. `None` for other records.
pub fn langgraph_redis_document(cp: &Checkpoint) -> Option<Map<String, Value>> {
    // Most JSON documents (PostgresSaver's) have no `"type"` at all: no parse for them.
    let bytes = &cp.checkpoint.bytes;
    if cp.checkpoint.type_tag != "json"
        || !cp.channel_blobs.is_empty()
        || !bytes.windows(6).any(|w| w == b"\"type\"")
    {
        return None;
    }
    match strict_json(bytes) {
        Ok(Value::Object(doc)) if doc.get("type").is_some_and(Value::is_string) => Some(doc),
        _ => None,
    }
}

/// A checkpoint in PostgresSaver's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The JSONB document as JSON text.
    pub document: Vec<u8>,
    /// `checkpoint_blobs` rows of this checkpoint.
    pub blobs: Vec<ChannelBlob>,
}

/// The checkpoint in PostgresSaver's shape.
pub fn split(cp: &Checkpoint) -> Result<Split, LayoutError> {
    let (mut document, mut blobs) = match cp.checkpoint.type_tag.as_str() {
        "msgpack" => split_msgpack(&cp.checkpoint.bytes)?,
        "json" => split_json(&cp.checkpoint.bytes)?,
        other => {
            return fail(format!(
                "the checkpoint is stored as {other:?}: PostgresSaver keeps checkpoints as a JSON document and cannot hold it"
            ));
        }
    };
    if !cp.channel_blobs.is_empty() {
        // Blobs the source kept apart already have PostgresSaver's shape; a channel
        // with a blob has no inline value (except DeltaChannel's `true` marker).
        let inline = channel_values_mut(&mut document)?;
        for blob in &cp.channel_blobs {
            if inline.get(&blob.channel) != Some(&Value::Bool(true)) {
                inline.remove(&blob.channel);
            }
        }
        blobs.extend(cp.channel_blobs.iter().cloned());
    }
    let mut document = Value::Object(document);
    jsonb_exact(&mut document);
    let document = serde_json::to_vec(&document)
        .map_err(|e| LayoutError(format!("checkpoint document: {e}")))?;
    // Values with NUL went to blobs; a key with one JSONB still refuses.
    if has_nul_escape(&document) {
        return fail(
            "checkpoint: a key holds the character U+0000, which PostgreSQL's JSONB refuses",
        );
    }
    Ok(Split { document, blobs })
}

fn channel_values_mut(
    doc: &mut Map<String, Value>,
) -> Result<&mut Map<String, Value>, LayoutError> {
    match doc
        .entry("channel_values")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(m) => Ok(m),
        _ => fail("checkpoint: channel_values is not a map"),
    }
}

/// Every top-level field as JSON; each channel value inline when JSONB holds it
/// exactly, else sliced out as a `msgpack` blob.
fn split_msgpack(bytes: &[u8]) -> Result<(Map<String, Value>, Vec<ChannelBlob>), LayoutError> {
    let mut doc = Map::new();
    let mut channels = None;
    for (key, range) in msgpack::map_entry_ranges(bytes, 0)? {
        if key == "channel_values" {
            channels = Some(range);
        } else {
            let value = plain_json(&msgpack::parse(&bytes[range])?)
                .map_err(|e| LayoutError(format!("checkpoint field {key:?}: {e}")))?;
            doc.insert(key, value);
        }
    }
    let mut inline = Map::new();
    let mut blobs = Vec::new();
    if let Some(range) = channels {
        for (channel, value) in msgpack::map_entry_ranges(bytes, range.start)? {
            let value = &bytes[value];
            if let Some(json) = inline_value(value) {
                inline.insert(channel, json);
                continue;
            }
            let version = channel_version(&doc, &channel)?;
            if is_ext(value, EXT_DELTA_SNAPSHOT) {
                // PostgresSaver marks a DeltaChannel snapshot inline and keeps it as a blob.
                inline.insert(channel.clone(), Value::Bool(true));
            }
            blobs.push(ChannelBlob {
                channel,
                version,
                value: TypedValue::new("msgpack", value),
            });
        }
    }
    doc.insert("channel_values".into(), Value::Object(inline));
    Ok((doc, blobs))
}

/// Whether the msgpack value is an extension with this code (any ext marker).
fn is_ext(value: &[u8], code: i8) -> bool {
    let at = match value.first() {
        Some(0xd4..=0xd8) => 1,
        Some(0xc7) => 2,
        Some(0xc8) => 3,
        Some(0xc9) => 5,
        _ => return false,
    };
    value.get(at) == Some(&(code as u8))
}

/// A JSON document (PostgresSaver's own, or langgraph-redis's with values in its JSON
/// form): primitives stay inline; any other inline value becomes a `json` blob, which
/// LangGraph's serializer reads with the same reviver.
fn split_json(bytes: &[u8]) -> Result<(Map<String, Value>, Vec<ChannelBlob>), LayoutError> {
    let Value::Object(mut doc) =
        strict_json(bytes).map_err(|e| LayoutError(format!("checkpoint: {e}")))?
    else {
        return fail("checkpoint: the document is not a JSON map");
    };
    let values = std::mem::take(channel_values_mut(&mut doc)?);
    let mut inline = Map::new();
    let mut blobs = Vec::new();
    for (channel, value) in values {
        if json_inline_exact(&value) {
            inline.insert(channel, value);
            continue;
        }
        let version = channel_version(&doc, &channel)?;
        let text = serde_json::to_vec(&value).map_err(|e| LayoutError(e.to_string()))?;
        blobs.push(ChannelBlob {
            channel,
            version,
            value: TypedValue::new("json", text),
        });
    }
    doc.insert("channel_values".into(), Value::Object(inline));
    Ok((doc, blobs))
}

/// The version of `channel` in the document's `channel_versions`, as the text
/// PostgresSaver keys blobs by.
fn channel_version(doc: &Map<String, Value>, channel: &str) -> Result<String, LayoutError> {
    match doc.get("channel_versions").and_then(|v| v.get(channel)) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => fail(format!(
            "channel {channel:?} has a value but no version in channel_versions: PostgresSaver keys channel values by version"
        )),
    }
}

/// The JSON value a msgpack channel value is inline in PostgresSaver's document, when
/// JSONB gives LangGraph back exactly that value: None, bools, integers, strings
/// without NUL, and floats whose JSON text JSONB keeps a float (with a `.`; a float
/// such as `1e16` would come back an int, NaN and the infinities cannot be stored,
/// `-0.0` would lose its sign). Everything else is a blob.
fn inline_value(value: &[u8]) -> Option<Value> {
    match value.first()? {
        0xc0 | 0xc2 | 0xc3 | 0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 | 0xca | 0xcb => {}
        0xa0..=0xbf | 0xd9..=0xdb => {}
        _ => return None,
    }
    let json = plain_json(&msgpack::parse(value).ok()?).ok()?;
    json_inline_exact(&json).then_some(json)
}

/// Whether a JSON value sits inline in PostgresSaver's document and reads back
/// exactly (see [`inline_value`]).
fn json_inline_exact(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) => true,
        Value::String(s) => !s.contains('\0'),
        Value::Number(n) => {
            let text = n.to_string();
            let integer = !text.contains(['.', 'e', 'E']);
            let float_kept = text.contains('.') || text.contains("e-") || text.contains("E-");
            let negative_zero =
                n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) && !integer;
            (integer || float_kept) && !negative_zero
        }
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// The checkpoint in SqliteSaver's shape: one typed value; borrowed when it is the
/// record's own `checkpoint` (already whole), so its bytes are not copied.
pub fn whole(cp: &Checkpoint) -> Result<Cow<'_, TypedValue>, LayoutError> {
    match cp.checkpoint.type_tag.as_str() {
        "json" => whole_from_json(&cp.checkpoint.bytes, &cp.channel_blobs).map(Cow::Owned),
        "msgpack" if !cp.channel_blobs.is_empty() => {
            whole_from_msgpack(&cp.checkpoint.bytes, &cp.channel_blobs).map(Cow::Owned)
        }
        // Already whole, in whatever form LangGraph's serializer wrote it.
        _ if cp.channel_blobs.is_empty() => Ok(Cow::Borrowed(&cp.checkpoint)),
        other => fail(format!(
            "the checkpoint is stored as {other:?} with channel values apart: they cannot be joined"
        )),
    }
}

/// A JSON document plus blobs as one msgpack checkpoint. A document whose inline
/// values are in langgraph-redis's JSON form (maps and lists) and has no blobs stays
/// JSON text, typed `json`: LangGraph's serializer reads it with its reviver.
fn whole_from_json(bytes: &[u8], blobs: &[ChannelBlob]) -> Result<TypedValue, LayoutError> {
    let Value::Object(mut doc) =
        strict_json(bytes).map_err(|e| LayoutError(format!("checkpoint: {e}")))?
    else {
        return fail("checkpoint: the document is not a JSON map");
    };
    let inline = match doc.shift_remove("channel_values") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return fail("checkpoint: channel_values is not a map"),
    };
    let json_form = inline.values().any(|v| !json_inline_exact(v));
    if json_form {
        if blobs.is_empty() {
            return Ok(TypedValue::new("json", bytes));
        }
        return fail(
            "the checkpoint mixes JSON-form inline values and blobs: it cannot be joined into one value",
        );
    }
    let mut channels: Vec<(String, Vec<u8>)> = Vec::with_capacity(inline.len() + blobs.len());
    for (channel, value) in &inline {
        if blobs.iter().any(|b| &b.channel == channel) {
            continue;
        }
        channels.push((channel.clone(), encode_json(value)?));
    }
    for blob in blobs {
        if let Some(bytes) = blob_msgpack(blob)? {
            channels.push((blob.channel.clone(), bytes));
        }
    }
    let mut top: Vec<(String, Vec<u8>)> = Vec::with_capacity(doc.len() + 1);
    for (key, value) in &doc {
        top.push((
            key.clone(),
            encode_json(value)
                .map_err(|e| LayoutError(format!("checkpoint field {key:?}: {e}")))?,
        ));
    }
    top.push(("channel_values".into(), write_map(&channels)));
    Ok(TypedValue::new("msgpack", write_map(&top)))
}

/// A msgpack checkpoint with blobs kept apart (plainredis): blobs spliced into its
/// `channel_values`.
fn whole_from_msgpack(bytes: &[u8], blobs: &[ChannelBlob]) -> Result<TypedValue, LayoutError> {
    let mut top: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen_channels = false;
    for (key, range) in msgpack::map_entry_ranges(bytes, 0)? {
        if key != "channel_values" {
            top.push((key, bytes[range].to_vec()));
            continue;
        }
        seen_channels = true;
        let mut channels: Vec<(String, Vec<u8>)> = msgpack::map_entry_ranges(bytes, range.start)?
            .into_iter()
            .filter(|(c, _)| !blobs.iter().any(|b| &b.channel == c))
            .map(|(c, r)| (c, bytes[r].to_vec()))
            .collect();
        for blob in blobs {
            if let Some(value) = blob_msgpack(blob)? {
                channels.push((blob.channel.clone(), value));
            }
        }
        top.push((key, write_map(&channels)));
    }
    if !seen_channels {
        let mut channels = Vec::new();
        for blob in blobs {
            if let Some(value) = blob_msgpack(blob)? {
                channels.push((blob.channel.clone(), value));
            }
        }
        top.push(("channel_values".into(), write_map(&channels)));
    }
    Ok(TypedValue::new("msgpack", write_map(&top)))
}

/// A blob as the msgpack value it becomes inside a whole checkpoint; `None` for
/// `empty` (a channel with a version and no value is not in the state).
fn blob_msgpack(blob: &ChannelBlob) -> Result<Option<Vec<u8>>, LayoutError> {
    let value = &blob.value;
    Ok(Some(match value.type_tag.as_str() {
        "msgpack" => value.bytes.clone(),
        "empty" => return Ok(None),
        "null" => vec![0xc0],
        "bytes" => msgpack::encode(&rmpv::Value::Binary(value.bytes.clone())),
        // Inside msgpack a bytearray would come back as bytes: a one-argument
        // constructor revives it as the bytearray PostgresSaver gives back.
        "bytearray" => msgpack::encode(&constructor(
            "builtins",
            "bytearray",
            rmpv::Value::Binary(value.bytes.clone()),
        )),
        other => {
            return fail(format!(
                "channel {:?} is stored as {other:?}: it cannot be joined into a msgpack checkpoint without decoding and encoding it again",
                blob.channel
            ));
        }
    }))
}

/// LangGraph's msgpack extension 0: `module.name(arg)` on reading.
fn constructor(module: &str, name: &str, arg: rmpv::Value) -> rmpv::Value {
    let payload = msgpack::encode(&rmpv::Value::Array(vec![module.into(), name.into(), arg]));
    rmpv::Value::Ext(0, payload)
}

/// A msgpack map from already-encoded values, keys as strings.
fn write_map(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 5).sum();
    let mut out = Vec::with_capacity(size + 5);
    rmp::encode::write_map_len(&mut out, entries.len() as u32).expect("Vec write");
    for (key, value) in entries {
        rmp::encode::write_str(&mut out, key).expect("Vec write");
        out.extend_from_slice(value);
    }
    out
}

/// A plain JSON value as msgpack, as LangGraph would have written the Python value
/// `json.loads` makes of it: integers as integers, numbers with a fraction or an
/// exponent as floats.
fn encode_json(value: &Value) -> Result<Vec<u8>, LayoutError> {
    fn convert(value: &Value) -> Result<rmpv::Value, LayoutError> {
        Ok(match value {
            Value::Null => rmpv::Value::Nil,
            Value::Bool(b) => rmpv::Value::Boolean(*b),
            Value::Number(n) => {
                let text = n.to_string();
                if text.contains(['.', 'e', 'E']) {
                    rmpv::Value::F64(
                        text.parse()
                            .map_err(|_| LayoutError(format!("number {text} is not a float")))?,
                    )
                } else if let Some(u) = n.as_u64() {
                    rmpv::Value::from(u)
                } else if let Some(i) = n.as_i64() {
                    rmpv::Value::from(i)
                } else {
                    // Beyond 64 bits: LangGraph's msgpack has no integer that wide, but
                    // its one-argument constructor revives `int("…")` exactly.
                    constructor("builtins", "int", rmpv::Value::from(text.as_str()))
                }
            }
            Value::String(s) => rmpv::Value::from(s.as_str()),
            Value::Array(items) => {
                rmpv::Value::Array(items.iter().map(convert).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => rmpv::Value::Map(
                map.iter()
                    .map(|(k, v)| Ok((rmpv::Value::from(k.as_str()), convert(v)?)))
                    .collect::<Result<_, LayoutError>>()?,
            ),
        })
    }
    Ok(msgpack::encode(&convert(value)?))
}

/// A msgpack value that is plain data (no extension, string keys) as JSON.
pub fn plain_json(value: &rmpv::Value) -> Result<Value, String> {
    Ok(match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(*b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (_, Some(i)) => Value::from(i),
            _ => return Err("integer out of range".into()),
        },
        rmpv::Value::F32(f) => float(f64::from(*f))?,
        rmpv::Value::F64(f) => float(*f)?,
        rmpv::Value::String(s) => {
            Value::String(s.as_str().ok_or("a string is not valid UTF-8")?.to_owned())
        }
        rmpv::Value::Binary(_) => return Err("bytes have no JSON form".into()),
        rmpv::Value::Array(items) => {
            Value::Array(items.iter().map(plain_json).collect::<Result<_, _>>()?)
        }
        rmpv::Value::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = k.as_str().ok_or("a map key is not a string")?;
                map.insert(key.to_owned(), plain_json(v)?);
            }
            Value::Object(map)
        }
        rmpv::Value::Ext(code, _) => {
            return Err(format!(
                "a Python object (msgpack extension {code}) has no JSON form"
            ));
        }
    })
}

fn float(f: f64) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{f} has no JSON form"))
}

/// JSON as PostgreSQL's JSONB accepts it: no NaN/Infinity tokens, no NUL in strings.
fn strict_json(bytes: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    Ok(value)
}

/// The metadata as JSON text (SqliteSaver and PostgresSaver both keep JSON); borrowed
/// when it is the record's own `metadata` bytes.
pub fn metadata_json(cp: &Checkpoint) -> Result<Cow<'_, [u8]>, LayoutError> {
    let md = &cp.metadata;
    match md.type_tag.as_str() {
        "json" => Ok(Cow::Borrowed(&md.bytes)),
        "msgpack" => {
            let value = plain_json(&msgpack::parse(&md.bytes)?)
                .map_err(|e| LayoutError(format!("metadata: {e}")))?;
            serde_json::to_vec(&value)
                .map(Cow::Owned)
                .map_err(|e| LayoutError(format!("metadata: {e}")))
        }
        "null" | "empty" => Ok(Cow::Borrowed(b"{}")),
        other => fail(format!("metadata stored as {other:?} has no JSON form")),
    }
}

/// Metadata as JSON text for PostgreSQL's JSONB (see [`jsonb_exact`]).
pub struct JsonbMetadata {
    pub text: Vec<u8>,
    /// It holds a `-0.0`, which JSONB stores as `0.0` (JSONB has no negative zero).
    pub negative_zero: bool,
}

/// The metadata as JSON text for PostgreSQL's JSONB (see [`jsonb_exact`]).
pub fn metadata_jsonb(cp: &Checkpoint) -> Result<JsonbMetadata, LayoutError> {
    let text = metadata_json(cp)?.into_owned();
    let mut value = parse_jsonb("metadata", &text)?;
    let negative_zero = has_negative_zero(&value);
    let text = if jsonb_exact(&mut value) {
        serde_json::to_vec(&value).map_err(|e| LayoutError(format!("metadata: {e}")))?
    } else {
        text
    };
    Ok(JsonbMetadata {
        text,
        negative_zero,
    })
}

fn has_negative_zero(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()),
        Value::Array(items) => items.iter().any(has_negative_zero),
        Value::Object(map) => map.values().any(has_negative_zero),
        _ => false,
    }
}

/// Rewrites floats that JSONB would give back as integers: JSONB keeps numbers as
/// `numeric` and prints `1e+308` as `1000…0`, which Python then reads as an int. Written
/// out in full with a `.0`, such a number stays a float, of the same value (the text is
/// the double's exact decimal value). Returns whether anything changed.
fn jsonb_exact(value: &mut Value) -> bool {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            let positive_exponent =
                text.contains(['e', 'E']) && !text.contains("e-") && !text.contains("E-");
            match n.as_f64().filter(|f| positive_exponent && f.is_finite()) {
                Some(f) => match serde_json::from_str::<Number>(&format!("{f:.1}")) {
                    Ok(full) => {
                        *n = full;
                        true
                    }
                    Err(_) => false,
                },
                None => false,
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| jsonb_exact(v) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| jsonb_exact(v) | changed),
        _ => false,
    }
}

/// Parses JSON text that JSONB must accept as is (PostgreSQL refuses NaN, Infinity
/// and `\u0000`), naming what is wrong.
fn parse_jsonb(what: &str, bytes: &[u8]) -> Result<Value, LayoutError> {
    let value = strict_json(bytes).map_err(|e| {
        LayoutError(format!(
            "{what}: {e} (PostgreSQL's JSONB refuses NaN and Infinity)"
        ))
    })?;
    if has_nul_escape(bytes) {
        return fail(format!(
            "{what}: a string holds the character U+0000, which PostgreSQL's JSONB refuses"
        ));
    }
    Ok(value)
}

/// Whether JSON text holds an escaped U+0000 (what serde_json and Python write for NUL).
fn has_nul_escape(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(checkpoint: TypedValue, blobs: Vec<ChannelBlob>) -> Checkpoint {
        Checkpoint::for_test(checkpoint, blobs)
    }

    fn mp(value: rmpv::Value) -> Vec<u8> {
        msgpack::encode(&value)
    }

    fn map(entries: Vec<(&str, rmpv::Value)>) -> rmpv::Value {
        rmpv::Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    fn whole_checkpoint() -> Vec<u8> {
        let message = rmpv::Value::Ext(5, mp(rmpv::Value::Array(vec!["m".into(), "M".into()])));
        mp(map(vec![
            ("v", 4.into()),
            ("id", "1".into()),
            (
                "channel_versions",
                map(vec![
                    ("messages", "2.0".into()),
                    ("big", "1.0".into()),
                    ("nan", "3.0".into()),
                ]),
            ),
            (
                "channel_values",
                map(vec![
                    ("messages", rmpv::Value::Array(vec![message])),
                    ("count", 3.into()),
                    ("ratio", rmpv::Value::F64(0.9949503943874963)),
                    ("big", rmpv::Value::F64(1e16)),
                    ("nan", rmpv::Value::F64(f64::NAN)),
                    ("text", "hi".into()),
                ]),
            ),
        ]))
    }

    #[test]
    fn split_keeps_exact_primitives_inline_and_slices_the_rest() {
        let bytes = whole_checkpoint();
        let cp = record(TypedValue::new("msgpack", bytes.clone()), vec![]);
        let split = split(&cp).unwrap();
        let doc: Value = serde_json::from_slice(&split.document).unwrap();
        assert_eq!(
            doc["channel_values"],
            serde_json::json!({"count": 3, "ratio": 0.9949503943874963, "text": "hi"})
        );
        let names: Vec<_> = split
            .blobs
            .iter()
            .map(|b| (b.channel.as_str(), b.version.as_str()))
            .collect();
        assert_eq!(names, [("messages", "2.0"), ("big", "1.0"), ("nan", "3.0")]);
        // The blob is the source's bytes, sliced.
        let ranges = msgpack::channel_value_ranges(&bytes).unwrap();
        assert_eq!(split.blobs[0].value.bytes, bytes[ranges[0].1.clone()]);
    }

    #[test]
    fn split_then_whole_reads_the_same() {
        let bytes = whole_checkpoint();
        let cp = record(TypedValue::new("msgpack", bytes.clone()), vec![]);
        let split = split(&cp).unwrap();
        let joined = whole(&record(
            TypedValue::new("json", split.document.clone()),
            split.blobs.clone(),
        ))
        .unwrap()
        .into_owned();
        assert_eq!(joined.type_tag, "msgpack");
        let a = msgpack::parse(&bytes).unwrap();
        let b = msgpack::parse(&joined.bytes).unwrap();
        let channels = |v: &rmpv::Value| -> Vec<(String, String)> {
            let mut out: Vec<_> = v
                .as_map()
                .unwrap()
                .iter()
                .find(|(k, _)| k.as_str() == Some("channel_values"))
                .unwrap()
                .1
                .as_map()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_string(), format!("{v:?}")))
                .collect();
            out.sort();
            out
        };
        assert_eq!(channels(&a), channels(&b));
        let keys: Vec<String> = b
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "a key written twice: {keys:?}");
    }

    #[test]
    fn delta_snapshots_are_marked_inline_like_postgres_saver() {
        let bytes = mp(map(vec![
            ("channel_versions", map(vec![("d", "1".into())])),
            (
                "channel_values",
                map(vec![(
                    "d",
                    rmpv::Value::Ext(7, mp(rmpv::Value::Array(vec![]))),
                )]),
            ),
        ]));
        let split = split(&record(TypedValue::new("msgpack", bytes), vec![])).unwrap();
        let doc: Value = serde_json::from_slice(&split.document).unwrap();
        assert_eq!(doc["channel_values"]["d"], Value::Bool(true));
        assert_eq!(split.blobs.len(), 1);
    }

    #[test]
    fn a_value_without_a_version_is_refused() {
        let bytes = mp(map(vec![
            ("channel_versions", map(vec![])),
            (
                "channel_values",
                map(vec![("x", rmpv::Value::Array(vec![]))]),
            ),
        ]));
        let e = split(&record(TypedValue::new("msgpack", bytes), vec![])).unwrap_err();
        assert!(e.0.contains("\"x\" has a value but no version"), "{e}");
    }

    #[test]
    fn pickle_blobs_cannot_be_joined() {
        let blob = ChannelBlob {
            channel: "x".into(),
            version: "1".into(),
            value: TypedValue::new("pickle", vec![0x80]),
        };
        let doc = br#"{"v":4,"channel_versions":{"x":"1"},"channel_values":{}}"#.to_vec();
        let e = whole(&record(TypedValue::new("json", doc), vec![blob])).unwrap_err();
        assert!(e.0.contains("\"pickle\""), "{e}");
    }

    #[test]
    fn float_and_integer_text_keep_their_python_type() {
        assert_eq!(
            encode_json(&serde_json::json!(1.0)).unwrap(),
            mp(rmpv::Value::F64(1.0))
        );
        assert_eq!(encode_json(&serde_json::json!(1)).unwrap(), mp(1.into()));
        let big: Value = serde_json::from_str("18446744073709551616").unwrap();
        let revived = constructor("builtins", "int", "18446744073709551616".into());
        assert_eq!(encode_json(&big).unwrap(), mp(revived));
        for (text, inline) in [
            ("1.5", true),
            ("1e16", false),
            ("1e-7", true),
            ("-0.0", false),
            ("7", true),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(json_inline_exact(&v), inline, "{text}");
        }
    }

    #[test]
    fn floats_stay_floats_in_jsonb() {
        let mut v: Value =
            serde_json::from_str(r#"{"a":[1e308],"b":1e-7,"c":2,"d":1.5e20}"#).unwrap();
        assert!(jsonb_exact(&mut v));
        let a = v["a"][0].to_string();
        assert!(
            a.ends_with(".0") && a.parse::<f64>().unwrap() == 1e308,
            "{a}"
        );
        assert_eq!(v["b"].to_string(), "1e-7");
        assert_eq!(v["c"].to_string(), "2");
        assert_eq!(v["d"].to_string(), "150000000000000000000.0");
    }

    #[test]
    fn jsonb_refusals_are_named() {
        assert!(
            parse_jsonb("metadata", br#"{"a":"x\u0000"}"#)
                .unwrap_err()
                .0
                .contains("U+0000")
        );
        assert!(parse_jsonb("metadata", br#"{"a":NaN}"#).is_err());
        assert!(parse_jsonb("metadata", br#"{"a":1.5}"#).is_ok());
    }
}
