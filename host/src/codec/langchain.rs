//! LangChain `Serializable` objects (messages, documents) in LangChain's own
//! constructor form, as `langchain_core.load.dumpd` writes them:
//! `{"lc": 1, "type": "constructor", "id": [...namespace, Class], "kwargs": {...}}`.
//!
//! The serializer stored the object's full `model_dump()`; `dumpd` keeps only the
//! "useful" fields: required ones, and optional ones whose value is truthy. Falsy
//! optional values (`None`, `""`, `0`, `false`, `[]`, `{}`) are dropped, which is what
//! LangChain does for every message field (their defaults are all falsy). AI messages
//! always carry `tool_calls` and `invalid_tool_calls` (their `lc_attributes`).

use serde_json::{Map, Value};

/// Modules whose pydantic classes are LangChain `Serializable`s.
pub fn is_serializable(module: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "langchain_core.messages",
        "langchain_core.documents",
        "langchain_core.prompt_values",
        "langchain.schema",
    ];
    PREFIXES.iter().any(|p| module.starts_with(p))
}

/// The `lc` id LangChain gives a class (`get_lc_namespace` plus the class name), part
/// by part: an iterator, not a `Vec`, as it is written for every message decoded.
pub fn constructor_id<'a>(module: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    let fixed: Option<&'static [&'static str]> = if module.starts_with("langchain_core.messages") {
        Some(&["langchain", "schema", "messages"])
    } else if module.starts_with("langchain_core.documents") {
        Some(&["langchain", "schema", "document"])
    } else if module.starts_with("langchain_core.prompt_values") {
        Some(&["langchain", "prompts", "chat"])
    } else {
        None
    };
    let from_module = fixed.is_none().then(|| module.split('.'));
    fixed
        .unwrap_or_default()
        .iter()
        .copied()
        .chain(from_module.into_iter().flatten())
        .chain(std::iter::once(name))
}

/// The Python module and class of a LangChain `lc` id (the inverse of
/// [`namespace`]), for the classes that live in agent state: messages (and their
/// chunks) and documents. `None` for ids this table does not know.
pub fn class_of(id: &[String]) -> Option<(String, String)> {
    let (name, path) = id.split_last()?;
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["langchain", "schema", "messages"] => {
            let stem = name.strip_suffix("Chunk").unwrap_or(name);
            let module = match stem {
                "AIMessage" => "ai",
                "HumanMessage" => "human",
                "SystemMessage" => "system",
                "ToolMessage" => "tool",
                "FunctionMessage" => "function",
                "ChatMessage" => "chat",
                "RemoveMessage" => "modifier",
                "BaseMessage" => "base",
                _ => return None,
            };
            Some((format!("langchain_core.messages.{module}"), name.clone()))
        }
        ["langchain", "schema", "document"] if name == "Document" => {
            Some(("langchain_core.documents.base".into(), name.clone()))
        }
        ["langchain_core", ..] => Some((path.join("."), name.clone())),
        _ => None,
    }
}

/// Fields LangChain always keeps because the class requires them.
fn required_fields(name: &str) -> &'static [&'static str] {
    if name.starts_with("ToolMessage") {
        &["content", "tool_call_id"]
    } else if name == "Document" {
        &["page_content"]
    } else {
        &["content"]
    }
}

/// Whether `dumpd` keeps field `key` (its UTF-8 bytes) of class `name`, given whether
/// its value is truthy.
pub fn keeps_field(name: &str, key: &[u8], truthy: bool) -> bool {
    truthy || required_fields(name).iter().any(|f| f.as_bytes() == key)
}

/// Fields `dumpd` writes even when the object dropped them (as `[]`, after the kept
/// fields): an AI message's `lc_attributes`.
pub fn added_fields(name: &str) -> &'static [&'static str] {
    if name.starts_with("AIMessage") {
        &["tool_calls", "invalid_tool_calls"]
    } else {
        &[]
    }
}

/// Python's truth value of a field's view.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// [`is_truthy`] of a view written as compact JSON text.
pub fn is_truthy_text(text: &[u8]) -> bool {
    match text {
        b"null" | b"false" | b"\"\"" | b"[]" | b"{}" => false,
        [b'-' | b'0'..=b'9', ..] => std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(|f| f != 0.0),
        _ => true,
    }
}

pub fn constructor(module: &str, name: &str, mut kwargs: Map<String, Value>) -> Value {
    // In place: the field map is kept, not rebuilt (messages are most of a state).
    kwargs.retain(|k, v| keeps_field(name, k.as_bytes(), is_truthy(v)));
    for attr in added_fields(name) {
        kwargs
            .entry(*attr)
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    crate::json_value::object([
        ("lc", Value::from(1)),
        ("type", Value::from("constructor")),
        (
            "id",
            constructor_id(module, name).map(Value::from).collect(),
        ),
        ("kwargs", Value::Object(kwargs)),
    ])
}

/// A stored `message_to_dict` object (`{"type": "ai", "data": {...}}`) in LangChain's
/// constructor form, as `messages_from_dict` followed by `dumpd` gives it.
pub fn message_from_dict(message: Value, notices: &mut Vec<String>) -> Value {
    let class = match message.get("type").and_then(Value::as_str) {
        Some("human") => "HumanMessage",
        Some("ai") => "AIMessage",
        Some("system") => "SystemMessage",
        Some("tool") => "ToolMessage",
        Some("function") => "FunctionMessage",
        Some("chat") => "ChatMessage",
        Some("remove") => "RemoveMessage",
        Some(
            chunk @ ("HumanMessageChunk"
            | "AIMessageChunk"
            | "SystemMessageChunk"
            | "ToolMessageChunk"
            | "FunctionMessageChunk"
            | "ChatMessageChunk"),
        ) => chunk,
        other => {
            notices.push(format!(
                "chat message of unknown type {:?} kept as stored",
                other.unwrap_or("")
            ));
            return message;
        }
    };
    match message.get("data") {
        Some(Value::Object(data)) => constructor("langchain_core.messages", class, data.clone()),
        _ => {
            notices.push("chat message without a data map kept as stored".into());
            message
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ai_message_keeps_tool_calls_and_drops_empty_optionals() {
        let fields = serde_json::json!({
            "content": "", "additional_kwargs": {}, "response_metadata": {}, "type": "ai",
            "name": null, "id": "x", "tool_calls": [], "invalid_tool_calls": [],
            "usage_metadata": null
        });
        let Value::Object(fields) = fields else {
            unreachable!()
        };
        let out = constructor("langchain_core.messages.ai", "AIMessage", fields);
        assert_eq!(
            out,
            serde_json::json!({"lc": 1, "type": "constructor",
                "id": ["langchain", "schema", "messages", "AIMessage"],
                "kwargs": {"content": "", "type": "ai", "id": "x", "tool_calls": [], "invalid_tool_calls": []}})
        );
    }

    #[test]
    fn truthiness_of_text_is_truthiness_of_the_tree() {
        for text in [
            "null",
            "false",
            "true",
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1e-300",
            "0e5",
            "7",
            "-1",
            "\"\"",
            "\" \"",
            "[]",
            "[0]",
            "{}",
            "{\"a\":null}",
            "123456789012345678901234567890",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(is_truthy_text(text.as_bytes()), is_truthy(&value), "{text}");
        }
    }
}
