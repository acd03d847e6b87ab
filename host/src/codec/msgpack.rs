//! LangGraph's msgpack (ormsgpack with extension types 0–7) to a plain-JSON view.

use rmpv::Value as Mp;
use serde_json::{Map, Value};

use super::DecodeError;
use super::python::{self, PyKind, PyObject, Style};

// LangGraph's msgpack extension codes (`langgraph.checkpoint.serde.jsonplus`).
pub const EXT_CONSTRUCTOR_SINGLE_ARG: i8 = 0;
pub const EXT_CONSTRUCTOR_POS_ARGS: i8 = 1;
pub const EXT_CONSTRUCTOR_KW_ARGS: i8 = 2;
pub const EXT_METHOD_SINGLE_ARG: i8 = 3;
pub const EXT_PYDANTIC_V1: i8 = 4;
pub const EXT_PYDANTIC_V2: i8 = 5;
pub const EXT_NUMPY_ARRAY: i8 = 6;
pub const EXT_DELTA_SNAPSHOT: i8 = 7;

/// Parses one complete msgpack value; trailing bytes are an error (a truncated or
/// concatenated value is corruption, not data).
pub fn parse(bytes: &[u8]) -> Result<Mp, DecodeError> {
    // rmpv reads the reserved marker 0xc1 as nil; ormsgpack (and so LangGraph) refuses
    // it, and so do we: check the structure first.
    validate(bytes)?;
    let mut cursor = bytes;
    let value = rmpv::decode::read_value(&mut cursor)
        .map_err(|e| DecodeError::Msgpack(format!("{e} (value of {} bytes)", bytes.len())))?;
    if !cursor.is_empty() {
        return Err(DecodeError::Msgpack(format!(
            "{} trailing bytes after the value (value of {} bytes)",
            cursor.len(),
            bytes.len()
        )));
    }
    Ok(value)
}

/// Writes a value as LangGraph's serializer (ormsgpack) does: every integer, string,
/// container and extension in its smallest form, floats as f64. A value parsed from
/// LangGraph's bytes writes back byte for byte (the type zoo tests check this).
pub fn encode(value: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// Checks that `bytes` is exactly one well-formed msgpack value (no reserved marker,
/// no truncation, nothing after it).
fn validate(bytes: &[u8]) -> Result<(), DecodeError> {
    let end = value_end(bytes, 0)?;
    if end != bytes.len() {
        return Err(DecodeError::Msgpack(format!(
            "trailing bytes after the value at byte {end} (value of {} bytes)",
            bytes.len()
        )));
    }
    Ok(())
}

/// Where the well-formed msgpack value starting at `start` ends. Iterative, so
/// nesting depth costs no stack.
pub fn value_end(bytes: &[u8], start: usize) -> Result<usize, DecodeError> {
    let err = |what: &str, at: usize| {
        DecodeError::Msgpack(format!(
            "{what} at byte {at} (value of {} bytes)",
            bytes.len()
        ))
    };
    let mut pos = start;
    // Values still to read.
    let mut pending: u64 = 1;
    let uint = |pos: usize, n: usize| -> Option<u64> {
        let b = bytes.get(pos..pos + n)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    };
    while pending > 0 {
        let at = pos;
        let marker = *bytes.get(pos).ok_or_else(|| err("truncated value", at))?;
        pos += 1;
        pending -= 1;
        // (bytes of length field, payload bytes fixed, children)
        let (len_bytes, fixed, children): (usize, u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
            0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, 0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (0, u64::from(marker & 0x1f), 0),
            0xc1 => return Err(err("reserved marker 0xc1", at)),
            0xc4 | 0xd9 => (1, 0, 0),
            0xc5 | 0xda => (2, 0, 0),
            0xc6 | 0xdb => (4, 0, 0),
            0xc7 => (1, 1, 0),
            0xc8 => (2, 1, 0),
            0xc9 => (4, 1, 0),
            0xca => (0, 4, 0),
            0xcb => (0, 8, 0),
            0xcc | 0xd0 => (0, 1, 0),
            0xcd | 0xd1 => (0, 2, 0),
            0xce | 0xd2 => (0, 4, 0),
            0xcf | 0xd3 => (0, 8, 0),
            0xd4 => (0, 2, 0),
            0xd5 => (0, 3, 0),
            0xd6 => (0, 5, 0),
            0xd7 => (0, 9, 0),
            0xd8 => (0, 17, 0),
            0xdc => (2, 0, u64::MAX),
            0xdd => (4, 0, u64::MAX),
            0xde => (2, 0, u64::MAX - 1),
            0xdf => (4, 0, u64::MAX - 1),
        };
        let mut length = 0;
        if len_bytes > 0 {
            length = uint(pos, len_bytes).ok_or_else(|| err("truncated length", at))?;
            pos += len_bytes;
        }
        let (payload, children) = match children {
            u64::MAX => (0, length),
            c if c == u64::MAX - 1 => (0, 2 * length),
            c => (fixed + if c == 0 { length } else { 0 }, c),
        };
        let end = u64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_add(payload))
            .filter(|&e| e <= bytes.len() as u64)
            .ok_or_else(|| err("truncated value", at))?;
        pos = end as usize;
        pending = pending
            .checked_add(children)
            .filter(|&p| p <= bytes.len() as u64)
            .ok_or_else(|| err("container longer than the value", at))?;
    }
    Ok(pos)
}

/// The entries of the map that starts at `pos`: each key (as text) with the byte
/// range of its value.
pub fn map_entry_ranges(
    bytes: &[u8],
    pos: usize,
) -> Result<Vec<(String, std::ops::Range<usize>)>, DecodeError> {
    let (count, mut at) = map_header(bytes, pos)?
        .ok_or_else(|| DecodeError::Shape(format!("expected a map at byte {pos}")))?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let key_end = value_end(bytes, at)?;
        let name = match parse(&bytes[at..key_end])? {
            Mp::String(s) => s.into_str().unwrap_or_default(),
            other => other.to_string(),
        };
        let end = value_end(bytes, key_end)?;
        out.push((name, key_end..end));
        at = end;
    }
    Ok(out)
}

/// The byte ranges of the items of the array that `bytes` holds.
pub fn array_item_ranges(bytes: &[u8]) -> Result<Vec<std::ops::Range<usize>>, DecodeError> {
    validate(bytes)?;
    let truncated = || DecodeError::Msgpack("truncated array header".into());
    let marker = *bytes.first().ok_or_else(truncated)?;
    let be = |n: usize| -> Result<usize, DecodeError> {
        let b = bytes.get(1..1 + n).ok_or_else(truncated)?;
        Ok(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    let (count, mut at) = match marker {
        0x90..=0x9f => (usize::from(marker & 0x0f), 1),
        0xdc => (be(2)?, 3),
        0xdd => (be(4)?, 5),
        _ => return Err(DecodeError::Shape("expected an array".into())),
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let end = value_end(bytes, at)?;
        out.push(at..end);
        at = end;
    }
    Ok(out)
}

/// The byte ranges of the entries of the `channel_values` map inside a msgpack
/// checkpoint document, by channel: each range is that value exactly as stored.
pub fn channel_value_ranges(
    bytes: &[u8],
) -> Result<Vec<(String, std::ops::Range<usize>)>, DecodeError> {
    let top = map_entry_ranges(bytes, 0)?;
    let (_, range) = top
        .into_iter()
        .find(|(k, _)| k == "channel_values")
        .ok_or_else(|| DecodeError::Shape("checkpoint has no channel_values map".into()))?;
    map_entry_ranges(bytes, range.start)
}

/// `(entries, first entry offset)` when a map starts at `pos`.
fn map_header(bytes: &[u8], pos: usize) -> Result<Option<(usize, usize)>, DecodeError> {
    let truncated = || DecodeError::Msgpack("truncated map header".into());
    let marker = *bytes.get(pos).ok_or_else(truncated)?;
    let be = |n: usize| -> Result<usize, DecodeError> {
        let b = bytes.get(pos + 1..pos + 1 + n).ok_or_else(truncated)?;
        Ok(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    Ok(match marker {
        0x80..=0x8f => Some((usize::from(marker & 0x0f), pos + 1)),
        0xde => Some((be(2)?, pos + 3)),
        0xdf => Some((be(4)?, pos + 5)),
        _ => None,
    })
}

/// Renders a msgpack value; values without a rule are kept and noted in `notices`.
pub fn to_view(value: Mp, notices: &mut Vec<String>) -> Result<Value, DecodeError> {
    render(value, notices, Style::Python)
}

fn render(value: Mp, notices: &mut Vec<String>, style: Style) -> Result<Value, DecodeError> {
    let pydantic = style == Style::PydanticJson;
    Ok(match value {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(i) => {
            if let Some(u) = i.as_u64() {
                Value::from(u)
            } else {
                Value::from(i.as_i64().unwrap_or_default())
            }
        }
        // pydantic's JSON mode writes NaN and the infinities as null.
        Mp::F32(f) if pydantic && !f.is_finite() => Value::Null,
        Mp::F64(f) if pydantic && !f.is_finite() => Value::Null,
        Mp::F32(f) => python::float_view(f64::from(f)),
        Mp::F64(f) => python::float_view(f),
        Mp::String(s) => Value::String(
            s.into_str()
                .ok_or_else(|| DecodeError::Msgpack("string is not valid UTF-8".into()))?,
        ),
        Mp::Binary(b) if pydantic => python::pydantic_bytes_view(&b),
        Mp::Binary(b) => python::bytes_view(&b),
        Mp::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| render(v, notices, style))
                .collect::<Result<_, _>>()?,
        ),
        Mp::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = map_key(render(k, notices, style)?);
                map.insert(key, render(v, notices, style)?);
            }
            Value::Object(map)
        }
        Mp::Ext(code, data) => ext_to_view(code, &data, notices, style)?,
    })
}

/// Python's `json.dumps` of a non-string key: `1`, `true`, `null`; other keys (which
/// Python cannot even dump) use their canonical JSON text.
fn map_key(key: Value) -> String {
    match key {
        Value::String(s) => s,
        other => python::canonical_json(&other),
    }
}

fn ext_to_view(
    code: i8,
    data: &[u8],
    notices: &mut Vec<String>,
    style: Style,
) -> Result<Value, DecodeError> {
    // Why an extension's bytes pass through undecoded, if they do.
    let kept_raw = match code {
        EXT_CONSTRUCTOR_SINGLE_ARG..=EXT_PYDANTIC_V2 => None,
        EXT_NUMPY_ARRAY => {
            let array = parse(data).map_err(|e| e.to_string());
            match array.and_then(|a| super::numpy::to_view(&a)) {
                Ok(view) => return Ok(view),
                Err(why) => Some(format!("numpy array kept undecoded: {why}")),
            }
        }
        // A DeltaChannel's value is this snapshot plus the writes of the checkpoints
        // after it: it means something only with its thread's parent chain.
        EXT_DELTA_SNAPSHOT => Some(
            "DeltaChannel snapshot (msgpack extension type 7) kept undecoded; it needs its thread's whole parent chain"
                .to_owned(),
        ),
        // Anything newer than LangGraph's types we know.
        _ => Some(format!("msgpack extension type {code} kept undecoded")),
    };
    if let Some(why) = kept_raw {
        notices.push(format!("{why} ({} bytes)", data.len()));
        let mut map = Map::new();
        map.insert("__ext__".into(), Value::from(code));
        map.insert("data".into(), python::bytes_view(data)["__bytes__"].clone());
        return Ok(Value::Object(map));
    }
    let Mp::Array(parts) = parse(data)? else {
        return Err(DecodeError::Msgpack(format!(
            "extension type {code} payload is not an array"
        )));
    };
    let mut parts = parts.into_iter();
    let (Some(Mp::String(module)), Some(Mp::String(name))) = (parts.next(), parts.next()) else {
        return Err(DecodeError::Msgpack(format!(
            "extension type {code} payload does not start with (module, class)"
        )));
    };
    let (module, name) = match (module.into_str(), name.into_str()) {
        (Some(m), Some(n)) => (m, n),
        _ => return Err(DecodeError::Msgpack("class name is not valid UTF-8".into())),
    };
    let payload = parts
        .next()
        .ok_or_else(|| DecodeError::Msgpack(format!("extension {module}.{name} has no payload")))?;
    let method = match parts.next() {
        Some(Mp::String(m)) => m.into_str(),
        _ => None,
    };
    // A pydantic v2 model's fields render as its `model_dump(mode="json")` does;
    // LangChain's (messages) as LangChain's `dumpd`, by the Python rules.
    let payload_style = if code == EXT_PYDANTIC_V2 && !super::langchain::is_serializable(&module) {
        Style::PydanticJson
    } else {
        style
    };
    // A set whose members were stored as lists or maps (tuples, dicts) cannot be
    // rebuilt by Python: LangGraph reads it back as the plain list, in stored order.
    let unhashable_set = code == EXT_CONSTRUCTOR_SINGLE_ARG
        && module == "builtins"
        && matches!(name.as_str(), "set" | "frozenset")
        && matches!(&payload, Mp::Array(items) if items.iter().any(|m| matches!(m, Mp::Array(_) | Mp::Map(_))));
    let payload = render(payload, notices, payload_style)?;
    if unhashable_set {
        return Ok(payload);
    }
    let mut obj = PyObject {
        module,
        name,
        args: Vec::new(),
        kwargs: None,
        method: None,
        kind: PyKind::Constructor,
    };
    match code {
        EXT_CONSTRUCTOR_SINGLE_ARG => obj.args.push(payload),
        EXT_CONSTRUCTOR_POS_ARGS => match payload {
            Value::Array(args) => obj.args = args,
            other => obj.args.push(other),
        },
        EXT_METHOD_SINGLE_ARG => {
            obj.args.push(payload);
            obj.method = method;
        }
        EXT_CONSTRUCTOR_KW_ARGS | EXT_PYDANTIC_V1 | EXT_PYDANTIC_V2 => {
            let Value::Object(kwargs) = payload else {
                return Err(DecodeError::Msgpack(format!(
                    "extension type {code} for {}.{} holds no field map",
                    obj.module, obj.name
                )));
            };
            obj.kwargs = Some(kwargs);
            if code == EXT_PYDANTIC_V1 || code == EXT_PYDANTIC_V2 {
                obj.kind = PyKind::PydanticModel;
            }
        }
        _ => {
            return Err(DecodeError::Msgpack(format!(
                "unexpected extension type {code}"
            )));
        }
    }
    let rendered = python::render(obj, style);
    notices.extend(rendered.notice);
    Ok(rendered.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(value: &Mp) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    fn ext(code: i8, parts: Vec<Mp>) -> Mp {
        Mp::Ext(code, pack(&Mp::Array(parts)))
    }

    fn view(value: &Mp) -> (Value, Vec<String>) {
        let mut notices = Vec::new();
        let v = to_view(parse(&pack(value)).unwrap(), &mut notices).unwrap();
        (v, notices)
    }

    #[test]
    fn nested_extensions_and_non_string_keys() {
        let dt = ext(
            3,
            vec![
                "datetime".into(),
                "datetime".into(),
                "2025-01-10T05:55:31.016899+00:00".into(),
                "fromisoformat".into(),
            ],
        );
        let dataclass = ext(
            2,
            vec![
                "app".into(),
                "Order".into(),
                Mp::Map(vec![("placed_at".into(), dt), ("n".into(), 3.into())]),
            ],
        );
        let value = Mp::Map(vec![
            (Mp::from(1), dataclass),
            (Mp::Boolean(true), Mp::Binary(vec![0, 255])),
            (Mp::Nil, Mp::F64(0.5)),
        ]);
        let (v, notices) = view(&value);
        assert!(notices.is_empty());
        assert_eq!(
            v,
            serde_json::json!({
                "1": {"placed_at": "2025-01-10T05:55:31.016899+00:00", "n": 3},
                "true": {"__bytes__": "AP8="},
                "null": 0.5
            })
        );
    }

    #[test]
    fn pydantic_models_get_their_type() {
        let model = ext(
            5,
            vec![
                "app.models".into(),
                "Profile".into(),
                Mp::Map(vec![("name".into(), "Ada".into())]),
                "model_validate_json".into(),
            ],
        );
        assert_eq!(
            view(&model).0,
            serde_json::json!({"name": "Ada", "__type__": "app.models.Profile"})
        );
    }

    #[test]
    fn unknown_extensions_pass_through_and_are_reported() {
        let (v, notices) = view(&Mp::Ext(9, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 9, "data": "AQID"}));
        assert_eq!(notices.len(), 1);
        let (v, notices) = view(&Mp::Ext(7, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 7, "data": "AQID"}));
        assert!(
            notices[0].starts_with("DeltaChannel snapshot"),
            "{notices:?}"
        );
        // A numpy payload we cannot read is kept the same way, saying why.
        let (v, notices) = view(&Mp::Ext(6, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 6, "data": "AQID"}));
        assert!(
            notices[0].starts_with("numpy array kept undecoded"),
            "{notices:?}"
        );
    }

    #[test]
    fn the_reserved_marker_is_an_error() {
        assert!(parse(&[0xc1]).is_err());
        assert!(parse(&[0x92, 0x01, 0xc1]).is_err());
        assert!(parse(&[0x92, 0x01, 0xc0]).is_ok());
    }

    #[test]
    fn validation_accepts_every_kind_of_value() {
        let value = Mp::Map(vec![
            ("s".into(), Mp::String("x".repeat(300).into())),
            ("b".into(), Mp::Binary(vec![7; 70_000])),
            ("a".into(), Mp::Array((0..20).map(Mp::from).collect())),
            ("i".into(), Mp::from(-5_000_000_000i64)),
            ("u".into(), Mp::from(u64::MAX)),
            ("f".into(), Mp::F32(1.5)),
            ("e".into(), Mp::Ext(9, vec![1; 16])),
            ("e3".into(), Mp::Ext(9, vec![1; 3])),
        ]);
        assert!(parse(&pack(&value)).is_ok());
    }

    #[test]
    fn truncated_values_are_errors() {
        let bytes = pack(&Mp::Array(vec!["abc".into(), "def".into()]));
        assert!(parse(&bytes[..bytes.len() - 2]).is_err());
        let mut long = bytes.clone();
        long.push(0xc0);
        assert!(parse(&long).is_err());
    }
}
