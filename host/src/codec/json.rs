//! LangGraph's legacy `json` serialization: JSON text in which LangChain objects are
//! already in their `lc: 1` constructor form and other Python objects are
//! `{"lc": 2, "type": "constructor", "id": [...module, Class], "method"?, "args"?, "kwargs"?}`.

use serde_json::{Map, Value};

use super::DecodeError;
use super::python::{self, PyKind, PyObject};

pub fn parse(bytes: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Renders the `lc: 2` envelopes inside a parsed JSON value.
pub fn to_view(value: Value, notices: &mut Vec<String>) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| to_view(v, notices)).collect())
        }
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, to_view(v, notices)))
                .collect();
            if let Some(v) = marker(&map) {
                return v;
            }
            match constructor(&map) {
                Some(obj) => {
                    let rendered = python::render(obj);
                    notices.extend(rendered.notice);
                    rendered.value
                }
                None => Value::Object(map),
            }
        }
        other => other,
    }
}

/// langgraph-redis' markers for LangGraph types: `{"__interrupt__": true, "value",
/// "id"}` is an `Interrupt` (its dataclass fields, `response_schema` defaulting to
/// null), `{"__send__": true, "node", "arg"}` a `Send`.
fn marker(map: &Map<String, Value>) -> Option<Value> {
    if map.get("__interrupt__") == Some(&Value::Bool(true)) {
        return Some(serde_json::json!({
            "value": map.get("value").cloned().unwrap_or(Value::Null),
            "id": map.get("id").cloned().unwrap_or(Value::Null),
            "response_schema": map.get("response_schema").cloned().unwrap_or(Value::Null),
        }));
    }
    if map.get("__send__") == Some(&Value::Bool(true)) {
        return Some(serde_json::json!({
            "node": map.get("node").cloned().unwrap_or(Value::Null),
            "arg": map.get("arg").cloned().unwrap_or(Value::Null),
        }));
    }
    None
}

fn constructor(map: &Map<String, Value>) -> Option<PyObject> {
    if map.get("lc")?.as_i64()? != 2 || map.get("type")?.as_str()? != "constructor" {
        return None;
    }
    let id: Vec<&str> = map
        .get("id")?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()?;
    let (name, module) = id.split_last()?;
    let (method, kind) = match map.get("method") {
        Some(Value::String(m)) => (Some(m.clone()), PyKind::Constructor),
        // `[null, "model_construct"]` (pydantic v2) / `[null, "construct"]` (v1).
        Some(Value::Array(_)) => (None, PyKind::PydanticModel),
        _ => (None, PyKind::Constructor),
    };
    Some(PyObject {
        module: module.join("."),
        name: (*name).to_owned(),
        args: match map.get("args") {
            Some(Value::Array(args)) => args.clone(),
            _ => Vec::new(),
        },
        kwargs: match map.get("kwargs") {
            Some(Value::Object(kw)) => Some(kw.clone()),
            _ => None,
        },
        method,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lc2_envelopes_and_keeps_lc1() {
        let text = br#"{
          "when": {"lc": 2, "type": "constructor", "id": ["datetime", "datetime"],
                   "method": "fromisoformat", "args": ["2025-01-01T00:00:00+00:00"]},
          "tags": {"lc": 2, "type": "constructor", "id": ["builtins", "set"], "args": [["b", "a"]]},
          "msg": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
                  "kwargs": {"content": "hi", "type": "human"}},
          "profile": {"lc": 2, "type": "constructor", "id": ["app", "Profile"],
                      "method": [null, "model_construct"], "kwargs": {"name": "Ada"}}
        }"#;
        let mut notices = Vec::new();
        let view = to_view(parse(text).unwrap(), &mut notices);
        assert_eq!(view["when"], "2025-01-01T00:00:00+00:00");
        assert_eq!(view["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(view["msg"]["lc"], 1);
        assert_eq!(view["profile"]["__type__"], "app.Profile");
        assert!(notices.is_empty());
    }
}
