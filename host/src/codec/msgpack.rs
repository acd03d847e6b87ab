//! LangGraph's msgpack (ormsgpack with extension types 0–7) to a plain-JSON view.

use rmpv::Value as Mp;
use serde_json::{Map, Value};

use super::DecodeError;
use super::python::{self, PyKind, PyObject};

const EXT_CONSTRUCTOR_SINGLE_ARG: i8 = 0;
const EXT_CONSTRUCTOR_POS_ARGS: i8 = 1;
const EXT_CONSTRUCTOR_KW_ARGS: i8 = 2;
const EXT_METHOD_SINGLE_ARG: i8 = 3;
const EXT_PYDANTIC_V1: i8 = 4;
const EXT_PYDANTIC_V2: i8 = 5;

/// Parses one complete msgpack value; trailing bytes are an error (a truncated or
/// concatenated value is corruption, not data).
pub fn parse(bytes: &[u8]) -> Result<Mp, DecodeError> {
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

/// Renders a msgpack value; values without a rule are kept and noted in `notices`.
pub fn to_view(value: Mp, notices: &mut Vec<String>) -> Result<Value, DecodeError> {
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
        Mp::F32(f) => float(f64::from(f))?,
        Mp::F64(f) => float(f)?,
        Mp::String(s) => Value::String(
            s.into_str()
                .ok_or_else(|| DecodeError::Msgpack("string is not valid UTF-8".into()))?,
        ),
        Mp::Binary(b) => python::bytes_view(&b),
        Mp::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| to_view(v, notices))
                .collect::<Result<_, _>>()?,
        ),
        Mp::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = map_key(to_view(k, notices)?);
                map.insert(key, to_view(v, notices)?);
            }
            Value::Object(map)
        }
        Mp::Ext(code, data) => ext_to_view(code, &data, notices)?,
    })
}

fn float(f: f64) -> Result<Value, DecodeError> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| DecodeError::Msgpack(format!("non-finite float {f} has no JSON form")))
}

/// Python's `json.dumps` of a non-string key: `1`, `true`, `null`; other keys (which
/// Python cannot even dump) use their canonical JSON text.
fn map_key(key: Value) -> String {
    match key {
        Value::String(s) => s,
        other => python::canonical_json(&other),
    }
}

fn ext_to_view(code: i8, data: &[u8], notices: &mut Vec<String>) -> Result<Value, DecodeError> {
    if !(EXT_CONSTRUCTOR_SINGLE_ARG..=EXT_PYDANTIC_V2).contains(&code) {
        // 6 (numpy), 7 (delta snapshot) and anything newer: pass the bytes through.
        notices.push(format!(
            "msgpack extension type {code} kept undecoded ({} bytes)",
            data.len()
        ));
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
    let payload = to_view(payload, notices)?;
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
    let rendered = python::render(obj);
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
        let (v, notices) = view(&Mp::Ext(6, vec![1, 2, 3]));
        assert_eq!(v, serde_json::json!({"__ext__": 6, "data": "AQID"}));
        assert_eq!(notices.len(), 1);
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
